/**
 * The objectives the trainer picks from `task` (multi-label, regression, weighted and soft
 * classification) trained end to end or checked against float64 references, gradient
 * accumulation against one large batch, the feature store across runs, and non-finite numbers
 * through trainer.json.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { Linear, Module, serializeSafetensors } from '@tl/models';
import {
  adam, averagePrecision, collate, MemoryStore, sgd, SupervisedObjective, TensorDataset, Trainer, type EpochLogs, type Objective, type ObjectiveContext,
} from '../src/index.js';
import { dirStore } from '../src/node.js';
import { CHECKPOINT_VERSION, readCheckpoint, writeCheckpoint, type CheckpointState } from '../src/checkpoint.js';
import { rng, setup } from '../../tensor/test/helpers.js';
import { model, toyData } from './toy.js';

beforeAll(setup);
const tmp = mkdtempSync(join(tmpdir(), 'tl-objectives-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Two linear layers on flattened 8x8 images: no BatchNorm, so a batch's gradient is the mean
 * of its rows' and accumulation can be compared exactly. */
class Mlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(out: number, seed = 3) {
    super();
    A.manualSeed(seed);
    this.fc1 = this.module('fc1', new Linear(64, 16));
    this.fc2 = this.module('fc2', new Linear(16, out));
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(A.relu(this.fc1.forward(x.reshape([x.shape[0]!, 64]))));
  }
}

/** 8x8 images whose labels are which of three regions (left half, top half, centre) are bright. */
function regions(n: number, seed: number): TensorDataset {
  const r = rng(seed);
  const inputs: Float32Array[] = [];
  const labels: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    const on = [r() < 0.5, r() < 0.5, r() < 0.5];
    const x = new Float32Array(64);
    for (let k = 0; k < 64; k++) {
      const row = Math.floor(k / 8);
      const col = k % 8;
      const hits = (on[0] && col < 4 ? 1 : 0) + (on[1] && row < 4 ? 1 : 0) + (on[2] && row >= 2 && row < 6 && col >= 2 && col < 6 ? 1 : 0);
      x[k] = hits * 0.6 + (r() - 0.5) * 0.4;
    }
    inputs.push(x);
    labels.push(Float32Array.from(on, (b) => (b ? 1 : 0)));
  }
  return new TensorDataset(inputs, labels, [1, 8, 8], `regions${n}-${seed}`, ['left', 'top', 'centre']);
}

/** Average precision by its definition: the mean over positives of the precision at their rank
 * (scores are distinct here, so no ties to settle). */
function apReference(scores: number[], target: number[]): number {
  const order = scores.map((s, i) => [s, target[i]!] as const).sort((a, b) => b[0] - a[0]);
  let tp = 0;
  let sum = 0;
  order.forEach(([, t], k) => {
    if (t === 1) {
      tp++;
      sum += tp / (k + 1);
    }
  });
  return sum / tp;
}

describe('objectives', () => {
  it('gradient accumulation: 4 micro-batches of 8 give the weights of one batch of 32', async () => {
    const data = toyData(32, 3);
    const run = async (batchSize: number, accumulate: number): Promise<Float32Array[]> => {
      const m = new Mlp(2);
      const t = new Trainer(m, { optimizer: sgd({ lr: 0.5, momentum: 0.9 }), epochs: 3, batchSize, accumulate, logger: () => {} });
      await t.fit(data);
      expect(t.globalStep).toBe(3);
      return Promise.all(m.parameters().map(async (p) => (await p.data()) as Float32Array));
    };
    const one = await run(32, 1);
    const four = await run(8, 4);
    const moved = await Promise.all(new Mlp(2).parameters().map(async (p) => (await p.data()) as Float32Array));
    let maxDiff = 0;
    let maxMove = 0;
    one.forEach((w, i) => w.forEach((v, j) => {
      maxDiff = Math.max(maxDiff, Math.abs(v - four[i]![j]!));
      maxMove = Math.max(maxMove, Math.abs(v - moved[i]![j]!));
    }));
    expect(maxMove).toBeGreaterThan(0.01);
    expect(maxDiff).toBeLessThan(1e-5);
  });

  it('multi-label: sigmoid + BCE trains; evaluation gives per-label F1 and mAP as defined', async () => {
    const m = new Mlp(3);
    const t = new Trainer(m, { task: 'multilabel', optimizer: adam({ lr: 0.02 }), epochs: 25, batchSize: 16, logger: () => {} });
    const val = regions(48, 9);
    const h = await t.fit(regions(96, 8), val);
    const last = h.at(-1)!;
    expect(last.trainLoss).toBeLessThan(h[0]!.trainLoss * 0.5);
    expect(last.metrics!.valMAP).toBeGreaterThan(0.9);
    const r = await t.evaluate(val);
    expect(r.perLabel!.f1).toHaveLength(3);
    expect(r.metrics.macroF1).toBeCloseTo(r.perLabel!.f1.reduce((a, v) => a + v, 0) / 3, 12);
    expect(r.metrics.macroF1).toBeGreaterThan(0.8);
    const { outputs } = await t.predict(val);
    const targets = val.labels() as Float32Array[];
    for (let j = 0; j < 3; j++) {
      const scores = Array.from({ length: val.length }, (_, i) => outputs[i * 3 + j]!);
      const truth = targets.map((y) => y[j]!);
      expect(r.perLabel!.averagePrecision[j]).toBeCloseTo(apReference(scores, truth), 6);
    }
    expect(averagePrecision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toBeCloseTo(0.8333333333, 9);
    expect(averagePrecision([0.5, 0.5, 0.2], [1, 0, 1])).toBeCloseTo(0.5 * 0.5 + 0.5 * (2 / 3), 12);
    expect(averagePrecision([0.3, 0.1], [0, 0])).toBeNaN();
  });

  it('regression: one output trained end to end to far below the mean predictor', async () => {
    const r = rng(4);
    const make = (n: number, tag: string): TensorDataset => {
      const inputs: Float32Array[] = [];
      const targets: Float32Array[] = [];
      for (let i = 0; i < n; i++) {
        const level = r() * 2 - 1;
        const x = Float32Array.from({ length: 64 }, (_, k) => level * (k % 8 < 4 ? 1 : 0.5) + (r() - 0.5) * 0.2);
        inputs.push(x);
        targets.push(Float32Array.of(3 * level));
      }
      return new TensorDataset(inputs, targets, [1, 8, 8], tag);
    };
    const train = make(96, 'reg-train');
    const val = make(48, 'reg-val');
    const m = new Mlp(1);
    const h = await new Trainer(m, { task: 'regression', regressionLoss: 'l1', optimizer: adam({ lr: 0.01 }), epochs: 30, batchSize: 16, logger: () => {} }).fit(train, val);
    const ys = (val.labels() as Float32Array[]).map((y) => y[0]!);
    const mean = ys.reduce((a, v) => a + v, 0) / ys.length;
    const baseline = ys.reduce((a, v) => a + Math.abs(v - mean), 0) / ys.length;
    expect(h.at(-1)!.valMae).toBeLessThan(0.2 * baseline);
    expect(h.at(-1)!.metrics!.valRmse).toBeGreaterThan(0);
  });

  it('classification with class weights and with soft targets equals the float64 definitions', async () => {
    const logits = [[1.5, -0.3, 0.2], [0.1, 0.9, -1.2], [-0.5, 0.4, 2.0], [0.3, 0.3, 0.3]];
    const labels = [0, 1, 2, 1];
    const weights = [0.5, 2, 1.25];
    const soft = [[0.7, 0.2, 0.1], [0, 1, 0], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]];
    const logSoftmax = (row: number[]): number[] => {
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
      return row.map((v) => v - lse);
    };
    const ls = logits.map(logSoftmax);
    const weighted = -labels.reduce((a, y, i) => a + weights[y]! * ls[i]![y]!, 0) / labels.reduce((a, y) => a + weights[y]!, 0);
    const eps = 0.1;
    const softRef = -soft.reduce((a, q, i) => a + q.reduce((b, qc, c) => b + (qc * (1 - eps) + eps / 3) * ls[i]![c]!, 0), 0) / 4;
    const x = A.tensor(Float32Array.from(logits.flat()), { shape: [4, 3] });
    const ctx: ObjectiveContext = { model: new Mlp(3), cached: false, forward: () => x, log: () => {} };
    const sample = (label: number | Float32Array) => ({ input: new Float32Array(1), label });
    const hard = collate(labels.map((y) => sample(y)), [0, 1, 2, 3], [1]);
    const mixed = collate(soft.map((q) => sample(Float32Array.from(q))), [0, 1, 2, 3], [1]);
    try {
      const w = (new SupervisedObjective({ classWeights: Float32Array.from(weights) }) as Objective).trainStep(ctx, hard, {}, { step: 0, totalSteps: 1 });
      expect(await w.loss.item()).toBeCloseTo(weighted, 5);
      const s = (new SupervisedObjective({ labelSmoothing: eps }) as Objective).trainStep(ctx, mixed, {}, { step: 0, totalSteps: 1 });
      expect(await s.loss.item()).toBeCloseTo(softRef, 5);
      expect(await s.sums!.correct!.item()).toBe(3);
      expect(() => new SupervisedObjective({ classWeights: Float32Array.of(1, -1) })).toThrow('classWeights must be finite numbers >= 0, got [1, -1]');
      const short: Objective = new SupervisedObjective({ classWeights: Float32Array.of(1, 2) });
      expect(() => short.trainStep(ctx, hard, {}, { step: 0, totalSteps: 1 })).toThrow('classWeights has 2 entries, but the model has 3 classes');
    } finally {
      x.dispose();
      hard.dispose();
      mixed.dispose();
    }
  });

  it('the on-disk feature store is reused by a later run and not when weights, preprocessing or data change', async () => {
    const dir = join(tmp, 'features');
    const fit = async (m: ReturnType<typeof model>, data: TensorDataset): Promise<string[]> => {
      const lines: string[] = [];
      await new Trainer(m, { epochs: 1, batchSize: 8, cacheFeatures: true, featureStore: dirStore(dir), logger: (l) => lines.push(l) }).fit(data);
      return lines;
    };
    const loaded = (lines: string[]): boolean => lines.some((l) => /loaded 16 cached feature vectors/.test(l));
    const files = (): number => readdirSync(join(dir, 'features')).filter((f) => f.endsWith('.safetensors')).length;
    const frozen = (): ReturnType<typeof model> => model().freeze().unfreeze('linear') as ReturnType<typeof model>;
    const data = toyData(16, 21);
    expect(loaded(await fit(frozen(), data))).toBe(false);
    expect(files()).toBe(1);
    expect(loaded(await fit(frozen(), data))).toBe(true);
    // The head's weights are not part of the key: a new head reuses the features.
    const newHead = frozen();
    newHead.loadStateDict({ 'linear.weight': A.zeros(newHead.linear.weight.shape) }, { strict: false });
    expect(loaded(await fit(newHead, data))).toBe(true);
    const changed = frozen();
    const w = (await changed.conv1.weight.data()) as Float32Array;
    changed.loadStateDict({ 'conv1.weight': A.tensor(w.map((v) => v * 1.01), { shape: changed.conv1.weight.shape }) }, { strict: false });
    expect(loaded(await fit(changed, data))).toBe(false);
    const pre = new TensorDataset(data.inputs, data.targets, data.inputShape, `${data.fingerprint}|normalize:other`);
    expect(loaded(await fit(frozen(), pre))).toBe(false);
    expect(loaded(await fit(frozen(), toyData(16, 22)))).toBe(false);
    expect(files()).toBe(4);
  });

  it('NaN and ±Infinity in the history and schedule survive trainer.json', async () => {
    const store = new MemoryStore();
    const tag = '3:12';
    const history = [{ epoch: 0, trainLoss: 0.5, valLoss: NaN, lr: 0.1, seconds: 1, samplesPerSec: 10, cachedFeatures: false, heads: { a: { trainLoss: NaN, valMae: Infinity } }, metrics: { valMAP: -Infinity } }] as EpochLogs[];
    const state: CheckpointState = {
      version: CHECKPOINT_VERSION, tag, nextEpoch: 3, globalStep: 12, rng: A.getRngState(),
      optimizer: { kind: 'sgd', step: 12, groups: [] } as unknown as CheckpointState['optimizer'],
      schedule: { best: Infinity, bad: 0, factor: 1 } as unknown as CheckpointState['schedule'],
      callbacks: { early: { json: { best: -Infinity, wait: NaN }, tensors: [] } }, trainable: ['w'], history,
    };
    const blob = serializeSafetensors({ w: { dtype: 'F32', shape: [1], data: Float32Array.of(1) } }, { checkpoint: tag });
    await writeCheckpoint(store, state, { model: blob, optimizer: blob, callbacks: null });
    const back = await readCheckpoint(store);
    expect(back!.state.history).toEqual(history);
    expect(back!.state.history[0]!.valLoss).toBeNaN();
    expect(back!.state.history[0]!.heads!.a!.valMae).toBe(Infinity);
    expect(back!.state.history[0]!.metrics!.valMAP).toBe(-Infinity);
    expect(back!.state.schedule).toEqual(state.schedule);
    expect(back!.state.callbacks.early!.json).toEqual({ best: -Infinity, wait: NaN });
  });
});
