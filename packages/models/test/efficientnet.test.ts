/**
 * EfficientNet-B1..B4 against torchvision 0.14: a reduced network scaled by B3's depth
 * multiplier in eval and in training mode (logits, every gradient, running statistics), the
 * stochastic-depth probability of every block, stochastic depth by its definition on a real
 * block, and the full-size key sets and parameter counts.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { setup } from '../../tensor/test/helpers.js';
import { Dropout, efficientnet, EfficientNet, EFFICIENTNET_VARIANTS, MBConv, type EfficientNetConfig, type EfficientNetVariant } from '../src/index.js';
import { expectMatchesFixture, fixtureExtra, fullSizeKeys, loadFixture } from './efficientnet-mobilenet-fixture.js';

beforeAll(setup);

const fromFixture = (name: string): EfficientNet => new EfficientNet(JSON.parse(loadFixture(name).metadata.config!) as EfficientNetConfig);

describe('EfficientNet against torchvision (reduced: a quarter of the width, depth x1.4)', () => {
  for (const name of ['efficientnet_scaled', 'efficientnet_scaled_train']) {
    it(`${name}: logits and every parameter gradient to 1e-4`, async () => {
      const model = fromFixture(name);
      try {
        await expectMatchesFixture(name, model);
      } finally {
        model.dispose();
      }
    });
  }

  it('gives each block torchvision\'s stochastic-depth probability (0.2 x block index / blocks)', () => {
    const model = fromFixture('efficientnet_scaled');
    try {
      const probs = [...model.namedModules()].map(([, m]) => m).filter((m): m is MBConv => m instanceof MBConv).map((m) => m.stochasticDepth.p);
      const want = fixtureExtra().efficientnet_scaled!.stochasticDepth!;
      expect(probs.length).toBe(want.length);
      probs.forEach((p, i) => expect(p).toBeCloseTo(want[i]!, 12));
    } finally {
      model.dispose();
    }
  });
});

describe('stochastic depth in an MBConv', () => {
  it('drops the residual branch of whole samples with probability p in training, scales the kept by 1/(1-p), and is off in eval', async () => {
    const p = 0.5;
    const block = new MBConv({ expandRatio: 2, kernel: 3, stride: 1, inputChannels: 8, outChannels: 8, stochasticDepthProb: p });
    try {
      const n = 64;
      const x = A.randn([n, 8, 5, 5]);
      const rowSize = 8 * 5 * 5;
      const rows = (d: ArrayLike<number>): Float32Array[] => Array.from({ length: n }, (_, i) => Float32Array.from({ length: rowSize }, (_, j) => d[i * rowSize + j]!));
      const xs = rows(await x.data());
      for (const training of [true, false]) {
        block.train(training);
        // In training the branch uses batch statistics, which the dropped rows do not change.
        const branch = rows(await A.noGrad(() => block.block.forward(x)).data());
        A.manualSeed(11);
        const out = rows(await A.noGrad(() => block.forward(x)).data());
        A.manualSeed(11);
        expect(rows(await A.noGrad(() => block.forward(x)).data())).toEqual(out);
        let kept = 0;
        for (let i = 0; i < n; i++) {
          const dropped = out[i]!.every((v, j) => Math.abs(v - xs[i]![j]!) < 1e-6);
          const scale = training ? 1 / (1 - p) : 1;
          const whole = out[i]!.every((v, j) => Math.abs(v - (xs[i]![j]! + scale * branch[i]![j]!)) < 1e-4 * (1 + Math.abs(v)));
          expect(dropped || whole, `sample ${i} is either x or x + branch / (1 - p)`).toBe(true);
          if (whole && !dropped) kept++;
        }
        if (training) {
          // Binomial(64, 0.5): outside [16, 48] has probability below 1e-4.
          expect(kept).toBeGreaterThan(16);
          expect(kept).toBeLessThan(48);
        } else {
          expect(kept).toBe(n);
        }
      }
    } finally {
      block.dispose();
    }
  });
});

describe('EfficientNet-B1..B4 at full size', () => {
  it('has torchvision\'s state dict keys, shapes, order and parameter count', () => {
    const full = fullSizeKeys();
    for (const variant of ['b1', 'b2', 'b3', 'b4'] as EfficientNetVariant[]) {
      const want = full[`efficientnet_${variant}`]!;
      const m = efficientnet(variant);
      try {
        expect([...m.stateDict()].map(([k, t]) => [k, [...t.shape]]), variant).toEqual(want.keys);
        expect(m.numParameters(), variant).toBe(want.parameters);
        expect((m.classifier.layers[0] as Dropout).p).toBe(EFFICIENTNET_VARIANTS[variant].dropout);
      } finally {
        m.dispose();
      }
    }
  }, 60_000);

  it('rejects an unknown variant and non-positive multipliers', () => {
    expect(() => efficientnet('b9' as EfficientNetVariant)).toThrow(/variant must be one of b0, b1, b2, b3, b4, got "b9"/);
    expect(() => new EfficientNet({ widthMult: 0 })).toThrow(/widthMult and depthMult must be positive, got 0 and 1/);
  });
});
