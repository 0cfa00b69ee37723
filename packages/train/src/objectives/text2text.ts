/**
 * Text-to-text training, as Hugging Face's `*ForConditionalGeneration` with `labels`: teacher
 * forcing (the decoder reads the labels shifted right from its start token, -100 read as
 * padding) and the mean cross-entropy over the label tokens that are not -100. Evaluation adds
 * what the model generates: greedy decoding from each source, compared with the reference
 * target as text (exact match, ROUGE-L, and chrF over the whole evaluation set).
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { generate, shiftRight, type GenerativeModel, type Tokenizer } from '@tl/models';
import type { Batch } from '../data/loader.js';
import { IGNORE_INDEX } from '../data/loader.js';
import { TrainingError } from '../errors.js';
import type { TrainableModel } from '../model.js';
import { CHRF_ORDER, chrFScore, chrFStatistics, exactMatch, rougeL } from '../text-metrics.js';
import type { Evaluation, Objective, ObjectiveContext, ObjectiveStep } from './objective.js';

/** An encoder-decoder the objective trains: logits [B, T, V] from the source and the decoder input, and decoding. */
export interface Seq2SeqModel extends GenerativeModel {
  readonly decoderStartTokenId: number;
  readonly config: { padTokenId: number; eosTokenId: number };
  forward(inputIds: Tensor, attentionMask: Tensor | null, decoderInputIds: Tensor): Tensor;
}

export interface Text2TextOptions {
  /** Decodes generated and reference targets for the text metrics. */
  tokenizer: Pick<Tokenizer, 'decode'>;
  /** Tokens generated per source in evaluation (default 32; the target length is a good choice). */
  maxNewTokens?: number;
  /** Generate in evaluation (exact match, ROUGE-L, chrF); off, evaluation gives the loss only. Default true. */
  generate?: boolean;
  /** Called with each generated target in evaluation, e.g. to show samples in a report. */
  onGenerated?: (g: GeneratedPair) => void;
}

/** One held-out source with what the model generated for it and its reference target, as text. */
export interface GeneratedPair {
  source: string;
  prediction: string;
  reference: string;
}

function seq2seqOf(ctx: ObjectiveContext): Seq2SeqModel {
  const m = ctx.model as TrainableModel & Partial<Seq2SeqModel>;
  if (typeof m.decoderStartTokenId !== 'number' || typeof m.newCache !== 'function') {
    throw new TrainingError(`${m.constructor.name} is not an encoder-decoder (no decoderStartTokenId); text-to-text training needs one, e.g. T5ForConditionalGeneration`);
  }
  return m as unknown as Seq2SeqModel;
}

/** The summed cross-entropy of the teacher-forced logits and how many label tokens counted (scalar tensors). */
export function teacherForcedLoss(model: Seq2SeqModel, batch: Batch): { sum: Tensor; tokens: Tensor } {
  const labels = batch.y;
  if (!labels || labels.dtype !== 'int32' || labels.rank !== 2) throw new TrainingError(`text-to-text samples need token-id labels int32 [batch, target length] (-100 past the target), got ${labels ? `${labels.dtype} [${labels.shape.join(', ')}]` : 'none'}`);
  const dec = shiftRight(labels, model.decoderStartTokenId, model.config.padTokenId);
  const logits = model.forward(batch.x, batch.mask, dec);
  const [b, t, v] = logits.shape as [number, number, number];
  const flat = labels.reshape(b * t);
  const sum = A.crossEntropy(logits.reshape(b * t, v), flat, { reduction: 'sum', ignoreIndex: IGNORE_INDEX });
  const tokens = A.noGrad(() => A.sum(A.cast(A.ne(flat, IGNORE_INDEX), 'float32')));
  return { sum, tokens };
}

/** Rows of int32 [B, T] on the host, each keeping the values `keep` accepts. */
async function hostRows(t: Tensor, keep: (v: number) => boolean): Promise<number[][]> {
  const [b, n] = t.shape as [number, number];
  const data = (await t.data()) as Int32Array;
  return Array.from({ length: b }, (_, r) => {
    const row = data.subarray(r * n, (r + 1) * n);
    return Array.from(row).filter((v) => keep(v));
  });
}

export class Text2TextObjective implements Objective {
  readonly name = 'text2text';
  readonly cacheable = false;
  private readonly maxNewTokens: number;

  constructor(private readonly opts: Text2TextOptions) {
    if (!opts?.tokenizer) throw new TypeError('Text2TextObjective: a tokenizer is required to decode generated text');
    this.maxNewTokens = opts.maxNewTokens ?? 32;
    if (!(Number.isInteger(this.maxNewTokens) && this.maxNewTokens >= 1)) throw new RangeError(`Text2TextObjective: maxNewTokens must be a positive integer, got ${opts.maxNewTokens}`);
  }

  trainStep(ctx: ObjectiveContext, batch: Batch): ObjectiveStep {
    const { sum, tokens } = teacherForcedLoss(seq2seqOf(ctx), batch);
    // The mean over counted tokens, as transformers; a batch with none gives 0, not NaN.
    const loss = A.div(sum, A.noGrad(() => A.maximum(tokens, 1)));
    return { loss, rows: batch.size, sums: { nll: A.noGrad(() => A.detach(sum)), tokens } };
  }

  trainLogs(): Record<string, number> {
    return {};
  }

  evaluation(): Evaluation {
    let nll = 0;
    let tokens = 0;
    let rows = 0;
    let exact = 0;
    let rouge = 0;
    // chrF is a corpus score: its n-gram counts are summed over every pair, then scored once.
    const chrf = new Array<number>(3 * CHRF_ORDER).fill(0);
    return {
      add: async (ctx, batch) => {
        const model = seq2seqOf(ctx);
        const both = A.tidy(() => A.noGrad(() => {
          const r = teacherForcedLoss(model, batch);
          return A.cat([r.sum.reshape([1]), r.tokens.reshape([1])]);
        }));
        const [s, n] = await both.data();
        both.dispose();
        nll += s!;
        tokens += n!;
        if (this.opts.generate === false) return;
        const masks = batch.mask ? await hostRows(batch.mask, () => true) : null;
        const sources = await hostRows(batch.x, () => true);
        const prompts = sources.map((row, r) => (masks ? row.filter((_, i) => masks[r]![i] !== 0) : row));
        const references = await hostRows(batch.y!, (v) => v !== IGNORE_INDEX);
        const out = await generate(model, prompts, { maxNewTokens: this.maxNewTokens, eosTokenId: model.config.eosTokenId, padTokenId: model.config.padTokenId });
        out.sequences.forEach((seq, r) => {
          const pred = this.opts.tokenizer.decode(seq, { skipSpecialTokens: true });
          const ref = this.opts.tokenizer.decode(references[r]!, { skipSpecialTokens: true });
          exact += exactMatch(pred, ref);
          rouge += rougeL(pred, ref);
          chrFStatistics(pred, ref).forEach((v, j) => (chrf[j] += v));
          this.opts.onGenerated?.({ source: this.opts.tokenizer.decode(prompts[r]!, { skipSpecialTokens: true }), prediction: pred, reference: ref });
        });
        rows += prompts.length;
      },
      result: () => {
        if (tokens === 0) throw new TrainingError('the evaluation data hold no target token (every label is -100)');
        const metrics: Record<string, number> = {};
        if (rows > 0) {
          metrics.exactMatch = exact / rows;
          metrics.rougeL = rouge / rows;
          // A fraction like the others (sacreBLEU prints it times 100).
          metrics.chrF = chrFScore(chrf) / 100;
        }
        return { loss: nll / tokens, total: rows || tokens, metrics };
      },
    };
  }
}
