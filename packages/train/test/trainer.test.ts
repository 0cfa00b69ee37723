import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { CifarResNet } from '@tl/models';
import {
  adam, cosine, earlyStopping, lambdaCallback, MemoryStore, sgd, TensorDataset, Trainer, TrainingError, unfreezeAt, stratifiedSplit, type EpochLogs,
} from '../src/index.js';
import { rng, setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

/** Two classes of 8x8 single-channel images: a bright left half or a bright right half, noisy. */
function toyData(n: number, seed: number): TensorDataset {
  const r = rng(seed);
  const inputs: Float32Array[] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = i % 2;
    const x = new Float32Array(64);
    for (let k = 0; k < 64; k++) x[k] = ((k % 8 < 4) === (c === 0) ? 1 : -1) * 0.5 + (r() - 0.5);
    inputs.push(x);
    labels.push(c);
  }
  return new TensorDataset(inputs, labels, [1, 8, 8], `toy${n}-${seed}`, ['left', 'right']);
}

const model = (): CifarResNet => {
  A.manualSeed(1);
  return new CifarResNet({ depth: 8, inChannels: 1, numClasses: 2, widths: [4, 8, 8] });
};

const losses = (h: EpochLogs[]): number[] => h.map((e) => e.trainLoss);

describe('Trainer', () => {
  it('learns, and the same seed gives the same losses run to run', async () => {
    const data = toyData(48, 1);
    const run = async (): Promise<EpochLogs[]> => {
      const m = model();
      A.manualSeed(3);
      const t = new Trainer(m, { optimizer: adam({ lr: 1e-2 }), schedule: cosine(), epochs: 3, batchSize: 8, seed: 5, logger: () => {} });
      const h = await t.fit(data, toyData(16, 2));
      m.dispose();
      return h;
    };
    const a = await run();
    const b = await run();
    expect(losses(a)).toEqual(losses(b));
    expect(a.at(-1)!.valAccuracy).toBeGreaterThan(0.9);
  });

  it('resumes bit for bit: 2 epochs, stop, 2 more equals 4 straight', async () => {
    const data = toyData(40, 3);
    const opts = { optimizer: sgd({ lr: 0.05, momentum: 0.9 }), schedule: cosine(), epochs: 4, batchSize: 8, seed: 9, logger: () => {} };
    const straight = model();
    A.manualSeed(4);
    const h4 = await new Trainer(straight, opts).fit(data);
    const w4 = await straight.stateDict().get('linear.weight')!.data();

    const store = new MemoryStore();
    const first = model();
    A.manualSeed(4);
    // Interrupted after 2 of 4 epochs (as a killed process would be, checkpoint written).
    const t1 = new Trainer(first, { ...opts, checkpointStore: store, callbacks: [lambdaCallback({ onEpochEnd: (t, e) => { if (e === 1) t.stopTraining = true; } })] });
    await t1.fit(data);
    expect(t1.history).toHaveLength(2);
    first.dispose();
    A.manualSeed(999);
    const second = model();
    const t2 = new Trainer(second, { ...opts, checkpointStore: store });
    expect(await t2.resume(store)).toBe(true);
    const h = await t2.fit(data);
    expect(losses(h)).toEqual(losses(h4));
    expect([...(await second.stateDict().get('linear.weight')!.data())]).toEqual([...w4]);
  });

  it('stops on a NaN loss with a clear error', async () => {
    const data = toyData(16, 4);
    const bad = new TensorDataset(data.inputs.map((x, i) => (i === 3 ? x.map(() => NaN) : x)), data.targets, [1, 8, 8], 'nan');
    const t = new Trainer(model(), { epochs: 1, batchSize: 4, logger: () => {} });
    await expect(t.fit(bad)).rejects.toThrow(TrainingError);
    await expect(new Trainer(model(), { epochs: 1, batchSize: 4, logger: () => {} }).fit(bad)).rejects.toThrow(/loss became NaN/);
  });

  it('early stopping restores the best weights; unfreezeAt unfreezes on schedule', async () => {
    const { train, val } = stratifiedSplit(toyData(40, 5), 0.25, 1);
    const m = model();
    m.freeze().unfreeze('linear');
    const lines: string[] = [];
    const es = earlyStopping({ patience: 1, monitor: 'valLoss' });
    const t = new Trainer(m, {
      optimizer: adam({ lr: 0.5 }), epochs: 6, batchSize: 8, logger: (l) => lines.push(l),
      callbacks: [unfreezeAt(2, 'layer3', { lr: 1e-3 }), es],
    });
    const h = await t.fit(train, val);
    expect(lines.some((l) => l.includes('unfroze layer3'))).toBe(true);
    expect(m.namedParameters({ trainable: true }).some(([n]) => n.startsWith('layer3.'))).toBe(true);
    expect(t.optimizer.groups.find((g) => g.name.startsWith('layer3.'))!.initialLr).toBe(1e-3);
    if (t.stopTraining) {
      expect(h.length).toBeLessThan(6);
      const r = await t.evaluate(val);
      expect(r.loss).toBeCloseTo(es.best, 4);
    }
  });

  it('feature extraction caches the backbone features and trains only the head', async () => {
    const m = model();
    m.freeze().unfreeze('linear');
    const store = new MemoryStore();
    const t = new Trainer(m, { optimizer: adam({ lr: 0.05 }), epochs: 5, batchSize: 8, cacheFeatures: true, featureStore: store, logger: () => {} });
    const before = await m.stateDict().get('conv1.weight')!.data();
    const h = await t.fit(toyData(32, 6), toyData(16, 7));
    expect(h.every((e) => e.cachedFeatures)).toBe(true);
    expect([...(await m.stateDict().get('conv1.weight')!.data())]).toEqual([...before]);
    expect(h.at(-1)!.valAccuracy).toBeGreaterThan(0.6);
    // A second run with the same weights and data reads the features from the store.
    const lines: string[] = [];
    await new Trainer(m, { epochs: 1, batchSize: 8, cacheFeatures: true, featureStore: store, logger: (l) => lines.push(l) }).fit(toyData(32, 6));
    expect(lines.some((l) => /loaded 32 cached feature vectors/.test(l))).toBe(true);
  });
});
