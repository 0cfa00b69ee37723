/**
 * Causal-LM data sets, as Hugging Face's run_clm examples build them. Plain text (no prompt):
 * every row tokenized, joined with the end-of-sequence token and cut into blocks of
 * `maxLength` tokens, each its own label (run_clm's group_texts; a last partial block is kept,
 * padded). Prompt and completion: one sample per row, prompt + completion + eos, with the
 * prompt's labels -100 so that the loss is on the completion only; a row longer than
 * `maxLength` is cut from the end and counted. Padding is on the right, masked, labels -100.
 */
import type { Tokenizer } from '@tl/models';
import { hashInts, TensorDataset } from './dataset.js';
import { IGNORE_INDEX } from './loader.js';

export interface CausalLMRow {
  text: string;
  /** Conditions the text without being learnt (its labels are -100). */
  prompt?: string;
}

export interface CausalLMDatasetOptions {
  /** Tokens per sample (block size). */
  maxLength: number;
  /** The end-of-sequence id (the model's config eos_token_id), else the tokenizer's </s>, <|endoftext|> or <eos>. */
  eosTokenId?: number;
  /** Prefixed to the fingerprint (cache keys), e.g. the tokenizer's name. */
  name?: string;
}

export interface CausalLMDataset {
  dataset: TensorDataset;
  /** Prompt-and-completion rows cut to maxLength. */
  truncated: number;
  /** Tokens that carry a loss (labels not -100), over all samples. */
  targetTokens: number;
}

export type CausalLMTokenizer = Pick<Tokenizer, 'encode' | 'tokenToId' | 'padTokenId'>;

const EOS_CANDIDATES = ['</s>', '<|endoftext|>', '<eos>', '<|end_of_text|>'];

/** The end-of-sequence id: given, or the tokenizer's, or a one-line error naming what was looked for. */
export function eosIdOf(tokenizer: CausalLMTokenizer, given?: number): number {
  if (given !== undefined) return given;
  for (const t of EOS_CANDIDATES) {
    const id = tokenizer.tokenToId(t);
    if (id !== undefined) return id;
  }
  throw new RangeError(`the tokenizer has none of the end-of-sequence tokens ${EOS_CANDIDATES.join(', ')} and no eos_token_id was given (config.json's eos_token_id); causal-LM samples end with one`);
}

/** Token ids, the mask and labels padded on the right to `t`. */
function padded(ids: number[], labels: number[], t: number, pad: number): { input: Int32Array; mask: Int32Array; label: Int32Array } {
  const input = new Int32Array(t).fill(pad);
  const mask = new Int32Array(t);
  const label = new Int32Array(t).fill(IGNORE_INDEX);
  input.set(ids);
  mask.fill(1, 0, ids.length);
  label.set(labels);
  return { input, mask, label };
}

/** Samples of token ids [maxLength] with a mask and Int32Array labels (-100 where no loss is taken). */
export function causalLMDataset(rows: readonly CausalLMRow[], tokenizer: CausalLMTokenizer, opts: CausalLMDatasetOptions): CausalLMDataset {
  const t = opts.maxLength;
  if (!Number.isInteger(t) || t < 2) throw new RangeError(`causalLMDataset: maxLength must be an integer >= 2, got ${t}`);
  if (rows.length === 0) throw new RangeError('causalLMDataset: no rows');
  rows.forEach((r, i) => {
    if (typeof r?.text !== 'string') throw new TypeError(`causalLMDataset: row ${i} needs a string "text", got ${JSON.stringify(r?.text)}`);
    if (r.prompt !== undefined && typeof r.prompt !== 'string') throw new TypeError(`causalLMDataset: row ${i} has a prompt that is not a string: ${JSON.stringify(r.prompt)}`);
  });
  const eos = eosIdOf(tokenizer, opts.eosTokenId);
  const pad = tokenizer.padTokenId ?? eos;
  const encode = (text: string, special: boolean): number[] => tokenizer.encode(text, { addSpecialTokens: special, truncation: false }).inputIds;
  const samples: { input: Int32Array; mask: Int32Array; label: Int32Array }[] = [];
  let truncated = 0;
  const prompted = rows.some((r) => r.prompt !== undefined);
  if (prompted) {
    for (const r of rows) {
      const p = encode(r.prompt ?? '', true);
      let ids = [...p, ...encode(r.text, false), eos];
      let labels = [...p.map(() => IGNORE_INDEX), ...ids.slice(p.length)];
      if (ids.length > t) {
        truncated++;
        ids = ids.slice(0, t);
        labels = labels.slice(0, t);
      }
      samples.push(padded(ids, labels, t, pad));
    }
  } else {
    const stream = rows.flatMap((r) => [...encode(r.text, true), eos]);
    for (let at = 0; at < stream.length; at += t) {
      const block = stream.slice(at, at + t);
      if (block.length < 2) break;
      samples.push(padded(block, block, t, pad));
    }
  }
  const targetTokens = samples.reduce((n, s) => n + s.label.reduce((k, v) => k + (v === IGNORE_INDEX ? 0 : 1), 0), 0);
  const fingerprint = `causal-lm:${opts.name ?? ''}:${t}:${samples.length}:${hashInts(samples.flatMap((s) => [...s.input, ...s.label]))}`;
  const dataset = new TensorDataset(samples.map((s) => s.input), samples.map((s) => s.label), [t], fingerprint, undefined, samples.map((s) => s.mask));
  return { dataset, truncated, targetTokens };
}
