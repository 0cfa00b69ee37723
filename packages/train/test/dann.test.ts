/** Deep CORAL's loss and gradients against PyTorch (scripts/adapt_fixtures.py); Ganin's
 * schedule; DANN and CORAL trained through the Trainer on labelled source and unlabelled,
 * shifted target batches; on text, both domains' padded sentences run with their attention masks. */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { BertForSequenceClassification, parseSafetensors } from '@tl/models';
import { coral, coralLoss, dann, dannLambda, DataLoader, DomainClassifier, TensorDataset, Trainer, type Batch, type TrainableModel } from '../src/index.js';
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

  it('on text, source and target sentences of different lengths run as one batch with their attention masks', async () => {
    A.manualSeed(5);
    const bert = new BertForSequenceClassification({
      vocab_size: 20, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16, max_position_embeddings: 6,
      hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, num_labels: 2, initializer_range: 0.5,
    });
    /** n sentences of 6 token slots, 2 to 5 of them real, the rest padding (id 0, mask 0). */
    const sentences = (n: number, first: number, withMask = true, T = 6): TensorDataset => {
      const lengths = Array.from({ length: n }, (_, i) => Math.min(2 + ((i + first) % 4), T));
      const ids = lengths.map((len, i) => Int32Array.from({ length: T }, (_, t) => (t < len ? 1 + ((first + 3 * i + t) % 19) : 0)));
      const masks = lengths.map((len) => Int32Array.from({ length: T }, (_, t) => (t < len ? 1 : 0)));
      return new TensorDataset(ids, lengths.map((_, i) => i % 2), [T], `text${n}-${first}-${T}`, ['a', 'b'], withMask ? masks : undefined);
    };
    const first = async (ds: TensorDataset): Promise<Batch> => (await new DataLoader(ds, { batchSize: ds.length, shuffle: false }).epoch(0).next()).value as Batch;
    const [source, target] = [await first(sentences(4, 0)), await first(sentences(3, 7))];
    const seen: A.Tensor[] = [];
    /** The domain classifier sees the features of both domains (the reversal is the identity forward). */
    class Recording extends DomainClassifier {
      override forward(features: A.Tensor): A.Tensor {
        seen.push(A.keep(A.noGrad(() => A.mul(features, 1))));
        return super.forward(features);
      }
    }
    const model = bert as unknown as TrainableModel;
    const ctx = { model, cached: false, forward: (b: Batch) => model.forward(b.x, b.mask ?? undefined), log: () => {} };
    const objective = dann({ target: sentences(3, 7), domainClassifier: new Recording(8, 4) });
    const [masked, unmaskedSource] = A.tidy(() => A.noGrad(() => [
      A.cat([bert.forwardFeatures(source.x, source.mask), bert.forwardFeatures(target.x, target.mask)], 0), bert.forwardFeatures(source.x),
    ]));
    const want = Float64Array.from(await masked!.data());
    A.tidy(() => objective.trainStep(ctx, source, { target }, { step: 0, totalSteps: 2 }));
    expect(seen).toHaveLength(1);
    await expectClose(seen[0]!, { shape: [7, 8], data: want }, 1e-5, 1e-6);
    // Without their masks the padded sentences would give other features: the masks mattered.
    const plain = await unmaskedSource!.data();
    expect(Math.max(...plain.map((v, i) => Math.abs(v - want[i]!)))).toBeGreaterThan(1e-2);
    const unmasked = await first(sentences(3, 7, false));
    expect(() => A.tidy(() => objective.trainStep(ctx, source, { target: unmasked }, { step: 1, totalSteps: 2 }))).toThrow('domain adaptation: the source batches carry an attention mask and the target batches do not; build both data sets the same way');
    const longer = await first(sentences(3, 7, true, 5));
    expect(() => A.tidy(() => objective.trainStep(ctx, source, { target: longer }, { step: 1, totalSteps: 2 }))).toThrow('domain adaptation runs source and target as one batch: source samples are [6] but target samples [5] (text: tokenize both to the same maxLength)');
    for (const b of [source, target, unmasked, longer]) b.dispose();
    for (const t of [masked!, unmaskedSource!, ...seen]) t.dispose();
    objective.dispose();
    bert.dispose();
  });
});
