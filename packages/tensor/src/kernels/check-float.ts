import type { Tensor } from '../tensor.js';

/** The float32 kernels' input check: the tensor is alive and float32 (an int32 tensor would
 * be read as floats bit for bit, a float16 one as pairs of halves). */
export function checkFloat(op: string, what: string, t: Tensor): void {
  t.assertAlive();
  if (t.dtype === 'float32') return;
  const way = t.dtype === 'float16' ? '; it does not take float16 tensors: convert with .float() first, or run under autocast(), which keeps it in float32' : '';
  throw new TypeError(`${op}: ${what} must be float32, got ${t.dtype}${way}`);
}
