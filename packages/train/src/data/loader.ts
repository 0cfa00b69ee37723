/**
 * Batches from a data set: seeded shuffling per epoch, seeded augmentation per sample, and
 * the next batch decoded while the GPU runs the current one. A sample that fails to load is
 * skipped with a warning naming it, and counted.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import type { Dataset, Sample } from './dataset.js';
import { mixSeed, Rng } from './random.js';

export interface Batch {
  x: Tensor;
  /** int32 class indices [B], or float32 targets [B, K]. */
  y: Tensor;
  mask: Tensor | null;
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
  /** Apply the data set's random augmentation. */
  augment?: boolean;
  onSkip?: (index: number, error: Error) => void;
}

export class DataLoader {
  skipped = 0;
  constructor(readonly dataset: Dataset, readonly opts: LoaderOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new RangeError(`batch size must be a positive integer, got ${opts.batchSize}`);
  }

  /** Number of batches per epoch. */
  get length(): number {
    const n = this.dataset.length;
    return this.opts.dropLast ? Math.floor(n / this.opts.batchSize) : Math.ceil(n / this.opts.batchSize);
  }

  order(epoch: number): number[] {
    const idx = [...Array(this.dataset.length).keys()];
    return this.opts.shuffle ? new Rng(mixSeed(this.opts.seed ?? 0, epoch, 0x5f)).shuffle(idx) : idx;
  }

  async *epoch(epoch = 0, startBatch = 0): AsyncGenerator<Batch> {
    const order = this.order(epoch);
    const bs = this.opts.batchSize;
    const batches: number[][] = [];
    for (let s = 0; s < order.length; s += bs) {
      const b = order.slice(s, s + bs);
      if (this.opts.dropLast && b.length < bs) break;
      batches.push(b);
    }
    const load = (b: number[]): Promise<(Sample | null)[]> =>
      Promise.all(b.map((i) => this.dataset.get(i, this.opts.augment ? mixSeed(this.opts.seed ?? 0, epoch, i, 0xa7) : undefined).catch((e: Error) => {
        this.skipped++;
        (this.opts.onSkip ?? ((j, err) => console.warn(`skipping sample ${j}: ${err.message}`)))(i, e);
        return null;
      })));
    let next = startBatch < batches.length ? load(batches[startBatch]!) : null;
    for (let k = startBatch; k < batches.length; k++) {
      const samples = await next!;
      next = k + 1 < batches.length ? load(batches[k + 1]!) : null;
      const kept = samples.map((s, j) => [s, batches[k]![j]!] as const).filter((p): p is readonly [Sample, number] => p[0] !== null);
      if (kept.length === 0) continue;
      yield collate(kept.map((p) => p[0]), kept.map((p) => p[1]), this.dataset.inputShape);
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
  const x = A.tensor(xs, { shape: [B, ...inputShape], dtype: isInt ? 'int32' : 'float32' });
  let y: Tensor;
  if (typeof first.label === 'number') {
    y = A.tensor(Int32Array.from(samples.map((s) => s.label as number)), { shape: [B], dtype: 'int32' });
  } else {
    const k = first.label.length;
    const ys = new Float32Array(B * k);
    samples.forEach((s, i) => ys.set(s.label as Float32Array, i * k));
    y = A.tensor(ys, { shape: [B, k] });
  }
  let mask: Tensor | null = null;
  if (first.mask) {
    const ms = new Int32Array(B * per);
    samples.forEach((s, i) => ms.set(s.mask!, i * per));
    mask = A.tensor(ms, { shape: [B, ...inputShape], dtype: 'int32' });
  }
  return {
    x, y, mask, indices, size: B,
    dispose() {
      x.dispose();
      y.dispose();
      mask?.dispose();
    },
  };
}
