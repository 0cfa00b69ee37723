/** Differentiable layer norm and batch norm (training with running statistics, and eval). */
import * as T from '@tl/tensor';
import type { Tensor } from '@tl/tensor';
import { isRecomputing } from '../checkpoint.js';
import { dropCast, fullPrecision } from '../autocast.js';
import { needsGrad, record } from '../graph.js';

export function layerNorm(x: Tensor, normalizedShape: number | readonly number[], weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  const [x32, w32, b32] = [fullPrecision(x), fullPrecision(weight), fullPrecision(bias)];
  const y = layerNormOf(x32, normalizedShape, w32 ?? undefined, b32 ?? undefined, eps);
  dropCast(x, x32);
  dropCast(weight, w32);
  dropCast(bias, b32);
  return y;
}

function layerNormOf(x: Tensor, normalizedShape: number | readonly number[], w: Tensor | undefined, b: Tensor | undefined, eps: number): Tensor {
  if (!needsGrad(x, w, b)) return T.layerNorm(x, normalizedShape, w, b, eps);
  const { y, mean, rstd } = T.layerNormWithStats(x, normalizedShape, w, b, eps);
  const out = record('layerNorm', y, [x, w, b], (g, s, needs) => {
    const [xs, ms, rs, ws] = s;
    const { dx, dweight, dbias } = T.layerNormBackward(g, xs!, ms!, rs!, ws, { paramGrads: needs[1] || needs[2] });
    return [needs[0] ? dx : (dx.dispose(), null), needs[1] ? dweight : (dweight?.dispose(), null), needs[2] ? dbias : (dbias?.dispose(), null)];
  }, [x, mean, rstd, ...(w ? [w] : [])]);
  mean.dispose();
  rstd.dispose();
  return out;
}

export interface BatchNormOptions {
  /** Normalise with the batch's statistics and update the running ones (training mode). */
  training?: boolean;
  momentum?: number;
  eps?: number;
}

/**
 * As F.batch_norm. In training the batch statistics normalise and the running mean and
 * (unbiased) variance are updated in place with `momentum`; otherwise the running
 * statistics normalise and the op is an affine map per channel.
 */
export function batchNorm(
  x: Tensor, runningMean: Tensor | null, runningVar: Tensor | null, weight?: Tensor | null, bias?: Tensor | null, opts: BatchNormOptions = {},
): Tensor {
  // x may be float16 (autocast's activations) with float32 parameters and statistics, as in
  // PyTorch's CUDA batch norm. A half model's parameters are upcast; its running statistics
  // too where they are only read (training updates them in place, so they stay as they are).
  const [mean32, var32] = opts.training ? [runningMean, runningVar] : [fullPrecision(runningMean) ?? null, fullPrecision(runningVar) ?? null];
  const [w32, b32] = [fullPrecision(weight) ?? null, fullPrecision(bias) ?? null];
  const y = batchNormOf(x, mean32, var32, w32, b32, opts);
  for (const [original, used] of [[runningMean, mean32], [runningVar, var32], [weight, w32], [bias, b32]] as const) dropCast(original, used);
  return y;
}

function batchNormOf(x: Tensor, runningMean: Tensor | null, runningVar: Tensor | null, w: Tensor | null, b: Tensor | null, opts: BatchNormOptions): Tensor {
  const eps = opts.eps ?? 1e-5;
  if (opts.training) {
    const { y, mean, invstd, varUnbiased } = T.batchNormTrain(x, w, b, eps);
    if (runningMean && runningVar && !isRecomputing()) T.updateRunningStats(runningMean, runningVar, mean, varUnbiased, opts.momentum ?? 0.1);
    varUnbiased.dispose();
    const out = record('batchNorm', y, [x, w, b], (g, s, needs) => {
      const [xs, ms, is, ws] = s;
      const { dx, dweight, dbias } = T.batchNormBackward(g, xs!, ms!, is!, ws ?? null);
      return [needs[0] ? dx : (dx.dispose(), null), needs[1] ? dweight : (dweight?.dispose(), null), needs[2] ? dbias : (dbias?.dispose(), null)];
    }, [x, mean, invstd, ...(w ? [w] : [])]);
    mean.dispose();
    invstd.dispose();
    return out;
  }
  if (!runningMean || !runningVar) throw new Error('batchNorm: evaluation mode needs runningMean and runningVar');
  const y = T.batchNorm(x, runningMean, runningVar, w ?? undefined, b ?? undefined, eps);
  if (!needsGrad(x, w, b)) return y;
  const C = x.shape[1]!;
  const chan = (t: Tensor): Tensor => t.reshape([1, C, ...x.shape.slice(2).map(() => 1)]);
  const reduceDims = x.shape.map((_, i) => i).filter((i) => i !== 1);
  return record('batchNormEval', y, [x, w, b], (g, s, needs) => {
    const [xs, rm, rv, ws] = s;
    const [rmc, rvc] = [chan(rm!), chan(rv!)];
    const wc = ws ? chan(ws) : null;
    const gx = needs[0]
      ? T.map([g, rvc, wc ?? 1], ([gv, v, wv]) => `${gv} * ${wv} * inverseSqrt(${v} + ${eps})`, { label: 'batchNormEvalBackward' })
      : null;
    let gw: Tensor | null = null;
    if (needs[1]) {
      const prod = T.map([g, xs!, rmc, rvc], ([gv, xv, m, v]) => `${gv} * (${xv} - ${m}) * inverseSqrt(${v} + ${eps})`, { label: 'batchNormEvalBackward' });
      gw = T.sum(prod, reduceDims);
      prod.dispose();
    }
    const gb = needs[2] ? T.sum(g, reduceDims) : null;
    for (const t of [rmc, rvc, wc]) t?.dispose();
    return [gx, gw, gb];
  }, [x, runningMean, runningVar, ...(w ? [w] : [])]);
}
