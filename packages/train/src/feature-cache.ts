/**
 * Backbone features computed once per data set and weights, so a frozen backbone costs one
 * pass: kept in memory, and in a store between runs under a key of the data set's fingerprint
 * (which names its samples and preprocessing) and a hash of every backbone weight and buffer.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { nameMatcher, parseSafetensors, serializeSafetensors } from '@tl/models';
import type { Dataset } from './data/dataset.js';
import { collate, DataLoader, type Batch } from './data/loader.js';
import type { TrainableModel } from './model.js';
import type { BlobStore } from './store.js';

export interface FeatureCacheOptions {
  batchSize: number;
  /** Where features persist between runs. */
  store?: BlobStore;
  log(line: string): void;
  /** The backbone's features of a batch. */
  forward(batch: Batch): Tensor;
}

export class FeatureCache {
  private readonly memo = new Map<string, { feats: Float32Array[]; shape: number[] }>();

  constructor(private readonly model: TrainableModel, private readonly opts: FeatureCacheOptions) {}

  /** Batches of cached backbone features (computed once per data set and weights). */
  async batches(ds: Dataset, loader: DataLoader, epoch: number): Promise<AsyncIterable<Batch>> {
    const { feats, shape } = await this.features(ds);
    const labels = ds.labels();
    const order = loader.order(epoch);
    const bs = this.opts.batchSize;
    return (async function* () {
      for (let s = 0; s < order.length; s += bs) {
        const idx = order.slice(s, s + bs);
        yield collate(idx.map((i) => ({ input: feats[i]!, label: labels[i]! })), idx, shape);
      }
    })();
  }

  private async features(ds: Dataset): Promise<{ feats: Float32Array[]; shape: number[] }> {
    const key = `${ds.fingerprint}|${await this.backboneHash()}`;
    const memo = this.memo.get(key);
    if (memo) return memo;
    const file = `features/${fnv(key)}.safetensors`;
    const stored = await this.opts.store?.read(file);
    if (stored) {
      const f = parseSafetensors(stored, file);
      if (f.metadata.key === key) {
        const all = f.get('features');
        const per = all.shape.slice(1);
        const n = per.reduce((a, d) => a * d, 1);
        const feats = Array.from({ length: all.shape[0]! }, (_, i) => (all.data as Float32Array).slice(i * n, (i + 1) * n));
        const r = { feats, shape: per };
        this.memo.set(key, r);
        this.opts.log(`loaded ${feats.length} cached feature vectors from ${this.opts.store!.description}`);
        return r;
      }
    }
    const wasTraining = this.model.training;
    this.model.eval();
    const feats: Float32Array[] = [];
    let shape: number[] = [];
    const loader = new DataLoader(ds, { batchSize: Math.max(this.opts.batchSize, 64), shuffle: false });
    for await (const batch of loader.epoch(0)) {
      const f = A.tidy(() => A.noGrad(() => this.opts.forward(batch)));
      const data = (await f.data()) as Float32Array;
      shape = f.shape.slice(1);
      const n = data.length / batch.size;
      for (let i = 0; i < batch.size; i++) feats[batch.indices[i]!] = data.slice(i * n, (i + 1) * n);
      f.dispose();
      batch.dispose();
    }
    this.model.train(wasTraining);
    const r = { feats, shape };
    this.memo.set(key, r);
    if (this.opts.store) {
      const n = shape.reduce((a, d) => a * d, 1);
      const all = new Float32Array(feats.length * n);
      feats.forEach((f, i) => all.set(f, i * n));
      await this.opts.store.write(file, serializeSafetensors({ features: { dtype: 'F32', shape: [feats.length, ...shape], data: all } }, { key }));
    }
    return r;
  }

  /** A hash of every backbone weight and buffer (the cache key must change when they do). */
  private async backboneHash(): Promise<string> {
    const head = this.model.classifierPath ? nameMatcher(this.model.classifierPath) : () => false;
    let h = 0x811c9dc5;
    for (const [name, t] of this.model.stateDict()) {
      if (head(name)) continue;
      const d = new Uint32Array((await t.data()).buffer);
      for (let i = 0; i < d.length; i++) h = Math.imul(h ^ d[i]!, 0x01000193) >>> 0;
      for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
    }
    return h.toString(16);
  }
}

function fnv(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}
