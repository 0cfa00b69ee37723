/**
 * Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019): batch-level augmentations that blend
 * each sample with its neighbour in the batch (the batch rolled by one, as torchvision's
 * reference recipes do) and mix their targets into soft rows, float32 [B, C]; a classification
 * objective takes those as soft targets (cross-entropy against the rows). With both enabled a
 * batch gets one or the other, CutMix with probability `switchProb` (timm's behaviour).
 */
import type { Rng } from '@tl/tensor';
import type { Dataset, HeadTargets, Sample, Target } from '../dataset.js';
import { sampleNormal } from './erasing.js';
import { type CropBox } from './geometry.js';

/** Changes a batch's samples (after loading, before collation), with a generator seeded per
 * batch from the loader's seed, the epoch and the batch index. */
export type BatchTransform = (samples: Sample[], rng: Rng) => Sample[];

export interface MixOptions {
  numClasses: number;
  /** Beta(alpha, alpha) of the mixup weight; 0 turns mixup off. */
  mixupAlpha?: number;
  /** Beta(alpha, alpha) of the CutMix area; 0 turns CutMix off. */
  cutmixAlpha?: number;
  /** Probability that a batch is mixed at all (default 1). */
  prob?: number;
  /** With both on: the probability of CutMix rather than mixup (default 0.5). */
  switchProb?: number;
  /** Input shape [C, H, W] of the samples (CutMix cuts boxes in H and W). */
  inputShape: readonly number[];
}

/** Gamma(a, 1) by Marsaglia and Tsang (boosted by U^(1/a) for a < 1). */
export function sampleGamma(a: number, rng: Rng): number {
  if (a < 1) return sampleGamma(a + 1, rng) * Math.pow(1 - rng.next(), 1 / a);
  const d = a - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = sampleNormal(rng);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = 1 - rng.next();
    if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v;
  }
}

export function sampleBeta(a: number, b: number, rng: Rng): number {
  const x = sampleGamma(a, rng);
  const y = sampleGamma(b, rng);
  return x / (x + y);
}

function oneHot(label: Target | HeadTargets, numClasses: number, where: string): Float32Array {
  if (typeof label === 'number') {
    if (!Number.isInteger(label) || label < 0 || label >= numClasses) throw new RangeError(`${where}: label ${label} is not a class index in [0, ${numClasses})`);
    const row = new Float32Array(numClasses);
    row[label] = 1;
    return row;
  }
  if (label instanceof Float32Array && label.length === numClasses) return label;
  throw new TypeError(`${where}: mixup and CutMix need a class index or a Float32Array of ${numClasses} class weights, got ${label instanceof Float32Array ? `${label.length} values` : typeof label}`);
}

/** The CutMix box for weight `lam` centred at (cy, cx), clipped to the image (torchvision's
 * reference recipe: half-sides r * H and r * W with r = sqrt(1 - lam) / 2, truncated). */
export function cutmixBox(height: number, width: number, lam: number, cy: number, cx: number): CropBox {
  const r = 0.5 * Math.sqrt(1 - lam);
  const hh = Math.trunc(r * height);
  const hw = Math.trunc(r * width);
  const top = Math.max(cy - hh, 0);
  const left = Math.max(cx - hw, 0);
  return { top, left, height: Math.min(cy + hh, height) - top, width: Math.min(cx + hw, width) - left };
}

/** Mixup of samples i and i - 1 with weight lam on i: inputs and target rows. */
export function mixup(inputs: Float32Array[], targets: Float32Array[], lam: number): { inputs: Float32Array[]; targets: Float32Array[] } {
  const B = inputs.length;
  const blend = (a: Float32Array, b: Float32Array): Float32Array => a.map((v, k) => lam * v + (1 - lam) * b[k]!);
  return {
    inputs: inputs.map((x, i) => blend(x, inputs[(i + B - 1) % B]!)),
    targets: targets.map((t, i) => blend(t, targets[(i + B - 1) % B]!)),
  };
}

/** CutMix: `box` of sample i comes from sample i - 1; targets weigh by the area kept. */
export function cutmix(inputs: Float32Array[], targets: Float32Array[], shape: readonly number[], box: CropBox): { inputs: Float32Array[]; targets: Float32Array[]; lam: number } {
  const [C, H, W] = shape as [number, number, number];
  const B = inputs.length;
  const out = inputs.map((x, i) => {
    const y = x.slice();
    const src = inputs[(i + B - 1) % B]!;
    for (let c = 0; c < C; c++) for (let r = box.top; r < box.top + box.height; r++) {
      const o = (c * H + r) * W;
      y.set(src.subarray(o + box.left, o + box.left + box.width), o + box.left);
    }
    return y;
  });
  const lam = 1 - (box.height * box.width) / (H * W);
  const mixed = targets.map((t, i) => t.map((v, k) => lam * v + (1 - lam) * targets[(i + B - 1) % B]![k]!));
  return { inputs: out, targets: mixed, lam };
}

export function checkMixOptions(o: MixOptions): void {
  if (!Number.isInteger(o.numClasses) || o.numClasses < 2) throw new RangeError(`mixup/CutMix: numClasses must be an integer >= 2, got ${o.numClasses}`);
  for (const k of ['mixupAlpha', 'cutmixAlpha'] as const) {
    const v = o[k];
    if (v !== undefined && !(v >= 0 && Number.isFinite(v))) throw new RangeError(`mixup/CutMix: ${k} must be a finite number >= 0, got ${v}`);
  }
  for (const k of ['prob', 'switchProb'] as const) {
    const v = o[k];
    if (v !== undefined && !(v >= 0 && v <= 1)) throw new RangeError(`mixup/CutMix: ${k} must be a probability in [0, 1], got ${v}`);
  }
  if (!(o.mixupAlpha! > 0) && !(o.cutmixAlpha! > 0)) throw new RangeError('mixup/CutMix: set mixupAlpha or cutmixAlpha above 0');
  if (o.cutmixAlpha! > 0 && o.inputShape.length !== 3) throw new RangeError(`CutMix needs image samples [C, H, W], got input shape [${o.inputShape}]`);
}

/** The batch transform of mixup and/or CutMix; every batch's targets become soft rows. */
export function mixBatch(o: MixOptions): BatchTransform {
  checkMixOptions(o);
  const mixupAlpha = o.mixupAlpha ?? 0;
  const cutmixAlpha = o.cutmixAlpha ?? 0;
  return (samples, rng) => {
    const inputs = samples.map((s, i) => {
      if (!(s.input instanceof Float32Array)) throw new TypeError(`mixup/CutMix: sample ${i} of the batch has token ids; they mix float image inputs only`);
      return s.input;
    });
    const targets = samples.map((s, i) => oneHot(s.label, o.numClasses, `sample ${i} of the batch`));
    let mixed = { inputs, targets };
    if (samples.length > 1 && rng.next() < (o.prob ?? 1)) {
      const useCutmix = cutmixAlpha > 0 && (mixupAlpha === 0 || rng.next() < (o.switchProb ?? 0.5));
      const lam = sampleBeta(useCutmix ? cutmixAlpha : mixupAlpha, useCutmix ? cutmixAlpha : mixupAlpha, rng);
      if (useCutmix) {
        const [, H, W] = o.inputShape as [number, number, number];
        mixed = cutmix(inputs, targets, o.inputShape, cutmixBox(H, W, lam, rng.int(H), rng.int(W)));
      } else mixed = mixup(inputs, targets, lam);
    }
    return samples.map((s, i) => ({ ...s, input: mixed.inputs[i]!, label: mixed.targets[i]! }));
  };
}

/** A data set whose training batches go through `transform` (the DataLoader applies it when it
 * augments), e.g. `withBatchTransform(train, mixBatch({ numClasses, mixupAlpha: 0.2, ... }))`. */
export function withBatchTransform(ds: Dataset, transform: BatchTransform): Dataset {
  return {
    get length() { return ds.length; },
    get inputShape() { return ds.inputShape; },
    get classes() { return ds.classes; },
    get fingerprint() { return ds.fingerprint; },
    augments: true,
    batchTransform: transform,
    get: (i, seed) => ds.get(i, seed),
    labels: () => ds.labels(),
  };
}
