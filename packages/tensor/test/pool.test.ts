import { beforeAll, describe, expect, it } from 'vitest';
import {
  adaptiveAvgPool2d, adaptiveAvgPool2dBackward, avgPool2d, avgPool2dBackward, avgPool2dOutputShape, cpuAdaptiveAvgPool2d,
  cpuAdaptiveAvgPool2dBackward, cpuAvgPool2d, cpuAvgPool2dBackward, cpuMaxPool2d, cpuMaxPool2dBackward, host, maxPool2d,
  maxPool2dBackward, maxPool2dOutputShape, maxPool2dWithIndices, type AvgPool2dOptions, type IntPair, type MaxPool2dOptions,
} from '../src/node.js';
import { expectClose, randHost, setup, toGpu } from './helpers.js';

beforeAll(setup);

const maxCases: [string, number[], MaxPool2dOptions][] = [
  ['3x3 stride 2 pad 1 (ResNet)', [2, 3, 17, 13], { kernelSize: 3, stride: 2, padding: 1 }],
  ['2x2, stride defaults to the kernel, odd size drops the edge', [1, 4, 9, 7], { kernelSize: 2 }],
  ['ceilMode keeps a partial last window', [2, 2, 9, 10], { kernelSize: 3, stride: 2, ceilMode: true }],
  ['ceilMode with padding', [1, 3, 8, 11], { kernelSize: 3, stride: 2, padding: 1, ceilMode: true }],
  ['dilation 2', [1, 2, 12, 11], { kernelSize: 3, stride: 1, padding: 2, dilation: 2 }],
  ['rectangular kernel and stride', [2, 2, 7, 12], { kernelSize: [2, 3], stride: [1, 2], padding: [1, 1] }],
];

describe('maxPool2d', () => {
  for (const [name, shape, opts] of maxCases) {
    it(name, async () => {
      const x = randHost(shape, 1);
      const want = cpuMaxPool2d(x, opts);
      const { values, indices } = maxPool2dWithIndices(toGpu(x), opts);
      await expectClose(values, want.values, 0, 0);
      expect([...(await indices.data())]).toEqual([...want.indices.data]);
      await expectClose(maxPool2d(toGpu(x), opts), want.values, 0, 0);
      const gy = randHost(maxPool2dOutputShape(shape, opts), 2);
      await expectClose(maxPool2dBackward(toGpu(gy), indices, shape, opts), cpuMaxPool2dBackward(gy, want.indices, shape), 1e-6, 1e-6);
    });
  }

  it('takes the first maximum on ties and sums overlapping windows in the backward', async () => {
    const x = host([1, 1, 4, 4], [1, 1, 0, 2, 1, 1, 2, 2, 0, 0, 0, 0, 3, 0, 0, 3]);
    const opts = { kernelSize: 2, stride: 1 };
    const want = cpuMaxPool2d(x, opts);
    const { values, indices } = maxPool2dWithIndices(toGpu(x), opts);
    expect([...(await indices.data())]).toEqual([...want.indices.data]);
    expect([...want.indices.data]).toEqual([0, 6, 3, 4, 6, 6, 12, 9, 15]);
    await expectClose(values, want.values, 0, 0);
    const gy = randHost([1, 1, 3, 3], 3);
    await expectClose(maxPool2dBackward(toGpu(gy), indices, x.shape, opts), cpuMaxPool2dBackward(gy, want.indices, x.shape), 1e-6, 1e-6);
  });

  it('reads a non-contiguous input through its strides', async () => {
    const x = randHost([2, 3, 8, 6], 4);
    const xv = toGpu(x).transpose(2, 3);
    const xt = await xv.contiguous().data();
    const opts = { kernelSize: 3, stride: 2, padding: 1 };
    await expectClose(maxPool2d(xv, opts), cpuMaxPool2d(host([2, 3, 6, 8], xt), opts).values, 0, 0);
  });

  it('rejects padding over half the kernel', () => {
    expect(() => maxPool2d(toGpu(randHost([1, 1, 5, 5], 1)), { kernelSize: 2, padding: 2 })).toThrow(/padding 2x2 must be at most half/);
  });
});

const avgCases: [string, number[], AvgPool2dOptions][] = [
  ['3x3 stride 2 pad 1, padding counted', [2, 3, 11, 9], { kernelSize: 3, stride: 2, padding: 1 }],
  ['3x3 stride 2 pad 1, padding not counted', [2, 3, 11, 9], { kernelSize: 3, stride: 2, padding: 1, countIncludePad: false }],
  ['ceilMode with padding (window clipped to the padded input)', [1, 2, 10, 7], { kernelSize: 3, stride: 2, padding: 1, ceilMode: true }],
  ['ceilMode, padding not counted', [1, 2, 10, 7], { kernelSize: 3, stride: 2, padding: 1, ceilMode: true, countIncludePad: false }],
  ['2x2 default stride', [3, 2, 8, 9], { kernelSize: 2 }],
  ['divisorOverride, rectangular', [1, 2, 9, 8], { kernelSize: [3, 2], stride: [2, 1], padding: [1, 0], divisorOverride: 5 }],
];

describe('avgPool2d', () => {
  for (const [name, shape, opts] of avgCases) {
    it(name, async () => {
      const x = randHost(shape, 5);
      await expectClose(avgPool2d(toGpu(x), opts), cpuAvgPool2d(x, opts), 1e-5, 1e-6);
      const gy = randHost(avgPool2dOutputShape(shape, opts), 6);
      await expectClose(avgPool2dBackward(toGpu(gy), shape, opts), cpuAvgPool2dBackward(gy, shape, opts), 1e-5, 1e-6);
    });
  }
});

describe('adaptiveAvgPool2d', () => {
  const cases: [number[], IntPair][] = [[[2, 3, 7, 9], 1], [[2, 40, 3, 3], 1], [[1, 4, 10, 7], [3, 4]], [[2, 2, 5, 3], [7, 6]], [[1, 2, 4, 4], [2, 2]]];
  for (const [shape, size] of cases) {
    it(`[${shape}] -> ${JSON.stringify(size)}`, async () => {
      const x = randHost(shape, 7);
      const y = adaptiveAvgPool2d(toGpu(x), size);
      await expectClose(y, cpuAdaptiveAvgPool2d(x, size), 1e-5, 1e-6);
      const gy = randHost([...y.shape], 8);
      await expectClose(adaptiveAvgPool2dBackward(toGpu(gy), shape), cpuAdaptiveAvgPool2dBackward(gy, shape), 1e-5, 1e-6);
    });
  }
});
