/**
 * The gradient reversal layer of domain-adversarial training (Ganin & Lempitsky 2015): the
 * identity forward, and the upstream gradient times -lambda backward, so the features below it
 * are pushed to confuse the domain classifier above it while that classifier learns to tell the
 * domains apart.
 */
import * as T from '@tl/tensor';
import type { Tensor } from '@tl/tensor';
import { record } from '../graph.js';

/** `lambda` rides in the kernel's uniforms, so a schedule that changes it every step compiles no
 * new pipeline. */
export function gradReverse(x: Tensor, lambda = 1): Tensor {
  if (!Number.isFinite(lambda)) throw new RangeError(`gradReverse: lambda must be a finite number, got ${lambda}`);
  const y = T.map([x], ([v]) => v!, { label: 'gradReverse' });
  return record('gradReverse', y, [x], (g) => [T.map([g, -lambda], ([v, s]) => `${v} * ${s}`, { label: 'gradReverseBackward' })]);
}
