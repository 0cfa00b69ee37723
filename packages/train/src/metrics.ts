/** Classification and regression metrics from predictions and targets on the host. */
export interface ClassMetrics {
  precision: number;
  recall: number;
  f1: number;
  support: number;
}

export interface ClassificationReport {
  accuracy: number;
  correct: number;
  total: number;
  topK?: { k: number; accuracy: number };
  macroF1: number;
  perClass: ClassMetrics[];
  /** confusion[true][predicted] */
  confusion: number[][];
}

export function confusionMatrix(pred: ArrayLike<number>, target: ArrayLike<number>, numClasses: number): number[][] {
  const m = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  for (let i = 0; i < pred.length; i++) {
    const t = target[i]!;
    const p = pred[i]!;
    if (t >= 0 && t < numClasses && p >= 0 && p < numClasses) m[t]![p]!++;
  }
  return m;
}

export function classificationReport(pred: ArrayLike<number>, target: ArrayLike<number>, numClasses: number): ClassificationReport {
  const confusion = confusionMatrix(pred, target, numClasses);
  let correct = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === target[i]) correct++;
  const perClass = confusion.map((row, c) => {
    const tp = row[c]!;
    const support = row.reduce((a, v) => a + v, 0);
    const predicted = confusion.reduce((a, r) => a + r[c]!, 0);
    const precision = predicted ? tp / predicted : 0;
    const recall = support ? tp / support : 0;
    return { precision, recall, f1: precision + recall ? (2 * precision * recall) / (precision + recall) : 0, support };
  });
  const present = perClass.filter((m) => m.support > 0);
  return {
    accuracy: pred.length ? correct / pred.length : 0,
    correct,
    total: pred.length,
    macroF1: present.length ? present.reduce((a, m) => a + m.f1, 0) / present.length : 0,
    perClass,
    confusion,
  };
}

/** Fraction of rows whose target is among the k largest logits. */
export function topKAccuracy(logits: ArrayLike<number>, target: ArrayLike<number>, numClasses: number, k: number): number {
  const n = target.length;
  let hit = 0;
  for (let i = 0; i < n; i++) {
    const t = target[i]!;
    const v = logits[i * numClasses + t]!;
    let above = 0;
    for (let c = 0; c < numClasses; c++) if (logits[i * numClasses + c]! > v) above++;
    if (above < k) hit++;
  }
  return n ? hit / n : 0;
}

export function meanAbsoluteError(pred: ArrayLike<number>, target: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < pred.length; i++) s += Math.abs(pred[i]! - target[i]!);
  return pred.length ? s / pred.length : 0;
}

export function argmaxRows(logits: ArrayLike<number>, numClasses: number): Int32Array {
  const n = logits.length / numClasses;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < numClasses; c++) if (logits[i * numClasses + c]! > logits[i * numClasses + best]!) best = c;
    out[i] = best;
  }
  return out;
}

/** F1 of the positive class from 0/1 predictions and targets (0 when there are no positives
 * predicted nor true, as scikit-learn's zero_division=0). */
export function binaryF1(pred: ArrayLike<number>, target: ArrayLike<number>): number {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < pred.length; i++) {
    const p = pred[i]! > 0.5;
    const t = target[i]! > 0.5;
    if (p && t) tp++;
    else if (p) fp++;
    else if (t) fn++;
  }
  return tp ? (2 * tp) / (2 * tp + fp + fn) : 0;
}

/**
 * Average precision of scores against 0/1 targets, as scikit-learn's average_precision_score:
 * Σ (R_n − R_{n−1}) P_n over the distinct score thresholds, highest first. NaN without
 * positives.
 */
export function averagePrecision(scores: ArrayLike<number>, target: ArrayLike<number>): number {
  const idx = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  let positives = 0;
  for (let i = 0; i < target.length; i++) if (target[i]! > 0.5) positives++;
  if (positives === 0) return NaN;
  let tp = 0;
  let seen = 0;
  let ap = 0;
  let lastRecall = 0;
  for (let k = 0; k < idx.length; k++) {
    const i = idx[k]!;
    seen++;
    if (target[i]! > 0.5) tp++;
    // Tied scores form one threshold: take the step only after the last of them.
    if (k + 1 < idx.length && scores[idx[k + 1]!] === scores[i]) continue;
    const recall = tp / positives;
    ap += (recall - lastRecall) * (tp / seen);
    lastRecall = recall;
  }
  return ap;
}
