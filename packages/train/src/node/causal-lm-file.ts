/**
 * Causal-LM rows from a file: a plain text file (.txt: one row per paragraph, paragraphs
 * separated by blank lines, as a corpus is usually written) or a column of a CSV / JSONL file,
 * with an optional prompt column whose text is conditioned on but not learnt.
 */
import { readFile } from 'node:fs/promises';
import type { CausalLMRow } from '../data/causal-lm.js';
import { DataError } from './image-folder.js';
import { readTextColumns } from './text-file.js';

export interface CausalLMColumns {
  /** Default 'text'. */
  text?: string;
  /** The prompt column; none by default (the loss is on all text). */
  prompt?: string;
}

export async function readCausalLMRows(file: string, columns: CausalLMColumns = {}): Promise<CausalLMRow[]> {
  if (/\.txt$/i.test(file)) {
    if (columns.prompt !== undefined) throw new DataError(`${file}: a prompt column needs a .csv or .jsonl file; a .txt file is plain text`);
    const paragraphs = (await readFile(file, 'utf8')).replace(/^\uFEFF/, '').split(/\r?\n\s*\r?\n/).map((p) => p.trim()).filter(Boolean);
    if (paragraphs.length === 0) throw new DataError(`${file} holds no text`);
    return paragraphs.map((text) => ({ text }));
  }
  if (!/\.(csv|jsonl|ndjson)$/i.test(file)) throw new DataError(`${file}: causal-LM data is a .txt file or a .csv / .jsonl file with a text column`);
  const text = columns.text ?? 'text';
  const prompt = columns.prompt;
  const rows = await readTextColumns(file, prompt !== undefined ? [text, prompt] : [text]);
  return rows.map((r) => (prompt !== undefined ? { text: r[text]!, prompt: r[prompt]! } : { text: r[text]! }));
}
