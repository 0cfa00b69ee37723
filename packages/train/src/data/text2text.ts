/**
 * Text-to-text data sets, as Hugging Face's run_summarization / run_translation examples build
 * them: the source tokenized with the model's special tokens (T5 appends `</s>`) and cut to
 * `maxSourceLength`, the target likewise to `maxTargetLength` as the labels, its padding -100 so
 * that it takes no loss. Cut sources and targets are counted, so a caller can say how many.
 */
import type { Tokenizer } from '@tl/models';
import { hashInts, TensorDataset } from './dataset.js';
import { IGNORE_INDEX } from './loader.js';

export interface Text2TextRow {
  source: string;
  target: string;
}

export interface Text2TextDatasetOptions {
  /** Tokens of a source, special tokens included; longer ones are cut. */
  maxSourceLength: number;
  /** Tokens of a target, its `</s>` included; longer ones are cut and counted. */
  maxTargetLength: number;
  /** Prefixed to the fingerprint (cache keys), e.g. the data file. */
  name?: string;
}

export interface Text2TextDataset {
  dataset: TensorDataset;
  /** Sources and targets longer than their limit, cut to it. */
  truncatedSources: number;
  truncatedTargets: number;
}

export type Text2TextTokenizer = Pick<Tokenizer, 'encode' | 'padTokenId'>;

/** Samples of source ids [maxSourceLength] with a mask and the target ids as labels [maxTargetLength] (-100 past the target). */
export function text2textDataset(rows: readonly Text2TextRow[], tokenizer: Text2TextTokenizer, opts: Text2TextDatasetOptions): Text2TextDataset {
  const { maxSourceLength: s, maxTargetLength: t } = opts;
  for (const [v, flag] of [[s, 'maxSourceLength'], [t, 'maxTargetLength']] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`text2textDataset: ${flag} must be a positive integer, got ${v}`);
  }
  if (rows.length === 0) throw new RangeError('text2textDataset: no rows');
  const pad = tokenizer.padTokenId;
  if (pad === null) throw new RangeError('text2textDataset: the tokenizer has no padding token (e.g. <pad>); sources are padded with it');
  let truncatedSources = 0;
  let truncatedTargets = 0;
  const inputs: Int32Array[] = [];
  const masks: Int32Array[] = [];
  const labels: Int32Array[] = [];
  rows.forEach((r, i) => {
    if (typeof r?.source !== 'string' || typeof r.target !== 'string') throw new TypeError(`text2textDataset: row ${i} needs string "source" and "target", got ${JSON.stringify(r)}`);
    const src = tokenizer.encode(r.source, { truncation: false }).inputIds;
    const tgt = tokenizer.encode(r.target, { truncation: false }).inputIds;
    if (src.length > s) truncatedSources++;
    if (tgt.length > t) truncatedTargets++;
    const input = new Int32Array(s).fill(pad);
    const mask = new Int32Array(s);
    const n = Math.min(src.length, s);
    input.set(src.slice(0, n));
    mask.fill(1, 0, n);
    const label = new Int32Array(t).fill(IGNORE_INDEX);
    label.set(tgt.slice(0, t));
    inputs.push(input);
    masks.push(mask);
    labels.push(label);
  });
  const fingerprint = `text2text:${opts.name ?? ''}:${s}:${t}:${rows.length}:${hashInts([...inputs, ...labels].flatMap((a) => [...a]))}`;
  return { dataset: new TensorDataset(inputs, labels, [s], fingerprint, undefined, masks), truncatedSources, truncatedTargets };
}
