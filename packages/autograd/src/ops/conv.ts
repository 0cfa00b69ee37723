/** Differentiable conv2d: both backward passes are implicit GEMMs in @tl/tensor. */
import * as T from '@tl/tensor';
import type { Tensor } from '@tl/tensor';
import { dropCast, isAutocastEnabled, lowerPrecision } from '../autocast.js';
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
  const x16 = lowerPrecision(x);
  // As linear: under autocast a float32 weight's float16 copy is made inside the op and freed
  // at once (backward makes it again), so the step holds no second set of weights.
  const half = x16.dtype === 'float16' && weight.dtype === 'float32' && isAutocastEnabled();
  const y = conv2dOf(x16, weight, bias, geo, half);
  dropCast(x, x16);
  return y;
}

function conv2dOf(x: Tensor, weight: Tensor, bias: Tensor | null | undefined, geo: Omit<Conv2dOptions, 'bias'>, half: boolean): Tensor {
  const w = half ? T.cast(weight, 'float16') : weight;
  const b = half && bias ? T.cast(bias, 'float16') : bias;
  const y = T.conv2d(x, w, { ...geo, bias: b ?? undefined });
  if (w !== weight) w.dispose();
  if (b && b !== bias) b.dispose();
  const gx = needsGrad(x);
  const gw = needsGrad(weight);
  // Under autocast the weight and bias gradients come out float16; backward casts them to
  // float32, their inputs' dtype.
  return record('conv2d', y, [x, weight, bias], (g, s, needs) => {
    const xs = gw ? s[0]! : null;
    const ws = gx ? s[gw ? 1 : 0]! : null;
    const wh = ws && half ? T.cast(ws, 'float16') : ws;
    const res = [
      gx ? T.conv2dBackwardInput(g, wh!, x.shape, geo) : null,
      gw ? T.conv2dBackwardWeight(xs!, g, weight.shape, geo) : null,
      needs[2] ? T.sum(g, [0, 2, 3]) : null,
    ];
    if (wh !== ws) wh?.dispose();
    return res;
  }, [...(gw ? [x] : []), ...(gx ? [weight] : [])]);
}
