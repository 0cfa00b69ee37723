import { beforeAll, describe, expect, it } from 'vitest';
import {
  conv2d, conv2dBackwardInput, conv2dBackwardWeight, conv2dOutputShape, cpuConv2d, cpuConv2dBackwardInput,
  cpuConv2dBackwardWeight, type Conv2dGradOptions,
} from '../src/node.js';
import { expectClose, randHost, setup, toGpu } from './helpers.js';

beforeAll(setup);

interface Case {
  name: string;
  x: number[];
  w: number[];
  opts: Conv2dGradOptions;
}

const cases: Case[] = [
  { name: 'odd sizes, 3x3 pad 1', x: [2, 3, 17, 13], w: [5, 3, 3, 3], opts: { padding: 1 } },
  { name: 'stride 2, pad 1, even input', x: [2, 16, 10, 12], w: [12, 16, 3, 3], opts: { stride: 2, padding: 1 } },
  { name: 'stride 2, odd input (output_padding ambiguity)', x: [1, 4, 9, 11], w: [6, 4, 3, 3], opts: { stride: 2, padding: 1 } },
  { name: 'dilation 2, asymmetric padding', x: [2, 3, 11, 10], w: [4, 3, 3, 3], opts: { dilation: 2, padding: [2, 1] } },
  { name: 'groups 2', x: [2, 6, 8, 7], w: [10, 3, 3, 3], opts: { groups: 2, padding: 1 } },
  { name: 'depthwise', x: [2, 7, 10, 9], w: [7, 1, 3, 3], opts: { groups: 7, padding: 1 } },
  { name: 'depthwise, multiplier 2, stride 2', x: [1, 5, 12, 13], w: [10, 1, 3, 3], opts: { groups: 5, stride: 2, padding: 1 } },
  { name: '1x1', x: [3, 17, 5, 6], w: [9, 17, 1, 1], opts: {} },
  { name: '1x1 stride 2 (downsample)', x: [2, 8, 7, 7], w: [16, 8, 1, 1], opts: { stride: 2 } },
  { name: '7x7 stride 2 pad 3 (ResNet stem)', x: [1, 3, 33, 29], w: [16, 3, 7, 7], opts: { stride: 2, padding: 3 } },
  { name: 'rectangular kernel, stride [1, 3], no padding', x: [1, 3, 8, 17], w: [3, 3, 2, 5], opts: { stride: [1, 3] } },
  { name: 'stride larger than kernel', x: [1, 2, 9, 9], w: [3, 2, 2, 2], opts: { stride: 3 } },
];

describe('conv2d and its gradients against the float64 reference', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const x = randHost(c.x, 1);
      const w = randHost(c.w, 2);
      const b = randHost([c.w[0]!], 3);
      const gy = randHost(conv2dOutputShape(c.x, c.w, c.opts), 4);
      const xg = toGpu(x);
      const wg = toGpu(w);
      await expectClose(conv2d(xg, wg, { ...c.opts, bias: toGpu(b) }), cpuConv2d(x, w, { ...c.opts, bias: b }), 1e-4, 1e-5);
      await expectClose(conv2dBackwardInput(toGpu(gy), wg, c.x, c.opts), cpuConv2dBackwardInput(gy, w, c.x, c.opts), 1e-4, 1e-5);
      await expectClose(conv2dBackwardWeight(xg, toGpu(gy), c.w, c.opts), cpuConv2dBackwardWeight(x, gy, c.w, c.opts), 1e-4, 1e-4);
    });
  }

  it('sizes that span several channel and pixel blocks', async () => {
    const opts = { padding: 1 };
    const x = randHost([2, 19, 23, 21], 5);
    const w = randHost([21, 19, 3, 3], 6);
    const gy = randHost([2, 21, 23, 21], 7);
    await expectClose(conv2d(toGpu(x), toGpu(w), opts), cpuConv2d(x, w, opts), 1e-4, 1e-5);
    await expectClose(conv2dBackwardInput(toGpu(gy), toGpu(w), x.shape, opts), cpuConv2dBackwardInput(gy, w, x.shape, opts), 1e-4, 1e-5);
    await expectClose(conv2dBackwardWeight(toGpu(x), toGpu(gy), w.shape, opts), cpuConv2dBackwardWeight(x, gy, w.shape, opts), 1e-4, 1e-4);
  });

  it('reads non-contiguous views of x and gradOut through their strides', async () => {
    const opts = { padding: 1, stride: 2 };
    const xt = randHost([2, 5, 11, 9], 8); // stored as [N, C, W, H]
    const x = { shape: [2, 5, 9, 11], data: new Float64Array(xt.data.length) };
    for (let n = 0; n < 2; n++) for (let c = 0; c < 5; c++) for (let h = 0; h < 9; h++) for (let w = 0; w < 11; w++) {
      x.data[((n * 5 + c) * 9 + h) * 11 + w] = xt.data[((n * 5 + c) * 11 + w) * 9 + h]!;
    }
    const w = randHost([4, 5, 3, 3], 9);
    const xv = toGpu(xt).transpose(2, 3);
    expect(xv.isContiguous).toBe(false);
    await expectClose(conv2d(xv, toGpu(w), opts), cpuConv2d(x, w, opts), 1e-4, 1e-5);
    const gyWide = randHost([2, 8, 5, 6], 10); // gradOut is its first 4 channels
    const gy = { shape: [2, 4, 5, 6], data: gyWide.data.filter((_, i) => Math.floor(i / 30) % 8 < 4) };
    const gv = toGpu(gyWide).slice(1, 0, 4);
    await expectClose(conv2dBackwardInput(gv, toGpu(w), x.shape, opts), cpuConv2dBackwardInput(gy, w, x.shape, opts), 1e-4, 1e-5);
    await expectClose(conv2dBackwardWeight(xv, gv, w.shape, opts), cpuConv2dBackwardWeight(x, gy, w.shape, opts), 1e-4, 1e-4);
  });

  it('fuses bias and activation into the epilogue', async () => {
    const x = randHost([2, 8, 6, 5], 11);
    const w = randHost([8, 8, 3, 3], 12);
    const b = randHost([8], 13);
    for (const activation of ['relu', 'silu'] as const) {
      const y = conv2d(toGpu(x), toGpu(w), { padding: 1, bias: toGpu(b), activation });
      await expectClose(y, cpuConv2d(x, w, { padding: 1, bias: b, activation }), 1e-4, 1e-5);
    }
  });

  it('rejects mismatched shapes with messages naming the sizes', () => {
    const x = toGpu(randHost([1, 4, 5, 5], 1));
    expect(() => conv2d(x, toGpu(randHost([2, 3, 3, 3], 2)))).toThrow(/4 channels.*groups=1 expects 3/);
    expect(() => conv2d(x, toGpu(randHost([3, 2, 3, 3], 2)), { groups: 2 })).toThrow(/3 output channels are not divisible by groups=2/);
    expect(() => conv2d(x, toGpu(randHost([2, 4, 7, 7], 2)))).toThrow(/smaller than the dilated kernel/);
    expect(() => conv2d(x, toGpu(randHost([2, 4, 3, 3], 2)), { stride: 0 })).toThrow(/stride 0/);
    expect(() => conv2d(x, toGpu(randHost([2, 4, 3, 3], 2)), { bias: toGpu(randHost([3], 1)) })).toThrow(/bias must have shape \[2\]/);
    expect(() => conv2dBackwardInput(toGpu(randHost([1, 2, 4, 4], 1)), toGpu(randHost([2, 4, 3, 3], 2)), [1, 4, 5, 5])).toThrow(/gives? an output of \[1, 2, 3, 3\]/);
  });
});
