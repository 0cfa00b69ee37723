/**
 * The special tokens a tokenizer.json `post_processor` wraps sequences in ([CLS] A [SEP] B [SEP],
 * <s> A </s></s> B </s> …) and the token type ids it gives each part, as Hugging Face's Rust
 * `tokenizers` does, including when special tokens are not added.
 */

export type Piece =
  | { kind: 'special'; ids: number[]; tokens: string[]; typeId: number }
  | { kind: 'sequence'; index: 0 | 1; typeId: number };

export interface Templates {
  single: Piece[];
  pair: Piece[];
}

export interface PostTemplates {
  /** Layouts with special tokens (addSpecialTokens: true). */
  withSpecial: Templates;
  /** Layouts without them: the type ids the processor still assigns. */
  plain: Templates;
}

const seq = (index: 0 | 1, typeId: number): Piece => ({ kind: 'sequence', index, typeId });
const special = (token: string, id: number, typeId: number): Piece => ({ kind: 'special', ids: [id], tokens: [token], typeId });

/** Rust's default_process: no special tokens, the pair's second sequence of type 1. */
const DEFAULT: Templates = { single: [seq(0, 0)], pair: [seq(0, 0), seq(1, 1)] };

type Json = Record<string, unknown>;

function tokenPair(v: unknown, where: string): [string, number] {
  if (!Array.isArray(v) || typeof v[0] !== 'string' || typeof v[1] !== 'number') throw new TypeError(`${where} must be [token, id], got ${JSON.stringify(v)}`);
  return [v[0], v[1]];
}

function templateProcessing(config: Json): Templates {
  const specials = (config.special_tokens ?? {}) as Record<string, { ids: number[]; tokens: string[] }>;
  const parse = (list: unknown, which: string): Piece[] => {
    if (!Array.isArray(list)) throw new TypeError(`TemplateProcessing.${which} must be a list`);
    return list.map((p: Json) => {
      if (p.SpecialToken) {
        const { id, type_id } = p.SpecialToken as { id: string; type_id: number };
        const s = specials[id];
        if (!s) throw new TypeError(`TemplateProcessing.${which} uses the special token "${id}" that special_tokens does not define`);
        return { kind: 'special', ids: [...s.ids], tokens: [...s.tokens], typeId: type_id };
      }
      if (p.Sequence) {
        const { id, type_id } = p.Sequence as { id: string; type_id: number };
        if (id !== 'A' && id !== 'B') throw new TypeError(`TemplateProcessing sequence id must be A or B, got ${id}`);
        return seq(id === 'A' ? 0 : 1, type_id);
      }
      throw new TypeError(`TemplateProcessing.${which}: unknown piece ${JSON.stringify(p)}`);
    });
  };
  return { single: parse(config.single, 'single'), pair: parse(config.pair, 'pair') };
}

/** The templates of a post_processor config (null: none). */
export function postTemplates(config: unknown): PostTemplates {
  if (config === null || config === undefined) return { withSpecial: DEFAULT, plain: DEFAULT };
  const c = config as Json;
  switch (c.type) {
    case 'TemplateProcessing': {
      const t = templateProcessing(c);
      const strip = (ps: Piece[]): Piece[] => ps.filter((p) => p.kind === 'sequence');
      return { withSpecial: t, plain: { single: strip(t.single), pair: strip(t.pair) } };
    }
    case 'BertProcessing': {
      const [cls, clsId] = tokenPair(c.cls, 'BertProcessing.cls');
      const [sep, sepId] = tokenPair(c.sep, 'BertProcessing.sep');
      return {
        withSpecial: {
          single: [special(cls, clsId, 0), seq(0, 0), special(sep, sepId, 0)],
          pair: [special(cls, clsId, 0), seq(0, 0), special(sep, sepId, 0), seq(1, 1), special(sep, sepId, 1)],
        },
        plain: DEFAULT,
      };
    }
    case 'RobertaProcessing': {
      const [cls, clsId] = tokenPair(c.cls, 'RobertaProcessing.cls');
      const [sep, sepId] = tokenPair(c.sep, 'RobertaProcessing.sep');
      return {
        withSpecial: {
          single: [special(cls, clsId, 0), seq(0, 0), special(sep, sepId, 0)],
          pair: [special(cls, clsId, 0), seq(0, 0), special(sep, sepId, 0), special(sep, sepId, 0), seq(1, 0), special(sep, sepId, 0)],
        },
        plain: DEFAULT,
      };
    }
    case 'ByteLevel':
      // Adjusts offsets only.
      return { withSpecial: DEFAULT, plain: DEFAULT };
    case 'Sequence': {
      const adding = ((c.processors ?? []) as Json[]).filter((p) => p.type !== 'ByteLevel');
      if (adding.length > 1) throw new TypeError(`a Sequence post-processor with more than one of ${adding.map((p) => p.type).join(', ')} is not supported`);
      return postTemplates(adding[0] ?? null);
    }
    default:
      throw new TypeError(`post_processor type "${String(c.type)}" is not supported (TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence)`);
  }
}

/** How many special tokens the template adds. */
export function specialCount(pieces: readonly Piece[]): number {
  return pieces.reduce((n, p) => n + (p.kind === 'special' ? p.ids.length : 0), 0);
}
