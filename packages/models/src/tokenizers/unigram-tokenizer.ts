/**
 * A whole tokenizer.json around a Unigram model (T5's SentencePiece files): added tokens found in
 * the raw text first (`</s>`, `<extra_id_0>` …), the rest normalised, pre-tokenised into "▁"
 * words and segmented by the Unigram model; decoding undoes it. It offers the calls Tokenizer
 * makes of tokenizers.js, whose own Unigram approximates the charsmap with NFKC and has
 * neither byte fallback nor Metaspace splitting.
 */
import { buildDecoder, buildNormalizer, buildPreTokenizer, type Decode, type Normalize, type PreTokenize } from './sentencepiece-steps.js';
import { UnigramModel, type UnigramModelJSON } from './unigram.js';

interface AddedToken {
  id: number;
  content: string;
  special?: boolean;
}

/** The tokenizers.js calls Tokenizer makes, which this offers for Unigram models. */
export interface TokenizerCore {
  encode(text: string, opts: { add_special_tokens: boolean }): { ids: number[]; tokens: string[] };
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
  get_vocab(withAddedTokens?: boolean): Map<string, number>;
  decode(ids: number[], opts: { skip_special_tokens?: boolean; clean_up_tokenization_spaces?: boolean }): string;
}

/** transformers' clean_up_tokenization: no space before punctuation and English contractions. */
export function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(' .', '.')
    .replaceAll(' ?', '?')
    .replaceAll(' !', '!')
    .replaceAll(' ,', ',')
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

export class UnigramTokenizer implements TokenizerCore {
  private readonly model: UnigramModel;
  private readonly normalize: Normalize;
  private readonly preTokenize: PreTokenize;
  private readonly decoder: Decode;
  private readonly added: AddedToken[];
  private readonly addedIds = new Map<string, number>();
  private readonly specialIds: Set<number>;

  constructor(json: { model: Record<string, unknown>; added_tokens?: AddedToken[]; normalizer?: unknown; pre_tokenizer?: unknown; decoder?: unknown }) {
    this.added = [...(json.added_tokens ?? [])].sort((a, b) => b.content.length - a.content.length);
    for (const t of this.added) this.addedIds.set(t.content, t.id);
    this.specialIds = new Set(this.added.filter((t) => t.special).map((t) => t.id));
    this.model = new UnigramModel(json.model as unknown as UnigramModelJSON, new Set(this.addedIds.keys()));
    this.normalize = buildNormalizer(json.normalizer);
    this.preTokenize = buildPreTokenizer(json.pre_tokenizer);
    this.decoder = buildDecoder(json.decoder);
  }

  /** The text cut around the added tokens it contains (longest first at each position). */
  private splitAdded(text: string): (string | AddedToken)[] {
    if (this.added.length === 0) return [text];
    const out: (string | AddedToken)[] = [];
    let plain = '';
    for (let i = 0; i < text.length; ) {
      const hit = this.added.find((t) => t.content !== '' && text.startsWith(t.content, i));
      if (hit) {
        if (plain) out.push(plain);
        plain = '';
        out.push(hit);
        i += hit.content.length;
      } else {
        plain += text[i++];
      }
    }
    if (plain) out.push(plain);
    return out;
  }

  encode(text: string): { ids: number[]; tokens: string[] } {
    const ids: number[] = [];
    const tokens: string[] = [];
    for (const part of this.splitAdded(text)) {
      if (typeof part !== 'string') {
        ids.push(part.id);
        tokens.push(part.content);
        continue;
      }
      const w = this.model.encodeWords(this.preTokenize([this.normalize(part)]));
      ids.push(...w.ids);
      tokens.push(...w.tokens);
    }
    return { ids, tokens };
  }

  token_to_id(token: string): number | undefined {
    return this.addedIds.get(token) ?? this.model.tokenToId(token);
  }

  id_to_token(id: number): string | undefined {
    return this.added.find((t) => t.id === id)?.content ?? this.model.pieces[id];
  }

  get_vocab(): Map<string, number> {
    const vocab = new Map<string, number>();
    this.model.pieces.forEach((p, i) => {
      if (!vocab.has(p)) vocab.set(p, i);
    });
    for (const t of this.added) vocab.set(t.content, t.id);
    return vocab;
  }

  decode(ids: number[], opts: { skip_special_tokens?: boolean; clean_up_tokenization_spaces?: boolean }): string {
    const tokens: string[] = [];
    for (const id of ids) {
      if (opts.skip_special_tokens && this.specialIds.has(id)) continue;
      const t = this.id_to_token(id);
      // An id past the vocabulary (a model's padded embedding rows) is left out, as the Rust tokenizers do.
      if (t !== undefined) tokens.push(t);
    }
    const text = this.decoder(tokens).join('');
    return opts.clean_up_tokenization_spaces ? cleanUpTokenization(text) : text;
  }
}
