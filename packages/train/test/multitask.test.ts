/**
 * Several heads on one backbone: a small CIFAR ResNet whose features feed a 3-class head
 * ("species": horizontal stripes, vertical stripes or a checkerboard) and a regression head
 * ("age": the pattern's amplitude). Some samples lack one of the two targets. Both heads must
 * learn; the loss must be the weighted sum of the heads' losses (checked against float64 on
 * the host); resume, early stopping on a head's metric and feature caching must still work.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { BertForSequenceClassification, CifarResNet, DistilBertForSequenceClassification, Linear, ModuleDict, MultiTaskModel } from '@tl/models';
import {
  adam, cosine, DataLoader, earlyStopping, lambdaCallback, MemoryStore, sgd, TensorDataset, Trainer, TrainingError,
  type EpochLogs, type HeadTargets, type TrainerOptions,
} from '../src/index.js';
import { rng, setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

const SPECIES = ['horizontal', 'vertical', 'checker'];

/** Sample i has no "species" when i % 7 == 3 and no "age" when i % 5 == 4 (with `missing`). */
function patterns(n: number, seed: number, missing = true): TensorDataset {
  const r = rng(seed);
  const inputs: Float32Array[] = [];
  const labels: HeadTargets[] = [];
  for (let i = 0; i < n; i++) {
    const c = i % 3;
    const amplitude = 0.5 + 2 * r();
    const x = new Float32Array(64);
    for (let k = 0; k < 64; k++) {
      const [row, col] = [k >> 3, k & 7];
      const on = c === 0 ? row % 2 : c === 1 ? col % 2 : (row + col) % 2;
      x[k] = (on ? amplitude : -amplitude) * 0.5 + (r() - 0.5) * 0.6;
    }
    inputs.push(x);
    labels.push({
      ...(missing && i % 7 === 3 ? {} : { species: c }),
      ...(missing && i % 5 === 4 ? {} : { age: Float32Array.of(amplitude) }),
    });
  }
  return new TensorDataset(inputs, labels, [1, 8, 8], `patterns${n}-${seed}-${missing}`, SPECIES);
}

const model = (seed = 1): MultiTaskModel => {
  A.manualSeed(seed);
  const backbone = new CifarResNet({ depth: 8, inChannels: 1, numClasses: 10, widths: [8, 16, 16] });
  return new MultiTaskModel(backbone, { heads: { species: { numClasses: 3 }, age: { task: 'regression', outputs: 1 } } });
};

const TASKS: TrainerOptions['tasks'] = { species: { weight: 1 }, age: { weight: 0.5, loss: 'l1' } };

/** Float64 reference of the per-head mean losses over the samples that have each target. */
function hostLosses(species: Float32Array, age: Float32Array, labels: HeadTargets[]): { ce: number; l1: number; nSpecies: number; nAge: number } {
  let ce = 0;
  let l1 = 0;
  let nSpecies = 0;
  let nAge = 0;
  labels.forEach((l, i) => {
    if (typeof l.species === 'number') {
      const row = Array.from(species.subarray(i * 3, i * 3 + 3), Number);
      const max = Math.max(...row);
      ce += max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0)) - row[l.species]!;
      nSpecies++;
    }
    if (l.age instanceof Float32Array) {
      l1 += Math.abs(age[i]! - l.age[0]!);
      nAge++;
    }
  });
  return { ce: ce / nSpecies, l1: l1 / nAge, nSpecies, nAge };
}

const rel = (a: number, b: number): number => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

describe('MultiTaskModel', () => {
  it('returns one output per head from shared features; keys are backbone.* and heads.<name>.*, without the old classifier', async () => {
    const m = model();
    const keys = [...m.stateDict().keys()];
    expect(keys.every((k) => k.startsWith('backbone.') || k.startsWith('heads.'))).toBe(true);
    expect(keys).toContain('backbone.conv1.weight');
    expect(keys.filter((k) => k.startsWith('heads.'))).toEqual(['heads.species.weight', 'heads.species.bias', 'heads.age.weight', 'heads.age.bias']);
    expect(keys.some((k) => k.startsWith('backbone.linear'))).toBe(false);
    expect(m.stateDict().get('heads.species.weight')!.shape).toEqual([3, 16]);
    expect(m.headTasks).toEqual({ species: 'classification', age: 'regression' });
    expect(m.blockOrder().at(-1)).toBe('heads');
    expect(m.blockOrder().some((b) => b.includes('linear'))).toBe(false);
    m.eval();
    const out = A.noGrad(() => m.forward(A.randn([2, 1, 8, 8], { seed: 2 })));
    expect(Object.keys(out)).toEqual(['species', 'age']);
    expect([out.species!.shape, out.age!.shape]).toEqual([[2, 3], [2, 1]]);
    Object.values(out).forEach((t) => t.dispose());
    // The state dict round-trips into a fresh model.
    const other = model(7);
    other.loadStateDict(m.stateDict());
    expect([...(await other.stateDict().get('heads.age.weight')!.data())]).toEqual([...(await m.stateDict().get('heads.age.weight')!.data())]);
    other.dispose();
    m.dispose();

    // Text backbones: BERT's features take token type ids, DistilBERT's do not.
    const bert = new MultiTaskModel(new BertForSequenceClassification({ vocab_size: 30, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16 }), {
      heads: { topic: { numClasses: 4 }, tags: { task: 'multilabel', numClasses: 5 } },
    });
    expect(bert.acceptsTokenTypeIds).toBe(true);
    expect([...bert.stateDict().keys()].filter((k) => !k.startsWith('backbone.bert.'))).toEqual(['heads.topic.weight', 'heads.topic.bias', 'heads.tags.weight', 'heads.tags.bias']);
    bert.dispose();
    const distil = new MultiTaskModel(new DistilBertForSequenceClassification({ vocab_size: 30, dim: 8, n_layers: 1, n_heads: 2, hidden_dim: 16 }), { heads: { topic: { numClasses: 4 } } });
    expect(distil.acceptsTokenTypeIds).toBe(false);
    distil.dispose();

    const backbone = (): CifarResNet => new CifarResNet({ depth: 8, inChannels: 1, widths: [4, 8, 8] });
    expect(() => new MultiTaskModel(backbone(), { heads: { age: { task: 'regression' } } })).toThrow(/regression head "age" needs outputs/);
    expect(() => new MultiTaskModel(backbone(), { heads: {} })).toThrow(/at least one head/);
    expect(() => new ModuleDict({ 'a.b': new Linear(2, 2) })).toThrow(/"a\.b"/);
  });
});

describe('Trainer with several heads', () => {
  it('both heads learn; the loss is the weighted sum of the heads\' losses (float64 reference)', async () => {
    const train = patterns(96, 1);
    const val = patterns(48, 2);
    const m = model();
    // The loss of the first step, on the whole set as one batch, against the same forward on the host.
    const all = (await new DataLoader(train, { batchSize: train.length }).epoch(0).next()).value!;
    const first = A.noGrad(() => m.forward(all.x));
    const ref = hostLosses(await first.species!.data() as Float32Array, await first.age!.data() as Float32Array, train.targets as HeadTargets[]);
    Object.values(first).forEach((t) => t.dispose());
    all.dispose();
    const steps: number[] = [];
    await new Trainer(m, { optimizer: sgd({ lr: 0 }), tasks: TASKS, epochs: 1, batchSize: train.length, logger: () => {}, onEvent: (e) => e.type === 'step' && steps.push(e.loss) }).fit(train);
    expect(ref.nSpecies).toBe(96 - 14);
    expect(ref.nAge).toBe(96 - 19);
    expect(rel(steps[0]!, ref.ce + 0.5 * ref.l1)).toBeLessThan(1e-5);

    const t0 = performance.now();
    const trainer = new Trainer(m, { optimizer: adam({ lr: 1e-2 }), schedule: cosine(), tasks: TASKS, epochs: 8, batchSize: 16, seed: 3, logger: () => {} });
    const history = await trainer.fit(train, val);
    const last = history.at(-1)!;
    const ages = (val.targets as HeadTargets[]).flatMap((l) => (l.age instanceof Float32Array ? [l.age[0]!] : []));
    const meanAge = ages.reduce((a, v) => a + v, 0) / ages.length;
    const baseline = ages.reduce((a, v) => a + Math.abs(v - meanAge), 0) / ages.length;
    console.log(
      `multi-task: species val accuracy ${(100 * last.heads!.species!.valAccuracy!).toFixed(1)}%, age val MAE ${last.heads!.age!.valMae!.toFixed(3)} ` +
        `(predicting the mean: ${baseline.toFixed(3)}); ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    expect(last.heads!.species!.valAccuracy).toBeGreaterThan(0.8);
    expect(last.heads!.age!.valMae).toBeLessThan(0.5 * baseline);
    expect(last.heads!.species!.trainAccuracy).toBeGreaterThan(0.6);
    expect(last.trainLoss).toBeCloseTo(last.heads!.species!.trainLoss + 0.5 * last.heads!.age!.trainLoss, 5);
    expect(last.valLoss).toBeCloseTo(last.heads!.species!.valLoss! + 0.5 * last.heads!.age!.valLoss!, 5);
    expect(last.valAccuracy).toBeUndefined();

    // Evaluation: every head's loss and metrics against float64 on the host, from predictHeads.
    const r = await trainer.evaluate(val);
    const p = await trainer.predictHeads(val);
    expect([p.species!.width, p.age!.width]).toEqual([3, 1]);
    const host = hostLosses(p.species!.outputs, p.age!.outputs, val.targets as HeadTargets[]);
    expect(r.total).toBe(48);
    expect([r.heads!.species!.total, r.heads!.age!.total]).toEqual([host.nSpecies, host.nAge]);
    expect(rel(r.heads!.species!.loss, host.ce)).toBeLessThan(1e-5);
    expect(rel(r.heads!.age!.loss, host.l1)).toBeLessThan(1e-5);
    expect(rel(r.loss, host.ce + 0.5 * host.l1)).toBeLessThan(1e-5);
    expect(r.heads!.age!.mae).toBeCloseTo(host.l1, 5);
    await expect(trainer.predict(val)).rejects.toThrow(/predictHeads/);
    m.dispose();
  });

  it('resumes a multi-task run bit for bit; early stopping watches a head\'s metric', async () => {
    const train = patterns(48, 4);
    const val = patterns(24, 5);
    const opts = { optimizer: sgd({ lr: 0.05, momentum: 0.9 }), schedule: cosine(), tasks: TASKS, epochs: 4, batchSize: 12, seed: 9, logger: () => {} };
    const watch = (): ReturnType<typeof earlyStopping> => earlyStopping({ monitor: 'heads.age.valMae', patience: 10 });

    const straight = model();
    A.manualSeed(4);
    const es4 = watch();
    const h4 = await new Trainer(straight, { ...opts, callbacks: [es4] }).fit(train, val);
    const w4 = await straight.stateDict().get('heads.age.weight')!.data();

    const store = new MemoryStore();
    const first = model();
    A.manualSeed(4);
    const t1 = new Trainer(first, { ...opts, checkpointStore: store, callbacks: [watch(), lambdaCallback({ onEpochEnd: (t, e) => { if (e === 1) t.stopTraining = true; } })] });
    await t1.fit(train, val);
    expect(t1.history).toHaveLength(2);
    first.dispose();
    A.manualSeed(999);
    const second = model(5);
    const es = watch();
    const t2 = new Trainer(second, { ...opts, checkpointStore: store, callbacks: [es] });
    expect(await t2.resume(store)).toBe(true);
    const h = await t2.fit(train, val);
    const view = (hs: EpochLogs[]): unknown => hs.map((e) => [e.trainLoss, e.valLoss, e.heads]);
    expect(view(h)).toEqual(view(h4));
    expect([...(await second.stateDict().get('heads.age.weight')!.data())]).toEqual([...w4]);
    // The head's MAE is minimised, and the resumed watcher agrees with the straight one.
    const maes = h4.map((e) => e.heads!.age!.valMae!);
    expect(es4.best).toBe(Math.min(...maes));
    expect([es.best, es.bestEpoch]).toEqual([es4.best, es4.bestEpoch]);
    await expect(new Trainer(model(), { ...opts, epochs: 1, callbacks: [earlyStopping({ monitor: 'heads.colour.valAccuracy' })] }).fit(train, val))
      .rejects.toThrow(/no "heads\.colour\.valAccuracy" \(have .*heads\.species\.valAccuracy/);
    straight.dispose();
    second.dispose();
  });

  it('with the backbone frozen, cached features train only the heads', async () => {
    const m = model();
    m.freeze('backbone');
    const before = await m.stateDict().get('backbone.conv1.weight')!.data();
    const head = await m.stateDict().get('heads.species.weight')!.data();
    const t = new Trainer(m, { optimizer: adam({ lr: 0.05 }), tasks: TASKS, epochs: 4, batchSize: 16, cacheFeatures: true, logger: () => {} });
    const h = await t.fit(patterns(48, 6), patterns(24, 7));
    expect(h.every((e) => e.cachedFeatures)).toBe(true);
    expect([...(await m.stateDict().get('backbone.conv1.weight')!.data())]).toEqual([...before]);
    expect([...(await m.stateDict().get('heads.species.weight')!.data())]).not.toEqual([...head]);
    expect(h.at(-1)!.trainLoss).toBeLessThan(h[0]!.trainLoss);
    m.dispose();
  });

  it('names what does not fit: unknown heads, mixed options, targets of the wrong kind', async () => {
    const m = model();
    expect(() => new Trainer(m, { tasks: { colour: { weight: 1 } } })).toThrow(/tasks names "colour", which is not a head of MultiTaskModel \(heads: species, age\)/);
    expect(() => new Trainer(m, { task: 'regression' })).toThrow(/not both/);
    expect(() => new Trainer(m, { tasks: { species: { loss: 'l1' } } })).toThrow(/tasks\.species\.loss is for regression heads/);
    expect(() => new Trainer(m, { tasks: { age: { weight: -1 } } })).toThrow(/tasks\.age\.weight must be a finite number >= 0, got -1/);
    const ds = patterns(6, 8, false);
    const numbers = new TensorDataset(ds.inputs, (ds.targets as HeadTargets[]).map((l) => ({ ...l, age: 1 })), [1, 8, 8], 'ages as numbers');
    await expect(new Trainer(m, { epochs: 1, logger: () => {} }).fit(numbers)).rejects.toThrow(/head "age" is a regression head, but its targets are class indices/);
    const single = new TensorDataset(ds.inputs, ds.inputs.map((_, i) => i % 3), [1, 8, 8], 'single');
    await expect(new Trainer(m, { epochs: 1, logger: () => {} }).fit(single)).rejects.toThrow(TrainingError);
    await expect(new Trainer(m, { epochs: 1, logger: () => {} }).fit(single)).rejects.toThrow(/samples carry a single target/);
    m.dispose();
  });
});
