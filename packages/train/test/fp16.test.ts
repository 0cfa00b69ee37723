import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { adam, GradScaler, lambdaCallback, MemoryStore, Trainer, type EpochLogs, type TrainerOptions } from '../src/index.js';
import { setup } from '../../tensor/test/helpers.js';
import { model, toyData } from './toy.js';

beforeAll(setup);

describe('GradScaler', () => {
  it('halves the scale and skips on an overflow, and grows it after growthInterval clean steps', () => {
    const s = new GradScaler({ initScale: 1024, growthInterval: 3 });
    expect([s.update(0), s.update(0), s.scale]).toEqual([true, true, 1024]);
    expect([s.update(0), s.scale]).toEqual([true, 2048]);
    expect([s.update(NaN), s.scale, s.skipped]).toEqual([false, 1024, 1]);
    expect([s.update(0), s.update(0), s.scale]).toEqual([true, true, 1024]);
    expect([s.update(0), s.scale]).toEqual([true, 2048]);
  });

  it('continues from its state dict as the original would, and refuses a broken one', () => {
    const s = new GradScaler({ initScale: 1024, growthInterval: 3 });
    s.update(0);
    s.update(NaN);
    s.update(0);
    s.update(0);
    const copy = new GradScaler({ growthInterval: 3 });
    copy.loadStateDict(s.stateDict());
    expect(copy.stateDict()).toEqual({ scale: 512, growthTracker: 2, skipped: 1 });
    expect([s.update(0), s.scale, copy.update(0), copy.scale]).toEqual([true, 1024, true, 1024]);
    expect(() => copy.loadStateDict({ scale: -1, growthTracker: 0, skipped: 0 })).toThrow(/scale must be a positive finite number, got -1/);
    expect(() => copy.loadStateDict({ scale: 2, growthTracker: 0.5, skipped: 0 })).toThrow(/growthTracker must be a non-negative integer, got 0.5/);
  });

  it('refuses settings that cannot work, naming them', () => {
    expect(() => new GradScaler({ initScale: 0 })).toThrow(/initScale .* got 0/);
    expect(() => new GradScaler({ growthFactor: 1 })).toThrow(/growthFactor must exceed 1/);
    expect(() => new GradScaler({ backoffFactor: 2 })).toThrow(/backoffFactor must be below 1/);
    expect(() => new GradScaler({ growthInterval: 1.5 })).toThrow(/growthInterval .* 1.5/);
  });

  it('flags a gradient holding Inf or NaN on the GPU', async () => {
    const s = new GradScaler();
    const p = A.tensor([1, 2]);
    const q = A.tensor([3]);
    p.grad = A.tensor([1e30, -4]);
    q.grad = A.tensor([0.5]);
    expect(await s.nonFinite([p, q]).item()).toBe(0);
    q.grad = A.tensor([Infinity]);
    expect(Number.isNaN(await s.nonFinite([p, q]).item())).toBe(true);
    p.grad = A.tensor([NaN, 1]);
    q.grad = A.tensor([1]);
    expect(Number.isNaN(await s.nonFinite([p, q]).item())).toBe(true);
  });
});

describe('Trainer with fp16', () => {
  /** Live tensors at the end of each epoch: flat after the first (optimizer state made). */
  let liveAtEpochEnd: number[] = [];
  const run = async (fp16: boolean, initScale?: number): Promise<EpochLogs[]> => {
    const m = model();
    liveAtEpochEnd = [];
    const t = new Trainer(m, {
      optimizer: adam({ lr: 1e-2 }), epochs: 3, batchSize: 8, seed: 5, fp16, logger: () => {}, gradClip: 5,
      callbacks: [lambdaCallback({ onEpochEnd: () => void liveAtEpochEnd.push(A.memory().liveTensors) })],
      ...(initScale ? { lossScale: { initScale } } : {}),
    });
    const h = await t.fit(toyData(48, 1), toyData(16, 2));
    m.dispose();
    return h;
  };

  it('learns as float32 does, and logs the loss scale', async () => {
    const h32 = await run(false);
    const h16 = await run(true);
    expect(h16.at(-1)!.valAccuracy).toBeGreaterThan(0.9);
    for (let e = 0; e < 3; e++) expect(Math.abs(h16[e]!.trainLoss - h32[e]!.trainLoss)).toBeLessThan(0.05);
    expect(h16[0]!.lossScale).toBe(2 ** 16);
    expect(h16.map((e) => e.skippedSteps)).toEqual([0, 0, 0]);
    expect(h32[0]!.lossScale).toBeUndefined();
    expect(liveAtEpochEnd[2]).toBe(liveAtEpochEnd[1]);
  });

  it('a resumed run keeps the loss scale and ends as the uninterrupted one', async () => {
    const opts = (epochs: number, store: MemoryStore): TrainerOptions => ({
      optimizer: adam({ lr: 1e-2 }), epochs, batchSize: 8, seed: 5, fp16: true, logger: () => {},
      lossScale: { initScale: 2 ** 22, growthInterval: 4 }, checkpointStore: store,
    });
    const straightModel = model();
    const straight = await new Trainer(straightModel, opts(3, new MemoryStore())).fit(toyData(48, 1), toyData(16, 2));
    const mem = new MemoryStore();
    const firstModel = model();
    const first = new Trainer(firstModel, opts(1, mem));
    await first.fit(toyData(48, 1), toyData(16, 2));
    const resumedModel = model();
    const again = new Trainer(resumedModel, opts(3, mem));
    expect(await again.resume(mem)).toBe(true);
    expect(again.scaler!.stateDict()).toEqual(first.scaler!.stateDict());
    expect(again.scaler!.scale).not.toBe(2 ** 22);
    const resumed = await again.fit(toyData(48, 1), toyData(16, 2));
    expect(resumed.map((e) => [e.trainLoss, e.lossScale, e.skippedSteps])).toEqual(straight.map((e) => [e.trainLoss, e.lossScale, e.skippedSteps]));
    const w = async (m: typeof straightModel): Promise<number[]> => [...(await m.namedParameters()[0]![1].data())];
    expect(await w(resumedModel)).toEqual(await w(straightModel));
    for (const m of [straightModel, firstModel, resumedModel]) m.dispose();
  });

  it('skips the steps whose scaled gradients overflow float16 and backs off until they fit', async () => {
    const h = await run(true, 2 ** 22);
    const skipped = h[0]!.skippedSteps!;
    expect(skipped).toBeGreaterThan(0);
    expect(h[0]!.lossScale).toBe(2 ** (22 - skipped));
    expect(h.at(-1)!.valAccuracy).toBeGreaterThan(0.9);
  });
});
