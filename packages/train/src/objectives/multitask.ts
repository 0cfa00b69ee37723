/**
 * A model with one output per head (MultiTaskModel): the loss is Σ weight × head loss over the
 * heads with targets in the batch (Keras' `loss_weights`), with figures per head. A sample may
 * lack a head's target; that head's loss and metrics then skip it.
 */
import * as A from '@tl/autograd';
import { Tensor } from '@tl/autograd';
import { TrainingError } from '../errors.js';
import type { Batch, HeadTargetBatch } from '../data/loader.js';
import type { ModelOutput, Task, TrainableModel } from '../model.js';
import { correctCount, headLoss, HeadCollector, type HeadSpec } from './supervised-head.js';
import type { EvalMetrics, Evaluation, HeadTrainFigures, Objective, ObjectiveContext, ObjectiveStep } from './objective.js';

const TASKS: readonly Task[] = ['classification', 'multilabel', 'regression'];

/** How one head of a multi-task model trains. */
export interface TaskOptions {
  /** Default: the model's task for the head (MultiTaskModel.headTasks), else 'classification'. */
  task?: Task;
  /** Factor of this head's loss in the total (Keras' loss_weights); default 1. */
  weight?: number;
  /** Regression loss; default the trainer's regressionLoss, else 'mse'. */
  loss?: 'mse' | 'l1';
  /** Default the trainer's labelSmoothing. */
  labelSmoothing?: number;
}

interface HeadOut {
  head: HeadSpec;
  out: Tensor;
  target: HeadTargetBatch | null;
}

export class MultiTaskObjective implements Objective {
  readonly name = 'multi-task';
  readonly cacheable = true;

  constructor(readonly heads: readonly HeadSpec[]) {
    if (heads.length === 0) throw new RangeError('tasks must name at least one head');
  }

  /**
   * The heads of the model (MultiTaskModel.headTasks) or of `tasks`, with the option's settings
   * over the model's defaults; null for a model with one output and no `tasks`.
   */
  static resolve(model: TrainableModel, opts: { task?: Task; tasks?: Readonly<Record<string, TaskOptions>>; regressionLoss?: 'mse' | 'l1'; labelSmoothing?: number }): MultiTaskObjective | null {
    const own = model.headTasks;
    const given = opts.tasks;
    if (!own && !given) return null;
    const names = own ? Object.keys(own) : Object.keys(given!);
    if (opts.task !== undefined) {
      throw new RangeError(`give task (a model with one output) or tasks (one entry per head), not both; got task ${JSON.stringify(opts.task)} with heads ${names.join(', ')}`);
    }
    if (names.length === 0) throw new RangeError('tasks must name at least one head');
    for (const n of Object.keys(given ?? {})) {
      if (own && !(n in own)) throw new RangeError(`tasks names "${n}", which is not a head of ${model.constructor.name} (heads: ${names.join(', ')})`);
    }
    return new MultiTaskObjective(names.map((name) => {
      const o = given?.[name] ?? {};
      const task = o.task ?? own?.[name] ?? 'classification';
      if (!TASKS.includes(task)) throw new RangeError(`tasks.${name}.task must be one of ${TASKS.join(', ')}, got ${JSON.stringify(task)}`);
      if (own && task !== own[name]) throw new RangeError(`tasks.${name}.task is "${task}", but the model's head "${name}" is a ${own[name]} head`);
      const weight = o.weight ?? 1;
      if (!(Number.isFinite(weight) && weight >= 0)) throw new RangeError(`tasks.${name}.weight must be a finite number >= 0, got ${weight}`);
      const loss = o.loss ?? opts.regressionLoss ?? 'mse';
      if (loss !== 'mse' && loss !== 'l1') throw new RangeError(`tasks.${name}.loss must be 'mse' or 'l1', got ${JSON.stringify(loss)}`);
      if (o.loss !== undefined && task !== 'regression') throw new RangeError(`tasks.${name}.loss is for regression heads; "${name}" is a ${task} head`);
      return { name, task, weight, regressionLoss: loss, labelSmoothing: o.labelSmoothing ?? opts.labelSmoothing };
    }));
  }

  /** Each head's output and targets, checked against the heads. */
  private perHead(ctx: ObjectiveContext, output: ModelOutput, batch: Batch): HeadOut[] {
    const names = this.heads.map((h) => h.name);
    const model = ctx.model.constructor.name;
    if (output instanceof Tensor) throw new TrainingError(`the tasks name heads (${names.join(', ')}), but ${model} returns one tensor`);
    for (const k of Object.keys(output)) {
      if (!names.includes(k)) throw new TrainingError(`${model} returns an output "${k}" that the tasks do not name (tasks: ${names.join(', ')})`);
    }
    if (!batch.targets) {
      throw new TrainingError(`the model has heads (${names.join(', ')}), but the samples carry a single target; give each sample one target per head, e.g. label: { ${names[0]}: ... }`);
    }
    for (const k of Object.keys(batch.targets)) {
      if (!names.includes(k)) throw new TrainingError(`the samples have targets for "${k}", which is not a head of the model (heads: ${names.join(', ')})`);
    }
    return this.heads.map((head) => {
      const out = output[head.name];
      if (!out) throw new TrainingError(`${model} returned no output for the head "${head.name}" (outputs: ${Object.keys(output).join(', ')})`);
      const target = batch.targets![head.name];
      if (target && head.task === 'classification' && target.y.dtype !== 'int32') {
        throw new TrainingError(`head "${head.name}" is a classification head, but its targets are vectors; give class indices (numbers)`);
      }
      return { head, out, target: target && target.count > 0 ? target : null };
    });
  }

  /** The weighted sum of the heads' losses (null when no head has a target in the batch) and
   * each head's loss, as [1] (0 without targets). */
  private losses(heads: HeadOut[]): { total: Tensor | null; each: Tensor[] } {
    let total: Tensor | null = null;
    const each: Tensor[] = [];
    for (const { head, out, target } of heads) {
      if (!target) {
        each.push(A.zeros([1]));
        continue;
      }
      const l = headLoss(head, out, target);
      const weighted = A.mul(l, head.weight);
      total = total ? A.add(total, weighted) : weighted;
      each.push(A.noGrad(() => l.reshape([1])));
    }
    return { total, each };
  }

  trainStep(ctx: ObjectiveContext, batch: Batch): ObjectiveStep {
    const heads = this.perHead(ctx, ctx.forward(batch), batch);
    const { total, each } = this.losses(heads);
    if (!total) throw new TrainingError(`samples ${batch.indices.join(', ')} have no target for any head (${this.heads.map((h) => h.name).join(', ')})`);
    const sums: Record<string, Tensor> = {};
    heads.forEach(({ head, out, target }, i) => {
      const count = target?.count ?? 0;
      sums[`${head.name}/loss`] = A.mul(each[i]!, count);
      sums[`${head.name}/count`] = A.tensor(Float32Array.of(count), { shape: [1] });
      if (head.task === 'classification') sums[`${head.name}/correct`] = target ? A.noGrad(() => correctCount(out, target.y)) : A.zeros([1]);
    });
    return { loss: total, rows: batch.size, sums };
  }

  trainLogs(): Record<string, number> {
    return {};
  }

  trainHeads(sums: Readonly<Record<string, number>>): { loss: number; heads: Record<string, HeadTrainFigures> } {
    const heads: Record<string, HeadTrainFigures> = {};
    for (const h of this.heads) {
      const count = sums[`${h.name}/count`] ?? 0;
      heads[h.name] = {
        loss: count ? (sums[`${h.name}/loss`] ?? 0) / count : NaN,
        figures: h.task === 'classification' ? { accuracy: count ? (sums[`${h.name}/correct`] ?? 0) / count : NaN } : {},
      };
    }
    return { loss: this.weightedTotal(this.heads.map((h) => heads[h.name]!.loss)), heads };
  }

  /** Σ weight × loss over the heads that had targets (a head without any has NaN). */
  private weightedTotal(losses: number[]): number {
    let total = 0;
    let any = false;
    this.heads.forEach((h, i) => {
      const l = losses[i]!;
      if (Number.isNaN(l)) return;
      total += h.weight * l;
      any = true;
    });
    return any ? total : NaN;
  }

  evaluation(opts: { topK?: number }): Evaluation {
    const collectors = this.heads.map((h) => new HeadCollector(h));
    let n = 0;
    return {
      add: async (ctx, batch) => {
        const heads = A.tidy(() => A.noGrad(() => {
          const per = this.perHead(ctx, ctx.forward(batch), batch);
          const { each } = this.losses(per);
          return per.map((h, i) => ({ ...h, loss: each[i]! }));
        }));
        try {
          for (const [i, h] of heads.entries()) if (h.target) await collectors[i]!.add(h.out, h.target, h.loss);
        } finally {
          for (const h of heads) {
            h.out.dispose();
            h.loss.dispose();
          }
        }
        n += batch.size;
      },
      result: () => {
        const heads: Record<string, EvalMetrics> = {};
        collectors.forEach((c) => (heads[c.head.name] = c.result(opts.topK)));
        return { loss: this.weightedTotal(this.heads.map((h) => heads[h.name]!.loss)), total: n, metrics: {}, heads };
      },
    };
  }
}
