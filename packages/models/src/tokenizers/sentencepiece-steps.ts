/**
 * The tokenizer.json steps around a SentencePiece model, as transformers' converter writes them
 * for T5 and its kin: normalisers (the precompiled charsmap, Strip, Replace, Unicode forms,
 * Lowercase), pre-tokenisers (Metaspace, which writes spaces as "▁" and splits before each, and
 * WhitespaceSplit) and the decoders that undo them (Metaspace, ByteFallback, Fuse, Strip,
 * Replace). A type not listed is a one-line error naming it.
 */
import { PrecompiledCharsmap } from './precompiled-charsmap.js';

type Json = Record<string, unknown>;

export type Normalize = (text: string) => string;
export type PreTokenize = (words: string[]) => string[];
export type Decode = (tokens: string[]) => string[];

function pattern(p: unknown, where: string): RegExp {
  const o = (p ?? {}) as Json;
  if (typeof o.Regex === 'string') return new RegExp(o.Regex, 'gu');
  if (typeof o.String === 'string') return new RegExp(o.String.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gu');
  throw new TypeError(`${where}: pattern must be {"String": …} or {"Regex": …}, got ${JSON.stringify(p)}`);
}

/** A tokenizer.json `normalizer` as a function (null: identity). */
export function buildNormalizer(config: unknown): Normalize {
  if (config === null || config === undefined) return (t) => t;
  const c = config as Json;
  switch (c.type) {
    case 'Sequence': {
      const steps = ((c.normalizers ?? []) as unknown[]).map(buildNormalizer);
      return (t) => steps.reduce((s, f) => f(s), t);
    }
    case 'Precompiled': {
      if (typeof c.precompiled_charsmap !== 'string' || c.precompiled_charsmap === '') return (t) => t;
      const map = PrecompiledCharsmap.fromBase64(c.precompiled_charsmap);
      return (t) => map.normalize(t);
    }
    case 'Strip': {
      const left = c.strip_left !== false;
      const right = c.strip_right !== false;
      return (t) => (left && right ? t.trim() : left ? t.trimStart() : right ? t.trimEnd() : t);
    }
    case 'Replace': {
      const re = pattern(c.pattern, 'Replace normalizer');
      const content = String(c.content ?? '');
      return (t) => t.replace(re, () => content);
    }
    case 'NFKC':
    case 'NFC':
    case 'NFD':
    case 'NFKD': {
      const form = c.type;
      return (t) => t.normalize(form);
    }
    case 'Lowercase':
      return (t) => t.toLowerCase();
    default:
      throw new TypeError(`normalizer type "${String(c.type)}" is not supported with a Unigram model (Sequence, Precompiled, Strip, Replace, NFC, NFD, NFKC, NFKD, Lowercase)`);
  }
}

/** Metaspace's prepend_scheme, also from the older add_prefix_space. */
function prependScheme(c: Json): 'always' | 'first' | 'never' {
  if (c.prepend_scheme === 'always' || c.prepend_scheme === 'first' || c.prepend_scheme === 'never') return c.prepend_scheme;
  if (c.prepend_scheme !== undefined) throw new TypeError(`Metaspace: prepend_scheme must be "always", "first" or "never", got ${JSON.stringify(c.prepend_scheme)}`);
  return c.add_prefix_space === false ? 'never' : 'always';
}

function replacementOf(c: Json): string {
  const r = c.replacement ?? '▁';
  if (typeof r !== 'string' || [...r].length !== 1) throw new TypeError(`Metaspace: replacement must be one character, got ${JSON.stringify(r)}`);
  return r;
}

/** A tokenizer.json `pre_tokenizer` as a function from words to words (null: the text is one word). */
export function buildPreTokenizer(config: unknown): PreTokenize {
  if (config === null || config === undefined) return (w) => w;
  const c = config as Json;
  switch (c.type) {
    case 'Sequence': {
      const steps = ((c.pretokenizers ?? []) as unknown[]).map(buildPreTokenizer);
      return (w) => steps.reduce((s, f) => f(s), w);
    }
    case 'WhitespaceSplit':
      return (words) => words.flatMap((w) => w.split(/\s+/u).filter((s) => s !== ''));
    case 'Metaspace': {
      const r = replacementOf(c);
      const scheme = prependScheme(c);
      const split = c.split !== false;
      return (words) =>
        words.flatMap((w, i) => {
          let s = w.replaceAll(' ', r);
          if (s !== '' && !s.startsWith(r) && (scheme === 'always' || (scheme === 'first' && i === 0))) s = r + s;
          if (!split) return [s];
          // Each word starts at a "▁" (the split keeps it with what follows).
          const out: string[] = [];
          let cur = '';
          for (const ch of s) {
            if (ch === r && cur !== '') {
              out.push(cur);
              cur = '';
            }
            cur += ch;
          }
          if (cur !== '') out.push(cur);
          return out;
        });
    }
    default:
      throw new TypeError(`pre_tokenizer type "${String(c.type)}" is not supported with a Unigram model (Sequence, Metaspace, WhitespaceSplit)`);
  }
}

const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;
const utf8 = new TextDecoder('utf-8', { fatal: false });

/** A tokenizer.json `decoder` as a function over token strings (null: tokens as they are). */
export function buildDecoder(config: unknown): Decode {
  if (config === null || config === undefined) return (t) => t;
  const c = config as Json;
  switch (c.type) {
    case 'Sequence': {
      const steps = ((c.decoders ?? []) as unknown[]).map(buildDecoder);
      return (t) => steps.reduce((s, f) => f(s), t);
    }
    case 'Metaspace': {
      const r = replacementOf(c);
      const strip = prependScheme(c) !== 'never';
      return (tokens) =>
        tokens.map((t, i) => {
          const s = t.replaceAll(r, ' ');
          return strip && i === 0 && s.startsWith(' ') ? s.slice(1) : s;
        });
    }
    case 'ByteFallback':
      return (tokens) => {
        // Runs of byte tokens are UTF-8: decoded together, invalid bytes as U+FFFD.
        const out: string[] = [];
        let bytes: number[] = [];
        const flush = (): void => {
          if (bytes.length) out.push(utf8.decode(Uint8Array.from(bytes)));
          bytes = [];
        };
        for (const t of tokens) {
          const m = BYTE_TOKEN.exec(t);
          if (m) bytes.push(parseInt(m[1]!, 16));
          else {
            flush();
            out.push(t);
          }
        }
        flush();
        return out;
      };
    case 'Fuse':
      return (tokens) => [tokens.join('')];
    case 'Strip': {
      const content = String(c.content ?? ' ');
      const start = Number(c.start ?? 0);
      const stop = Number(c.stop ?? 0);
      return (tokens) =>
        tokens.map((t) => {
          let s = t;
          for (let k = 0; k < start && s.startsWith(content); k++) s = s.slice(content.length);
          for (let k = 0; k < stop && s.endsWith(content); k++) s = s.slice(0, -content.length);
          return s;
        });
    }
    case 'Replace': {
      const re = pattern(c.pattern, 'Replace decoder');
      const content = String(c.content ?? '');
      return (tokens) => tokens.map((t) => t.replace(re, () => content));
    }
    default:
      throw new TypeError(`decoder type "${String(c.type)}" is not supported with a Unigram model (Sequence, Metaspace, ByteFallback, Fuse, Strip, Replace)`);
  }
}
