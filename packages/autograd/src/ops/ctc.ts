/** Differentiable CTC loss over the GPU alpha/beta kernels of @tl/tensor. */
import * as T from '@tl/tensor';
import type { CtcLossOptions, Lengths, Tensor } from '@tl/tensor';
import { fullPrecision } from '../autocast.js';
import { record } from '../graph.js';

/**
 * As `F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank, reduction,
 * zero_infinity)`: logProbs [T, N, C] (a transposed view of batch-first [N, T, C] is read in
 * place), targets int32 [N, S] padded or concatenated, input lengths as a host array, target
 * lengths as a host array or null (count each padded row's labels >= 0, -100 padding). The gradient
 * is PyTorch's (exact through a `logSoftmax`; see tensor's kernels/ctc.ts).
 */
export function ctcLoss(logProbs: Tensor, targets: Tensor | Lengths, inputLengths: Lengths, targetLengths: Lengths | null, opts: CtcLossOptions = {}): Tensor {
  logProbs = fullPrecision(logProbs);
  const r = T.ctcLossForward(logProbs, targets, inputLengths, targetLengths, opts);
  const out = record('ctcLoss', r.loss, [logProbs], (g, [lp, alpha, meta, tg]) => [T.ctcLossBackward(lp!, { alpha: alpha!, meta: meta!, targets: tg! }, g, opts)],
    [logProbs, r.alpha, r.meta, r.targets]);
  r.alpha.dispose();
  r.meta.dispose();
  r.targets.dispose();
  return out;
}
