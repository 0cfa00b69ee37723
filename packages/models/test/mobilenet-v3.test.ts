/**
 * MobileNetV3 Large and Small against torchvision 0.14: reduced networks (half width, a subset
 * of each setting's blocks covering no expansion, ReLU and hard-swish, squeeze-excitation or
 * not, kernels 3 and 5) in eval and training mode, the full-size keys and parameter counts,
 * and hard-swish / hard-sigmoid on NaN and ±Infinity as PyTorch answers.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { setup } from '../../tensor/test/helpers.js';
import { MobileNetV3, type MobileNetV3Config } from '../src/index.js';
import { expectMatchesFixture, fullSizeKeys, loadFixture } from './efficientnet-mobilenet-fixture.js';

beforeAll(setup);

describe('MobileNetV3 against torchvision (reduced: half width, a subset of the blocks)', () => {
  for (const name of ['mobilenet_v3_large', 'mobilenet_v3_large_train', 'mobilenet_v3_small', 'mobilenet_v3_small_train']) {
    it(`${name}: logits and every parameter gradient to 1e-4`, async () => {
      const model = new MobileNetV3(JSON.parse(loadFixture(name).metadata.config!) as MobileNetV3Config);
      try {
        await expectMatchesFixture(name, model);
        // The head is classifier.3; forwardFeatures ends at the hidden hard-swish layer.
        model.eval();
        const x = A.randn([2, 3, 40, 40]);
        const features = A.noGrad(() => model.forwardFeatures(x));
        expect(features.shape).toEqual([2, model.numFeatures]);
        model.resetClassifier(3);
        expect(A.noGrad(() => model.forward(x)).shape).toEqual([2, 3]);
        const order = model.blockOrder();
        for (const b of order) model.freeze(b);
        expect(model.numParameters({ trainable: true })).toBe(0);
        model.unfreeze(order[order.length - 1]!);
        expect(model.namedParameters({ trainable: true }).map(([k]) => k)).toEqual(['classifier.3.weight', 'classifier.3.bias']);
      } finally {
        model.dispose();
      }
    });
  }
});

describe('MobileNetV3 Large and Small at full size', () => {
  it('have torchvision\'s state dict keys, shapes, order and parameter counts', () => {
    const full = fullSizeKeys();
    for (const arch of ['large', 'small'] as const) {
      const want = full[`mobilenet_v3_${arch}`]!;
      const m = new MobileNetV3({ arch });
      try {
        expect([...m.stateDict()].map(([k, t]) => [k, [...t.shape]]), arch).toEqual(want.keys);
        expect(m.numParameters(), arch).toBe(want.parameters);
      } finally {
        m.dispose();
      }
    }
  });

  it('rejects an unknown arch, a bad width and a malformed block', () => {
    expect(() => new MobileNetV3({ arch: 'medium' as 'large' })).toThrow(/arch must be 'large' or 'small', got "medium"/);
    expect(() => new MobileNetV3({ widthMult: -1 })).toThrow(/widthMult must be positive, got -1/);
    expect(() => new MobileNetV3({ blocks: [[16, 3, 16, 16, false, 'RE', 3]] })).toThrow(/stride must be 1 or 2, got 3/);
  });
});

describe('hard-swish and hard-sigmoid', () => {
  it('keep NaN, take ±Infinity as PyTorch does (hardswish(-inf) = -inf * 0 = NaN), and give its gradients at the kinks', async () => {
    const nan = Number.NaN;
    const x = A.tensor([nan, Infinity, -Infinity, -3, -1.5, 0, 3, 4]);
    // torch.nn.functional.hardswish / hardsigmoid of the same values.
    expect([...(await A.hardswish(x).data())]).toEqual([nan, Infinity, nan, -0, -0.375, 0, 3, 4]);
    expect([...(await A.hardsigmoid(x).data())]).toEqual([nan, 1, 0, 0, 0.25, 0.5, 1, 1]);
    // PyTorch's backward: hardswish' is x/3 + 1/2 on [-3, 3] (so -0.5 at -3), 1 above, and a NaN
    // input passes the gradient through; hardsigmoid' is 1/6 strictly inside (-3, 3).
    const xs = A.tensor([-3, -1.5, 0, 3, 4, nan, -4]);
    xs.requiresGrad = true;
    A.backward(A.sum(A.hardswish(xs)));
    expect([...(await xs.grad!.data())]).toEqual([-0.5, 0, 0.5, 1.5, 1, 1, 0]);
    const xt = A.tensor([-3, -1.5, 0, 3, nan]);
    xt.requiresGrad = true;
    A.backward(A.sum(A.hardsigmoid(xt)));
    expect([...(await xt.grad!.data())]).toEqual([0, 1 / 6, 1 / 6, 0, 0].map(Math.fround));
  });
});
