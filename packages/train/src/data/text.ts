/**
 * Text classification data sets: labelled sentences (or sentence pairs) tokenized once, up
 * front, into int32 token ids and an int32 attention mask (1 for tokens, 0 for padding), padded
 * or truncated to `maxLength` so the loader stacks them into [B, T] (ids and mask alike) for
 * `model.forward(inputIds, attentionMask)`. Pairs also get the tokenizer's token type ids
 * (BERT: [CLS] text [SEP] textPair [SEP], types 0 … 0 1 … 1), passed as the third argument.
 */
import type { Tokenizer } from '@tl/models';
import { hashInts, TensorDataset } from './dataset.js';

export interface TextRow {
  text: string;
  /** The second text of a sentence-pair task (the hypothesis of NLI, the answer of QA …). */
  textPair?: string;
  /** A class name, or a class index. */
  label: string | number;
}

export interface TextDatasetOptions {
  /** Tokens per sample, special tokens included: longer texts are cut, shorter ones padded. */
  maxLength: number;
  /** Class names in index order. Default: the distinct labels, sorted (numerically when they
   * are all integers); with numeric labels, '0' … the largest. */
  classes?: string[];
  /** Wrap each text in the tokenizer's special tokens ([CLS] … [SEP]); default true. */
  addSpecialTokens?: boolean;
  /** Prefixed to the fingerprint (cache keys), e.g. the tokenizer's name. */
  name?: string;
}

/** What a text data set needs of a tokenizer (`Tokenizer` from @tl/models has it). */
export type TextTokenizer = Pick<Tokenizer, 'encode'>;

const isIntLabel = (s: string): boolean => /^-?\d+$/.test(s.trim());

/** The class names of labelled rows, in index order: with numeric labels '0' … the largest;
 * otherwise the distinct labels, sorted (numerically when they are all integers). */
export function textClasses(rows: readonly Pick<TextRow, 'label'>[]): string[] {
  if (rows.every((r) => typeof r.label === 'number')) {
    const max = rows.reduce((m, r) => Math.max(m, r.label as number), -1);
    return Array.from({ length: max + 1 }, (_, i) => String(i));
  }
  const names = [...new Set(rows.map((r) => String(r.label)))];
  return names.every(isIntLabel) ? names.sort((a, b) => Number(a) - Number(b)) : names.sort();
}

function resolveClasses(rows: readonly TextRow[], given?: string[]): { classes: string[]; targets: number[] } {
  rows.forEach((r, i) => {
    if (!r || typeof r.text !== 'string') throw new TypeError(`textDataset: row ${i} needs a string "text", got ${JSON.stringify(r?.text)}`);
    if (r.textPair !== undefined && typeof r.textPair !== 'string') throw new TypeError(`textDataset: row ${i} has a textPair that is not a string: ${JSON.stringify(r.textPair)}`);
    if (typeof r.label !== 'string' && !(typeof r.label === 'number' && Number.isInteger(r.label))) {
      throw new TypeError(`textDataset: row ${i} needs a label (class name or integer index), got ${JSON.stringify(r.label)}`);
    }
  });
  const cls = given ?? textClasses(rows);
  const index = new Map(cls.map((c, i) => [c, i]));
  const targets = rows.map((r, i) => {
    const c = typeof r.label === 'number' ? r.label : index.get(r.label);
    if (c === undefined || c < 0 || c >= cls.length) {
      throw new RangeError(`textDataset: row ${i} has label ${JSON.stringify(r.label)}, not one of ${cls.length} classes (${cls.join(', ')})`);
    }
    return c;
  });
  return { classes: cls, targets };
}

/**
 * A data set of int32 token ids [maxLength] with an int32 attention mask, from labelled texts.
 * When any row has a `textPair`, every sample also carries int32 token type ids (a row without
 * one is a single text, all type 0). Every text is tokenized here (cheap next to training), so
 * epochs only stack arrays.
 */
export function textDataset(rows: readonly TextRow[], tokenizer: TextTokenizer, opts: TextDatasetOptions): TensorDataset {
  const T = opts.maxLength;
  if (!Number.isInteger(T) || T < 1) throw new RangeError(`textDataset: maxLength must be a positive integer, got ${T}`);
  const { classes, targets } = resolveClasses(rows, opts.classes);
  const pairs = rows.some((r) => r.textPair !== undefined);
  const inputs: Int32Array[] = [];
  const masks: Int32Array[] = [];
  const types: Int32Array[] = [];
  const all: number[] = [T];
  for (const r of rows) {
    const e = tokenizer.encode(r.text, {
      pair: r.textPair, maxLength: T, truncation: true, padding: 'max_length', addSpecialTokens: opts.addSpecialTokens ?? true,
    });
    if (e.inputIds.length !== T || e.attentionMask.length !== T || (pairs && e.tokenTypeIds.length !== T)) {
      throw new Error(`textDataset: the tokenizer gave ${e.inputIds.length} ids for maxLength ${T}`);
    }
    inputs.push(Int32Array.from(e.inputIds));
    masks.push(Int32Array.from(e.attentionMask));
    all.push(...e.inputIds);
    if (pairs) {
      types.push(Int32Array.from(e.tokenTypeIds));
      all.push(...e.tokenTypeIds);
    }
  }
  const fingerprint = `text:${opts.name ?? ''}:${rows.length}:${pairs ? 'pairs:' : ''}${hashInts(all)}:${hashInts(targets)}`;
  return new TensorDataset(inputs, targets, [T], fingerprint, classes, masks, undefined, pairs ? types : undefined);
}
