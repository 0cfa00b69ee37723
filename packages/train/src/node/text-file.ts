/**
 * Labelled texts from a CSV (with a header line) or JSONL file, tokenized into a text data set
 * (see data/text.ts). The columns default to `text` and `label`, as in Hugging Face's run_glue;
 * others (`sentence`, `premise,hypothesis`, …) are named with `columns`.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { stratifiedSplit, type Dataset } from '../data/dataset.js';
import { textDataset, type TextDatasetOptions, type TextRow, type TextTokenizer } from '../data/text.js';
import { DataError, parseCsv } from './image-folder.js';

/** Which columns (CSV header names, JSONL keys) hold what. */
export interface TextColumns {
  /** Default 'text'. */
  text?: string;
  /** The second text of sentence pairs; default none (single texts). */
  textPair?: string;
  /** Default 'label'. */
  label?: string;
}

interface TextRecord {
  /** "row 3" (CSV, counting the header as row 1) or "line 3" (JSONL), for messages. */
  where: string;
  get(column: string): unknown;
}

function csvRecords(file: string, text: string, wanted: readonly string[]): TextRecord[] {
  const lines = parseCsv(text);
  const header = lines.shift()!.map((h) => h.trim());
  // Exact names first; spreadsheets often capitalise headers, so a unique case-insensitive match also counts.
  const index = new Map<string, number>();
  for (const name of wanted) {
    let i = header.indexOf(name);
    if (i < 0) {
      const loose = header.flatMap((h, j) => (h.toLowerCase() === name.toLowerCase() ? [j] : []));
      if (loose.length === 1) i = loose[0]!;
    }
    if (i < 0) throw new DataError(`${file} has no column "${name}"; its columns are ${header.map((h) => JSON.stringify(h)).join(', ')}`);
    index.set(name, i);
  }
  const records: TextRecord[] = [];
  lines.forEach((cols, i) => {
    if (cols.length === 1 && cols[0] === '') return;
    const where = `row ${i + 2}`;
    for (const [name, j] of index) {
      if (cols[j] === undefined) throw new DataError(`${file}: ${where} has ${cols.length} fields, too few for the column "${name}" (field ${j + 1} of the header)`);
    }
    records.push({ where, get: (c) => cols[index.get(c)!] });
  });
  return records;
}

function jsonlRecords(file: string, text: string, wanted: readonly string[]): TextRecord[] {
  const records: TextRecord[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    const where = `line ${i + 1}`;
    let o: unknown;
    try {
      o = JSON.parse(line);
    } catch {
      throw new DataError(`${file}: ${where} is not JSON`);
    }
    if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new DataError(`${file}: ${where} is not a JSON object`);
    const obj = o as { [key: string]: unknown };
    const missing = wanted.find((c) => !(c in obj));
    if (missing !== undefined) throw new DataError(`${file}: ${where} has no "${missing}"; its keys are ${Object.keys(obj).map((k) => JSON.stringify(k)).join(', ')}`);
    records.push({ where, get: (c) => obj[c] });
  });
  return records;
}

/** The named columns of every row of a CSV or JSONL file, each a string, or a DataError naming the row. */
export async function readTextColumns(file: string, columns: readonly string[]): Promise<Record<string, string>[]> {
  const text = (await readFile(file, 'utf8')).replace(/^\uFEFF/, '');
  if (!text.trim()) throw new DataError(`${file} is empty; expected a header line naming the columns (${columns.join(',')}) and a row per text`);
  const records = /\.(jsonl|ndjson)$/i.test(file) ? jsonlRecords(file, text, columns) : csvRecords(file, text, columns);
  if (records.length === 0) throw new DataError(`${file} has no rows, only a header`);
  return records.map((r) => Object.fromEntries(columns.map((c) => {
    const v = r.get(c);
    if (typeof v !== 'string') throw new DataError(`${file}: ${r.where} has a "${c}" that is not a string: ${JSON.stringify(v)}`);
    return [c, v];
  })));
}

/** The labelled texts of a CSV or JSONL file, labels as written (strings). */
export async function readTextRows(file: string, columns: TextColumns = {}): Promise<TextRow[]> {
  const textCol = columns.text ?? 'text';
  const labelCol = columns.label ?? 'label';
  const pairCol = columns.textPair;
  const wanted = [textCol, ...(pairCol !== undefined ? [pairCol] : []), labelCol];
  const text = (await readFile(file, 'utf8')).replace(/^\uFEFF/, '');
  if (!text.trim()) throw new DataError(`${file} is empty; expected a header line naming the columns (${wanted.join(',')}) and a row per text`);
  const records = /\.(jsonl|ndjson)$/i.test(file) ? jsonlRecords(file, text, wanted) : csvRecords(file, text, wanted);
  if (records.length === 0) throw new DataError(`${file} has no rows, only a header`);
  return records.map((r) => {
    const t = r.get(textCol);
    const pair = pairCol !== undefined ? r.get(pairCol) : undefined;
    const label = r.get(labelCol);
    if (typeof t !== 'string') throw new DataError(`${file}: ${r.where} has a "${textCol}" that is not a string: ${JSON.stringify(t)}`);
    if (pairCol !== undefined && typeof pair !== 'string') throw new DataError(`${file}: ${r.where} has a "${pairCol}" that is not a string: ${JSON.stringify(pair)}`);
    const name = typeof label === 'string' ? label.trim() : typeof label === 'number' || typeof label === 'boolean' ? String(label) : '';
    if (name === '') throw new DataError(`${file}: ${r.where} has no label (column "${labelCol}")`);
    return { text: t, ...(pairCol !== undefined ? { textPair: pair as string } : {}), label: name };
  });
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
