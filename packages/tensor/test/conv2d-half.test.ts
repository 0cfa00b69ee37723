import { beforeAll, describe, expect, it } from 'vitest';
import {
  conv2d, conv2dBackwardInput, conv2dBackwardWeight, conv2dGeometry, conv2dOutputShape, cpuConv2d, cpuConv2dBackwardInput,
  cpuConv2dBackwardWeight, engine, host, type Conv2dGradOptions, type ConvActivation, type HostTensor, type Tensor,
} from '../src/node.js';
import { expectClose, halfHost, randHost, setup, toGpu, toHalf } from './helpers.js';

beforeAll(setup);


/**
 * A float16 result against the float64 reference of the rounded inputs, rounded once: the
 * kernels accumulate in f32 and round on store, so they may land one half ulp (2^-10
 * relative) away where the f32 sum sits near a rounding boundary; `terms` (products summed
 * per output) bounds the f32 accumulation error, which decides results that cancel to near 0.
 */
async function expectHalf(got: Tensor, want: HostTensor, terms: number): Promise<void> {
  expect(got.dtype).toBe('float16');
  await expectClose(got, halfHost(want), 2 ** -10, terms * 2 ** -22);
}

interface Case {
  name: string;
  x: number[];
  w: number[];
  opts: Conv2dGradOptions;
  activation?: ConvActivation;
}

const cases: Case[] = [
  { name: 'one input channel, 7x9, batch 2 (plane kernel)', x: [2, 1, 7, 9], w: [3, 1, 3, 3], opts: { padding: 1 } },
  { name: '3 -> 17 channels, 7x9, pad 1', x: [2, 3, 7, 9], w: [17, 3, 3, 3], opts: { padding: 1 } },
  { name: '17 -> 5 channels, stride 2, pad 1', x: [3, 17, 7, 9], w: [5, 17, 3, 3], opts: { stride: 2, padding: 1 } },
  { name: 'dilation 2, asymmetric padding, relu', x: [2, 3, 9, 7], w: [4, 3, 3, 3], opts: { dilation: 2, padding: [2, 1] }, activation: 'relu' },
  { name: 'groups 3', x: [2, 6, 7, 9], w: [9, 2, 3, 3], opts: { groups: 3, padding: 1 } },
  { name: 'depthwise, 17 channels, silu', x: [2, 17, 7, 9], w: [17, 1, 3, 3], opts: { groups: 17, padding: 1 }, activation: 'silu' },
  { name: 'depthwise, vec4 rows', x: [2, 4, 9, 16], w: [4, 1, 3, 3], opts: { groups: 4, padding: 1 } },
  { name: 'depthwise, multiplier 2, stride 2', x: [1, 3, 9, 11], w: [6, 1, 3, 3], opts: { groups: 3, stride: 2, padding: 1 } },
  { name: 'depthwise 9x9 (taps not baked)', x: [1, 2, 10, 12], w: [2, 1, 9, 9], opts: { groups: 2, padding: 4 } },
  { name: '1x1, 17 channels', x: [3, 17, 7, 9], w: [5, 17, 1, 1], opts: {} },
  { name: '1x1 stride 2', x: [2, 3, 7, 9], w: [4, 3, 1, 1], opts: { stride: 2 } },
  { name: '7x7 stride 2 pad 3', x: [1, 3, 17, 15], w: [8, 3, 7, 7], opts: { stride: 2, padding: 3 } },
  { name: 'one output row: the weight gradient in one pass, stored as float16', x: [1, 3, 1, 9], w: [4, 3, 1, 3], opts: { padding: [0, 1] } },
  { name: 'depthwise, one strip: the weight gradient in one pass', x: [1, 2, 5, 7], w: [2, 1, 3, 3], opts: { groups: 2, padding: 1 } },
];

/** Products summed per output of each pass: forward, input gradient, weight gradient. */
function terms(c: Case): [number, number, number] {
  const g = conv2dGeometry(c.x, c.w, c.opts);
  const taps = g.kernelH * g.kernelW;
  return [(g.inChannels / g.groups) * taps, (g.outChannels / g.groups) * taps, g.batch * g.outH * g.outW];
}

async function checkPasses(c: Case): Promise<void> {
  const x = halfHost(randHost(c.x, 1));
  const w = halfHost(randHost(c.w, 2));
  const b = halfHost(randHost([c.w[0]!], 3));
  const gy = halfHost(randHost(conv2dOutputShape(c.x, c.w, c.opts), 4));
  const [tf, ti, tw] = terms(c);
  const act = c.activation;
  await expectHalf(conv2d(toHalf(x), toHalf(w), { ...c.opts, bias: toHalf(b), activation: act }), cpuConv2d(x, w, { ...c.opts, bias: b, activation: act }), tf);
  await expectHalf(conv2dBackwardInput(toHalf(gy), toHalf(w), c.x, c.opts), cpuConv2dBackwardInput(gy, w, c.x, c.opts), ti);
  await expectHalf(conv2dBackwardWeight(toHalf(x), toHalf(gy), c.w, c.opts), cpuConv2dBackwardWeight(x, gy, c.w, c.opts), tw);
}

describe('float16 conv2d and its gradients (f16 storage, f32 accumulation, one rounding)', () => {
  for (const c of cases) it(c.name, () => checkPasses(c));

  it('scales each output channel in float16 too (general and depthwise kernels)', async () => {
    for (const c of [cases[1]!, { name: 'depthwise', x: [2, 6, 7, 8], w: [6, 1, 3, 3], opts: { groups: 6, padding: 1 } }]) {
      const x = halfHost(randHost(c.x, 5));
      const w = halfHost(randHost(c.w, 6));
      const b = halfHost(randHost([c.w[0]!], 7));
      const sc = halfHost(randHost([c.w[0]!], 8));
      const got = conv2d(toHalf(x), toHalf(w), { ...c.opts, bias: toHalf(b), scale: toHalf(sc), activation: 'relu' });
      await expectHalf(got, cpuConv2d(x, w, { ...c.opts, bias: b, scale: sc, activation: 'relu' }), terms(c)[0]);
    }
  });

  it('reads non-contiguous views of x and gradOut through their strides', async () => {
    const opts = { padding: 1, stride: 2 };
    const xt = halfHost(randHost([2, 5, 9, 7], 8)); // stored as [N, C, W, H]
    const x = host([2, 5, 7, 9]);
    for (let n = 0; n < 2; n++) for (let c = 0; c < 5; c++) for (let h = 0; h < 7; h++) for (let v = 0; v < 9; v++) {
      x.data[((n * 5 + c) * 7 + h) * 9 + v] = xt.data[((n * 5 + c) * 9 + v) * 7 + h]!;
    }
    const w = halfHost(randHost([4, 5, 3, 3], 9));
    const xv = toHalf(xt).transpose(2, 3);
    expect(xv.isContiguous).toBe(false);
    await expectHalf(conv2d(xv, toHalf(w), opts), cpuConv2d(x, w, opts), 45);
    const gyWide = halfHost(randHost([2, 7, 4, 5], 10)); // gradOut is channels 1..4 (an odd offset)
    const gy = { shape: [2, 4, 4, 5], data: gyWide.data.filter((_, i) => Math.floor(i / 20) % 7 >= 1 && Math.floor(i / 20) % 7 < 5) };
    const gv = toHalf(gyWide).slice(1, 1, 5);
    await expectHalf(conv2dBackwardInput(gv, toHalf(w), x.shape, opts), cpuConv2dBackwardInput(gy, w, x.shape, opts), 36);
    await expectHalf(conv2dBackwardWeight(xv, gv, w.shape, opts), cpuConv2dBackwardWeight(x, gy, w.shape, opts), 40);
  });

  it('reads depthwise views at an offset with vec4 rows (a channel slice)', async () => {
    const opts = { groups: 3, padding: 1 };
    const xWide = halfHost(randHost([2, 4, 6, 8], 11));
    const x = { shape: [2, 3, 6, 8], data: xWide.data.filter((_, i) => Math.floor(i / 48) % 4 >= 1) };
    const w = halfHost(randHost([3, 1, 3, 3], 12));
    const xv = toHalf(xWide).slice(1, 1, 4);
    await expectHalf(conv2d(xv, toHalf(w), opts), cpuConv2d(x, w, opts), 9);
    const gy = halfHost(randHost([2, 3, 6, 8], 13));
    await expectHalf(conv2dBackwardWeight(xv, toHalf(gy), w.shape, opts), cpuConv2dBackwardWeight(x, gy, w.shape, opts), 96);
  });

  it('reads a weight and a bias that are views at an offset (slices of stacked ones), in either dtype', async () => {
    const opts = { padding: 1 };
    const x = halfHost(randHost([2, 3, 7, 9], 27));
    const stacked = halfHost(randHost([5, 3, 3, 3], 28));
    const w = { shape: [4, 3, 3, 3], data: stacked.data.slice(27) };
    const biases = halfHost(randHost([5], 29));
    const b = { shape: [4], data: biases.data.slice(1) };
    const want = cpuConv2d(x, w, { ...opts, bias: b });
    await expectHalf(conv2d(toHalf(x), toHalf(stacked).narrow(0, 1, 4), { ...opts, bias: toHalf(biases).narrow(0, 1, 4) }), want, 27);
    await expectClose(conv2d(toGpu(x), toGpu(stacked).narrow(0, 1, 4), { ...opts, bias: toGpu(biases).narrow(0, 1, 4) }), want, 1e-4, 1e-5);
    const gy = halfHost(randHost([2, 4, 7, 9], 30));
    await expectHalf(conv2dBackwardInput(toHalf(gy), toHalf(stacked).narrow(0, 1, 4), x.shape, opts), cpuConv2dBackwardInput(gy, w, x.shape, opts), 36);
  });

  it('takes one dtype for every operand, naming the mismatch and the way out', () => {
    const x = randHost([1, 2, 5, 5], 14);
    const w = randHost([3, 2, 3, 3], 15);
    const gy = randHost([1, 3, 3, 3], 16);
    const way = /cast with \.float\(\) or \.half\(\), or run under autocast\(\)/;
    expect(() => conv2d(toHalf(x), toGpu(w))).toThrow(/conv2d: input is float16 but weight is float32/);
    expect(() => conv2d(toHalf(x), toGpu(w))).toThrow(way);
    expect(() => conv2d(toGpu(x), toGpu(w), { bias: toHalf(randHost([3], 17)) })).toThrow(/conv2d: input is float32 but bias is float16/);
    expect(() => conv2dBackwardInput(toHalf(gy), toGpu(w), x.shape)).toThrow(/conv2dBackwardInput: gradOut is float16 but weight is float32/);
    expect(() => conv2dBackwardWeight(toGpu(x), toHalf(gy), w.shape)).toThrow(/conv2dBackwardWeight: input is float32 but gradOut is float16/);
    expect(() => conv2d(toGpu(x, 'int32'), toGpu(w))).toThrow(/conv2d: input must be float32 or float16, got int32/);
  });
});

describe('float16 conv2d over the storage binding limit (lowered to 4 KB)', () => {
  // 960 elements a run: 3 images of the largest tensor, so runs of x start at image 3 *
  // 189 elements, mid-word, and are bound by range rather than copied.
  const dense: Conv2dGradOptions = { padding: 1 };
  const depthwise: Conv2dGradOptions = { groups: 4, padding: 1 };

  it('runs every pass on runs of images, summing weight gradients in float32', async () => {
    const x = halfHost(randHost([11, 3, 7, 9], 20));
    const w = halfHost(randHost([4, 3, 3, 3], 21));
    const b = halfHost(randHost([4], 22));
    const gy = halfHost(randHost([11, 4, 7, 9], 23));
    const xd = halfHost(randHost([9, 4, 8, 8], 24));
    const wd = halfHost(randHost([4, 1, 3, 3], 25));
    const gd = halfHost(randHost([9, 4, 8, 8], 26));
    engine().setBindingLimit(4096);
    try {
      const xg = toHalf(x);
      expect(xg.fitsBinding).toBe(false);
      await expectHalf(conv2d(xg, toHalf(w), { ...dense, bias: toHalf(b) }), cpuConv2d(x, w, { ...dense, bias: b }), 27);
      await expectHalf(conv2dBackwardInput(toHalf(gy), toHalf(w), x.shape, dense), cpuConv2dBackwardInput(gy, w, x.shape, dense), 36);
      await expectHalf(conv2dBackwardWeight(xg, toHalf(gy), w.shape, dense), cpuConv2dBackwardWeight(x, gy, w.shape, dense), 11 * 63);
      const xdg = toHalf(xd);
      await expectHalf(conv2d(xdg, toHalf(wd), depthwise), cpuConv2d(xd, wd, depthwise), 9);
      await expectHalf(conv2dBackwardInput(toHalf(gd), toHalf(wd), xd.shape, depthwise), cpuConv2dBackwardInput(gd, wd, xd.shape, depthwise), 9);
      await expectHalf(conv2dBackwardWeight(xdg, toHalf(gd), wd.shape, depthwise), cpuConv2dBackwardWeight(xd, gd, wd.shape, depthwise), 9 * 64);
    } finally {
      engine().setBindingLimit(null);
    }
  });
});
