/**
 * Scores of generated text against a reference: exact match (after trimming), ROUGE-L as the
 * `rouge_score` package computes it by default (lower-cased alphanumeric tokens, the F-measure
 * of their longest common subsequence).
 */

export function exactMatch(prediction: string, reference: string): number {
  return prediction.trim() === reference.trim() ? 1 : 0;
}

/** rouge_score's default tokenizer: lower case, runs of other than [a-z0-9] are separators. */
function rougeTokens(text: string): string[] {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, ' ').trim().split(' ').filter(Boolean);
}

function lcsLength(a: readonly string[], b: readonly string[]): number {
  let prev = new Int32Array(b.length + 1);
  let cur = new Int32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) cur[j] = a[i - 1] === b[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, cur[j - 1]!);
    [prev, cur] = [cur, prev];
  }
  return prev[b.length]!;
}

/** The ROUGE-L F-measure of a prediction against a reference, in [0, 1] (0 when either has no token). */
export function rougeL(prediction: string, reference: string): number {
  const p = rougeTokens(prediction);
  const r = rougeTokens(reference);
  if (p.length === 0 || r.length === 0) return 0;
  const lcs = lcsLength(p, r);
  if (lcs === 0) return 0;
  const precision = lcs / p.length;
  const recall = lcs / r.length;
  return (2 * precision * recall) / (precision + recall);
}
