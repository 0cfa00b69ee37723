/** Root-mean-square layer norm (Llama's LlamaRMSNorm, T5's T5LayerNorm): no centring, no bias. */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { Module } from './module.js';

/** x / sqrt(mean(x², last dim) + eps) · weight. */
export function rmsNorm(x: Tensor, weight: Tensor | null, eps: number): Tensor {
  const ms = A.mean(A.mul(x, x), -1, { keepdim: true });
  const y = A.mul(x, A.rsqrt(A.add(ms, eps)));
  return weight ? A.mul(y, weight) : y;
}

export class RMSNorm extends Module {
  readonly weight: Tensor;
  constructor(readonly normalizedShape: number, readonly eps = 1e-6) {
    super();
    this.weight = this.param('weight', A.ones([normalizedShape]));
  }
  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight, this.eps);
  }
}
