/**
 * Causal language modelling, as Hugging Face's `*ForCausalLM` with `labels`: the logits at
 * position t predict the label at t + 1, labels of IGNORE_INDEX (-100: a prompt, padding) take
 * no loss, and the loss is the mean cross-entropy over the tokens that count. Evaluation gives
 * that mean over every counted token of the data set, and its exponential, the perplexity.
 */
import * as A from '@tl/autograd';
import { Tensor } from '@tl/autograd';
import type { Batch } from '../data/loader.js';
import { IGNORE_INDEX } from '../data/loader.js';
import { TrainingError } from '../errors.js';
import type { Evaluation, Objective, ObjectiveContext, ObjectiveStep } from './objective.js';

/**
 * The summed next-token cross-entropy of logits [B, T, V] against labels int32 [B, T] (shifted
 * here, -100 ignored) and how many tokens counted; both scalar tensors.
 */
export function shiftedTokenLoss(logits: Tensor, labels: Tensor): { sum: Tensor; tokens: Tensor } {
  if (logits.rank !== 3) throw new TrainingError(`a causal LM gives logits [batch, seq, vocab]; got [${logits.shape.join(', ')}]`);
  const [b, t, v] = logits.shape as [number, number, number];
  if (labels.dtype !== 'int32' || labels.rank !== 2 || labels.shape[0] !== b || labels.shape[1] !== t) {
    throw new TrainingError(`causal-LM labels must be int32 [${b}, ${t}] like the logits' first two dims, got ${labels.dtype} [${labels.shape.join(', ')}]`);
  }
  const target = labels.slice(1, 1, t).reshape(b * (t - 1));
  const sum = A.crossEntropy(logits.slice(1, 0, t - 1).reshape(b * (t - 1), v), target, { reduction: 'sum', ignoreIndex: IGNORE_INDEX });
  const tokens = A.noGrad(() => A.sum(A.cast(A.ne(target, IGNORE_INDEX), 'float32')));
  return { sum, tokens };
}

function logitsOf(ctx: ObjectiveContext, batch: Batch): { logits: Tensor; labels: Tensor } {
  const out = ctx.forward(batch);
  if (!(out instanceof Tensor)) throw new TrainingError(`${ctx.model.constructor.name} returns several outputs (${Object.keys(out).join(', ')}); causal-LM training needs one tensor of logits`);
  if (!batch.y) throw new TrainingError('causal-LM samples need token-id labels (an Int32Array per sample, -100 where no loss is taken)');
  return { logits: out, labels: batch.y };
}

export class CausalLMObjective implements Objective {
  readonly name = 'causal-lm';
  readonly cacheable = false;

  trainStep(ctx: ObjectiveContext, batch: Batch): ObjectiveStep {
    const { logits, labels } = logitsOf(ctx, batch);
    const { sum, tokens } = shiftedTokenLoss(logits, labels);
    // The mean over counted tokens; a batch with none gives 0, not NaN.
    const loss = A.div(sum, A.noGrad(() => A.maximum(tokens, 1)));
    return { loss, rows: batch.size, sums: { nll: A.noGrad(() => A.detach(sum)), tokens } };
  }

  trainLogs(sums: Readonly<Record<string, number>>): Record<string, number> {
    const tokens = sums.tokens ?? 0;
    return tokens > 0 ? { perplexity: Math.exp((sums.nll ?? 0) / tokens) } : {};
  }

  evaluation(): Evaluation {
    let nll = 0;
    let tokens = 0;
    return {
      add: async (ctx, batch) => {
        const both = A.tidy(() => A.noGrad(() => {
          const { logits, labels } = logitsOf(ctx, batch);
          const r = shiftedTokenLoss(logits, labels);
          return A.cat([r.sum.reshape([1]), r.tokens.reshape([1])]);
        }));
        const [s, n] = await both.data();
        both.dispose();
        nll += s!;
        tokens += n!;
      },
      result: () => {
        if (tokens === 0) throw new TrainingError('the evaluation data hold no token to predict (every label is -100)');
        const loss = nll / tokens;
        return { loss, total: tokens, metrics: { perplexity: Math.exp(loss) } };
      },
    };
  }
}
