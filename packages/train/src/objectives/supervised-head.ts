/**
 * The loss, step statistics and evaluation of one supervised output: classification (class
 * indices, or soft targets from mixup/cutmix), multi-label (sigmoid + binary cross-entropy) or
 * regression. The single-output objectives and the multi-task one are built from it.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { TrainingError } from '../errors.js';
import { IGNORE_INDEX } from '../data/loader.js';
import { argmaxRows, averagePrecision, binaryF1, classificationReport, meanAbsoluteError, topKAccuracy } from '../metrics.js';
import type { Task } from '../model.js';
import type { EvalMetrics } from './objective.js';

export interface HeadSpec {
  /** The head's name in messages ('' for a model with one output). */
  name: string;
  task: Task;
  /** Factor of this head's loss in a multi-task total. */
  weight: number;
  regressionLoss: 'mse' | 'l1';
  labelSmoothing?: number;
  /** Per-class weights of the cross-entropy (classification), as PyTorch's `weight`. */
  classWeights?: Float32Array;
}

/** The targets of one head in a batch: `present` ([B, 1], 1 where a row has a target) when only
 * some rows have one; `count` rows have one. */
export interface HeadTargets {
  y: Tensor;
  present: Tensor | null;
  count: number;
}

const what = (h: HeadSpec): string => (h.name ? `head "${h.name}"` : 'the model');

/** The mean loss over the rows that have a target. */
export function headLoss(h: HeadSpec, out: Tensor, t: HeadTargets): Tensor {
  if (h.task === 'classification') return classificationLoss(h, out, t.y);
  if (t.y.dtype !== 'float32') {
    throw new TrainingError(`${what(h)} is a ${h.task} ${h.name ? 'head' : 'output'}, but its targets are class indices (numbers); give them as Float32Array (e.g. Float32Array.of(0.5))`);
  }
  const y = t.y;
  const pred = out.rank === 2 && out.shape[1] === 1 && y.rank === 1 ? out.reshape([out.shape[0]!]) : out;
  if (pred.shape.join() !== y.shape.join()) {
    throw new TrainingError(`${what(h)} outputs [${out.shape.join(', ')}], but its targets are [${y.shape.join(', ')}]`);
  }
  const reduction = t.present ? 'none' : 'mean';
  const el = h.task === 'multilabel'
    ? A.binaryCrossEntropyWithLogits(pred, y, reduction)
    : h.regressionLoss === 'l1' ? A.l1Loss(pred, y, reduction) : A.mseLoss(pred, y, reduction);
  if (!t.present) return el;
  // The mean over the rows that have a target: absent rows hold 0 and are masked out.
  return A.mul(A.sum(A.mul(el, t.present)), 1 / (t.count * (pred.shape[1] ?? 1)));
}

function classificationLoss(h: HeadSpec, out: Tensor, y: Tensor): Tensor {
  if (y.dtype === 'int32' && y.rank === 1) {
    const weight = h.classWeights ? checkedClassWeights(h, out) : undefined;
    try {
      return A.crossEntropy(out, y, { labelSmoothing: h.labelSmoothing, weight });
    } finally {
      weight?.dispose();
    }
  }
  if (y.dtype === 'float32' && y.rank === 2 && y.shape[1] === out.shape[1]) return softCrossEntropy(h, out, y);
  throw new TrainingError(`${what(h)} is a classification output of ${out.shape[1]} classes, so its targets are class indices or soft targets [batch, ${out.shape[1]}]; got ${y.dtype} [${y.shape.join(', ')}]`);
}

function checkedClassWeights(h: HeadSpec, out: Tensor): Tensor {
  const w = h.classWeights!;
  if (w.length !== out.shape[1]) throw new TrainingError(`classWeights has ${w.length} entries, but ${what(h)} has ${out.shape[1]} classes`);
  return A.tensor(w, { shape: [w.length] });
}

/**
 * Cross-entropy against a distribution per row (mixup and cutmix mix labels): the mean over rows
 * of −Σ_c q_c log softmax(x)_c, with label smoothing applied to q as PyTorch does for
 * probability targets. Class weights weigh each class's term, as F.cross_entropy does.
 */
function softCrossEntropy(h: HeadSpec, out: Tensor, q: Tensor): Tensor {
  const C = out.shape[1]!;
  const eps = h.labelSmoothing ?? 0;
  let target = eps > 0 ? A.add(A.mul(q, 1 - eps), eps / C) : q;
  if (h.classWeights) {
    const w = checkedClassWeights(h, out);
    target = A.mul(target, w.reshape([1, C]));
  }
  return A.mul(A.sum(A.mul(target, A.logSoftmax(out, 1))), -1 / out.shape[0]!);
}

/** Rows whose top class is the target's (for soft targets: the target's largest entry). */
export function correctCount(out: Tensor, y: Tensor): Tensor {
  const labels = y.dtype === 'int32' ? y : A.argmax(y, 1);
  return A.sum(A.eq(A.argmax(out, 1), labels)).reshape([1]);
}

/** Outputs and targets of one head, gathered over an evaluation. */
export class HeadCollector {
  private readonly outs: Float32Array[] = [];
  private readonly targets: number[] = [];
  private width = 0;
  lossSum = 0;
  count = 0;

  constructor(readonly head: HeadSpec) {}

  /** Adds a batch's outputs and targets, keeping the rows that have a target. */
  async add(out: Tensor, t: HeadTargets, loss: Tensor): Promise<void> {
    const o = (await out.data()) as Float32Array;
    const y = await t.y.data();
    const present = t.present ? await t.present.data() : null;
    const rows = out.shape[0]!;
    this.width = o.length / rows;
    const k = y.length / rows;
    for (let r = 0; r < rows; r++) {
      const has = this.head.task === 'classification' ? k > 1 || y[r] !== IGNORE_INDEX : !present || present[r] === 1;
      if (!has) continue;
      this.outs.push(o.subarray(r * this.width, (r + 1) * this.width));
      if (this.head.task === 'classification' && k > 1) this.targets.push(argmaxRows(y.subarray(r * k, (r + 1) * k), k)[0]!);
      else for (let j = 0; j < k; j++) this.targets.push(y[r * k + j]!);
    }
    this.lossSum += (await loss.item()) * t.count;
    this.count += t.count;
  }

  result(topK?: number): EvalMetrics {
    const r: EvalMetrics = { loss: this.count ? this.lossSum / this.count : NaN, total: this.count, metrics: {} };
    if (this.count === 0) return r;
    const all = new Float32Array(this.outs.length * this.width);
    this.outs.forEach((o, i) => all.set(o, i * this.width));
    const w = this.width;
    if (this.head.task === 'classification') {
      const report = classificationReport(argmaxRows(all, w), this.targets, w);
      Object.assign(r, { accuracy: report.accuracy, correct: report.correct, report });
      r.metrics.accuracy = report.accuracy;
      r.metrics.macroF1 = report.macroF1;
      if (topK) {
        r.topK = topKAccuracy(all, this.targets, w, topK);
        r.metrics[`top${topK}`] = r.topK;
      }
    } else if (this.head.task === 'multilabel') {
      const labels = [...Array(w).keys()];
      const column = (j: number, src: ArrayLike<number>): number[] => Array.from({ length: this.outs.length }, (_, i) => src[i * w + j]!);
      const f1 = labels.map((j) => binaryF1(column(j, all).map((v) => (v > 0 ? 1 : 0)), column(j, this.targets)));
      const ap = labels.map((j) => averagePrecision(column(j, all), column(j, this.targets)));
      const scored = ap.filter((v) => !Number.isNaN(v));
      r.metrics.macroF1 = f1.reduce((a, v) => a + v, 0) / w;
      r.metrics.mAP = scored.length ? scored.reduce((a, v) => a + v, 0) / scored.length : NaN;
      r.perLabel = { f1, averagePrecision: ap };
    } else {
      r.mae = meanAbsoluteError(all, this.targets);
      r.metrics.mae = r.mae;
      let sq = 0;
      for (let i = 0; i < all.length; i++) sq += (all[i]! - this.targets[i]!) ** 2;
      r.metrics.rmse = Math.sqrt(sq / all.length);
    }
    return r;
  }
}
