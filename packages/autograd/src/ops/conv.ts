/** Differentiable conv2d: both backward passes are implicit GEMMs in @tl/tensor. */
import * as T from '@tl/tensor';
import type { ConvActivation, Tensor } from '@tl/tensor';
import { dropCast, isAutocastEnabled, lowerPrecision } from '../autocast.js';
import { needsGrad, record } from '../graph.js';
import { add, mul, unary } from './elementwise.js';

export interface Conv2dOptions {
  bias?: Tensor | null;
  /** [out]: multiplies each output channel before the bias is added, so a batch norm in
   * evaluation mode folds into the convolution. */
  scale?: Tensor | null;
  /** Applied in the kernel's epilogue, saving a pass over the output. */
  activation?: ConvActivation;
  /** [N, in] or [N, in, 1, 1]: multiplies input channel c of image n before the convolution,
   * `conv2d(x * inputScale)`; a dense 1x1 convolution applies it as it loads x, saving a
   * pass (squeeze-excitation's gate and the projection after it). */
  inputScale?: Tensor | null;
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
}

export function conv2d(x: Tensor, weight: Tensor, opts: Conv2dOptions = {}): Tensor {
  const { bias, scale, activation, inputScale, ...geo } = opts;
  if (inputScale && needsGrad(x, weight, bias, scale, inputScale)) {
    // Recorded as the product it is, so the gate gets its gradient.
    const gate = inputScale.rank === 4 ? inputScale : inputScale.reshape([...inputScale.shape, 1, 1]);
    return conv2d(mul(x, gate), weight, { ...opts, inputScale: null });
  }
  if ((scale || activation) && needsGrad(x, weight, bias, scale)) {
    // The fused epilogue has no backward of its own: where a gradient is wanted the scale,
    // bias and activation are recorded as the ops they are.
    const conv = conv2d(x, weight, { ...geo, bias: scale ? null : bias });
    const scaled = scale ? add(mul(conv, scale.reshape([-1, 1, 1])), bias ? bias.reshape([-1, 1, 1]) : 0) : conv;
    return activation ? unary(activation, scaled) : scaled;
  }
  const x16 = lowerPrecision(x);
  // As linear: under autocast a float32 weight's float16 copy is made inside the op and freed
  // at once (backward makes it again), so the step holds no second set of weights.
  const half = x16.dtype === 'float16' && weight.dtype === 'float32' && isAutocastEnabled();
  const gate = inputScale && inputScale.dtype !== x16.dtype ? T.cast(inputScale, x16.dtype) : inputScale ?? undefined;
  const y = conv2dOf(x16, weight, bias, scale, activation, geo, half, gate);
  if (gate && gate !== inputScale) gate.dispose();
  dropCast(x, x16);
  return y;
}

type Geometry = Omit<Conv2dOptions, 'bias' | 'scale' | 'activation' | 'inputScale'>;

function conv2dOf(
  x: Tensor, weight: Tensor, bias: Tensor | null | undefined, scale: Tensor | null | undefined, activation: ConvActivation | undefined,
  geo: Geometry, half: boolean, inputScale?: Tensor,
): Tensor {
  const w = half ? T.cast(weight, 'float16') : weight;
  const [b, s] = [bias, scale].map((t) => (half && t ? T.cast(t, 'float16') : t ?? undefined));
  const y = T.conv2d(x, w, { ...geo, bias: b, scale: s, activation, inputScale });
  if (w !== weight) w.dispose();
  if (b && b !== bias) b.dispose();
  if (s && s !== scale) s.dispose();
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
