/** Differentiable conv2d: both backward passes are implicit GEMMs in @tl/tensor. */
import * as T from '@tl/tensor';
import type { Tensor } from '@tl/tensor';
import { fullPrecision } from '../autocast.js';
import { needsGrad, record } from '../graph.js';

export interface Conv2dOptions {
  bias?: Tensor | null;
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
}

export function conv2d(x: Tensor, weight: Tensor, opts: Conv2dOptions = {}): Tensor {
  x = fullPrecision(x);
  const half = weight;
  weight = fullPrecision(weight);
  const { bias: b, ...geo } = opts;
  const bias = fullPrecision(b);
  const y = T.conv2d(x, weight, { ...geo, bias: bias ?? undefined });
  const gx = needsGrad(x);
  const gw = needsGrad(weight);
  // A float16 module's weight is upcast per call; without a gradient to save it for, the
  // copy goes at once, so a half model's convolutions hold one float32 weight at a time.
  if (weight !== half && !gx && !gw) weight.dispose();
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
