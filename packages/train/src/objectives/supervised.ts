/**
 * Classification, multi-label and regression of a model with one output: the objectives the
 * trainer picks from its `task` option (Keras' `compile(loss=…)` with one loss).
 */
import * as A from '@tl/autograd';
import { Tensor } from '@tl/autograd';
import { TrainingError } from '../errors.js';
import type { Batch } from '../data/loader.js';
import type { ModelOutput, Task } from '../model.js';
import { correctCount, headLoss, HeadCollector, type HeadSpec, type HeadTargets } from './supervised-head.js';
import type { Evaluation, Objective, ObjectiveContext, ObjectiveStep } from './objective.js';

export interface SupervisedOptions {
  task?: Task;
  /** Regression loss (default 'mse'). */
  regressionLoss?: 'mse' | 'l1';
  labelSmoothing?: number;
  /** Per-class weights of the cross-entropy (e.g. 'balanced': n / (classes × count)). */
  classWeights?: Float32Array;
}

/** The one output and the batch's targets, or an error saying what does not fit. */
function single(ctx: ObjectiveContext, out: ModelOutput, batch: Batch): { out: Tensor; t: HeadTargets } {
  const name = ctx.model.constructor.name;
  if (!(out instanceof Tensor)) {
    throw new TrainingError(`${name} returns one output per head (${Object.keys(out).join(', ')}); name them in the trainer's tasks option`);
  }
  if (!batch.y) {
    throw new TrainingError(`the samples carry one target per head (${Object.keys(batch.targets ?? {}).join(', ')}), but ${name} has one output; use a multi-head model (MultiTaskModel) with the trainer's tasks option`);
  }
  return { out, t: { y: batch.y, present: null, count: batch.size } };
}

export class SupervisedObjective implements Objective {
  readonly name: Task;
  readonly cacheable = true;
  private readonly head: HeadSpec;

  constructor(opts: SupervisedOptions = {}) {
    this.name = opts.task ?? 'classification';
    if (opts.classWeights && this.name !== 'classification') throw new RangeError(`classWeights applies to classification, not to ${this.name}`);
    if (opts.classWeights && !opts.classWeights.every((w) => Number.isFinite(w) && w >= 0)) {
      throw new RangeError(`classWeights must be finite numbers >= 0, got [${[...opts.classWeights].join(', ')}]`);
    }
    this.head = { name: '', task: this.name, weight: 1, regressionLoss: opts.regressionLoss ?? 'mse', labelSmoothing: opts.labelSmoothing, classWeights: opts.classWeights };
  }

  /** With an auxiliary classifier (Inception v3), the main loss plus `auxLossWeight` times the
   * auxiliary one on the same targets; never from cached features. */
  trainStep(ctx: ObjectiveContext, batch: Batch): ObjectiveStep {
    const m = ctx.model;
    let out: Tensor;
    let loss: Tensor;
    if (ctx.cached || !m.forwardWithAux) {
      const s = single(ctx, ctx.forward(batch), batch);
      out = s.out;
      loss = headLoss(this.head, out, s.t);
    } else {
      const weight = m.auxLossWeight;
      if (weight === undefined || !(weight >= 0)) throw new TrainingError(`${m.constructor.name} has forwardWithAux, so it must declare auxLossWeight >= 0, got ${weight}`);
      const { logits, auxLogits } = m.forwardWithAux(batch.x);
      const s = single(ctx, logits, batch);
      out = logits;
      const main = headLoss(this.head, logits, s.t);
      loss = auxLogits ? A.add(main, A.mul(headLoss(this.head, auxLogits, s.t), weight)) : main;
    }
    const sums = this.name === 'classification' ? { correct: A.noGrad(() => correctCount(out, batch.y!)) } : undefined;
    return { loss, rows: batch.size, ...(sums ? { sums } : {}) };
  }

  trainLogs(sums: Readonly<Record<string, number>>, rows: number): Record<string, number> {
    return this.name === 'classification' ? { accuracy: (sums.correct ?? 0) / Math.max(rows, 1) } : {};
  }

  evaluation(opts: { topK?: number }): Evaluation {
    const collector = new HeadCollector(this.head);
    return {
      add: async (ctx, batch) => {
        const [out, loss] = A.tidy(() => A.noGrad(() => {
          const s = single(ctx, ctx.forward(batch), batch);
          return [s.out, headLoss(this.head, s.out, s.t)] as const;
        }));
        try {
          await collector.add(out, { y: batch.y!, present: null, count: batch.size }, loss);
        } finally {
          out.dispose();
          loss.dispose();
        }
      },
      result: () => collector.result(opts.topK),
    };
  }
}
