/**
 * torch.nn.Conv1d (weight [out, in/groups, kernel]) and its weight-normalised form
 * (torch.nn.utils.weight_norm: `weight_g`, `weight_v`), computed as a conv2d of height 1 so
 * they share its implicit-GEMM kernels and backward passes.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { Module } from './module.js';

export interface Conv1dOptions {
  stride?: number;
  padding?: number;
  dilation?: number;
  groups?: number;
  bias?: boolean;
}

function checkGroups(what: string, inChannels: number, outChannels: number, groups: number): void {
  if (!Number.isInteger(groups) || groups < 1 || inChannels % groups || outChannels % groups) {
    throw new RangeError(`${what}: in (${inChannels}) and out (${outChannels}) channels must be divisible by groups (${groups})`);
  }
}

/** x [B, C, T] with weight [O, C/g, K] -> [B, O, T']. */
export function conv1d(x: Tensor, weight: Tensor, bias: Tensor | null, opts: { stride?: number; padding?: number; dilation?: number; groups?: number } = {}): Tensor {
  if (x.rank !== 3) throw new RangeError(`conv1d: input must be [batch, channels, time], got [${x.shape.join(', ')}]`);
  const [b, c, t] = x.shape as [number, number, number];
  const [o, ci, k] = weight.shape as [number, number, number];
  const groups = opts.groups ?? 1;
  if (ci * groups !== c) throw new RangeError(`conv1d: input has ${c} channels but the weight [${weight.shape.join(', ')}] with groups ${groups} expects ${ci * groups}`);
  const y = A.conv2d(x.reshape(b, c, 1, t), weight.reshape(o, ci, 1, k), {
    bias,
    stride: [1, opts.stride ?? 1],
    padding: [0, opts.padding ?? 0],
    dilation: [1, opts.dilation ?? 1],
    groups,
  });
  return y.reshape(b, o, y.shape[3]!);
}

export class Conv1d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly groups: number;
  constructor(readonly inChannels: number, readonly outChannels: number, readonly kernelSize: number, readonly opts: Conv1dOptions = {}) {
    super();
    this.groups = opts.groups ?? 1;
    checkGroups('Conv1d', inChannels, outChannels, this.groups);
    const fanIn = (inChannels / this.groups) * kernelSize;
    const bound = 1 / Math.sqrt(fanIn);
    this.weight = this.param('weight', A.rand([outChannels, inChannels / this.groups, kernelSize], { low: -bound, high: bound }));
    this.bias = opts.bias === false ? null : this.param('bias', A.rand([outChannels], { low: -bound, high: bound }));
  }
  forward(x: Tensor): Tensor {
    return conv1d(x, this.weight, this.bias, { ...this.opts, groups: this.groups });
  }
}

/**
 * A Conv1d under torch.nn.utils.weight_norm(dim): weight = g · v / ‖v‖, the norm taken over
 * every axis but `dim`, so the direction and the scale learn separately (wav2vec 2.0's
 * positional convolution uses dim=2: one scale per kernel tap).
 */
export class WeightNormConv1d extends Module {
  readonly weightG: Tensor;
  readonly weightV: Tensor;
  readonly bias: Tensor | null;
  readonly groups: number;
  constructor(readonly inChannels: number, readonly outChannels: number, readonly kernelSize: number, readonly dim: 0 | 1 | 2, readonly opts: Conv1dOptions = {}) {
    super();
    this.groups = opts.groups ?? 1;
    checkGroups('WeightNormConv1d', inChannels, outChannels, this.groups);
    const fanIn = (inChannels / this.groups) * kernelSize;
    const bound = 1 / Math.sqrt(fanIn);
    const v = A.rand([outChannels, inChannels / this.groups, kernelSize], { low: -bound, high: bound });
    this.weightV = this.param('weight_v', v);
    this.weightG = this.param('weight_g', A.noGrad(() => A.tidy(() => this.norm(v))));
    this.bias = opts.bias === false ? null : this.param('bias', A.rand([outChannels], { low: -bound, high: bound }));
  }
  /** ‖v‖ over every axis but `dim`, kept as size-1 axes (weight_g's shape). */
  norm(v: Tensor): Tensor {
    const axes = [0, 1, 2].filter((a) => a !== this.dim);
    return A.sqrt(A.sum(A.square(v), axes, { keepdim: true }));
  }
  /** The effective weight g · v / ‖v‖. */
  weight(): Tensor {
    return A.mul(this.weightV, A.div(this.weightG, this.norm(this.weightV)));
  }
  forward(x: Tensor): Tensor {
    return conv1d(x, this.weight(), this.bias, { ...this.opts, groups: this.groups });
  }
}
