/**
 * CTC training, as Hugging Face's Wav2Vec2ForCTC with `labels`: per-frame logits [B, T, V]
 * through log-softmax, CTC against the transcripts' token ids (padded with -100, counted per
 * row on the GPU), the pad token as the blank, every frame of each clip as its input length
 * (fixed-length clips without an attention mask, as wav2vec2-base's feature extractor gives).
 * Evaluation adds greedy decoding (the best token per frame, repeats collapsed, blanks
 * dropped) and the corpus character and word error rates against the references.
 */
import * as A from '@tl/autograd';
import { Tensor } from '@tl/autograd';
import type { Batch } from '../data/loader.js';
import { IGNORE_INDEX } from '../data/loader.js';
import { TrainingError } from '../errors.js';
import { errorCounts } from '../speech-metrics.js';
import type { Evaluation, Objective, ObjectiveContext, ObjectiveStep } from './objective.js';

/** What the objective needs of a CTC tokenizer (CtcCharTokenizer of @tl/models). */
export interface CtcDecoder {
  readonly padTokenId: number;
  /** Text of CTC output (`groupTokens`: collapse repeats, drop the blank) or of reference ids. */
  decode(ids: ArrayLike<number>, opts?: { groupTokens?: boolean }): string;
}

export interface CtcObjectiveOptions {
  tokenizer: CtcDecoder;
  /** The blank class (default the tokenizer's pad token id, as transformers). */
  blank?: number;
  /** transformers' ctc_loss_reduction: 'mean' (default; each clip's loss over its transcript
   * length, averaged over the batch) or 'sum' (transformers' default). */
  reduction?: 'mean' | 'sum';
  /** transformers' ctc_zero_infinity (default true here: a clip whose transcript cannot fit
   * its frames gives 0 instead of an infinite loss that would end the run). */
  zeroInfinity?: boolean;
  /** Called with each decoded evaluation clip, e.g. to show samples in a report. */
  onDecoded?: (t: { prediction: string; reference: string }) => void;
}

function logitsOf(ctx: ObjectiveContext, batch: Batch): { logits: Tensor; labels: Tensor } {
  const out = ctx.forward(batch);
  if (!(out instanceof Tensor) || out.rank !== 3) {
    throw new TrainingError(`${ctx.model.constructor.name} must give per-frame logits [batch, frames, vocab] for CTC training (e.g. Wav2Vec2ForCTC), got ${out instanceof Tensor ? `[${out.shape.join(', ')}]` : `outputs ${Object.keys(out).join(', ')}`}`);
  }
  const y = batch.y;
  if (!y || y.dtype !== 'int32' || y.rank !== 2) {
    throw new TrainingError(`CTC samples need transcripts as token ids int32 [batch, length] (-100 after each transcript), got ${y ? `${y.dtype} [${y.shape.join(', ')}]` : 'none'}`);
  }
  return { logits: out, labels: y };
}

export class CtcObjective implements Objective {
  readonly name = 'ctc';
  readonly cacheable = false;
  private readonly blank: number;

  constructor(private readonly opts: CtcObjectiveOptions) {
    if (!opts?.tokenizer) throw new TypeError('CtcObjective: a tokenizer is required (its pad token is the blank; it decodes transcripts)');
    this.blank = opts.blank ?? opts.tokenizer.padTokenId;
    const r = opts.reduction ?? 'mean';
    if (r !== 'mean' && r !== 'sum') throw new RangeError(`CtcObjective: reduction must be 'mean' or 'sum', got ${JSON.stringify(r)}`);
  }

  /** The batch's CTC loss from logits [B, T, V] and padded transcripts. */
  loss(logits: Tensor, labels: Tensor, reduction: 'mean' | 'sum' = this.opts.reduction ?? 'mean'): Tensor {
    const [b, t] = logits.shape as [number, number, number];
    const lp = A.logSoftmax(logits, -1).transpose(0, 1);
    return A.ctcLoss(lp, labels, new Array<number>(b).fill(t), null, { blank: this.blank, reduction, zeroInfinity: this.opts.zeroInfinity ?? true });
  }

  trainStep(ctx: ObjectiveContext, batch: Batch): ObjectiveStep {
    const { logits, labels } = logitsOf(ctx, batch);
    return { loss: this.loss(logits, labels), rows: batch.size };
  }

  trainLogs(): Record<string, number> {
    return {};
  }

  evaluation(): Evaluation {
    let lossSum = 0;
    let rows = 0;
    const chars = { edits: 0, length: 0 };
    const words = { edits: 0, length: 0 };
    return {
      add: async (ctx, batch) => {
        const [loss, best] = A.tidy(() => A.noGrad(() => {
          const { logits, labels } = logitsOf(ctx, batch);
          // 'mean' per clip whatever the training reduction, so the figure does not grow with the batch.
          return [A.mul(this.loss(logits, labels, 'mean'), batch.size), A.argmax(logits, -1)] as const;
        }));
        const [[l], frames, refs] = await Promise.all([loss.data(), best.data(), batch.y!.data()]);
        loss.dispose();
        lossSum += l!;
        const [b, t] = best.shape as [number, number];
        best.dispose();
        const width = refs.length / b;
        for (let r = 0; r < b; r++) {
          const prediction = this.opts.tokenizer.decode(frames.subarray(r * t, (r + 1) * t));
          const reference = this.opts.tokenizer.decode(Array.from(refs.subarray(r * width, (r + 1) * width)).filter((v) => v !== IGNORE_INDEX), { groupTokens: false });
          for (const [acc, unit] of [[chars, 'char'], [words, 'word']] as const) {
            const c = errorCounts(prediction, reference, unit);
            acc.edits += c.edits;
            acc.length += c.length;
          }
          this.opts.onDecoded?.({ prediction, reference });
        }
        rows += b;
      },
      result: () => {
        if (rows === 0) throw new TrainingError('the evaluation data hold no clip');
        return { loss: lossSum / rows, total: rows, metrics: { cer: chars.edits / chars.length, wer: words.edits / words.length } };
      },
    };
  }
}
