/** Differentiable softmax, log-softmax and the fused cross-entropy. */
import * as T from '@tl/tensor';
import { tensor, type CrossEntropyOptions, type Labels, type Tensor } from '@tl/tensor';
import { dropCast, fullPrecision } from '../autocast.js';
import { needsGrad, record } from '../graph.js';

export function softmax(x: Tensor, dim = -1): Tensor {
  const x32 = fullPrecision(x);
  const y = T.softmax(x32, dim);
  const out = record('softmax', y, [x32], (g, [ys]) => [T.softmaxBackward(ys!, g, dim)], [y]);
  dropCast(x, x32);
  return out;
}

export function logSoftmax(x: Tensor, dim = -1): Tensor {
  const x32 = fullPrecision(x);
  const y = T.logSoftmax(x32, dim);
  const out = record('logSoftmax', y, [x32], (g, [ys]) => [T.logSoftmaxBackward(ys!, g, dim)], [y]);
  dropCast(x, x32);
  return out;
}

/**
 * As F.cross_entropy with class indices (label smoothing, ignoreIndex, class weights, and
 * 'mean' | 'sum' | 'none'). Host labels (arrays) are range-checked here, as PyTorch does;
 * labels already on the GPU give NaN for an out-of-range class (see `checkLabels`).
 */
export function crossEntropy(logits: Tensor, labels: Labels, opts: CrossEntropyOptions = {}): Tensor {
  logits = fullPrecision(logits);
  const lab = labels instanceof T.Tensor ? labels : null;
  const { loss, totalWeight } = T.crossEntropyForward(logits, labels, opts);
  if (!needsGrad(logits)) {
    totalWeight?.dispose();
    return loss;
  }
  // Host labels were uploaded and freed by the forward; the rule needs them on the GPU.
  const labTensor = lab ?? tensor(Int32Array.from(labels as ArrayLike<number>), { shape: logits.rank === 1 ? [] : logits.shape.filter((_, i) => i !== 1), dtype: 'int32' });
  const saved = [logits, labTensor, ...(opts.weight ? [opts.weight] : []), ...(totalWeight ? [totalWeight] : [])];
  const out = record('crossEntropy', loss, [logits], (g, s) => {
    let k = 2;
    const weight = opts.weight ? s[k++] : undefined;
    const tw = totalWeight ? s[k++] : null;
    return [T.crossEntropyBackward(s[0]!, s[1]!, g, { ...opts, weight, totalWeight: tw })];
  }, saved);
  if (!lab) labTensor.dispose();
  totalWeight?.dispose();
  return out;
}
