/**
 * Batches from a data set: seeded shuffling per epoch, seeded augmentation per sample, and
 * the next batch decoded while the GPU runs the current one. A sample that fails to load is
 * skipped with a warning naming it, and counted.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { isHeadTargets, type Dataset, type HeadTargets, type Sample, type Target } from './dataset.js';
import { mixSeed, Rng } from '@tl/tensor';
import type { BatchTransform } from './augment/mix.js';
import { balancedSampleWeights } from './balance.js';

/** crossEntropy's default ignoreIndex (PyTorch's -100): rows without a class for a head. */
export const IGNORE_INDEX = -100;

/** One head's targets in a multi-task batch. */
export interface HeadTargetBatch {
  /** int32 class indices [B] (IGNORE_INDEX where a sample has none), or float32 targets [B, K]
   * (0 where a sample has none). */
  y: Tensor;
  /** float32 [B, 1]: 1 for the rows with a target for this head; null when all have one. */
  present: Tensor | null;
  /** Rows with a target for this head. */
  count: number;
}

export interface Batch {
  x: Tensor;
  /** int32 class indices [B], float32 targets [B, K], or int32 token-id sequences [B, T]
   * (IGNORE_INDEX where no loss is taken); null when the samples carry one target per head
   * (see `targets`). */
  y: Tensor | null;
  /** Multi-task targets by head name; null for single-target samples. */
  targets: Record<string, HeadTargetBatch> | null;
  mask: Tensor | null;
  /** int32 token type ids [B, T] of sentence-pair text. */
  tokenTypeIds: Tensor | null;
  /** Data-set indices of the rows. */
  indices: number[];
  size: number;
  dispose(): void;
}

export interface LoaderOptions {
  batchSize: number;
  shuffle?: boolean;
  seed?: number;
  dropLast?: boolean;
  /** Apply the data set's random augmentation (and its `batchTransform`, if it has one). */
  augment?: boolean;
  /** Changes each batch's samples before collation (mixup, CutMix; see `mixBatch`); default
   * the data set's own when augmenting. */
  batchTransform?: BatchTransform;
  /** Called for each sample that fails to load (it is left out of its batch); default a
   * warning, once per sample. */
  onSkip?: (index: number, error: Error) => void;
  /** Batches loaded while the current one is used (default 3, at least 1): image decoding
   * overlaps the GPU steps, and memory holds this many batches more. */
  prefetch?: number;
  /** How an epoch's samples are drawn: in order or shuffled (default), or `'balanced'`: as
   * many draws as samples, with replacement, each class equally likely (the classes' counts
   * from `dataset.labels()`), or with replacement by given per-sample weights (PyTorch's
   * WeightedRandomSampler). Seeded by (seed, epoch). */
  sampler?: 'balanced' | { weights: ArrayLike<number> };
}

export class DataLoader {
  skipped = 0;
  private readonly warned = new Set<number>();
  private weights: Float64Array | null = null;
  constructor(readonly dataset: Dataset, readonly opts: LoaderOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new RangeError(`batch size must be a positive integer, got ${opts.batchSize}`);
    if (opts.prefetch !== undefined && (!Number.isInteger(opts.prefetch) || opts.prefetch < 1)) throw new RangeError(`prefetch must be a positive whole number of batches, got ${opts.prefetch}`);
    const s = opts.sampler;
    if (s !== undefined && s !== 'balanced' && !(typeof s === 'object' && s.weights && typeof s.weights.length === 'number')) {
      throw new RangeError(`sampler must be 'balanced' or { weights }, got ${JSON.stringify(s)}`);
    }
    if (typeof s === 'object') {
      if (s.weights.length !== dataset.length) throw new RangeError(`sampler weights: ${s.weights.length} weights for ${dataset.length} samples`);
      if (!Array.from(s.weights).every((w) => Number.isFinite(w) && w >= 0) || !Array.from(s.weights).some((w) => w > 0)) throw new RangeError('sampler weights must be finite, >= 0, and not all 0');
    }
  }

  /** Number of batches per epoch. */
  get length(): number {
    const n = this.dataset.length;
    return this.opts.dropLast ? Math.floor(n / this.opts.batchSize) : Math.ceil(n / this.opts.batchSize);
  }

  order(epoch: number): number[] {
    if (this.opts.sampler) return this.drawn(epoch);
    const idx = [...Array(this.dataset.length).keys()];
    return this.opts.shuffle ? new Rng(mixSeed(this.opts.seed ?? 0, epoch, 0x5f)).shuffle(idx) : idx;
  }

  /** `length` draws with replacement by the sampler's weights (inverse CDF, binary search). */
  private drawn(epoch: number): number[] {
    const s = this.opts.sampler!;
    this.weights ??= s === 'balanced' ? balancedSampleWeights(this.dataset.labels()) : Float64Array.from(s.weights);
    const w = this.weights;
    const cdf = new Float64Array(w.length);
    let total = 0;
    for (let i = 0; i < w.length; i++) cdf[i] = total += w[i]!;
    const rng = new Rng(mixSeed(this.opts.seed ?? 0, epoch, 0x5b));
    const out: number[] = [];
    for (let k = 0; k < w.length; k++) {
      const u = rng.next() * total;
      let lo = 0;
      let hi = w.length - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (cdf[mid]! > u) hi = mid;
        else lo = mid + 1;
      }
      out.push(lo);
    }
    return out;
  }

  /** The epoch's batches, collated into tensors (mixup / CutMix applied when augmenting). */
  async *epoch(epoch = 0, startBatch = 0): AsyncGenerator<Batch> {
    const mix = this.opts.batchTransform ?? (this.opts.augment ? this.dataset.batchTransform : undefined);
    for await (const { samples, indices, batch } of this.sampleBatches(epoch, startBatch)) {
      yield collate(mix ? mix(samples, new Rng(mixSeed(this.opts.seed ?? 0, epoch, batch, 0x3d))) : samples, indices, this.dataset.inputShape);
    }
  }

  /** The epoch's batches as samples, before collation (no GPU): `prefetch` batches load
   * while one is used; samples that fail to load are left out (`onSkip`). */
  async *sampleBatches(epoch = 0, startBatch = 0): AsyncGenerator<{ samples: Sample[]; indices: number[]; batch: number }> {
    const order = this.order(epoch);
    const bs = this.opts.batchSize;
    const batches: number[][] = [];
    for (let s = 0; s < order.length; s += bs) {
      const b = order.slice(s, s + bs);
      if (this.opts.dropLast && b.length < bs) break;
      batches.push(b);
    }
    const warn = (j: number, err: Error): void => {
      if (this.warned.has(j)) return;
      this.warned.add(j);
      console.warn(`skipping sample ${j}: ${err.message}`);
    };
    // A sample drawn twice in an epoch (a sampler draws with replacement) gets two augmentations.
    const seedOf = (i: number, k: number, j: number): number =>
      this.opts.sampler ? mixSeed(this.opts.seed ?? 0, epoch, i, 0xa7, k * bs + j) : mixSeed(this.opts.seed ?? 0, epoch, i, 0xa7);
    const load = (k: number): Promise<(Sample | null)[]> =>
      Promise.all(batches[k]!.map((i, j) => this.dataset.get(i, this.opts.augment ? seedOf(i, k, j) : undefined).catch((e: Error) => {
        this.skipped++;
        (this.opts.onSkip ?? warn)(i, e);
        return null;
      })));
    const ahead = this.opts.prefetch ?? 3;
    const queue: Promise<(Sample | null)[]>[] = [];
    let loaded = startBatch;
    const fill = (): void => {
      while (queue.length < ahead && loaded < batches.length) queue.push(load(loaded++));
    };
    fill();
    for (let k = startBatch; k < batches.length; k++) {
      const samples = await queue.shift()!;
      fill();
      const kept = samples.map((s, j) => [s, batches[k]![j]!] as const).filter((p): p is readonly [Sample, number] => p[0] !== null);
      if (kept.length === 0) continue;
      yield { samples: kept.map((p) => p[0]), indices: kept.map((p) => p[1]), batch: k };
    }
  }
}

export function collate(samples: Sample[], indices: number[], inputShape: number[]): Batch {
  const B = samples.length;
  const per = inputShape.reduce((a, d) => a * d, 1);
  const first = samples[0]!;
  const isInt = first.input instanceof Int32Array;
  const xs = isInt ? new Int32Array(B * per) : new Float32Array(B * per);
  samples.forEach((s, i) => {
    if (s.input.length !== per) throw new Error(`sample ${indices[i]} has ${s.input.length} values; expected ${per} (shape [${inputShape}])`);
    xs.set(s.input, i * per);
  });
  const tensors: Tensor[] = [];
  const upload = (data: Float32Array | Int32Array, shape: number[]): Tensor => {
    const t = A.tensor(data, { shape, dtype: data instanceof Int32Array ? 'int32' : 'float32' });
    tensors.push(t);
    return t;
  };
  const x = upload(xs, [B, ...inputShape]);
  let y: Tensor | null = null;
  let targets: Record<string, HeadTargetBatch> | null = null;
  if (isHeadTargets(first.label)) {
    targets = {};
    for (const head of headNames(samples, indices)) targets[head] = collateHead(head, samples.map((s) => (s.label as HeadTargets)[head] ?? null), indices, upload);
  } else if (typeof first.label === 'number') {
    y = upload(Int32Array.from(samples.map((s) => s.label as number)), [B]);
  } else if (first.label instanceof Int32Array) {
    const t = first.label.length;
    const ys = new Int32Array(B * t);
    samples.forEach((s, i) => {
      if (!(s.label instanceof Int32Array) || s.label.length !== t) {
        throw new TypeError(`sample ${indices[i]}: expected a sequence of ${t} token ids like sample ${indices[0]}'s target, got ${s.label instanceof Int32Array ? `${s.label.length}` : typeof s.label}; pad label sequences to one length with ${IGNORE_INDEX}`);
      }
      ys.set(s.label, i * t);
    });
    y = upload(ys, [B, t]);
  } else {
    const k = first.label.length;
    const ys = new Float32Array(B * k);
    samples.forEach((s, i) => ys.set(s.label as Float32Array, i * k));
    y = upload(ys, [B, k]);
  }
  const stack = (field: 'mask' | 'tokenTypeIds'): Tensor | null => {
    if (!first[field]) return null;
    const out = new Int32Array(B * per);
    samples.forEach((s, i) => {
      const v = s[field];
      if (!v) throw new Error(`sample ${indices[i]} has no ${field}, unlike sample ${indices[0]}`);
      out.set(v, i * per);
    });
    return upload(out, [B, ...inputShape]);
  };
  const mask = stack('mask');
  const tokenTypeIds = stack('tokenTypeIds');
  return {
    x, y, targets, mask, tokenTypeIds, indices, size: B,
    dispose() {
      for (const t of tensors) t.dispose();
    },
  };
}

function headNames(samples: Sample[], indices: number[]): string[] {
  const names = new Set<string>();
  samples.forEach((s, i) => {
    if (!isHeadTargets(s.label)) throw new Error(`sample ${indices[i]} has a single target, but sample ${indices[0]} has one per head: a batch cannot mix them`);
    for (const k of Object.keys(s.label)) names.add(k);
  });
  return [...names];
}

/** Class indices (IGNORE_INDEX where absent) or float vectors (0 where absent, with `present`). */
function collateHead(head: string, values: (Target | null)[], indices: number[], upload: (d: Float32Array | Int32Array, shape: number[]) => Tensor): HeadTargetBatch {
  const B = values.length;
  const given = values.find((v) => v !== null);
  const count = values.filter((v) => v !== null).length;
  const where = (i: number): string => `sample ${indices[i]}, head "${head}"`;
  if (given === undefined || typeof given === 'number') {
    const ys = new Int32Array(B).fill(IGNORE_INDEX);
    values.forEach((v, i) => {
      if (v === null) return;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
        throw new TypeError(`${where(i)}: expected a class index (an integer >= 0) like the other samples' targets, got ${v instanceof Float32Array ? `a Float32Array` : v}; give regression and multi-label targets as Float32Array`);
      }
      ys[i] = v;
    });
    return { y: upload(ys, [B]), present: null, count };
  }
  const k = given.length;
  const ys = new Float32Array(B * k);
  const present = new Float32Array(B);
  values.forEach((v, i) => {
    if (v === null) return;
    if (!(v instanceof Float32Array) || v.length !== k) {
      throw new TypeError(`${where(i)}: expected a Float32Array of ${k} targets like the other samples', got ${v instanceof Float32Array ? `${v.length} values` : v}`);
    }
    ys.set(v, i * k);
    present[i] = 1;
  });
  return { y: upload(ys, [B, k]), present: count < B ? upload(present, [B, 1]) : null, count };
}
