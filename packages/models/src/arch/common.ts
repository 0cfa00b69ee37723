/** Building blocks shared by the torchvision mobile architectures. */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { BatchNorm2d, Conv2d, type Lambda, Sequential } from '../nn/layers.js';

/** torchvision's `_make_divisible`: the nearest multiple of `divisor`, never below
 * `minValue` and never more than 10% under `v`. */
export function makeDivisible(v: number, divisor: number, minValue = divisor): number {
  const r = Math.max(minValue, Math.floor((v + divisor / 2) / divisor) * divisor);
  return r < 0.9 * v ? r + divisor : r;
}

/** torchvision's Conv2dNormActivation: children 0 (conv, no bias), 1 (BatchNorm), 2 (the
 * activation, when there is one), "same" padding. */
export function convNormActivation(
  inChannels: number,
  outChannels: number,
  opts: { kernelSize?: number; stride?: number; groups?: number; activation?: (() => Lambda) | null; bnEps?: number } = {},
): Sequential {
  const k = opts.kernelSize ?? 3;
  const conv = new Conv2d(inChannels, outChannels, k, { stride: opts.stride ?? 1, padding: (k - 1) >> 1, groups: opts.groups ?? 1, bias: false });
  const bn = new BatchNorm2d(outChannels, { eps: opts.bnEps ?? 1e-5 });
  return opts.activation ? new Sequential(conv, bn, opts.activation()) : new Sequential(conv, bn);
}

/** Mean over the spatial dims: adaptive average pooling to 1x1, flattened to [N, C]. */
export function globalAvgPool(x: Tensor): Tensor {
  return A.mean(x, [2, 3]);
}
