import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { BatchNorm2d, DenseNet, EfficientNet, lora, MobileNetV2, MobileNetV3, type Module, ResNet, setBatchNormFolding, SqueezeExcitation } from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

type Net = Module & { forward(x: Tensor): Tensor };

/** Running statistics and affine parameters far from their initial values, so folding them is
 * not the identity. */
function randomiseNorms(m: Module, seed: number): void {
  let s = seed;
  for (const [, layer] of m.namedModules()) {
    if (!(layer instanceof BatchNorm2d)) continue;
    const n = layer.numFeatures;
    A.tidy(() => {
      A.assign(layer.runningMean, A.randn([n], { seed: s++ }));
      A.assign(layer.runningVar, A.rand([n], { low: 0.5, high: 2, seed: s++ }));
      A.assign(layer.weight!, A.rand([n], { low: 0.5, high: 1.5, seed: s++ }));
      A.assign(layer.bias!, A.randn([n], { seed: s++ }));
    });
  }
}

/** The forward with batch norms folded and with every layer run on its own. */
async function bothWays(f: () => Tensor): Promise<[Float32Array, Float32Array]> {
  const folded = (await f().data()) as Float32Array;
  setBatchNormFolding(false);
  try {
    return [folded, (await f().data()) as Float32Array];
  } finally {
    setBatchNormFolding(true);
  }
}

/** The labels of the kernels `work` dispatches. */
function dispatchedLabels(work: () => void): string[] {
  const eng = A.engine();
  const dispatch = (Object.getPrototypeOf(eng) as A.Engine).dispatch;
  const labels: string[] = [];
  (eng as unknown as { dispatch: A.Engine['dispatch'] }).dispatch = function (this: A.Engine, d: A.Dispatch) {
    labels.push(d.label ?? '');
    dispatch.call(this, d);
  };
  try {
    A.tidy(work);
  } finally {
    delete (eng as unknown as { dispatch?: unknown }).dispatch;
  }
  return labels;
}

function expectSame([folded, plain]: [Float32Array, Float32Array], rtol = 1e-4): void {
  const scale = Math.max(...plain.map(Math.abs));
  let worst = 0;
  for (let i = 0; i < plain.length; i++) worst = Math.max(worst, Math.abs(folded[i]! - plain[i]!));
  expect(worst / scale).toBeLessThan(rtol);
}

const nets: [string, () => Net][] = [
  ['ResNet (basic blocks)', () => new ResNet({ block: 'basic', layers: [1, 1, 1, 1], widths: [8, 16, 16, 32], numClasses: 5 })],
  ['ResNet (bottlenecks)', () => new ResNet({ block: 'bottleneck', layers: [1, 1, 1, 1], widths: [4, 8, 8, 8], numClasses: 5 })],
  ['MobileNetV2', () => new MobileNetV2({ widthMult: 0.25, numClasses: 5 })],
  ['EfficientNet', () => new EfficientNet({ widthMult: 0.25, depthMult: 0.25, numClasses: 5 })],
  ['DenseNet (conv1, norm2, relu2 of each dense layer)', () => new DenseNet({ growthRate: 4, blockConfig: [2, 2], numInitFeatures: 8, bnSize: 2, numClasses: 5 })],
  ['MobileNetV3 (hardswish, hardsigmoid)', () => new MobileNetV3({ arch: 'small', widthMult: 0.25, numClasses: 5 })],
];

describe('batch norm folded into the convolution before it', () => {
  for (const [name, make] of nets) {
    it(`${name}: evaluation outputs equal the layer-by-layer ones`, async () => {
      const model = make();
      randomiseNorms(model, 1);
      model.eval();
      const x = A.randn([2, 3, 32, 32], { seed: 9 });
      expectSame(await bothWays(() => A.noGrad(() => model.forward(x))));
      const folded = dispatchedLabels(() => A.noGrad(() => model.forward(x)));
      setBatchNormFolding(false);
      const plain = dispatchedLabels(() => A.noGrad(() => model.forward(x)));
      setBatchNormFolding(true);
      const norms = (labels: string[]): number => labels.filter((l) => /batch ?norm/i.test(l)).length;
      expect(norms(plain)).toBeGreaterThan(0);
      // DenseNet folds the norm2 of its four dense layers; its other batch norms come before
      // a convolution or none (norm1, the transition's, norm5) or run through its own loop (norm0).
      if (name.startsWith('DenseNet')) expect(norms(folded)).toBe(norms(plain) - 4);
      else expect(norms(folded)).toBe(0);
      // Each folded batch norm's kernel goes, and so do the fused activations'.
      expect(folded.length).toBeLessThan(plain.length - (norms(plain) - norms(folded)));
      model.dispose();
    });
  }

  it('applies squeeze-excitation\'s gate in the projection convolution that follows it', async () => {
    for (const make of [() => new EfficientNet({ widthMult: 0.25, depthMult: 0.25, numClasses: 5 }), () => new MobileNetV3({ arch: 'small', widthMult: 0.25, numClasses: 5 })]) {
      const model = make();
      randomiseNorms(model, 3);
      model.eval();
      const gates = [...model.namedModules()].filter(([, m]) => m instanceof SqueezeExcitation).length;
      expect(gates).toBeGreaterThan(0);
      const x = A.randn([2, 3, 32, 32], { seed: 10 });
      expectSame(await bothWays(() => A.noGrad(() => model.forward(x))));
      const muls = (labels: string[]): number => labels.filter((l) => l === 'mul').length;
      const folded = dispatchedLabels(() => A.noGrad(() => model.forward(x)));
      setBatchNormFolding(false);
      const plain = dispatchedLabels(() => A.noGrad(() => model.forward(x)));
      setBatchNormFolding(true);
      // Each gate is a pass of its own unfolded; folded, the projection applies it as it loads
      // its input, except on planes its vec4 walk cannot read (the 1x1 planes here).
      expect(muls(plain)).toBeGreaterThanOrEqual(gates);
      expect(muls(folded)).toBeLessThan(muls(plain));
      model.dispose();
    }
  });

  it('recomputes the fold when a statistic, a parameter or the whole state changes', async () => {
    const model = make0();
    randomiseNorms(model, 2);
    model.eval();
    const x = A.randn([2, 3, 32, 32], { seed: 10 });
    const run = (): Tensor => A.noGrad(() => model.forward(x));
    const first = (await run().data()) as Float32Array;
    A.noGrad(() => A.assign(model.bn1.runningMean, A.add(model.bn1.runningMean, 0.5)));
    const afterStat = await bothWays(run);
    expectSame(afterStat);
    expect(afterStat[0]).not.toEqual(first);
    A.noGrad(() => A.assign(model.conv1.weight, A.mul(model.conv1.weight, 1.5)));
    expectSame(await bothWays(run));
    const other = make0();
    randomiseNorms(other, 3);
    model.loadStateDict(other.stateDict());
    other.dispose();
    expectSame(await bothWays(run));
    model.dispose();
  });

  it('keeps batch statistics in training mode, and a frozen backbone trains its head as without folding', async () => {
    const model = make0();
    randomiseNorms(model, 4);
    model.freeze().unfreeze('fc').train();
    const grads = async (): Promise<Float32Array> => {
      A.zeroGrad(model.parameters());
      const loss = A.crossEntropy(model.forward(A.randn([2, 3, 32, 32], { seed: 11 })), A.tensor([1, 3], { dtype: 'int32' }));
      A.backward(loss);
      return (await model.fc.weight.grad!.data()) as Float32Array;
    };
    const folded = await grads();
    setBatchNormFolding(false);
    const plain = await grads().finally(() => setBatchNormFolding(true));
    expectSame([folded, plain]);

    model.unfreeze();
    const before = (await model.bn1.runningMean.data()) as Float32Array;
    A.noGrad(() => model.forward(A.randn([2, 3, 32, 32], { seed: 12 })));
    expect((await model.bn1.runningMean.data()) as Float32Array).not.toEqual(before);
    model.dispose();
  });

  it('passes the input gradient through folded frozen layers', async () => {
    const model = make0();
    randomiseNorms(model, 6);
    model.freeze().eval();
    const inputGrad = async (): Promise<Float32Array> => {
      const x = A.randn([1, 3, 32, 32], { seed: 13 });
      x.requiresGrad = true;
      A.backward(A.sum(model.forward(x)));
      return (await x.grad!.data()) as Float32Array;
    };
    expectSame(await bothWays0(inputGrad));
    model.dispose();
  });

  it('leaves a convolution LoRA adapts to its own forward', async () => {
    const model = make0();
    randomiseNorms(model, 7);
    const adapted = lora(model, { targetModules: ['layer1.0.conv1'], r: 2 });
    A.noGrad(() => {
      for (const [name, p] of model.namedParameters()) if (name.includes('lora_B')) A.assign(p, A.randn(p.shape, { seed: 14 }));
    });
    model.eval();
    const x = A.randn([2, 3, 32, 32], { seed: 15 });
    expectSame(await bothWays(() => A.noGrad(() => model.forward(x))));
    expect(adapted.adapterNames()).toEqual(['default']);
    model.dispose();
  });

  it('folds into a half model, and frees its folded tensors with the model', async () => {
    await A.sync();
    const before = A.memory().liveTensors;
    const model = make0();
    randomiseNorms(model, 8);
    model.eval();
    const x = A.randn([2, 3, 32, 32], { seed: 16 });
    const read = async (f: () => Tensor): Promise<Float32Array> => {
      const y = A.tidy(() => A.noGrad(f));
      const data = (await y.data()) as Float32Array;
      y.dispose();
      return data;
    };
    const want = await read(() => model.forward(x));
    if (A.engine().hasF16) {
      model.half();
      expectSame([await read(() => A.cast(model.forward(A.cast(x, 'float16')), 'float32')), want], 2e-2);
    }
    model.dispose();
    x.dispose();
    expect(A.memory().liveTensors).toBe(before);
  });
});

const make0 = (): ResNet => nets[0]![1]() as ResNet;

async function bothWays0(f: () => Promise<Float32Array>): Promise<[Float32Array, Float32Array]> {
  const folded = await f();
  setBatchNormFolding(false);
  try {
    return [folded, await f()];
  } finally {
    setBatchNormFolding(true);
  }
}
