import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  conv2d, conv2dBackwardInput, conv2dBackwardWeight, cpuConv2d, cpuConv2dBackwardInput, cpuConv2dBackwardWeight,
  engine, forceWeightSharing, WEIGHT_SHARING, type Conv2dGradOptions, type WeightSharing, type Tensor,
} from '../src/node.js';
import { expectClose, halfHost, randHost, setup, toGpu, toHalf } from './helpers.js';

beforeAll(setup);

/** The pipeline keys of the dispatches `f` records. */
function keysOf(f: () => Tensor): { y: Tensor; keys: string[] } {
  const e = engine();
  const dispatch = e.dispatch.bind(e);
  const keys: string[] = [];
  e.dispatch = (d) => {
    keys.push(d.key ?? d.label ?? '');
    dispatch(d);
  };
  try {
    return { y: f(), keys };
  } finally {
    delete (e as { dispatch?: unknown }).dispatch;
  }
}

/** The weight sharing the tests of a describe block force. */
let variant: WeightSharing = 'lanes';

/** Asserts that `keys` is one dispatch of the pointwise kernel by `walk` (and the forced
 * sharing, except in the few walk, whose lanes share nothing), its key ending in `tail`
 * (dtype / epilogue operands / activation). */
function expectPointwise(keys: string[], walk: string, tail: string): void {
  expect(keys).toHaveLength(1);
  const v = walk === 'few' ? 'lanes' : variant;
  expect(keys[0]).toMatch(new RegExp(`^conv1x1/${walk}/${v}/\\d+x\\d+/${tail.replace(/[-/]/g, '\\$&')}$`));
}

interface Case {
  name: string;
  x: number[];
  w: number[];
  opts: Conv2dGradOptions;
  /** The walk the forward pass takes. */
  walk: 'vec' | 'flat' | 'few';
}

const cases: Case[] = [
  // 160 pixels a plane and 40 channels: several pixel and channel blocks, ragged at both ends.
  { name: 'vec4 planes, several blocks', x: [2, 24, 8, 20], w: [40, 24, 1, 1], opts: {}, walk: 'vec' },
  { name: '7x7 planes, pixels numbered across images', x: [3, 20, 7, 7], w: [18, 20, 1, 1], opts: {}, walk: 'flat' },
  // Squeeze-excitation's 1x1 planes: lanes over 4 channels each, 70 channels over 2 workgroups.
  { name: 'a few pixels: 1x1 planes', x: [2, 40, 1, 1], w: [70, 40, 1, 1], opts: {}, walk: 'few' },
  { name: 'a few pixels over several pixel blocks', x: [5, 9, 1, 3], w: [6, 9, 1, 1], opts: {}, walk: 'few' },
  { name: 'one channel in, one out', x: [2, 1, 4, 4], w: [1, 1, 1, 1], opts: {}, walk: 'vec' },
  { name: 'stride 2, odd sizes', x: [2, 8, 7, 9], w: [17, 8, 1, 1], opts: { stride: 2 }, walk: 'flat' },
  { name: 'stride [1, 3]', x: [1, 5, 6, 10], w: [6, 5, 1, 1], opts: { stride: [1, 3] }, walk: 'flat' },
];

for (const v of WEIGHT_SHARING) describe(`1x1 convolutions through the pointwise kernel (weights shared by ${v}), against the float64 reference`, () => {
  beforeAll(() => {
    variant = v;
    forceWeightSharing(v);
  });
  afterAll(() => forceWeightSharing(null));

  for (const c of cases) {
    it(c.name, async () => {
      const x = randHost(c.x, 1);
      const w = randHost(c.w, 2);
      const b = randHost([c.w[0]!], 3);
      const sc = randHost([c.w[0]!], 4);
      const { y, keys } = keysOf(() => conv2d(toGpu(x), toGpu(w), { ...c.opts, bias: toGpu(b), scale: toGpu(sc), activation: 'relu6' }));
      expectPointwise(keys, c.walk, 'f32/bs/relu6');
      await expectClose(y, cpuConv2d(x, w, { ...c.opts, bias: b, scale: sc, activation: 'relu6' }), 1e-5, 1e-5);
      const outShape = [c.x[0]!, c.w[0]!, ...y.shape.slice(2)];
      const gy = randHost(outShape, 5);
      const strided = c.opts.stride !== undefined;
      const gi = keysOf(() => conv2dBackwardInput(toGpu(gy), toGpu(w), c.x, c.opts));
      // A strided 1x1 convolution's input gradient is zero between the sampled pixels: the
      // general kernel writes those.
      if (!strided) expectPointwise(gi.keys, c.walk, 'f32//-');
      await expectClose(gi.y, cpuConv2dBackwardInput(gy, w, c.x, c.opts), 1e-5, 1e-5);
      await expectClose(conv2dBackwardWeight(toGpu(x), toGpu(gy), c.w, c.opts), cpuConv2dBackwardWeight(x, gy, c.w, c.opts), 1e-5, 1e-4);
    });
  }

  it('reads strided views: channel slices, a row slice at an odd offset, a transposed plane', async () => {
    const wide = randHost([2, 20, 4, 8], 10);
    const w = randHost([9, 12, 1, 1], 11);
    const pick = (c0: number): { shape: number[]; data: Float64Array } => ({
      shape: [2, 12, 4, 8],
      data: Float64Array.from(wide.data.filter((_, i) => {
        const c = Math.floor(i / 32) % 20;
        return c >= c0 && c < c0 + 12;
      })),
    });
    for (const [c0, walk] of [[4, 'vec'], [3, 'vec']] as const) {
      const { y, keys } = keysOf(() => conv2d(toGpu(wide).slice(1, c0, c0 + 12), toGpu(w)));
      expectPointwise(keys, walk, 'f32//-');
      await expectClose(y, cpuConv2d(pick(c0), w), 1e-5, 1e-5);
    }
    // Rows 1..4 of 5-row planes of 6 columns: contiguous planes of 24 pixels, but an offset of
    // 6 elements, which vec4s cannot start at.
    const rows = randHost([2, 12, 5, 6], 12);
    const rowsPick = { shape: [2, 12, 4, 6], data: Float64Array.from(rows.data.filter((_, i) => Math.floor(i / 6) % 5 >= 1)) };
    const o = keysOf(() => conv2d(toGpu(rows).slice(2, 1), toGpu(w)));
    expectPointwise(o.keys, 'flat', 'f32//-');
    await expectClose(o.y, cpuConv2d(rowsPick, w), 1e-5, 1e-5);
    const xt = randHost([2, 12, 8, 4], 14);
    const x = { shape: [2, 12, 4, 8], data: new Float64Array(xt.data.length) };
    for (let n = 0; n < 24; n++) for (let h = 0; h < 4; h++) for (let c = 0; c < 8; c++) x.data[(n * 4 + h) * 8 + c] = xt.data[(n * 8 + c) * 4 + h]!;
    const t = keysOf(() => conv2d(toGpu(xt).transpose(2, 3), toGpu(w)));
    expectPointwise(t.keys, 'flat', 'f32//-');
    await expectClose(t.y, cpuConv2d(x, w), 1e-5, 1e-5);
  });

  it('an input scale per image and channel (squeeze-excitation\'s gate) in every walk, and around other kernels', async () => {
    const scaleHost = (x: { shape: number[]; data: Float64Array }, g: { data: Float64Array }): { shape: number[]; data: Float64Array } => {
      const [n, c] = x.shape as [number, number];
      const plane = x.data.length / (n * c);
      return { shape: x.shape, data: x.data.map((v, i) => v * g.data[Math.floor(i / plane)]!) };
    };
    const walks: [number[], number[], string, Conv2dGradOptions][] = [
      [[2, 24, 4, 8], [20, 24, 1, 1], 'vec', {}],
      [[3, 20, 7, 7], [18, 20, 1, 1], 'flat', {}],
      [[2, 40, 1, 1], [70, 40, 1, 1], 'few', {}],
      [[2, 6, 9, 8], [5, 6, 3, 3], '', { padding: 1 }],
    ];
    for (const [xs, ws, walk, opts] of walks) {
      const x = randHost(xs, 18);
      const w = randHost(ws, 19);
      const b = randHost([ws[0]!], 20);
      const gate = randHost([xs[0]!, xs[1]!, 1, 1], 21, 0, 1);
      const want = cpuConv2d(scaleHost(x, gate), w, { ...opts, bias: b, activation: 'silu' });
      const { y, keys } = keysOf(() => conv2d(toGpu(x), toGpu(w), { ...opts, bias: toGpu(b), activation: 'silu', inputScale: toGpu(gate) }));
      // The vec4 walk loads the gate as it loads x; the others multiply x by it first.
      if (walk === 'vec') expectPointwise(keys, walk, 'f32/bg/silu');
      else if (walk) {
        expect(keys[0]).toMatch(/^map4?\/.*\/v0 \* v1$/);
        expectPointwise(keys.slice(1), walk, 'f32/b/silu');
      } else expect(keys.some((k) => k.startsWith('conv1x1'))).toBe(false);
      await expectClose(y, want, 1e-5, 1e-5);
      const flat = toGpu({ shape: [xs[0]!, xs[1]!], data: gate.data });
      await expectClose(conv2d(toGpu(x), toGpu(w), { ...opts, bias: toGpu(b), activation: 'silu', inputScale: flat }), want, 1e-5, 1e-5);
    }
    const x = toGpu(randHost([2, 4, 3, 3], 22));
    const w = toGpu(randHost([3, 4, 1, 1], 23));
    expect(() => conv2d(x, w, { inputScale: toGpu(randHost([2, 3], 24)) })).toThrow(/inputScale must have shape \[2, 4\] or \[2, 4, 1, 1\], got \[2, 3\]/);
  });

  it('float16 operands: f16 storage, f32 accumulation, one rounding', async () => {
    for (const [xs, walk] of [[[2, 24, 4, 8], 'vec'], [[2, 24, 7, 7], 'flat']] as const) {
      const x = halfHost(randHost([...xs], 15));
      const w = halfHost(randHost([20, 24, 1, 1], 16));
      const b = halfHost(randHost([20], 17));
      const { y, keys } = keysOf(() => conv2d(toHalf(x), toHalf(w), { bias: toHalf(b), activation: 'silu' }));
      expectPointwise(keys, walk, 'f16/b/silu');
      expect(y.dtype).toBe('float16');
      await expectClose(y, halfHost(cpuConv2d(x, w, { bias: b, activation: 'silu' })), 2e-3, 1e-3);
    }
  });
});

describe('forceWeightSharing', () => {
  it('names what it accepts', () => {
    expect(() => forceWeightSharing('wide' as WeightSharing)).toThrow(/unknown way 'wide'; expected lanes or subgroup/);
  });
});

// The epilogue is the same text with either sharing: the default one runs every activation.
describe('the pointwise kernel\'s epilogue', () => {
  it('every activation, and bias or scale alone', async () => {
    const x = randHost([2, 12, 6, 6], 6);
    const w = randHost([10, 12, 1, 1], 7);
    const b = randHost([10], 8);
    const sc = randHost([10], 9);
    for (const activation of ['relu', 'gelu', 'silu', 'sigmoid', 'tanh', 'hardswish', 'hardsigmoid'] as const) {
      await expectClose(conv2d(toGpu(x), toGpu(w), { bias: toGpu(b), activation }), cpuConv2d(x, w, { bias: b, activation }), 1e-5, 1e-5);
    }
    await expectClose(conv2d(toGpu(x), toGpu(w), { scale: toGpu(sc) }), cpuConv2d(x, w, { scale: sc }), 1e-5, 1e-5);
    await expectClose(conv2d(toGpu(x), toGpu(w)), cpuConv2d(x, w), 1e-5, 1e-5);
  });
});
