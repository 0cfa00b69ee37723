/** Differentiable conv2d: both backward passes are implicit GEMMs in @tl/tensor. */
import * as T from '@tl/tensor';
import type { Tensor } from '@tl/tensor';
import { dropCast, lowerPrecision } from '../autocast.js';
import { needsGrad, record } from '../graph.js';

export interface Conv2dOptions {
  bias?: Tensor | null;
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
}

export function conv2d(x: Tensor, weight: Tensor, opts: Conv2dOptions = {}): Tensor {
  const { bias, ...geo } = opts;
  const [x16, w16, b16] = [lowerPrecision(x), lowerPrecision(weight), lowerPrecision(bias)];
  const y = conv2dOf(x16, w16, b16, geo);
  dropCast(x, x16);
  dropCast(weight, w16);
  dropCast(bias, b16);
  return y;
}

function conv2dOf(x: Tensor, weight: Tensor, bias: Tensor | null | undefined, geo: Omit<Conv2dOptions, 'bias'>): Tensor {
  const y = T.conv2d(x, weight, { ...geo, bias: bias ?? undefined });
  const gx = needsGrad(x);
  const gw = needsGrad(weight);
  return record('conv2d', y, [x, weight, bias], (g, s, needs) => {
    const xs = gw ? s[0]! : null;
    const ws = gx ? s[gw ? 1 : 0]! : null;
    return [
      gx ? T.conv2dBackwardInput(g, ws!, x.shape, geo) : null,
      gw ? T.conv2dBackwardWeight(xs!, g, weight.shape, geo) : null,
      needs[2] ? T.sum(g, [0, 2, 3]) : null,
    ];
  }, [...(gw ? [x] : []), ...(gx ? [weight] : [])]);
}
