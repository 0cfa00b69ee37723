import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { parseSafetensors, type Module } from '@tl/models';
import { epochProblem, stepLossProblem } from '../src/divergence.js';
import { lambdaCallback, MemoryStore, sgd, Trainer, TrainingError, type EpochLogs, type TrainerOptions } from '../src/index.js';
import { setup } from '../../tensor/test/helpers.js';
import { model, toyData } from './toy.js';

beforeAll(setup);

const quiet = { batchSize: 8, seed: 2, logger: () => {} } satisfies TrainerOptions;

/** Every float of the checkpoint's model file, and the epoch count its tag names. */
async function checkpointWeights(store: MemoryStore): Promise<{ epochs: number; values: number[] }> {
  const file = parseSafetensors((await store.read('checkpoint/model.safetensors'))!, 'checkpoint');
  const values = file.keys().flatMap((k) => [...(file.get(k).data as Float32Array)]);
  return { epochs: Number(file.metadata.checkpoint!.split(':')[0]), values };
}

async function poison(m: Module, name: string): Promise<void> {
  const w = m.stateDict().get(name)!;
  const d = Float32Array.from(await w.data());
  d[0] = NaN;
  A.assign(w, A.tensor(d, { shape: [...w.shape] }));
}

async function failure(p: Promise<unknown>): Promise<TrainingError> {
  const e = await p.then(() => null, (err: unknown) => err);
  expect(e).toBeInstanceOf(TrainingError);
  return e as TrainingError;
}

describe('a diverging run stops', () => {
  it('lr 1e9 stops in the first epoch, names where, and writes no checkpoint', async () => {
    const store = new MemoryStore();
    const m = model();
    const t = new Trainer(m, { ...quiet, optimizer: sgd({ lr: 1e9 }), epochs: 3, checkpointStore: store });
    const e = await failure(t.fit(toyData(32, 1), toyData(16, 2)));
    expect(e.message).toMatch(/^training diverged (in epoch 1, step [1-4] of 4|at the end of epoch 1): .*(NaN|Infinity|exploded).*; no checkpoint was written to memory before it\. Lower the learning rate \(it was 1\.00e\+9\)/);
    expect(e.message).not.toContain('\n');
    expect(await store.read('checkpoint/model.safetensors')).toBeNull();
    expect(await store.read('checkpoint/trainer.json')).toBeNull();
    m.dispose();
  });

  it('keeps the last finite checkpoint when a later epoch diverges, and resumes from it', async () => {
    const store = new MemoryStore();
    const m = model();
    // Two sane epochs, then the learning rate jumps to 1e9.
    const jump = lambdaCallback({ onEpochBegin: (tr, epoch) => { if (epoch === 2) tr.setLr('*', 1e9); } });
    const t = new Trainer(m, { ...quiet, optimizer: sgd({ lr: 0.05 }), epochs: 5, checkpointStore: store, callbacks: [jump] });
    const e = await failure(t.fit(toyData(32, 1), toyData(16, 2)));
    expect(e.message).toMatch(/^training diverged (in epoch 3, step [1-4] of 4|at the end of epoch 3): .*; the last finite checkpoint \(after epoch 2\) is kept in memory\./);
    const saved = await checkpointWeights(store);
    expect(saved.epochs).toBe(2);
    expect(saved.values.every(Number.isFinite)).toBe(true);
    const again = model();
    const t2 = new Trainer(again, { ...quiet, optimizer: sgd({ lr: 0.05 }), epochs: 3, checkpointStore: store });
    expect(await t2.resume(store)).toBe(true);
    const h = await t2.fit(toyData(32, 1), toyData(16, 2));
    expect(h.map((l) => l.epoch)).toEqual([0, 1, 2]);
    expect(h.every((l) => Number.isFinite(l.trainLoss) && Number.isFinite(l.valLoss!))).toBe(true);
    m.dispose();
    again.dispose();
  });

  it('a NaN in the weights of the last step is caught at the end of the epoch, before the checkpoint', async () => {
    const store = new MemoryStore();
    const m = model();
    const spoil = lambdaCallback({ onEpochEnd: async (tr, epoch) => { if (epoch === 0) await poison(tr.model, 'layer1.0.bn1.running_var'); } });
    const t = new Trainer(m, { ...quiet, epochs: 3, checkpointStore: store, callbacks: [spoil] });
    // No validation: the NaN running variance is only in the weights, which the next epoch's
    // first step (train mode) does not read; the check at the end of epoch 2 finds it.
    const e = await failure(t.fit(toyData(32, 1)));
    expect(e.message).toContain('training diverged at the end of epoch 2: after its last step layer1.0.bn1.running_var holds 1 NaN or infinite value of 4');
    expect(e.message).toContain('the last finite checkpoint (after epoch 1) is kept in memory');
    expect((await checkpointWeights(store)).values.every(Number.isFinite)).toBe(true);
    m.dispose();
  });

  it('without a checkpoint store, the end-of-epoch check on the GPU finds the same NaN', async () => {
    const m = model();
    const spoil = lambdaCallback({ onEpochEnd: async (tr, epoch) => { if (epoch === 0) await poison(tr.model, 'layer1.0.bn1.running_var'); } });
    const t = new Trainer(m, { ...quiet, epochs: 3, callbacks: [spoil] });
    const e = await failure(t.fit(toyData(32, 1)));
    expect(e.message).toContain('training diverged at the end of epoch 2: after its last step layer1.0.bn1.running_var holds 1 NaN or infinite value of 4');
    m.dispose();
  });

  it('refuses non-finite starting weights before training, and a checkpoint of them', async () => {
    const m = model();
    await poison(m, 'conv1.weight');
    const store = new MemoryStore();
    const t = new Trainer(m, { ...quiet, epochs: 1, checkpointStore: store });
    const e = await failure(t.fit(toyData(16, 1)));
    expect(e.message).toBe("the model's weights are not finite before training: conv1.weight holds 1 NaN or infinite value of 36; load weights without NaN or Inf (the file is damaged or was saved by a run that diverged)");
    expect((await failure(t.saveCheckpoint(store, 1))).message).toBe('not writing a checkpoint to memory: conv1.weight holds 1 NaN or infinite value of 36');
    expect(await store.read('checkpoint/model.safetensors')).toBeNull();
    m.dispose();
  });

  it('the rules: non-finite losses always, explosion against the first epoch', () => {
    const first = [{ epoch: 0, trainLoss: 0.7, valLoss: 1e-5 } as EpochLogs];
    expect(stepLossProblem(NaN, [], 1e4)).toBe('the training loss became NaN');
    expect(stepLossProblem(Infinity, first, 1e4)).toBe('the training loss became Infinity');
    expect(stepLossProblem(1e6, [], 1e4)).toBeNull();
    expect(stepLossProblem(6000, first, 1e4)).toBeNull();
    expect(stepLossProblem(8000, first, 1e4)).toBe("the training loss exploded to 8000, over 10000 times the first epoch's mean 0.7000");
    expect(stepLossProblem(8000, first, Infinity)).toBeNull();
    expect(epochProblem(0.5, { loss: NaN, total: 4, metrics: {} }, first, 1e4)).toBe('the validation loss became NaN');
    expect(epochProblem(0.5, { loss: 30, total: 4, metrics: {} }, first, 1e4)).toBeNull();
    expect(epochProblem(0.5, { loss: 7500, total: 4, metrics: {} }, first, 1e4)).toBe("the validation loss exploded to 7500, over 10000 times the first epoch's mean training loss 0.7000");
    expect(epochProblem(0.5, { loss: 0.4, total: 4, metrics: {}, heads: { a: { loss: 0.4, total: 4, metrics: {} }, b: { loss: NaN, total: 0, metrics: {} } } }, first, 1e4)).toBeNull();
    expect(epochProblem(0.5, { loss: 0.4, total: 4, metrics: {}, heads: { b: { loss: NaN, total: 2, metrics: {} } } }, first, 1e4)).toBe('the validation loss of head "b" became NaN');
    expect(() => new Trainer(model(), { divergenceFactor: 1 })).toThrow('divergenceFactor must be a number > 1 (Infinity turns the explosion rule off), got 1');
  });
});
