import { beforeAll, describe, expect, it } from 'vitest';
import {
  conv2d, conv2dBackwardInput, conv2dBackwardWeight, conv2dOutputShape, cpuConv2d, cpuConv2dBackwardInput,
  cpuConv2dBackwardWeight, forceWeightSharing, WEIGHT_SHARING, type Conv2dGradOptions, type ConvActivation, type Tensor,
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

/** Every pass of `c` (forward with a bias and `activation`) against the float64 reference. */
async function checkPasses(c: Case, activation?: ConvActivation): Promise<void> {
  const x = randHost(c.x, 1);
  const w = randHost(c.w, 2);
  const b = randHost([c.w[0]!], 3);
  const gy = randHost(conv2dOutputShape(c.x, c.w, c.opts), 4);
  const xg = toGpu(x);
  const wg = toGpu(w);
  await expectClose(conv2d(xg, wg, { ...c.opts, bias: toGpu(b), activation }), cpuConv2d(x, w, { ...c.opts, bias: b, activation }), 1e-4, 1e-5);
  await expectClose(conv2dBackwardInput(toGpu(gy), wg, c.x, c.opts), cpuConv2dBackwardInput(gy, w, c.x, c.opts), 1e-4, 1e-5);
  await expectClose(conv2dBackwardWeight(xg, toGpu(gy), c.w, c.opts), cpuConv2dBackwardWeight(x, gy, c.w, c.opts), 1e-4, 1e-4);
}

describe('conv2d and its gradients against the float64 reference', () => {
  for (const c of cases) it(c.name, () => checkPasses(c));

  // The direct kernel with each way of sharing its weights across lanes (weight-sharing.ts).
  for (const sharing of WEIGHT_SHARING) {
    it(`the direct kernel with weights shared by ${sharing}: a strided stem, grouped channels, several channel blocks`, async () => {
      forceWeightSharing(sharing);
      try {
        for (const c of [cases.find((k) => k.name.startsWith('7x7 stride 2'))!, cases.find((k) => k.name === 'groups 2')!]) await checkPasses(c, 'relu');
        await checkPasses({ name: 'blocks', x: [2, 19, 9, 7], w: [21, 19, 3, 3], opts: { padding: 1, stride: 2 } });
      } finally {
        forceWeightSharing(null);
      }
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

  it('scales each output channel before the bias (a folded batch norm) in every kernel', async () => {
    const scaled: Case[] = [
      { name: 'general, several channel blocks', x: [2, 19, 9, 7], w: [21, 19, 3, 3], opts: { padding: 1 } },
      { name: 'depthwise, vec4 rows', x: [2, 6, 8, 12], w: [6, 1, 3, 3], opts: { groups: 6, padding: 1 } },
      { name: 'depthwise, stride 2, odd width', x: [1, 5, 9, 11], w: [5, 1, 3, 3], opts: { groups: 5, padding: 1, stride: 2 } },
    ];
    for (const c of scaled) {
      const x = randHost(c.x, 14);
      const w = randHost(c.w, 15);
      const b = randHost([c.w[0]!], 16);
      const sc = randHost([c.w[0]!], 17);
      for (const activation of [undefined, 'relu6', 'silu', 'hardswish'] as const) {
        const y = conv2d(toGpu(x), toGpu(w), { ...c.opts, scale: toGpu(sc), bias: toGpu(b), activation });
        await expectClose(y, cpuConv2d(x, w, { ...c.opts, scale: sc, bias: b, activation }), 1e-4, 1e-5);
      }
      await expectClose(conv2d(toGpu(x), toGpu(w), { ...c.opts, scale: toGpu(sc) }), cpuConv2d(x, w, { ...c.opts, scale: sc }), 1e-4, 1e-5);
    }
  });

  it('rejects mismatched shapes with messages naming the sizes', () => {
    const x = toGpu(randHost([1, 4, 5, 5], 1));
    expect(() => conv2d(x, toGpu(randHost([2, 3, 3, 3], 2)))).toThrow(/4 channels.*groups=1 expects 3/);
    expect(() => conv2d(x, toGpu(randHost([3, 2, 3, 3], 2)), { groups: 2 })).toThrow(/3 output channels are not divisible by groups=2/);
    expect(() => conv2d(x, toGpu(randHost([2, 4, 7, 7], 2)))).toThrow(/smaller than the dilated kernel/);
    expect(() => conv2d(x, toGpu(randHost([2, 4, 3, 3], 2)), { stride: 0 })).toThrow(/stride 0/);
    expect(() => conv2d(x, toGpu(randHost([2, 4, 3, 3], 2)), { bias: toGpu(randHost([3], 1)) })).toThrow(/bias must have shape \[2\]/);
    expect(() => conv2d(x, toGpu(randHost([2, 4, 3, 3], 2)), { scale: toGpu(randHost([4], 1)) })).toThrow(/scale must have shape \[2\], got \[4\]/);
    expect(() => conv2dBackwardInput(toGpu(randHost([1, 2, 4, 4], 1)), toGpu(randHost([2, 4, 3, 3], 2)), [1, 4, 5, 5])).toThrow(/gives? an output of \[1, 2, 3, 3\]/);
  });
});

/**
 * Each output plane reading one source plane (depthwise, a channel multiplier, one input
 * channel) walks column strips of 8 with the source rows under the kernel kept in registers,
 * reading vec4s where rows are 16-byte aligned (width a multiple of 4) and single elements
 * otherwise; small problems split strips into blocks of rows, and a workgroup's lanes span
 * channels where a channel has fewer blocks than lanes. The cases cover both kinds of rows,
 * partial strips, row blocks, lanes across channels, kernels too large to bake, and strided
 * views.
 */
const planeCases: (Case & { activation?: ConvActivation })[] = [
  { name: 'width 1', x: [2, 3, 5, 1], w: [3, 1, 3, 3], opts: { groups: 3, padding: 1 } },
  { name: 'width 3, no padding', x: [1, 2, 4, 3], w: [2, 1, 3, 3], opts: { groups: 2 } },
  { name: 'width 17, dilation 2, padding 2', x: [1, 3, 9, 17], w: [3, 1, 3, 3], opts: { groups: 3, padding: 2, dilation: 2 } },
  { name: 'width 57, stride 2', x: [1, 2, 6, 57], w: [2, 1, 3, 3], opts: { groups: 2, padding: 1, stride: 2 } },
  { name: 'width 129, relu6', x: [1, 2, 3, 129], w: [2, 1, 3, 3], opts: { groups: 2, padding: 1 }, activation: 'relu6' },
  { name: 'vec4 rows, partial last strip, silu', x: [2, 3, 11, 20], w: [3, 1, 3, 3], opts: { groups: 3, padding: 1 }, activation: 'silu' },
  { name: 'vec4 rows, row blocks', x: [1, 2, 37, 8], w: [2, 1, 3, 3], opts: { groups: 2, padding: 1 } },
  { name: 'vec4 rows, 5x5, dilation 2, stride 2', x: [1, 2, 13, 24], w: [2, 1, 5, 5], opts: { groups: 2, padding: 4, dilation: 2, stride: 2 } },
  { name: 'vec4 rows, 1x3 kernel, stride [2, 1]', x: [1, 2, 9, 16], w: [2, 1, 1, 3], opts: { groups: 2, padding: [0, 1], stride: [2, 1] } },
  { name: 'lanes across 37 channels (7x7 planes), 5x5, silu', x: [2, 37, 7, 7], w: [37, 1, 5, 5], opts: { groups: 37, padding: 2 }, activation: 'silu' },
  { name: 'channel multiplier 3', x: [2, 2, 9, 12], w: [6, 1, 3, 3], opts: { groups: 2, padding: 1 } },
  { name: 'one input channel, groups 1', x: [2, 1, 10, 12], w: [4, 1, 3, 3], opts: { padding: 1 } },
  { name: 'one output channel', x: [1, 3, 7, 12], w: [1, 3, 3, 3], opts: { padding: 1 } },
  { name: '9x9 (taps not baked)', x: [1, 2, 12, 16], w: [2, 1, 9, 9], opts: { groups: 2, padding: 4 } },
  { name: '9x9, multiplier 2 (general kernel)', x: [1, 2, 10, 9], w: [4, 1, 9, 9], opts: { groups: 2, padding: 4 } },
  { name: '2x2 stride [3, 1]: rows no tap reaches', x: [1, 3, 8, 8], w: [3, 1, 2, 2], opts: { groups: 3, stride: [3, 1] } },
];

/** The values of a view, as a host tensor. */
async function hostOf(t: Tensor): Promise<{ shape: number[]; data: Float64Array }> {
  return { shape: [...t.shape], data: Float64Array.from(await t.contiguous().data()) };
}

describe('one-plane convolutions (depthwise) against the float64 reference', () => {
  for (const c of planeCases) it(c.name, () => checkPasses(c, c.activation));

  it('reads strided views: a channel slice (aligned), a column slice and a transpose', async () => {
    const opts = { groups: 3, padding: 1 };
    const w = randHost([3, 1, 3, 3], 20);
    const wg = toGpu(w);
    const views = [
      toGpu(randHost([2, 4, 6, 8], 21)).slice(1, 1, 4),
      toGpu(randHost([2, 3, 6, 9], 22)).slice(3, 1, 9),
      toGpu(randHost([2, 3, 8, 6], 23)).transpose(2, 3),
    ];
    for (const xv of views) {
      expect(xv.isContiguous).toBe(false);
      const x = await hostOf(xv);
      const gyWide = toGpu(randHost([2, 5, 6, 8], 24));
      const gv = gyWide.slice(1, 2, 5);
      const gy = await hostOf(gv);
      await expectClose(conv2d(xv, wg, opts), cpuConv2d(x, w, opts), 1e-4, 1e-5);
      await expectClose(conv2dBackwardInput(gv, wg, x.shape, opts), cpuConv2dBackwardInput(gy, w, x.shape, opts), 1e-4, 1e-5);
      await expectClose(conv2dBackwardWeight(xv, gv, w.shape, opts), cpuConv2dBackwardWeight(x, gy, w.shape, opts), 1e-4, 1e-4);
    }
  });
});
