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

/** chrF's character n-gram orders and its recall weight, sacreBLEU's defaults (chrF2, n up to 6). */
export const CHRF_ORDER = 6;
export const CHRF_BETA = 2;

function charNgrams(chars: readonly string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= chars.length; i++) {
    const g = chars.slice(i, i + n).join('');
    counts.set(g, (counts.get(g) ?? 0) + 1);
  }
  return counts;
}

/**
 * One sentence's chrF statistics as sacreBLEU 2 gathers them: for n = 1..6, the hypothesis'
 * character n-grams, the reference's and their clipped matches, whitespace removed and
 * characters counted as code points. A hypothesis' n-grams are not counted for an order the
 * reference is too short to have, as sacreBLEU's `_get_match_statistics`. Sum these over a
 * corpus and score the sums with {@link chrFScore}.
 */
export function chrFStatistics(prediction: string, reference: string): number[] {
  const hyp = Array.from(prediction.replace(/\s+/gu, ''));
  const ref = Array.from(reference.replace(/\s+/gu, ''));
  const stats: number[] = [];
  for (let n = 1; n <= CHRF_ORDER; n++) {
    const h = charNgrams(hyp, n);
    const r = charNgrams(ref, n);
    let hypCount = 0;
    let match = 0;
    for (const [g, c] of h) {
      hypCount += c;
      match += Math.min(c, r.get(g) ?? 0);
    }
    stats.push(r.size ? hypCount : 0, Math.max(0, ref.length - n + 1), match);
  }
  return stats;
}

/**
 * chrF (0-100) from summed statistics, sacreBLEU 2's default (no epsilon smoothing): precision
 * and recall averaged over the orders both sides have, then their F-beta with beta 2.
 */
export function chrFScore(stats: readonly number[]): number {
  if (stats.length !== 3 * CHRF_ORDER) throw new RangeError(`chrFScore: expected ${3 * CHRF_ORDER} statistics (hypothesis, reference and matched n-grams for n = 1..${CHRF_ORDER}), got ${stats.length}`);
  let precision = 0;
  let recall = 0;
  let orders = 0;
  for (let i = 0; i < CHRF_ORDER; i++) {
    const [hyp, ref, match] = [stats[3 * i]!, stats[3 * i + 1]!, stats[3 * i + 2]!];
    if (hyp > 0 && ref > 0) {
      precision += match / hyp;
      recall += match / ref;
      orders++;
    }
  }
  if (orders === 0) return 0;
  precision /= orders;
  recall /= orders;
  if (precision + recall === 0) return 0;
  const b2 = CHRF_BETA * CHRF_BETA;
  return (100 * (1 + b2) * precision * recall) / (b2 * precision + recall);
}

/** Corpus chrF (0-100) of predictions against references, their statistics summed as sacreBLEU's corpus_score. */
export function chrF(predictions: readonly string[], references: readonly string[]): number {
  if (predictions.length !== references.length) throw new RangeError(`chrF: ${predictions.length} predictions for ${references.length} references; give one reference per prediction`);
  const sum = new Array<number>(3 * CHRF_ORDER).fill(0);
  predictions.forEach((p, i) => chrFStatistics(p, references[i]!).forEach((v, j) => (sum[j] += v)));
  return chrFScore(sum);
}
