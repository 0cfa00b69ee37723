import type { Tensor } from '../tensor.js';

/** The float kernels' input check: the tensor is alive and float32 (an int32 tensor would be
 * read as floats bit for bit). */
export function checkFloat(op: string, what: string, t: Tensor): void {
  t.assertAlive();
  if (t.dtype !== 'float32') throw new TypeError(`${op}: ${what} must be float32, got ${t.dtype}`);
}
