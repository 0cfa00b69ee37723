/** Deep CORAL's loss and gradients against PyTorch (scripts/adapt_fixtures.py); Ganin's
 * schedule; DANN and CORAL trained through the Trainer on labelled source and unlabelled,
 * shifted target batches. */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { parseSafetensors } from '@tl/models';
import { coral, coralLoss, dann, dannLambda, DomainClassifier, TensorDataset, Trainer } from '../src/index.js';
import { expectClose, setup } from '../../tensor/test/helpers.js';
import { model, toyData } from './toy.js';

beforeAll(setup);

const f = parseSafetensors(readFileSync(new URL('./fixtures/coral.safetensors', import.meta.url)));
const want = (key: string) => ({ shape: f.get(key).shape, data: Float64Array.from(f.get(key).data) });

/** The toy images brighter and with more contrast: the same classes in another domain. */
function shifted(n: number, seed: number): TensorDataset {
  const src = toyData(n, seed);
  return new TensorDataset(src.inputs.map((x) => x.map((v) => 1.8 * v + 0.7)), src.labels(), [1, 8, 8], `shifted${n}-${seed}`, ['left', 'right']);
}

describe('CORAL and DANN', () => {
  it("coralLoss equals Deep CORAL's ||C_s - C_t||^2 / (4 d^2) in PyTorch, value and gradients", async () => {
    const s = A.tensor(f.get('source').data as Float32Array, { shape: f.get('source').shape });
    const t = A.tensor(f.get('target').data as Float32Array, { shape: f.get('target').shape });
    s.requiresGrad = true;
    t.requiresGrad = true;
    const loss = coralLoss(s, t);
    await expectClose(loss.reshape([1]), want('loss'), 1e-4, 1e-6);
    A.backward(loss);
    await expectClose(s.grad!, want('grad.source'), 1e-3, 1e-5);
    await expectClose(t.grad!, want('grad.target'), 1e-3, 1e-5);
    expect(() => coralLoss(s, A.zeros([3, 4]))).toThrow('coralLoss compares features [batch, d] of the same d: got source [9, 5] and target [3, 4]');
  });

  it("Ganin's schedule goes from 0 to nearly 1", () => {
    expect(dannLambda(0)).toBe(0);
    expect(dannLambda(0.5)).toBeCloseTo(2 / (1 + Math.exp(-5)) - 1, 12);
    expect(dannLambda(1)).toBeCloseTo(0.99991, 5);
  });

  it('DANN trains the model and its domain classifier from source labels and unlabelled target batches', async () => {
    const m = model();
    const before = await m.stateDictData();
    const domain = new DomainClassifier(8, 6);
    const domainBefore = await domain.stateDictData();
    const objective = dann({ target: shifted(16, 7), domainClassifier: domain, coral: 0.5 });
    const trainer = new Trainer(m, { objective, epochs: 2, batchSize: 8, logger: () => {} });
    const history = await trainer.fit(toyData(16, 3));
    expect(objective.name).toBe('dann+coral');
    for (const key of ['trainDomainLoss', 'trainDomainAccuracy', 'trainCoralLoss']) expect(Number.isFinite(history[1]!.metrics![key])).toBe(true);
    expect(history[1]!.trainAccuracy).toBeGreaterThanOrEqual(0);
    expect(objective.domainClassifier).toBe(domain);
    const domainAfter = await domain.stateDictData();
    for (const key of ['fc1.weight', 'fc2.bias']) expect([...domainAfter.get(key)!.data]).not.toEqual([...domainBefore.get(key)!.data]);
    const after = await m.stateDictData();
    for (const key of ['conv1.weight', 'linear.weight']) expect([...after.get(key)!.data]).not.toEqual([...before.get(key)!.data]);
    objective.dispose();
    m.dispose();
  });

  it('CORAL alone, and bad weights refused', async () => {
    const m = model();
    const objective = coral({ target: shifted(16, 7), weight: 1 });
    const history = await new Trainer(m, { objective, epochs: 1, batchSize: 8, logger: () => {} }).fit(toyData(16, 3));
    expect(objective.name).toBe('coral');
    expect(history[0]!.metrics!.trainCoralLoss).toBeGreaterThan(0);
    expect(history[0]!.metrics!.trainDomainLoss).toBeUndefined();
    expect(() => dann({ target: shifted(4, 1), adversarial: 0 })).toThrow('domain adaptation needs adversarial > 0 (DANN) or coral > 0 (CORAL); both are 0');
    expect(() => dann({ target: shifted(4, 1), coral: -1 })).toThrow('coral must be a finite number >= 0, got -1');
    m.dispose();
  });
});
