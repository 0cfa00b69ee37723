/** torch.nn.GroupNorm: statistics per sample over each group of channels and every position. */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { Module } from './module.js';

export class GroupNorm extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  constructor(readonly numGroups: number, readonly numChannels: number, readonly opts: { eps?: number; affine?: boolean } = {}) {
    super();
    if (!Number.isInteger(numGroups) || numGroups < 1 || numChannels % numGroups) {
      throw new RangeError(`GroupNorm: numChannels (${numChannels}) must be divisible by numGroups (${numGroups})`);
    }
    const affine = opts.affine ?? true;
    this.weight = affine ? this.param('weight', A.ones([numChannels])) : null;
    this.bias = affine ? this.param('bias', A.zeros([numChannels])) : null;
  }
  /** x [B, C, ...] -> the same shape. */
  forward(x: Tensor): Tensor {
    if (x.rank < 2 || x.shape[1] !== this.numChannels) {
      throw new RangeError(`GroupNorm: expected [batch, ${this.numChannels}, ...], got [${x.shape.join(', ')}]`);
    }
    const b = x.shape[0]!;
    const perGroup = x.size / (b * this.numGroups);
    // A group is a contiguous run of channels, so layerNorm over the flattened run is its statistics.
    const y = A.layerNorm(x.reshape(b, this.numGroups, perGroup), [perGroup], null, null, this.opts.eps ?? 1e-5).reshape(x.shape);
    if (!this.weight || !this.bias) return y;
    const affineShape = [this.numChannels, ...x.shape.slice(2).map(() => 1)];
    return A.add(A.mul(y, this.weight.reshape(affineShape)), this.bias.reshape(affineShape));
  }
}
