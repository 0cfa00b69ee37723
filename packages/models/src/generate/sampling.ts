/**
 * Choosing the next token from one row of logits on the host, as transformers' logits warpers
 * in their order: temperature, then top-k, then top-p (nucleus); removed tokens become -Infinity.
 */
import { Rng } from '@tl/tensor';

/** Logits divided by `temperature` (> 0). */
export function applyTemperature(logits: Float32Array, temperature: number): Float32Array {
  if (!(temperature > 0)) throw new RangeError(`temperature must be > 0, got ${temperature}`);
  return temperature === 1 ? logits.slice() : logits.map((v) => v / temperature);
}

/** Keeps the k largest logits (ties with the k-th kept, as transformers' `< kth value`); k 0 keeps all. */
export function topKFilter(logits: Float32Array, k: number): Float32Array {
  if (!(Number.isInteger(k) && k >= 0)) throw new RangeError(`topK must be a non-negative integer, got ${k}`);
  if (k === 0 || k >= logits.length) return logits.slice();
  const kth = Float32Array.from(logits).sort().reverse()[k - 1]!;
  return logits.map((v) => (v < kth ? -Infinity : v));
}

/** Softmax of one row in float64. */
export function softmaxRow(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  const p = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += p[i] = Math.exp(logits[i]! - max);
  for (let i = 0; i < p.length; i++) p[i]! /= sum;
  return p;
}

/**
 * Keeps the most likely tokens while the probability mass before them is below p: the smallest
 * set reaching p (transformers' TopPLogitsWarper, which drops a token when it and all less
 * likely ones hold at most 1 - p); the most likely token always stays.
 */
export function topPFilter(logits: Float32Array, p: number): Float32Array {
  if (!(p > 0 && p <= 1)) throw new RangeError(`topP must be in (0, 1], got ${p}`);
  if (p === 1) return logits.slice();
  const probs = softmaxRow(logits);
  const order = Array.from(logits.keys()).sort((a, b) => probs[b]! - probs[a]! || a - b);
  const out = new Float32Array(logits.length).fill(-Infinity);
  let before = 0;
  for (const i of order) {
    if (before >= p) break;
    out[i] = logits[i]!;
    before += probs[i]!;
  }
  return out;
}

/** The index of the largest value (the first of ties, as torch.argmax). */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** A token drawn from softmax(logits) with `rng`. */
export function sampleToken(logits: Float32Array, rng: Rng): number {
  const probs = softmaxRow(logits);
  let u = rng.next();
  for (let i = 0; i < probs.length; i++) {
    u -= probs[i]!;
    if (u < 0) return i;
  }
  return argmax(probs);
}

/** log-softmax of one row in float64. */
export function logSoftmaxRow(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(logits, (v) => v - lse);
}
