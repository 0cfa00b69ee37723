import type { Tensor } from '../tensor.js';

/** The float kernels' input check: the tensor is alive and float32, or float16 for kernels
 * written for it (`half`); an int32 tensor would be read as floats bit for bit, a float16
 * one by a float32 kernel as pairs of halves. */
export function checkFloat(op: string, what: string, t: Tensor, half = false): void {
  t.assertAlive();
  if (t.dtype === 'float32' || (half && t.dtype === 'float16')) return;
  if (half) throw new TypeError(`${op}: ${what} must be float32 or float16, got ${t.dtype}`);
  const way = t.dtype === 'float16' ? '; it does not take float16 tensors: convert with .float() first, or run under autocast(), which keeps it in float32' : '';
  throw new TypeError(`${op}: ${what} must be float32, got ${t.dtype}${way}`);
}
