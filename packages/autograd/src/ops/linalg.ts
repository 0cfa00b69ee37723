/** Differentiable matmul and linear. */
import * as T from '@tl/tensor';
import type { Tensor } from '@tl/tensor';
import { dropCast, isAutocastEnabled, lowerPrecision } from '../autocast.js';
import { needsGrad, record } from '../graph.js';
import { sumToShape } from './reduce.js';

/** As torch.matmul: 1-D operands are promoted (and the added dim removed), batch dims broadcast. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  const [a16, b16] = [lowerPrecision(a), lowerPrecision(b)];
  const y = matmulOf(a16, b16);
  dropCast(a, a16);
  dropCast(b, b16);
  return y;
}

function matmulOf(a: Tensor, b: Tensor): Tensor {
  if (a.rank === 1 || b.rank === 1) {
    const a2 = a.rank === 1 ? a.reshape(1, a.shape[0]!) : a;
    const b2 = b.rank === 1 ? b.reshape(b.shape[0]!, 1) : b;
    const y = matmulOf(a2, b2);
    const shape = [...y.shape];
    if (b.rank === 1) shape.pop();
    if (a.rank === 1) shape.splice(shape.length - (b.rank === 1 ? 1 : 2), 1);
    return y.reshape(shape);
  }
  const y = T.matmul(a, b);
  const ga = needsGrad(a);
  const gb = needsGrad(b);
  // Save only what the wanted gradients read: a frozen weight's input is not kept.
  return record('matmul', y, [a, b], (g, s) => {
    const as = ga && gb ? s[0]! : gb ? s[0]! : null;
    const bs = ga && gb ? s[1]! : ga ? s[0]! : null;
    return [
      ga ? sumToShape(T.matmul(g, bs!.transpose(-1, -2)), a.shape) : null,
      gb ? sumToShape(T.matmul(as!.transpose(-1, -2), g), b.shape) : null,
    ];
  }, [...(gb ? [a] : []), ...(ga ? [b] : [])]);
}

/** x @ weight^T + bias, weight [out, in] as torch.nn.functional.linear. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const x16 = lowerPrecision(x);
  // Under autocast a float32 weight runs as a float16 copy made inside the op and freed at
  // once; backward makes it again. A copy made outside would join the graph and live until
  // the step ends: a second set of weights, in half precision.
  const half = x16.dtype === 'float16' && weight.dtype === 'float32' && isAutocastEnabled();
  const y = linearOf(x16, weight, bias, half);
  dropCast(x, x16);
  return y;
}

function linearOf(x: Tensor, weight: Tensor, bias: Tensor | null | undefined, half: boolean): Tensor {
  const w = half ? T.cast(weight, 'float16') : weight;
  const b = half && bias ? T.cast(bias, 'float16') : bias;
  const y = T.linear(x, w, b ?? undefined);
  if (w !== weight) w.dispose();
  if (b && b !== bias) b.dispose();
  const gx = needsGrad(x);
  const gw = needsGrad(weight);
  const out = weight.shape[0]!;
  const inF = weight.shape[1]!;
  // The weight and bias gradients come out float16 under autocast; backward casts each to
  // its input's dtype, as the gradient of PyTorch's autocast cast does.
  return record('linear', y, [x, weight, bias], (g, s, needs) => {
    const xs = gw ? s[0]! : null;
    const ws = gx ? s[gw ? 1 : 0]! : null;
    const g2 = g.reshape(-1, out);
    const wh = ws && half ? T.cast(ws, 'float16') : ws;
    const res: (Tensor | null)[] = [
      gx ? T.matmul(g, wh!) : null,
      gw ? (() => {
        const x2 = xs!.reshape(-1, inF);
        const r = T.matmul(g2.transpose(0, 1), x2);
        x2.dispose();
        return r;
      })() : null,
      needs[2] ? T.sum(g2, [0]) : null,
    ];
    if (wh !== ws) wh?.dispose();
    g2.dispose();
    return res;
  }, [...(gw ? [x] : []), ...(gx ? [weight] : [])]);
}
