import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  conv2d, conv2dBackwardInput, conv2dBackwardWeight, convAlgorithm, cpuConv2d, cpuConv2dBackwardInput, cpuConv2dBackwardWeight, engine, forceConvAlgorithm, host,
  type ConvAlgorithm, type Conv2dGradOptions, type HostTensor,
} from '../src/node.js';
import { expectClose, halfHost, randHost, setup, toGpu, toHalf } from './helpers.js';

// Defaults, not choices a user's earlier `tl tune` stored, are what these tests check.
beforeAll(async () => {
  process.env.TL_CACHE = mkdtempSync(join(tmpdir(), 'tl-winograd-'));
  await setup();
});
afterEach(() => forceConvAlgorithm(null));

const WINOGRAD: ConvAlgorithm[] = ['winograd2x2', 'winograd4x4'];

/** Winograd's transforms add rounding the direct sum does not have (F(4x4)'s transformed
 * values grow to ~100x the inputs before the output transform takes them back). On 48 input
 * channels of values in [-1, 1) the outputs have an RMS near 7, and F(4x4) lands within
 * 1.3e-4 of the float64 reference (2e-5 of that scale; cuDNN's F(4x4) float32 kernels are
 * of the same order), F(2x2) within 2e-5: the absolute tolerances leave 2-3x over that. */
const TOL: Record<string, [number, number]> = { winograd2x2: [1e-4, 4e-5], winograd4x4: [2e-4, 4e-4] };

const paddings: Conv2dGradOptions[] = [{ padding: 1 }, { padding: 0 }, { padding: 2 }, { padding: [0, 2] }];

describe('Winograd 3x3 convolution against the float64 reference', () => {
  for (const algorithm of WINOGRAD) {
    const [rtol, atol] = TOL[algorithm]!;

    it(`${algorithm}: forward over odd sizes and every padding, with scale, bias and activation`, async () => {
      forceConvAlgorithm(algorithm);
      const x = randHost([2, 48, 19, 23], 1);
      const w = randHost([40, 48, 3, 3], 2);
      const bias = randHost([40], 3);
      const scale = randHost([40], 4, 0.5, 1.5);
      for (const opts of paddings) {
        await expectClose(conv2d(toGpu(x), toGpu(w), opts), cpuConv2d(x, w, opts), rtol, atol);
      }
      const fused = { padding: 1, bias: toGpu(bias), scale: toGpu(scale), activation: 'silu' as const };
      await expectClose(conv2d(toGpu(x), toGpu(w), fused), cpuConv2d(x, w, { padding: 1, bias, scale, activation: 'silu' }), rtol, atol);
    });

    it(`${algorithm}: a strided view of the input is read in place`, async () => {
      forceConvAlgorithm(algorithm);
      const x = randHost([2, 9, 12, 6], 5);
      const w = randHost([5, 6, 3, 3], 6);
      // [2, 9, 12, 6] -> channels 3..8 of the transposed planes: [2, 6, 6, 12].
      const view = toGpu(x).transpose(2, 3).slice(1, 3, 9);
      const dense = host4((n, c, h, wi) => x.data[((n * 9 + c + 3) * 12 + wi) * 6 + h]!, [2, 6, 6, 12]);
      await expectClose(conv2d(view, toGpu(w), { padding: 1 }), cpuConv2d(dense, w, { padding: 1 }), rtol, atol);
    });

    it(`${algorithm}: input gradient for paddings 0, 1, 2 and [0, 2]`, async () => {
      forceConvAlgorithm(algorithm);
      const w = randHost([40, 48, 3, 3], 7);
      for (const opts of paddings) {
        const inputShape = [2, 48, 17, 14];
        const gy = randHost([2, 40, ...outPlane(inputShape, opts)], 8);
        await expectClose(conv2dBackwardInput(toGpu(gy), toGpu(w), inputShape, opts), cpuConv2dBackwardInput(gy, w, inputShape, opts), rtol, atol);
      }
    });

    it(`${algorithm}: weight gradient for paddings 0, 1, 2 and [0, 2], over a strided view`, async () => {
      forceConvAlgorithm(algorithm);
      const x = randHost([2, 24, 17, 14], 21);
      for (const opts of paddings) {
        const gy = randHost([2, 20, ...outPlane([2, 24, 17, 14], opts)], 22);
        const want = cpuConv2dBackwardWeight(x, gy, [20, 24, 3, 3], opts);
        // Sums over 2 x ~250 pixels: the gradient's entries reach ~10, hence the tolerance.
        await expectClose(conv2dBackwardWeight(toGpu(x), toGpu(gy), [20, 24, 3, 3], opts), want, rtol, 4 * atol);
      }
      const xt = randHost([2, 24, 14, 17], 23);
      const dense = host4((n, c, h, wi) => xt.data[((n * 24 + c) * 14 + wi) * 17 + h]!, [2, 24, 17, 14]);
      const gy = randHost([2, 20, 17, 14], 24);
      await expectClose(conv2dBackwardWeight(toGpu(xt).transpose(2, 3), toGpu(gy), [20, 24, 3, 3], { padding: 1 }),
        cpuConv2dBackwardWeight(dense, gy, [20, 24, 3, 3], { padding: 1 }), rtol, 4 * atol);
    });

    it(`${algorithm}: float16 operands give float16 results within half-precision rounding`, async () => {
      forceConvAlgorithm(algorithm);
      const x = halfHost(randHost([2, 32, 10, 11], 9));
      const w = halfHost(randHost([24, 32, 3, 3], 10, -0.25, 0.25));
      const bias = halfHost(randHost([24], 11));
      const got = conv2d(toHalf(x), toHalf(w), { padding: 1, bias: toHalf(bias), activation: 'relu' });
      expect(got.dtype).toBe('float16');
      await expectClose(got, cpuConv2d(x, w, { padding: 1, bias, activation: 'relu' }), 2e-3, 2e-3);
      const gy = halfHost(randHost([2, 24, 10, 11], 12));
      const gx = conv2dBackwardInput(toHalf(gy), toHalf(w), [2, 32, 10, 11], { padding: 1 });
      expect(gx.dtype).toBe('float16');
      await expectClose(gx, cpuConv2dBackwardInput(gy, w, [2, 32, 10, 11], { padding: 1 }), 2e-3, 2e-3);
      const gw = conv2dBackwardWeight(toHalf(x), toHalf(gy), [24, 32, 3, 3], { padding: 1 });
      expect(gw.dtype).toBe('float16');
      await expectClose(gw, cpuConv2dBackwardWeight(x, gy, [24, 32, 3, 3], { padding: 1 }), 2e-3, 1e-2);
    });
  }

  it('leaves no intermediate behind', async () => {
    forceConvAlgorithm('winograd4x4');
    const x = toGpu(randHost([1, 8, 9, 9], 13));
    const w = toGpu(randHost([8, 8, 3, 3], 14));
    await conv2d(x, w, { padding: 1 }).data();
    const before = engine().liveTensors;
    const y = conv2d(x, w, { padding: 1 });
    const gx = conv2dBackwardInput(y, w, [1, 8, 9, 9], { padding: 1 });
    const gw = conv2dBackwardWeight(x, y, [8, 8, 3, 3], { padding: 1 });
    expect(engine().liveTensors).toBe(before + 3);
    for (const t of [y, gx, gw]) t.dispose();
  });

  it('splits a batch whose intermediates exceed the storage binding into runs of images', async () => {
    for (const algorithm of WINOGRAD) {
      forceConvAlgorithm(algorithm);
      const [rtol, atol] = TOL[algorithm]!;
      // One image's F(4x4) intermediates are 36 x 8 channels x 9 tiles of float32 (10 KB), F(2x2)'s
      // 16 x 8 x 36 (18 KB); the batch of 5 needs 51 or 92 KB: runs of 3 + 2 or 1 + 1 + ... images.
      const x = randHost([5, 8, 12, 12], 31);
      const w = randHost([8, 8, 3, 3], 32);
      const b = randHost([8], 33);
      const gy = randHost([5, 8, 12, 12], 34);
      const want = [
        cpuConv2d(x, w, { padding: 1, bias: b, activation: 'relu' }),
        cpuConv2dBackwardInput(gy, w, [5, 8, 12, 12], { padding: 1 }),
        cpuConv2dBackwardWeight(x, gy, [8, 8, 3, 3], { padding: 1 }),
      ];
      engine().setBindingLimit(32 * 1024);
      const e = engine();
      const dispatch = e.dispatch.bind(e);
      const keys: string[] = [];
      e.dispatch = (d) => {
        keys.push(d.key ?? '');
        dispatch(d);
      };
      try {
        const y = conv2d(toGpu(x), toGpu(w), { padding: 1, bias: toGpu(b), activation: 'relu' });
        expect(keys.filter((k) => k.startsWith('winogradTiles')).length).toBe(algorithm === 'winograd4x4' ? 2 : 5);
        await expectClose(y, want[0]!, rtol, atol);
        await expectClose(conv2dBackwardInput(toGpu(gy), toGpu(w), [5, 8, 12, 12], { padding: 1 }), want[1]!, rtol, atol);
        await expectClose(conv2dBackwardWeight(toGpu(x), toGpu(gy), [8, 8, 3, 3], { padding: 1 }), want[2]!, rtol, 4 * atol);
      } finally {
        delete (e as { dispatch?: unknown }).dispatch;
        engine().setBindingLimit(null);
      }
    }
  });

  it('runs direct where an intermediate would exceed the storage binding', async () => {
    forceConvAlgorithm('winograd4x4');
    // 36 x 16 channels x 64 tiles of float32 is 147 KB; the input and output are 65 KB each.
    const x = randHost([1, 16, 32, 32], 15);
    const w = randHost([16, 16, 3, 3], 16);
    engine().setBindingLimit(96 * 1024);
    try {
      await expectClose(conv2d(toGpu(x), toGpu(w), { padding: 1 }), cpuConv2d(x, w, { padding: 1 }), 1e-5, 1e-5);
      const gy = randHost([1, 16, 32, 32], 17);
      await expectClose(conv2dBackwardWeight(toGpu(x), toGpu(gy), [16, 16, 3, 3], { padding: 1 }),
        cpuConv2dBackwardWeight(x, gy, [16, 16, 3, 3], { padding: 1 }), 1e-5, 1e-4);
    } finally {
      engine().setBindingLimit(null);
    }
  });
});

describe('convAlgorithm', () => {
  it('picks Winograd by channels and tiles, and direct where it does not apply', () => {
    expect(convAlgorithm([2, 64, 56, 56], [64, 64, 3, 3], { padding: 1 })).toBe('winograd4x4');
    expect(convAlgorithm([2, 256, 14, 14], [256, 256, 3, 3], { padding: 1 })).toBe('winograd2x2');
    expect(convAlgorithm([2, 512, 7, 7], [512, 512, 3, 3], { padding: 1 })).toBe('direct');
    expect(convAlgorithm([128, 16, 32, 32], [16, 16, 3, 3], { padding: 1 })).toBe('direct');
    expect(convAlgorithm([2, 64, 56, 56], [64, 64, 3, 3], { padding: 1, stride: 2 })).toBe('direct');
    expect(convAlgorithm([2, 64, 56, 56], [64, 64, 3, 3], { padding: 2, dilation: 2 })).toBe('direct');
    expect(convAlgorithm([2, 64, 56, 56], [64, 32, 3, 3], { padding: 1, groups: 2 })).toBe('direct');
    expect(convAlgorithm([2, 64, 56, 56], [64, 64, 1, 1])).toBe('direct');
    expect(convAlgorithm([2, 64, 56, 56], [64, 64, 3, 3], { padding: 3 }, 'inputGrad')).toBe('direct');
  });

  it('follows a forced algorithm only where Winograd applies, and names a bad one', () => {
    forceConvAlgorithm('winograd2x2');
    expect(convAlgorithm([1, 3, 8, 8], [4, 3, 3, 3], { padding: 1 })).toBe('winograd2x2');
    expect(convAlgorithm([1, 3, 8, 8], [4, 3, 5, 5], { padding: 1 })).toBe('direct');
    expect(() => forceConvAlgorithm('fft' as ConvAlgorithm)).toThrow(/unknown algorithm 'fft'; expected direct, winograd2x2 or winograd4x4/);
  });
});

function outPlane(inputShape: number[], opts: Conv2dGradOptions): [number, number] {
  const [ph, pw] = typeof opts.padding === 'number' ? [opts.padding, opts.padding] : opts.padding ?? [0, 0];
  return [inputShape[2]! + 2 * ph - 2, inputShape[3]! + 2 * pw - 2];
}

/** The host tensor of `shape` whose element (n, c, h, w) is `at(n, c, h, w)`. */
function host4(at: (n: number, c: number, h: number, w: number) => number, shape: number[]): HostTensor {
  const [N, C, H, W] = shape as [number, number, number, number];
  const t = host(shape);
  let i = 0;
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) t.data[i++] = at(n, c, h, w);
  return t;
}
