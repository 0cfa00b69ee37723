/**
 * NaN and ±Infinity through every kernel that takes a max, a min or a clamp, on the GPU,
 * against what PyTorch answers (torch.relu(nan) = nan, F.max_pool2d over a window holding a nan
 * = nan, amax with a nan = nan, clamp(nan) = nan). WGSL lets max/min/clamp return the non-NaN
 * operand, so a kernel that trusts them turns a diverged network's NaN into 0 and hides it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  argmax, clamp, conv2d, cpuBinary, cpuUnary, crossEntropy, forceRowMode, gelu, hardsigmoid, hardswish, host, leakyRelu, linear, logSoftmax, map, max,
  maximum, maxPool2d, maxPool2dBackward, maxPool2dWithIndices, min, minimum, relu, relu6, sigmoid, silu, softmax, softplus, tanh,
  tensor, UNARY, type RowMode, type Tensor,
} from '../src/node.js';
import { setup } from './helpers.js';

beforeAll(setup);

const { NaN: nan } = Number;
const inf = Infinity;

/** Values compared as PyTorch prints them: NaN equals NaN, and -0 equals 0. */
async function values(t: Tensor): Promise<number[]> {
  return [...(await t.data())].map((v) => (Object.is(v, -0) ? 0 : v));
}

const x = [nan, inf, -inf, -1, 0.5, 7];

describe('elementwise ops keep NaN and saturate ±Infinity as PyTorch does', () => {
  it.each([
    ['relu', relu, [nan, inf, 0, 0, 0.5, 7]],
    ['relu6', relu6, [nan, 6, 0, 0, 0.5, 6]],
    ['clamp(-1, 1)', (t: Tensor) => clamp(t, -1, 1), [nan, 1, -1, -1, 0.5, 1]],
    ['clamp(min 0)', (t: Tensor) => clamp(t, 0), [nan, inf, 0, 0, 0.5, 7]],
    ['clamp(max 0)', (t: Tensor) => clamp(t, undefined, 0), [nan, 0, -inf, -1, 0, 0]],
    ['leakyRelu', (t: Tensor) => leakyRelu(t, 0.5), [nan, inf, -inf, -0.5, 0.5, 7]],
    ['tanh', tanh, [nan, 1, -1, Math.fround(Math.tanh(-1)), Math.fround(Math.tanh(0.5)), Math.fround(Math.tanh(7))]],
    ['sigmoid', sigmoid, [nan, 1, 0, null, null, null]],
    ['silu', silu, [nan, inf, undefined, null, null, null]],
    ['softplus', softplus, [nan, inf, 0, null, null, null]],
    ['gelu', gelu, [nan, inf, undefined, null, null, null]],
    ['hardsigmoid', hardsigmoid, [nan, 1, 0, 1 / 3, 0.5 / 6 + 0.5, 1]],
    ['hardswish', hardswish, [nan, inf, undefined, -1 / 3, 0.5 * (0.5 / 6 + 0.5), 7]],
  ] as const)('%s', async (_name, op, want) => {
    const got = await values(op(tensor(x)));
    want.forEach((w, i) => {
      if (w === undefined) return;
      if (w === null) expect(Number.isFinite(got[i])).toBe(true);
      else if (Number.isNaN(w) || !Number.isFinite(w)) expect(got[i]).toBe(w);
      else expect(got[i]).toBeCloseTo(w, 6);
    });
  });

  it('the CPU references agree on every non-finite input', () => {
    for (const op of ['relu', 'relu6', 'clamp', 'leakyRelu', 'tanh', 'sigmoid', 'silu', 'softplus', 'gelu', 'hardsigmoid', 'hardswish'] as const) {
      expect(Number.isNaN(cpuUnary(op, host([1], [nan]), -1, 1).data[0]), op).toBe(true);
    }
    expect([...cpuBinary('maximum', host([2], [nan, 1]), host([2], [1, nan])).data].every(Number.isNaN)).toBe(true);
  });

  it('maximum and minimum: NaN on either side wins, ±Infinity compares, int32 is unchanged', async () => {
    const a = tensor([nan, 1, inf, -inf, 2]);
    const b = tensor([1, nan, 3, 4, -inf]);
    expect(await values(maximum(a, b))).toEqual([nan, nan, inf, 4, 2]);
    expect(await values(minimum(a, b))).toEqual([nan, nan, 3, -inf, -inf]);
    expect(await values(maximum(a, 0))).toEqual([nan, 1, inf, 0, 2]);
    const ai = tensor(Int32Array.of(-3, 5), { dtype: 'int32' });
    const bi = tensor(Int32Array.of(4, -7), { dtype: 'int32' });
    expect(maximum(ai, bi).dtype).toBe('int32');
    expect(await values(maximum(ai, bi))).toEqual([4, 5]);
    expect(await values(minimum(ai, bi))).toEqual([-3, -7]);
  });

  it('relu and relu6 pass the gradient at NaN (threshold_backward), zero where clipped', async () => {
    for (const op of ['relu', 'relu6'] as const) {
      const grad = UNARY[op].grad!;
      const g = map([tensor([nan, -1, 0.5, 7]), tensor([2, 2, 2, 2])], ([xs, gs]) => grad(xs!, xs!, gs!));
      expect(await values(g), op).toEqual([2, 0, 2, op === 'relu' ? 2 : 0]);
    }
  });

  it('a fused relu after matmul and conv2d keeps NaN', async () => {
    const w = tensor([[1, 1], [-1, -1]]);
    expect(await values(linear(tensor([[nan, 1], [1, 1]]), w, undefined, 'relu'))).toEqual([nan, nan, 2, 0]);
    const img = tensor(Float32Array.of(1, 2, 3, nan, -1, -2, -3, -4, 0), { shape: [1, 1, 3, 3] });
    const k = tensor(Float32Array.of(1), { shape: [1, 1, 1, 1] });
    expect(await values(conv2d(img, k, { activation: 'relu' }))).toEqual([1, 2, 3, nan, 0, 0, 0, 0, 0]);
  });
});

describe('reductions keep NaN', () => {
  const big = (at: number, v: number, n = 5000): Float32Array => {
    const a = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
    a[at] = v;
    return a;
  };

  it('max, min and argmax over long rows (one chunk per workgroup and several)', async () => {
    for (const at of [0, 2500, 4999]) {
      const t = tensor(big(at, nan));
      expect(Number.isNaN(await max(t).item()), `nan at ${at}`).toBe(true);
      expect(Number.isNaN(await min(t).item())).toBe(true);
      expect(await argmax(t).item()).toBe(at);
      const rows = tensor(big(at % 4000, nan, 4000), { shape: [2, 2000] });
      const m = await values(max(rows, 1));
      expect(Number.isNaN(m[Math.floor((at % 4000) / 2000)]!)).toBe(true);
      expect(m.filter(Number.isNaN)).toHaveLength(1);
    }
    expect(await max(tensor(big(17, inf))).item()).toBe(inf);
    expect(await min(tensor(big(17, -inf))).item()).toBe(-inf);
    expect(await max(tensor([-inf, -inf]))).toBeDefined();
    expect(await max(tensor([-inf, -inf])).item()).toBe(-inf);
  });
});

describe('max pooling keeps NaN', () => {
  it('a window holding a NaN gives NaN, its gradient goes to the NaN, -inf windows stay -inf', async () => {
    const xs = tensor(Float32Array.of(1, nan, 3, 4, -inf, -inf, -inf, -inf, 5, 6, 7, inf, 0, 0, 0, 0), { shape: [1, 1, 4, 4] });
    const opts = { kernelSize: 2 };
    expect(await values(maxPool2d(xs, opts))).toEqual([nan, 4, 6, inf]);
    const { indices } = maxPool2dWithIndices(xs, opts);
    expect(await values(indices)).toEqual([1, 3, 9, 11]);
    const onlyInf = tensor(Float32Array.of(-inf, -inf, -inf, -inf), { shape: [1, 1, 2, 2] });
    expect(await values(maxPool2d(onlyInf, opts))).toEqual([-inf]);
    const gx = maxPool2dBackward(tensor(Float32Array.of(1, 1, 1, 1), { shape: [1, 1, 2, 2] }), indices, [1, 1, 4, 4], opts);
    expect((await values(gx))[1]).toBe(1);
    expect(await values(maxPool2d(xs, { kernelSize: 3, stride: 1, padding: 1 }))).toEqual(expect.arrayContaining([nan]));
  });
});

describe('softmax, log-softmax and cross-entropy make a row with a NaN all NaN', () => {
  const modes: RowMode[] = ['thread', 'group'];
  afterAll(() => forceRowMode(null));

  it.each(modes)('rows reduced by one %s', async (mode) => {
    forceRowMode(mode);
    for (const len of [3, 8, 1031]) {
      const data = Float32Array.from({ length: 2 * len }, (_, i) => Math.cos(i));
      data[len + (len >> 1)] = nan;
      const t = tensor(data, { shape: [2, len] });
      for (const op of [softmax, logSoftmax]) {
        const y = await values(op(t, 1));
        expect(y.slice(0, len).every(Number.isFinite), `${op.name} len ${len}`).toBe(true);
        expect(y.slice(len).every(Number.isNaN), `${op.name} len ${len}`).toBe(true);
      }
      const loss = await values(crossEntropy(t, [0, 1], { reduction: 'none' }));
      expect(Number.isFinite(loss[0]!)).toBe(true);
      expect(Number.isNaN(loss[1]!)).toBe(true);
      expect(Number.isNaN(await crossEntropy(t, [0, 1]).item())).toBe(true);
    }
  });
});
