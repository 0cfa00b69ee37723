import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '../src/index.js';
import { cpuCrossEntropy, cpuLogSoftmax, cpuSoftmax } from '../src/index.js';
import { expectClose, randHost, setup, toGpu } from '../../tensor/test/helpers.js';
import { parseSafetensors } from '../../models/src/index.js';
import { gradcheck } from './gradcheck.js';

beforeAll(setup);

const fixture = (name: string) => parseSafetensors(readFileSync(new URL(`../fixtures/${name}.safetensors`, import.meta.url)));

describe('softmax family backward', () => {
  it('softmax and logSoftmax over the last and a middle dim', async () => {
    for (const dim of [-1, 1]) {
      await gradcheck({ inputs: [randHost([3, 5, 4], 3, -3, 3)], gpu: ([x]) => A.softmax(x!, dim), cpu: ([x]) => cpuSoftmax(x!, dim) });
      await gradcheck({ inputs: [randHost([3, 5, 4], 4, -3, 3)], gpu: ([x]) => A.logSoftmax(x!, dim), cpu: ([x]) => cpuLogSoftmax(x!, dim) });
    }
  });
  it('cross-entropy with smoothing and ignoreIndex vs finite differences', async () => {
    const labels = [0, 3, 2, 1, 2, 4];
    await gradcheck({
      inputs: [randHost([6, 5], 5, -2, 2)],
      gpu: ([x]) => A.crossEntropy(x!, labels, { labelSmoothing: 0.1, ignoreIndex: 2 }).reshape(1),
      cpu: ([x]) => {
        const r = cpuCrossEntropy(x!, labels, { labelSmoothing: 0.1, ignoreIndex: 2 });
        return { shape: [1], data: r.data };
      },
    });
  });
  for (const name of ['smoothing', 'ignore', 'weighted', 'sum']) {
    it(`cross-entropy matches PyTorch (${name})`, async () => {
      const f = fixture(`cross_entropy_${name}`);
      const cfg = JSON.parse(f.metadata.config!);
      const logits = A.tensor(f.get('logits').data as Float32Array, { shape: f.get('logits').shape });
      logits.requiresGrad = true;
      const labels = A.tensor(f.get('labels').data as Int32Array, { shape: f.get('labels').shape, dtype: 'int32' });
      const weight = cfg.weight ? A.tensor(f.get('weight').data as Float32Array) : undefined;
      const loss = A.crossEntropy(logits, labels, {
        labelSmoothing: cfg.label_smoothing, ignoreIndex: cfg.ignore_index, reduction: cfg.reduction, weight,
      });
      expect(await loss.item()).toBeCloseTo(f.get('loss').data[0]!, 5);
      A.backward(loss);
      const want = f.get('grad.logits');
      await expectClose(logits.grad!, { shape: want.shape, data: Float64Array.from(want.data) }, 1e-4, 1e-6);
    });
  }
  it('host labels out of range are rejected with the value', () => {
    const x = toGpu(randHost([2, 3], 1));
    expect(() => A.crossEntropy(x, [0, 3])).toThrow(/target 3 .* out of bounds/);
  });
});
