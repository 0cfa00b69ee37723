import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import {
  adam, cosine, earlyStopping, lambdaCallback, MemoryStore, plateau, sgd, TensorDataset, Trainer, TrainingError, unfreezeAt, stratifiedSplit, type EpochLogs, type TrainerOptions,
} from '../src/index.js';
import type { CifarResNet } from '@tl/models';
import { setup } from '../../tensor/test/helpers.js';
import { model, toyData } from './toy.js';

beforeAll(setup);

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

  it('resumes early stopping bit for bit: a best epoch from before the interruption is restored', async () => {
    // A quarter of the validation labels are wrong, so validation loss is best while the
    // model is still unsure (near 75% confidence) and worsens as training makes it sure.
    const train = toyData(8, 10);
    const clean = toyData(16, 11);
    const val = new TensorDataset(clean.inputs, clean.targets.map((c, i) => (i % 4 === 0 ? 1 - Number(c) : c)), [1, 8, 8], 'toy16-11-noisy');
    const opts = (): TrainerOptions => ({ optimizer: adam({ lr: 0.1 }), schedule: plateau({ patience: 0, factor: 0.5 }), epochs: 10, batchSize: 4, seed: 2, logger: () => {} });
    const watch = (): ReturnType<typeof earlyStopping> => earlyStopping({ patience: 3 });
    const weights = async (m: CifarResNet): Promise<number[][]> => Promise.all([...m.stateDict().values()].map(async (t) => [...(await t.data())]));
    const view = (h: EpochLogs[]): unknown => h.map((e) => [e.epoch, e.trainLoss, e.trainAccuracy, e.valLoss, e.valAccuracy, e.lr]);

    const straight = model();
    A.manualSeed(4);
    const es = watch();
    const done = new MemoryStore();
    const ts = new Trainer(straight, { ...opts(), checkpointStore: done, callbacks: [es] });
    const h = await ts.fit(train, val);
    const w = await weights(straight);
    // The run stops early, its best epoch comes before the interruption below, and the plateau
    // lowers the lr after it (its state must cross the interruption too).
    expect(h.length).toBeLessThan(10);
    expect(es.bestEpoch).toBeLessThan(2);
    expect(h.at(-1)!.lr).toBeLessThan(h[0]!.lr);

    const store = new MemoryStore();
    const first = model();
    A.manualSeed(4);
    // Killed after epoch 3 (checkpoint written), with the best epoch behind it.
    const t1 = new Trainer(first, { ...opts(), checkpointStore: store, callbacks: [watch(), lambdaCallback({ onEpochEnd: (t, e) => { if (e === 2) t.stopTraining = true; } })] });
    await t1.fit(train, val);
    first.dispose();
    A.manualSeed(999);
    const second = model();
    const es2 = watch();
    const t2 = new Trainer(second, { ...opts(), checkpointStore: store, callbacks: [es2] });
    expect(await t2.resume(store)).toBe(true);
    const h2 = await t2.fit(train, val);
    expect(view(h2)).toEqual(view(h));
    expect([es2.best, es2.bestEpoch]).toEqual([es.best, es.bestEpoch]);
    expect(await weights(second)).toEqual(w);

    // Resuming the run that stopped trains no further and restores the same best weights.
    const again = model();
    const t3 = new Trainer(again, { ...opts(), callbacks: [watch()] });
    expect(await t3.resume(done)).toBe(true);
    expect(view(await t3.fit(train, val))).toEqual(view(h));
    expect(await weights(again)).toEqual(w);

    // The callbacks given on resume must be those of the checkpoint's run.
    await expect(new Trainer(again, opts()).resume(store)).rejects.toThrow(/holds the state of callback "earlyStopping", which the callbacks given \(none with state\) lack/);
    await expect(new Trainer(again, { ...opts(), callbacks: [watch(), earlyStopping({ name: 'accuracy', monitor: 'valAccuracy' })] }).resume(store))
      .rejects.toThrow(/callback "accuracy" keeps state, but the checkpoint .* has none for it/);
    await expect(new Trainer(again, { ...opts(), callbacks: [watch(), watch()] }).resume(store)).rejects.toThrow(/two callbacks that keep state are named "earlyStopping"/);
    second.dispose();
    again.dispose();
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
