/**
 * A model with an auxiliary classifier (Inception v3's AuxLogits) trains on torchvision's
 * reference loss, loss(main) + 0.4 * loss(aux), and is judged on its main logits alone: the
 * reduced Inception of @tl/models' fixtures against PyTorch's loss on the same batch.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { Inception3, parseSafetensors, type Inception3Config } from '@tl/models';
import { setup } from '../../tensor/test/helpers.js';
import { sgd, TensorDataset, Trainer } from '../src/index.js';

beforeAll(setup);

describe('auxiliary classifier loss', () => {
  it("a training step's loss is PyTorch's loss(main) + 0.4 * loss(aux); evaluation uses the main logits", async () => {
    const f = parseSafetensors(readFileSync(new URL('../../models/fixtures/vision_inception_train.safetensors', import.meta.url)));
    const model = new Inception3(JSON.parse(f.metadata.config!) as Inception3Config);
    try {
      model.loadStateDict(new Map(f.keys().filter((k) => k.startsWith('sd.')).map((k) => [k.slice(3), f.get(k)])));
      const x = f.get('x');
      const [n, c, h, w] = x.shape as [number, number, number, number];
      const per = c * h * w;
      const inputs = Array.from({ length: n }, (_, i) => Float32Array.from(x.data.subarray(i * per, (i + 1) * per)));
      const data = new TensorDataset(inputs, [...f.get('y').data], [c, h, w], 'inception-fixture');
      const losses: number[] = [];
      // lr 0: the step computes the loss and its gradients and leaves the weights as they are.
      const trainer = new Trainer(model, {
        optimizer: sgd({ lr: 0 }), epochs: 1, batchSize: n, seed: 0, logger: () => {},
        onEvent: (e) => { if (e.type === 'step') losses.push(e.loss); },
      });
      await trainer.fit(data);
      const [want, main] = [f.get('loss').data[0]!, f.get('loss_main').data[0]!];
      expect(losses).toHaveLength(1);
      expect(Math.abs(losses[0]! - want)).toBeLessThan(1e-4 * Math.abs(want));
      // The auxiliary term is there, at 0.4.
      expect(Math.abs(want - main - 0.4 * f.get('loss_aux').data[0]!)).toBeLessThan(1e-5 * want);
      expect(Math.abs(losses[0]! - main)).toBeGreaterThan(0.1);

      // Evaluation: the main logits alone, in eval mode.
      const result = await trainer.evaluate(data);
      model.eval();
      const main0 = A.noGrad(() => A.crossEntropy(model.forward(A.tensor(x.data, { shape: x.shape })), A.tensor(Int32Array.from(f.get('y').data), { shape: [n], dtype: 'int32' })));
      expect(result.loss).toBeCloseTo(await main0.item(), 4);
    } finally {
      model.dispose();
    }
  });
});
