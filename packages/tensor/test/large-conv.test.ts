import { describe, expect, it } from 'vitest';
import {
  adaptiveAvgPool2d, adaptiveAvgPool2dBackward, avgPool2d, avgPool2dBackward, batchNorm, batchNormTrain, conv2d, conv2dBackwardInput,
  conv2dBackwardWeight, cpuAdaptiveAvgPool2d, cpuAdaptiveAvgPool2dBackward, cpuAvgPool2d, cpuAvgPool2dBackward, cpuBatchNorm, cpuConv2d,
  cpuConv2dBackwardInput, cpuConv2dBackwardWeight, cpuMaxPool2d, cpuMaxPool2dBackward, maxPool2d, maxPool2dBackward,
  maxPool2dWithIndices, type Conv2dGradOptions,
} from '../src/node.js';
import { expectClose, randHost, toGpu, withBindingLimit } from './helpers.js';

/** The lowered binding limit: 960 float32 elements per run of images. Every shape below
 * puts 2 images in a run (3 or 4 runs, the last one partial). */
const LIMIT = 4096;

withBindingLimit(LIMIT);

const dense: Conv2dGradOptions = { padding: 1 };
const depthwise: Conv2dGradOptions = { stride: 2, padding: 1, groups: 4 };

describe('NCHW ops over the storage binding limit (lowered to 4 KB) run on runs of images', () => {
  it('conv2d with bias and activation, dense and depthwise', async () => {
    const x = randHost([5, 3, 9, 9], 1);
    const w = randHost([4, 3, 3, 3], 2);
    const bias = randHost([4], 3);
    const got = conv2d(toGpu(x), toGpu(w), { ...dense, bias: toGpu(bias), activation: 'relu' });
    await expectClose(got, cpuConv2d(x, w, { ...dense, bias, activation: 'relu' }), 1e-5, 1e-5);
    const xd = randHost([7, 4, 9, 9], 4);
    const wd = randHost([4, 1, 3, 3], 5);
    await expectClose(conv2d(toGpu(xd), toGpu(wd), depthwise), cpuConv2d(xd, wd, depthwise), 1e-5, 1e-5);
  });

  it('conv2dBackwardInput with gradOut or gradIn over the limit', async () => {
    const gy = randHost([5, 4, 9, 9], 6);
    const w = randHost([4, 3, 3, 3], 7);
    const shape = [5, 3, 9, 9];
    await expectClose(conv2dBackwardInput(toGpu(gy), toGpu(w), shape, dense), cpuConv2dBackwardInput(gy, w, shape, dense), 1e-5, 1e-5);
    const gd = randHost([7, 4, 5, 5], 8);
    const wd = randHost([4, 1, 3, 3], 9);
    const sd = [7, 4, 9, 9];
    await expectClose(conv2dBackwardInput(toGpu(gd), toGpu(wd), sd, depthwise), cpuConv2dBackwardInput(gd, wd, sd, depthwise), 1e-5, 1e-5);
  });

  it('conv2dBackwardWeight sums the gradients of each run', async () => {
    const x = randHost([5, 3, 9, 9], 10);
    const gy = randHost([5, 4, 9, 9], 11);
    const ws = [4, 3, 3, 3];
    await expectClose(conv2dBackwardWeight(toGpu(x), toGpu(gy), ws, dense), cpuConv2dBackwardWeight(x, gy, ws, dense), 1e-5, 1e-5);
    const xd = randHost([7, 4, 9, 9], 12);
    const gd = randHost([7, 4, 5, 5], 13);
    const wd = [4, 1, 3, 3];
    await expectClose(conv2dBackwardWeight(toGpu(xd), toGpu(gd), wd, depthwise), cpuConv2dBackwardWeight(xd, gd, wd, depthwise), 1e-5, 1e-5);
  });

  it('max pooling with indices, and its backward', async () => {
    const x = randHost([5, 4, 10, 10], 14);
    const opts = { kernelSize: 3, stride: 2, padding: 1 };
    const want = cpuMaxPool2d(x, opts);
    const { values, indices } = maxPool2dWithIndices(toGpu(x), opts);
    await expectClose(values, want.values, 0, 0);
    expect([...(await indices.data())]).toEqual([...want.indices.data]);
    await expectClose(maxPool2d(toGpu(x), opts), want.values, 0, 0);
    const gy = randHost([5, 4, 5, 5], 15);
    await expectClose(maxPool2dBackward(toGpu(gy), indices, x.shape, opts), cpuMaxPool2dBackward(gy, want.indices, x.shape), 1e-6, 1e-6);
  });

  it('average and adaptive average pooling, and their backwards', async () => {
    const x = randHost([5, 4, 10, 10], 16);
    const opts = { kernelSize: 3, stride: 2, padding: 1, countIncludePad: false };
    await expectClose(avgPool2d(toGpu(x), opts), cpuAvgPool2d(x, opts), 1e-6, 1e-6);
    const gy = randHost([5, 4, 5, 5], 17);
    await expectClose(avgPool2dBackward(toGpu(gy), x.shape, opts), cpuAvgPool2dBackward(gy, x.shape, opts), 1e-6, 1e-6);
    await expectClose(adaptiveAvgPool2d(toGpu(x), [3, 4]), cpuAdaptiveAvgPool2d(x, [3, 4]), 1e-6, 1e-6);
    const ga = randHost([5, 4, 3, 4], 18);
    await expectClose(adaptiveAvgPool2dBackward(toGpu(ga), x.shape), cpuAdaptiveAvgPool2dBackward(ga, x.shape), 1e-6, 1e-6);
  });

  it('batch norm in eval mode', async () => {
    const x = randHost([5, 4, 10, 10], 19);
    const [rm, rv, w, b] = [randHost([4], 20), randHost([4], 21, 0.5, 2), randHost([4], 22), randHost([4], 23)];
    const got = batchNorm(toGpu(x), toGpu(rm), toGpu(rv), toGpu(w), toGpu(b));
    await expectClose(got, cpuBatchNorm(x, rm, rv, w, b), 1e-5, 1e-5);
  });

  it('a single image over the limit, and training-form batch norm, are clear errors', () => {
    const x = toGpu(randHost([2, 4, 16, 16], 24));
    expect(() => conv2d(x, toGpu(randHost([2, 4, 1, 1], 25))))
      .toThrow(/conv2d: a tensor of 8192 bytes exceeds the adapter's storage binding limit of 4096 bytes .*one image of it \(4096 bytes\) is over the limit/);
    expect(() => maxPool2d(x, { kernelSize: 2 })).toThrow(/maxPool2d: a tensor of 8192 bytes exceeds .*one image of it \(4096 bytes\)/);
    expect(() => conv2dBackwardWeight(x, toGpu(randHost([2, 2, 16, 16], 26)), [2, 4, 1, 1]))
      .toThrow(/conv2dBackwardWeight: a tensor of 8192 bytes exceeds .*one image of it \(4096 bytes\)/);
    expect(() => batchNormTrain(toGpu(randHost([5, 4, 10, 10], 27)))).toThrow(/batchNormTrain: a tensor of 8000 bytes exceeds .* 4096 bytes/);
  });
});
