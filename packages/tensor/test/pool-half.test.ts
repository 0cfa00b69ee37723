import { beforeAll, describe, expect, it } from 'vitest';
import {
  adaptiveAvgPool2d, adaptiveAvgPool2dBackward, avgPool2d, avgPool2dBackward, avgPool2dOutputShape, cpuAdaptiveAvgPool2d,
  cpuAdaptiveAvgPool2dBackward, cpuAvgPool2d, cpuAvgPool2dBackward, cpuMaxPool2d, cpuMaxPool2dBackward, engine, host, maxPool2d,
  maxPool2dBackward, maxPool2dOutputShape, maxPool2dWithIndices, type AvgPool2dOptions, type HostTensor, type IntPair,
  type MaxPool2dOptions, type Tensor,
} from '../src/node.js';
import { expectClose, halfHost, randHost, setup, toGpu, toHalf } from './helpers.js';

beforeAll(setup);


/** A float16 output against the float64 reference rounded to half: window sums are f32, so
 * the two roundings may differ by one half ulp (2^-10 relative). */
async function expectHalf(got: Tensor, want: HostTensor, rtol = 2 ** -10, atol = 1e-5): Promise<void> {
  expect(got.dtype).toBe('float16');
  await expectClose(got, halfHost(want), rtol, atol);
}

const maxCases: [string, number[], MaxPool2dOptions][] = [
  ['3x3 stride 2 pad 1 (ResNet)', [2, 3, 17, 13], { kernelSize: 3, stride: 2, padding: 1 }],
  ['2x2 on an odd size', [3, 1, 9, 7], { kernelSize: 2 }],
  ['one pixel', [1, 3, 1, 1], { kernelSize: 1 }],
  ['ceilMode with padding', [1, 3, 8, 11], { kernelSize: 3, stride: 2, padding: 1, ceilMode: true }],
  ['dilation 2', [1, 2, 12, 11], { kernelSize: 3, stride: 1, padding: 2, dilation: 2 }],
  ['129 channels, rectangular kernel and stride', [2, 129, 7, 12], { kernelSize: [2, 3], stride: [1, 2], padding: [1, 1] }],
];

describe('maxPool2d on float16', () => {
  for (const [name, shape, opts] of maxCases) {
    it(name, async () => {
      // Rounding to half makes ties, which must resolve to the first maximum as on the host.
      const x = halfHost(randHost(shape, 1));
      const want = cpuMaxPool2d(x, opts);
      const { values, indices } = maxPool2dWithIndices(toHalf(x), opts);
      await expectHalf(values, want.values, 0, 0);
      expect(indices.dtype).toBe('int32');
      expect([...(await indices.data())]).toEqual([...want.indices.data]);
      await expectHalf(maxPool2d(toHalf(x), opts), want.values, 0, 0);
      const gy = halfHost(randHost(maxPool2dOutputShape(shape, opts), 2));
      await expectHalf(maxPool2dBackward(toHalf(gy), indices, shape, opts), cpuMaxPool2dBackward(gy, want.indices, shape));
    });
  }

  it('reads a non-contiguous input through its strides, and lets NaN win', async () => {
    const x = halfHost(randHost([2, 3, 8, 6], 4));
    x.data[5] = NaN;
    const xv = toHalf(x).transpose(2, 3);
    const xt = host([2, 3, 6, 8], [...(await xv.contiguous().data())]);
    const opts = { kernelSize: 3, stride: 2, padding: 1 };
    const want = cpuMaxPool2d(xt, opts);
    expect(want.values.data.some(Number.isNaN)).toBe(true);
    await expectHalf(maxPool2d(xv, opts), want.values, 0, 0);
  });

  it('takes a float32 gradient with float16 activations (the gradient keeps its dtype)', async () => {
    const shape = [2, 3, 9, 9];
    const opts = { kernelSize: 3, stride: 2 };
    const x = halfHost(randHost(shape, 5));
    const { indices } = maxPool2dWithIndices(toHalf(x), opts);
    const gy = randHost(maxPool2dOutputShape(shape, opts), 6);
    const dx = maxPool2dBackward(toGpu(gy), indices, shape, opts);
    expect(dx.dtype).toBe('float32');
    await expectClose(dx, cpuMaxPool2dBackward(gy, cpuMaxPool2d(x, opts).indices, shape), 1e-6, 1e-6);
  });
});

const avgCases: [string, number[], AvgPool2dOptions][] = [
  ['3x3 stride 2 pad 1, padding counted', [2, 3, 17, 9], { kernelSize: 3, stride: 2, padding: 1 }],
  ['3x3 stride 2 pad 1, padding not counted', [2, 3, 11, 9], { kernelSize: 3, stride: 2, padding: 1, countIncludePad: false }],
  ['ceilMode, padding not counted', [1, 2, 10, 7], { kernelSize: 3, stride: 2, padding: 1, ceilMode: true, countIncludePad: false }],
  ['2x2 default stride, 129 channels', [3, 129, 8, 9], { kernelSize: 2 }],
  ['one pixel', [1, 3, 1, 1], { kernelSize: 1 }],
  ['divisorOverride, rectangular', [1, 2, 9, 8], { kernelSize: [3, 2], stride: [2, 1], padding: [1, 0], divisorOverride: 5 }],
];

describe('avgPool2d on float16', () => {
  for (const [name, shape, opts] of avgCases) {
    it(name, async () => {
      const x = halfHost(randHost(shape, 5));
      await expectHalf(avgPool2d(toHalf(x), opts), cpuAvgPool2d(x, opts));
      const gy = halfHost(randHost(avgPool2dOutputShape(shape, opts), 6));
      await expectHalf(avgPool2dBackward(toHalf(gy), shape, opts), cpuAvgPool2dBackward(gy, shape, opts));
    });
  }

  it('reads a non-contiguous input through its strides', async () => {
    const x = halfHost(randHost([2, 3, 8, 6], 7));
    const xv = toHalf(x).transpose(2, 3);
    const xt = host([2, 3, 6, 8], [...(await xv.contiguous().data())]);
    const opts = { kernelSize: 3, stride: 2, padding: 1 };
    await expectHalf(avgPool2d(xv, opts), cpuAvgPool2d(xt, opts));
  });
});

describe('adaptiveAvgPool2d on float16', () => {
  const cases: [number[], IntPair][] = [[[2, 3, 7, 9], 1], [[2, 129, 3, 3], 1], [[1, 4, 10, 7], [3, 4]], [[2, 2, 5, 3], [7, 6]], [[3, 17, 1, 1], 1]];
  for (const [shape, size] of cases) {
    it(`[${shape}] -> ${JSON.stringify(size)}`, async () => {
      const x = halfHost(randHost(shape, 7));
      const y = adaptiveAvgPool2d(toHalf(x), size);
      await expectHalf(y, cpuAdaptiveAvgPool2d(x, size));
      const gy = halfHost(randHost([...y.shape], 8));
      await expectHalf(adaptiveAvgPool2dBackward(toHalf(gy), shape), cpuAdaptiveAvgPool2dBackward(gy, shape));
    });
  }
});

describe('float16 pooling over the binding limit', () => {
  it('runs in runs of images, as float32 does, and equals the reference', async () => {
    const e = engine();
    const opts = { kernelSize: 2 };
    // 1200 halves (2400 bytes) fit 4 KB; 4800 halves do not, and split into runs whose first
    // element may sit mid-word.
    const small = halfHost(randHost([4, 3, 10, 10], 1));
    const sx = toHalf(small);
    const bigHost = halfHost(randHost([4, 3, 20, 20], 2));
    const big = toHalf(bigHost);
    const gyHost = halfHost(randHost([4, 3, 10, 10], 3));
    const bigGrad = toHalf(gyHost);
    const shape = [4, 3, 20, 20];
    const maxRef = cpuMaxPool2d(bigHost, opts);
    e.setBindingLimit(4096);
    try {
      await expectHalf(avgPool2d(sx, opts), cpuAvgPool2d(small, opts));
      await expectHalf(maxPool2d(sx, opts), cpuMaxPool2d(small, opts).values, 0, 0);
      const { values, indices } = maxPool2dWithIndices(big, opts);
      await expectHalf(values, maxRef.values, 0, 0);
      expect([...(await indices.data())]).toEqual([...maxRef.indices.data]);
      await expectHalf(avgPool2d(big, opts), cpuAvgPool2d(bigHost, opts));
      await expectHalf(adaptiveAvgPool2d(big, 1), cpuAdaptiveAvgPool2d(bigHost, 1));
      await expectHalf(maxPool2dBackward(bigGrad, indices, shape, opts), cpuMaxPool2dBackward(gyHost, maxRef.indices, shape));
      await expectHalf(avgPool2dBackward(bigGrad, shape, opts), cpuAvgPool2dBackward(gyHost, shape, opts));
      await expectHalf(adaptiveAvgPool2dBackward(toHalf(halfHost(randHost([4, 3, 1, 1], 4))), shape), cpuAdaptiveAvgPool2dBackward(halfHost(randHost([4, 3, 1, 1], 4)), shape));
    } finally {
      e.setBindingLimit(null);
    }
  });
});

describe('float16 pooling checks', () => {
  it('refuses int32 inputs and non-int32 indices by name', () => {
    const x = toHalf(halfHost(randHost([1, 1, 4, 4], 1)));
    const ix = toGpu(randHost([1, 1, 4, 4], 1), 'int32');
    expect(() => maxPool2d(ix, { kernelSize: 2 })).toThrow(/maxPool2d: input must be float32 or float16, got int32/);
    expect(() => maxPool2dBackward(x.narrow(2, 0, 2).narrow(3, 0, 2), x.narrow(2, 0, 2).narrow(3, 0, 2), [1, 1, 4, 4], { kernelSize: 2 }))
      .toThrow(/maxPool2dBackward: indices must be int32, got float16/);
  });
});
