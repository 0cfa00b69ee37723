/**
 * The user's labelled sentences as the page takes them: a CSV or TSV file with a header naming a
 * `text` and a `label` column (Hugging Face's run_glue names), or a plain .txt file of one
 * sentence per line for one label. Parsed here, in the page, so nothing is uploaded anywhere.
 */
import { parse } from 'csv-parse/browser/esm/sync';

export interface LabelledSentence {
  text: string;
  label: string;
}

/**
 * The rows of a CSV or TSV text, read with csv-parse (its browser build): quoted fields may hold
 * the delimiter, doubled quotes and line breaks; a BOM, LF or CRLF line ends; blank lines
 * dropped. A malformed file (an unclosed quote) is an error naming it and csv-parse's line.
 */
export function parseDelimited(content: string, delimiter: ',' | '\t', name: string): string[][] {
  try {
    return parse(content, { delimiter, bom: true, skip_empty_lines: true, relax_column_count: true }) as string[][];
  } catch (e) {
    throw new Error(`${name}: ${(e as Error).message}`);
  }
}

function column(header: string[], want: string, name: string): number {
  const i = header.findIndex((h) => h.trim().toLowerCase() === want);
  if (i < 0) throw new Error(`${name}: no "${want}" column in the header; its columns are ${header.map((h) => JSON.stringify(h.trim())).join(', ')} (expected a header line with "text" and "label")`);
  return i;
}

/** The rows of a CSV/TSV file whose header names `text` and `label` columns. */
export function parseLabelledTable(content: string, name: string): LabelledSentence[] {
  const delimiter = /\.(tsv|tab)$/i.test(name) ? '\t' : ',';
  const rows = parseDelimited(content, delimiter, name);
  if (rows.length === 0) throw new Error(`${name} is empty; expected a header line with "text" and "label" columns and a row per sentence`);
  const header = rows[0]!;
  const [t, l] = [column(header, 'text', name), column(header, 'label', name)];
  if (rows.length === 1) throw new Error(`${name} has a header but no rows`);
  return rows.slice(1).map((r, k) => {
    const [text, label] = [r[t]?.trim() ?? '', r[l]?.trim() ?? ''];
    if (text === '') throw new Error(`${name}: row ${k + 2} has no text (column ${t + 1})`);
    if (label === '') throw new Error(`${name}: row ${k + 2} has no label (column ${l + 1})`);
    return { text, label };
  });
}

/** The non-empty lines of a text, trimmed: the sentences of one label. */
export function sentenceLines(content: string): string[] {
  return content.replace(/^\uFEFF/, '').split(/\r?\n/).map((s) => s.trim()).filter((s) => s !== '');
}

/**
 * The user's sentences grouped by label, checked: at least two labels, each with a sentence,
 * and no sentence given two labels.
 */
export function checkLabelledSentences(rows: readonly LabelledSentence[]): string[] {
  const counts = new Map<string, number>();
  const seen = new Map<string, string>();
  for (const r of rows) {
    if (r.label.trim() === '') throw new Error(`the sentence ${JSON.stringify(r.text.slice(0, 60))} has no label`);
    counts.set(r.label, (counts.get(r.label) ?? 0) + 1);
    const other = seen.get(r.text);
    if (other !== undefined && other !== r.label) throw new Error(`the sentence ${JSON.stringify(r.text.slice(0, 60))} has two labels, "${other}" and "${r.label}"`);
    seen.set(r.text, r.label);
  }
  if (counts.size < 2) throw new Error(`classification needs sentences of at least two labels; got ${counts.size === 0 ? 'none' : `only "${[...counts.keys()][0]}"`}`);
  return [...counts.keys()];
}
