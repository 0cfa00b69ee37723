/**
 * Labelled texts from a CSV (`text,label` with a header line) or JSONL (`{"text": ..., "label": ...}`)
 * file, tokenized into a text data set (see data/text.ts).
 */
import { resolve } from 'node:path';
import { stratifiedSplit, type Dataset } from '../data/dataset.js';
import { textDataset, type TextDatasetOptions, type TextRow, type TextTokenizer } from '../data/text.js';
import { readLabelledRows } from './image-folder.js';

/** The `text,label` rows of a CSV or JSONL file (labels as written, i.e. strings). */
export async function readTextRows(file: string): Promise<TextRow[]> {
  return (await readLabelledRows(file, 'text')).map((r) => ({ text: r.value, label: r.label }));
}

export interface TextFileOptions extends TextDatasetOptions {
  /** Hold out this fraction of each class for validation (stratified, seeded). */
  valSplit?: number;
  seed?: number;
}

export interface TextFileResult {
  /** The whole file (no split), or the training part. */
  train: Dataset;
  val: Dataset | null;
  classes: string[];
}

/** A CSV / JSONL file of labelled texts as a tokenized data set, optionally split. */
export async function textFile(file: string, tokenizer: TextTokenizer, opts: TextFileOptions): Promise<TextFileResult> {
  const ds = textDataset(await readTextRows(file), tokenizer, { ...opts, name: opts.name ?? resolve(file) });
  const classes = ds.classes!;
  if (!opts.valSplit) return { train: ds, val: null, classes };
  const { train, val } = stratifiedSplit(ds, opts.valSplit, opts.seed ?? 0);
  return { train, val, classes };
}
