/**
 * Knowledge distillation (Hinton, Vinyals & Dean 2015): a student learns from a frozen teacher's
 * softened outputs beside the labels. The loss is alpha · T² · KL(softmax(t/T) ‖ softmax(s/T))
 * averaged over the batch (PyTorch's `KLDivLoss(reduction='batchmean')` on `log_softmax(s/T)`
 * and `softmax(t/T)`) plus (1 − alpha) · the cross-entropy of the student with the labels; the
 * T² keeps the soft term's gradients on the scale of the hard one's as T changes.
 */
import * as A from '@tl/autograd';
import { keep, Tensor } from '@tl/autograd';
import type { Batch } from '../data/loader.js';
import { TrainingError } from '../errors.js';
import type { TrainableModel } from '../model.js';
import { correctCount, headLoss, type HeadSpec } from './supervised-head.js';
import { SupervisedObjective } from './supervised.js';
import type { Evaluation, Objective, ObjectiveContext, ObjectiveStep } from './objective.js';

export interface DistillOptions {
  /** The trained model whose outputs the student imitates; frozen and kept in eval mode. */
  teacher: TrainableModel;
  /** Softmax temperature T > 0 of both models' outputs in the soft term (default 4). */
  temperature?: number;
  /** Weight in [0, 1] of the soft term; 1 − alpha weighs the labels' cross-entropy (default 0.5). */
  alpha?: number;
  /** Keep the teacher's outputs by sample index and run it once per sample, not once per epoch.
   * Right only when a sample's input is the same every epoch (no random augmentation). */
  cache?: boolean;
  labelSmoothing?: number;
}

/**
 * T² · KL(softmax(teacher/T) ‖ softmax(student/T)), summed over classes and averaged over rows;
 * the teacher's logits carry no gradient.
 */
export function distillationKL(student: Tensor, teacher: Tensor, temperature: number): Tensor {
  if (student.rank !== 2 || teacher.shape.join() !== student.shape.join()) {
    throw new TrainingError(`distillation compares logits [batch, classes]: the student gives [${student.shape.join(', ')}], the teacher [${teacher.shape.join(', ')}]`);
  }
  const logStudent = A.logSoftmax(A.mul(student, 1 / temperature), -1);
  const [pTeacher, logTeacher] = A.noGrad(() => {
    const soft = A.mul(teacher, 1 / temperature);
    return [A.softmax(soft, -1), A.logSoftmax(soft, -1)];
  });
  const kl = A.sum(A.mul(pTeacher, A.sub(logTeacher, logStudent)));
  return A.mul(kl, (temperature * temperature) / student.shape[0]!);
}

/** Teacher outputs by sample index, rows of one GPU tensor grown as indices appear. */
class TeacherCache {
  private rows: Tensor | null = null;
  private readonly have = new Set<number>();

  /** The teacher's outputs for the batch's samples: from the cache when all are there. */
  get(batch: Batch, compute: () => Tensor): Tensor {
    if (this.rows && batch.indices.every((i) => this.have.has(i))) {
      const idx = A.tensor(Int32Array.from(batch.indices), { shape: [batch.size], dtype: 'int32' });
      return A.indexSelect(this.rows, 0, idx);
    }
    const out = compute();
    A.noGrad(() => {
      this.grow(Math.max(...batch.indices) + 1, out.shape[1]!);
      batch.indices.forEach((i, j) => {
        A.assign(this.rows!.select(0, i), out.select(0, j));
        this.have.add(i);
      });
    });
    return out;
  }

  private grow(needed: number, width: number): void {
    const cap = this.rows?.shape[0] ?? 0;
    if (needed <= cap) return;
    const next = keep(A.zeros([Math.max(needed, 2 * cap), width]));
    if (this.rows) {
      A.assign(next.slice(0, 0, cap), this.rows);
      this.rows.dispose();
    }
    this.rows = next;
  }

  dispose(): void {
    this.rows?.dispose();
    this.rows = null;
    this.have.clear();
  }
}

export class DistillObjective implements Objective {
  readonly name = 'distillation';
  /** The teacher reads images, not a student's cached features. */
  readonly cacheable = false;
  readonly teacher: TrainableModel;
  readonly temperature: number;
  readonly alpha: number;
  private readonly head: HeadSpec;
  private readonly supervised: SupervisedObjective;
  private readonly cache: TeacherCache | null;

  constructor(opts: DistillOptions) {
    this.temperature = opts.temperature ?? 4;
    this.alpha = opts.alpha ?? 0.5;
    if (!(this.temperature > 0) || !Number.isFinite(this.temperature)) throw new RangeError(`distill: temperature must be a finite number > 0, got ${opts.temperature}`);
    if (!(this.alpha >= 0 && this.alpha <= 1)) throw new RangeError(`distill: alpha must be in [0, 1], got ${opts.alpha}`);
    this.teacher = opts.teacher;
    this.teacher.freeze();
    this.teacher.eval();
    this.head = { name: '', task: 'classification', weight: 1, regressionLoss: 'mse', labelSmoothing: opts.labelSmoothing };
    this.supervised = new SupervisedObjective({ labelSmoothing: opts.labelSmoothing });
    this.cache = opts.cache ? new TeacherCache() : null;
  }

  trainStep(ctx: ObjectiveContext, batch: Batch): ObjectiveStep {
    if (ctx.model === this.teacher) throw new TrainingError('distill: the teacher is the model being trained; give the student to the Trainer and a separate teacher');
    const student = ctx.forward(batch);
    if (!(student instanceof Tensor)) throw new TrainingError(`distill: ${ctx.model.constructor.name} returns one output per head; distillation takes a model with one output`);
    if (!batch.y) throw new TrainingError('distill: the samples carry one target per head; distillation takes one class label per sample');
    // The teacher stays in eval mode even if a callback called train() on everything.
    this.teacher.eval();
    const runTeacher = (): Tensor => {
      const out = A.noGrad(() => this.teacher.forward(batch.x, batch.mask ?? undefined));
      if (!(out instanceof Tensor)) throw new TrainingError(`distill: the teacher ${this.teacher.constructor.name} returns one output per head; it must return logits [batch, classes]`);
      return out;
    };
    const teacher = this.cache ? this.cache.get(batch, runTeacher) : runTeacher();
    const soft = distillationKL(student, teacher, this.temperature);
    const hard = headLoss(this.head, student, { y: batch.y, present: null, count: batch.size });
    const loss = A.add(A.mul(soft, this.alpha), A.mul(hard, 1 - this.alpha));
    const sums = A.noGrad(() => ({ correct: correctCount(student, batch.y!), soft: A.mul(soft, batch.size), hard: A.mul(hard, batch.size) }));
    return { loss, rows: batch.size, sums };
  }

  trainLogs(sums: Readonly<Record<string, number>>, rows: number): Record<string, number> {
    const n = Math.max(rows, 1);
    return { accuracy: (sums.correct ?? 0) / n, distillLoss: (sums.soft ?? 0) / n, labelLoss: (sums.hard ?? 0) / n };
  }

  /** The student is scored as a classifier on the labels. */
  evaluation(opts: { topK?: number }): Evaluation {
    return this.supervised.evaluation(opts);
  }

  dispose(): void {
    this.cache?.dispose();
  }
}

/** Hinton's distillation of `teacher` into the model the Trainer trains. */
export const distill = (opts: DistillOptions): DistillObjective => new DistillObjective(opts);
