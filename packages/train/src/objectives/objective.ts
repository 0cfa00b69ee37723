/**
 * The trainer's contract (../shared/DESIGN.md): a batch is a record of named tensors, a model
 * declares the inputs its forward takes, and an objective turns model outputs and targets into
 * the loss and the metrics. The loop in trainer.ts (steps, accumulation, clipping, schedules,
 * callbacks, checkpoints) knows no task; each task is one Objective, as a Keras model is
 * compiled with a loss and metrics, or as a Hugging Face model computes its own loss from
 * `labels`.
 */
import type { Tensor } from '@tl/autograd';
import type { Batch } from '../data/loader.js';
import type { Dataset } from '../data/dataset.js';
import type { ClassificationReport } from '../metrics.js';
import type { ModelOutput, TrainableModel } from '../model.js';

/** What an objective may ask of the loop while it computes a batch's loss. */
export interface ObjectiveContext {
  readonly model: TrainableModel;
  /** Whether the batch's `x` holds cached backbone features (the model's head is run on them). */
  readonly cached: boolean;
  /** The model's output for a batch: `forward(x, mask, tokenTypeIds)` as the model declares it,
   * or `forwardHead(x)` on cached features. */
  forward(batch: Batch): ModelOutput;
  log(line: string): void;
}

/** A training batch's contribution. */
export interface ObjectiveStep {
  /** The scalar loss the loop differentiates (a mean over `rows`). */
  loss: Tensor;
  /** How many rows the loss averages over (targets that count; default the batch size): the
   * weight of this batch in the epoch's mean loss. */
  rows?: number;
  /** Scalar ([1] or []) tensors the loop reads back with the loss and sums over the epoch, e.g.
   * `{ correct }`; turned into log entries by `trainLogs`. */
  sums?: Record<string, Tensor>;
}

/** Batches drawn beside the training batch, by name (an unlabelled target domain, …). */
export type NamedBatches = Readonly<Record<string, Batch>>;

/** Evaluation of one pass over a data set, batch by batch. */
export interface Evaluation {
  /** Called for every batch with the model in eval mode; the evaluation computes under
   * `A.tidy(() => A.noGrad(...))`, reads back what it needs and disposes what it creates (not
   * the batch). */
  add(ctx: ObjectiveContext, batch: Batch): Promise<void>;
  result(): EvalMetrics;
}

/** An evaluation's figures: the mean loss over `total` targets and named metrics. */
export interface EvalMetrics {
  /** Mean loss over the targets evaluated (with several heads: the weighted sum of theirs). */
  loss: number;
  /** Samples evaluated (of a head: those with a target for it). */
  total: number;
  /** Named figures (accuracy, macroF1, mAP, perplexity, exactMatch, rougeL, …), each also
   * logged per epoch as `val` + the name with its first letter in upper case. */
  metrics: Record<string, number>;
  /** Classification: the report behind accuracy and macro F1 (per class, confusion matrix). */
  accuracy?: number;
  correct?: number;
  report?: ClassificationReport;
  topK?: number;
  /** Multi-label: F1 (threshold 0.5 on the sigmoid) and average precision of each label; a
   * label without positives among the targets has NaN average precision and is left out of mAP. */
  perLabel?: { f1: number[]; averagePrecision: number[] };
  /** Regression: mean absolute error. */
  mae?: number;
  /** Per head, for a multi-task model. */
  heads?: Record<string, EvalMetrics>;
}

/** An epoch's training figures of one head (multi-task). */
export interface HeadTrainFigures {
  loss: number;
  figures: Record<string, number>;
}

export interface Objective {
  /** Shown in logs and reports ('classification', 'causal-lm', …). */
  readonly name: string;
  /** Data sets of batches this objective wants beside each training batch, drawn shuffled and
   * cycled (an unlabelled target domain for domain adaptation). */
  readonly auxiliary?: Readonly<Record<string, Dataset>>;
  /** Whether the head can train on cached backbone features under this objective. */
  readonly cacheable: boolean;
  /** The loss of a training batch (inside the loop's tidy scope, recording gradients). `step`
   * and `totalSteps` let a loss weight follow a schedule (DANN's reversal weight). */
  trainStep(ctx: ObjectiveContext, batch: Batch, extra: NamedBatches, progress: { step: number; totalSteps: number }): ObjectiveStep;
  /** The epoch's training figures from the summed `sums` and the rows seen, e.g.
   * `{ accuracy: 0.9 }`, logged as `train` + the name with its first letter in upper case. */
  trainLogs(sums: Readonly<Record<string, number>>, rows: number): Record<string, number>;
  /** A multi-task objective's figures per head, and the epoch's loss as their weighted sum. */
  trainHeads?(sums: Readonly<Record<string, number>>): { loss: number; heads: Record<string, HeadTrainFigures> };
  evaluation(opts: { topK?: number }): Evaluation;
  /** Frees what the objective holds (a teacher's cached outputs, …) once training ends. */
  dispose?(): void;
}
