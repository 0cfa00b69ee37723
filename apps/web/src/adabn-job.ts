/**
 * AdaBN on the user's own unlabelled photos, as the page runs it (imports only @tl/*, so a Node
 * test runs the same code): the model's predictions on the photos, `adaBN` re-estimating every
 * BatchNorm's statistics on them, and what changed: the layers whose statistics moved, by how
 * much, and which photos' predictions changed.
 */
import * as A from '@tl/autograd';
import type { ClassifierModel } from '@tl/models';
import { adaBN, batchNormLayers, DataLoader, type Dataset } from '@tl/train';

export interface AdaBNReport {
  /** BatchNorm layers of the model, and how many of them now hold other statistics. */
  layers: number;
  changedLayers: number;
  /** Mean over channels of |new running mean - old|, and of |log(new running var / old)|. */
  meanShift: number;
  logVarShift: number;
  samples: number;
  batches: number;
  /** Class probabilities of each photo before and after, in eval mode. */
  before: number[][];
  after: number[][];
  /** Photos whose most probable class changed. */
  changedPredictions: number;
  seconds: number;
}

/** Softmax outputs of `model` on every sample of `ds`, in order, in eval mode. */
export async function probabilities(model: ClassifierModel, ds: Dataset, batchSize: number): Promise<number[][]> {
  const wasTraining = model.training;
  model.eval();
  const out: number[][] = [];
  try {
    for await (const batch of new DataLoader(ds, { batchSize, shuffle: false, augment: false }).epoch(0)) {
      try {
        const p = A.tidy(() => A.noGrad(() => A.softmax(model.forward(batch.x), -1)));
        const flat = await p.data();
        p.dispose();
        const k = flat.length / batch.size;
        for (let i = 0; i < batch.size; i++) out.push(Array.from(flat.subarray(i * k, (i + 1) * k)));
      } finally {
        batch.dispose();
      }
    }
  } finally {
    if (wasTraining) model.train();
  }
  return out;
}

async function statistics(model: ClassifierModel): Promise<{ mean: Float32Array; variance: Float32Array }[]> {
  return Promise.all(batchNormLayers(model).map(async ([, bn]) => ({ mean: await bn.runningMean.data() as Float32Array, variance: await bn.runningVar.data() as Float32Array })));
}

const argmax = (p: readonly number[]): number => p.reduce((best, v, i) => (v > p[best]! ? i : best), 0);

/** Re-estimates the BatchNorm statistics of `model` on `photos` (labels unread) and reports the change. */
export async function adaptToPhotos(model: ClassifierModel, photos: Dataset, batchSize: number): Promise<AdaBNReport> {
  const t0 = performance.now();
  const old = await statistics(model);
  const before = await probabilities(model, photos, batchSize);
  const r = await adaBN(model, photos, { batchSize });
  const now = await statistics(model);
  const after = await probabilities(model, photos, batchSize);
  let changedLayers = 0;
  let meanShift = 0;
  let logVarShift = 0;
  let channels = 0;
  old.forEach((o, l) => {
    const n = now[l]!;
    let moved = false;
    for (let c = 0; c < o.mean.length; c++) {
      const dm = Math.abs(n.mean[c]! - o.mean[c]!);
      const dv = Math.abs(Math.log(n.variance[c]! / o.variance[c]!));
      if (dm > 1e-6 || dv > 1e-6) moved = true;
      meanShift += dm;
      logVarShift += dv;
      channels++;
    }
    if (moved) changedLayers++;
  });
  return {
    layers: old.length, changedLayers, meanShift: meanShift / channels, logVarShift: logVarShift / channels,
    samples: r.samples, batches: r.batches, before, after,
    changedPredictions: before.filter((p, i) => argmax(p) !== argmax(after[i]!)).length,
    seconds: (performance.now() - t0) / 1000,
  };
}
