/**
 * Tokenizers from a Hugging Face `tokenizer.json`: WordPiece (BERT, DistilBERT), byte-level BPE
 * (GPT-2, RoBERTa) and the rest of what Hugging Face's tokenizers.js reads. That library
 * normalizes, pre-tokenizes, splits into tokens and decodes; here are the special-token
 * templates, truncation and padding as the Rust `tokenizers` applies them (tokenizers.js has
 * neither truncation nor padding, and its pair handling differs for byte-level and RoBERTa
 * post-processors), and batches ready for the models.
 */
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { postTemplates, specialCount, type Piece, type PostTemplates } from './template.js';
import { UnigramTokenizer, type TokenizerCore } from './unigram-tokenizer.js';

/** A parsed tokenizer.json (only `model` is required). */
export interface TokenizerJSON {
  model: Record<string, unknown>;
  added_tokens?: { id: number; content: string; special?: boolean }[];
  normalizer?: unknown;
  pre_tokenizer?: unknown;
  post_processor?: unknown;
  decoder?: unknown;
  padding?: { pad_token?: string; pad_id?: number } | null;
  truncation?: { max_length?: number } | null;
  [key: string]: unknown;
}

/** The parts of tokenizer_config.json read here. */
export interface TokenizerConfigJSON {
  pad_token?: string | { content: string } | null;
  clean_up_tokenization_spaces?: boolean;
  model_max_length?: number;
  [key: string]: unknown;
}

export interface TokenizerOptions {
  /** The model's tokenizer_config.json, when there is one. */
  config?: TokenizerConfigJSON;
  /** Overrides the padding token (GPT-2 has none of its own; its end-of-text is the default). */
  padToken?: string;
}

export interface EncodeOptions {
  /** A second sequence (sentence-pair tasks). */
  pair?: string;
  /** Wrap in the model's special tokens ([CLS] … [SEP], <s> … </s>); default true. */
  addSpecialTokens?: boolean;
  /** Length limit for truncation and 'max_length' padding, special tokens included. */
  maxLength?: number;
  /** Cut to maxLength (the longer of a pair first, as 'longest_first'); default true when
   * maxLength is given. Without maxLength, tokenizer_config's model_max_length is the limit. */
  truncation?: boolean;
  /** 'max_length': pad to maxLength; 'longest': to the longest of the batch. On the right. */
  padding?: false | 'max_length' | 'longest';
}

export interface Encoding {
  inputIds: number[];
  /** 1 for tokens, 0 for padding. */
  attentionMask: number[];
  tokenTypeIds: number[];
  tokens: string[];
}

export interface BatchEncoding {
  inputIds: number[][];
  attentionMask: number[][];
  tokenTypeIds: number[][];
  tokens: string[][];
}

export interface DecodeOptions {
  /** Leave out special tokens ([CLS], <s>, padding …); default false, as Hugging Face. */
  skipSpecialTokens?: boolean;
  /** transformers' clean-up of spaces before punctuation and contractions; default from
   * tokenizer_config.json, else false (what the Rust tokenizer alone gives). */
  cleanUpTokenizationSpaces?: boolean;
}

/** Pad tokens tried in order when neither the options nor the files name one. */
const PAD_CANDIDATES = ['[PAD]', '<pad>', '<|pad|>', '<|padding|>', '<|endoftext|>'];

interface Part {
  ids: number[];
  tokens: string[];
}

export class Tokenizer {
  private readonly hf: TokenizerCore;
  private readonly templates: PostTemplates;
  /** The padding token and its id, or null when the vocabulary has none. */
  readonly padToken: string | null;
  readonly padTokenId: number | null;
  /** Ids of the special tokens (added tokens marked special). */
  readonly specialIds: ReadonlySet<number>;
  private readonly cleanUp: boolean;
  private readonly modelMaxLength: number | undefined;

  private constructor(json: TokenizerJSON, opts: TokenizerOptions) {
    if (!json || typeof json !== 'object' || !json.model || typeof json.model !== 'object') {
      throw new TypeError('Tokenizer.fromJSON: expected a tokenizer.json object with a "model" field');
    }
    const config = opts.config ?? {};
    // tokenizers.js wants every section present; tokenizer.json files write absent ones as null.
    this.hf = json.model.type === 'Unigram'
      ? new UnigramTokenizer(json)
      : new HfTokenizer({ added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, ...json }, config);
    this.templates = postTemplates(json.post_processor);
    this.specialIds = new Set((json.added_tokens ?? []).filter((t) => t.special).map((t) => t.id));
    const configPad = typeof config.pad_token === 'string' ? config.pad_token : (config.pad_token?.content ?? undefined);
    const named = opts.padToken ?? configPad ?? json.padding?.pad_token;
    if (named !== undefined && this.hf.token_to_id(named) === undefined) throw new RangeError(`pad token "${named}" is not in the vocabulary`);
    const pad = named ?? PAD_CANDIDATES.find((t) => this.hf.token_to_id(t) !== undefined) ?? null;
    this.padToken = pad;
    this.padTokenId = pad === null ? null : this.hf.token_to_id(pad)!;
    this.cleanUp = config.clean_up_tokenization_spaces ?? false;
    this.modelMaxLength = config.model_max_length ?? json.truncation?.max_length ?? undefined;
  }

  /** A tokenizer from tokenizer.json (parsed, or its text), and optionally tokenizer_config.json. */
  static fromJSON(json: TokenizerJSON | string, opts: TokenizerOptions = {}): Tokenizer {
    return new Tokenizer(typeof json === 'string' ? (JSON.parse(json) as TokenizerJSON) : json, opts);
  }

  /** Size of the vocabulary, added tokens included (the embedding rows a model needs). */
  get vocabSize(): number {
    let max = -1;
    for (const id of this.hf.get_vocab(true).values()) max = Math.max(max, id);
    return max + 1;
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  /** How many special tokens encode adds to one sequence, or to a pair. */
  numSpecialTokensToAdd(pair = false): number {
    return specialCount(pair ? this.templates.withSpecial.pair : this.templates.withSpecial.single);
  }

  /** The tokens of `text`, without special tokens. */
  tokenize(text: string): string[] {
    return this.split(text).tokens;
  }

  encode(text: string, opts: EncodeOptions = {}): Encoding {
    const enc = this.encodeOne(text, opts);
    if (opts.padding === 'max_length') return this.pad(enc, this.requireMaxLength(opts));
    return enc;
  }

  /** Encodes texts (or [text, pair] tuples); 'longest' pads to the longest of them. */
  encodeBatch(texts: readonly (string | readonly [string, string])[], opts: Omit<EncodeOptions, 'pair'> = {}): BatchEncoding {
    let encs = texts.map((t) => (typeof t === 'string' ? this.encodeOne(t, opts) : this.encodeOne(t[0], { ...opts, pair: t[1] })));
    if (opts.padding === 'max_length') {
      const n = this.requireMaxLength(opts);
      encs = encs.map((e) => this.pad(e, n));
    } else if (opts.padding === 'longest') {
      const n = encs.reduce((m, e) => Math.max(m, e.inputIds.length), 0);
      encs = encs.map((e) => this.pad(e, n));
    }
    return {
      inputIds: encs.map((e) => e.inputIds),
      attentionMask: encs.map((e) => e.attentionMask),
      tokenTypeIds: encs.map((e) => e.tokenTypeIds),
      tokens: encs.map((e) => e.tokens),
    };
  }

  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const list = Array.from(ids, Number);
    if (list.some((i) => !Number.isInteger(i))) throw new TypeError('decode: ids must be integers');
    if (list.length === 0) return '';
    return this.hf.decode(list, { skip_special_tokens: opts.skipSpecialTokens ?? false, clean_up_tokenization_spaces: opts.cleanUpTokenizationSpaces ?? this.cleanUp });
  }

  decodeBatch(batch: readonly ArrayLike<number>[], opts: DecodeOptions = {}): string[] {
    return batch.map((ids) => this.decode(ids, opts));
  }

  private split(text: string): Part {
    if (typeof text !== 'string') throw new TypeError(`encode: text must be a string, got ${typeof text}`);
    const e = this.hf.encode(text, { add_special_tokens: false });
    return { ids: e.ids, tokens: e.tokens };
  }

  private requireMaxLength(opts: EncodeOptions): number {
    const n = opts.maxLength ?? this.modelMaxLength;
    if (n === undefined) throw new RangeError("padding: 'max_length' needs maxLength (or tokenizer_config's model_max_length)");
    return n;
  }

  private encodeOne(text: string, opts: EncodeOptions): Encoding {
    const add = opts.addSpecialTokens ?? true;
    const parts = [this.split(text)];
    if (opts.pair !== undefined) parts.push(this.split(opts.pair));
    const layout = add ? this.templates.withSpecial : this.templates.plain;
    const pieces = parts.length === 2 ? layout.pair : layout.single;
    const truncate = opts.truncation ?? opts.maxLength !== undefined;
    if (truncate) {
      const max = opts.maxLength ?? this.modelMaxLength;
      if (max === undefined) throw new RangeError('truncation needs maxLength (or tokenizer_config\'s model_max_length)');
      truncateLongestFirst(parts, max - specialCount(pieces), max);
    }
    const out: Encoding = { inputIds: [], attentionMask: [], tokenTypeIds: [], tokens: [] };
    const push = (ids: number[], tokens: string[], typeId: number): void => {
      out.inputIds.push(...ids);
      out.tokens.push(...tokens);
      for (let i = 0; i < ids.length; i++) {
        out.attentionMask.push(1);
        out.tokenTypeIds.push(typeId);
      }
    };
    for (const p of pieces as Piece[]) {
      if (p.kind === 'special') push(p.ids, p.tokens, p.typeId);
      else push(parts[p.index]!.ids, parts[p.index]!.tokens, p.typeId);
    }
    return out;
  }

  private pad(e: Encoding, length: number): Encoding {
    const n = length - e.inputIds.length;
    if (n <= 0) return e;
    if (this.padTokenId === null) throw new RangeError('padding: this tokenizer has no pad token; pass padToken to Tokenizer.fromJSON');
    return {
      inputIds: [...e.inputIds, ...new Array<number>(n).fill(this.padTokenId)],
      attentionMask: [...e.attentionMask, ...new Array<number>(n).fill(0)],
      tokenTypeIds: [...e.tokenTypeIds, ...new Array<number>(n).fill(0)],
      tokens: [...e.tokens, ...new Array<string>(n).fill(this.padToken!)],
    };
  }
}

/** Rust tokenizers' 'longest_first': one sequence is cut to `budget`; of a pair, the shorter
 * keeps what it can up to the budget's other share, else both get half. */
function truncateLongestFirst(parts: Part[], budget: number, maxLength: number): void {
  if (budget < 0) throw new RangeError(`maxLength ${maxLength} is shorter than the ${maxLength - budget} special tokens it must hold`);
  const cut = (p: Part, n: number): void => {
    p.ids.length = Math.min(p.ids.length, n);
    p.tokens.length = Math.min(p.tokens.length, n);
  };
  const [a, b] = parts as [Part, Part | undefined];
  if (!b) {
    cut(a, budget);
    return;
  }
  if (a.ids.length + b.ids.length <= budget) return;
  const swap = a.ids.length > b.ids.length;
  let n1 = Math.min(a.ids.length, b.ids.length);
  let n2 = n1 > budget ? n1 : Math.max(n1, budget - n1);
  if (n1 + n2 > budget) {
    n1 = Math.floor(budget / 2);
    n2 = n1 + (budget % 2);
  }
  cut(swap ? b : a, n1);
  cut(swap ? a : b, n2);
}

/** A padded batch as int32 tensors [B, T] for the models (inputIds, attentionMask, tokenTypeIds). */
export function batchTensors(batch: BatchEncoding): { inputIds: Tensor; attentionMask: Tensor; tokenTypeIds: Tensor } {
  const b = batch.inputIds.length;
  const t = batch.inputIds[0]?.length ?? 0;
  if (b === 0) throw new RangeError('batchTensors: empty batch');
  if (batch.inputIds.some((r) => r.length !== t)) throw new RangeError("batchTensors: rows differ in length; encode with padding: 'longest' or 'max_length'");
  const make = (rows: number[][]): Tensor => A.tensor(Int32Array.from(rows.flat()), { shape: [b, t] });
  return { inputIds: make(batch.inputIds), attentionMask: make(batch.attentionMask), tokenTypeIds: make(batch.tokenTypeIds) };
}
