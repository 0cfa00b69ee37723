import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  add, argmax, binary, cast, cat, cpuBinary, cpuLinear, cpuMatmul, forceMatmulVariant, indexSelect, linear, matmul, MATMUL_VARIANTS, cpuReduce, cpuUnary, engine, halfBits, halfValue, host, max, mean, mul, roundHalf, softmax, sum, tensor, toHalfArray, unary, where,
  type BinaryName, type UnaryName,
} from '../src/node.js';
import { expectClose, halfHost, randHost, setup, toHalf } from './helpers.js';

beforeAll(setup);

describe('binary16 on the host', () => {
  it('rounds as PyTorch 1.13 does for float32 -> float16', () => {
    // /usr/bin/python3: torch.tensor(xs, dtype=torch.float32).half().view(torch.int16)
    const xs = [0.1, -2.5, 1e-5, 6e-8, 3e-8, 65504, 65519, 65520, 1e5, -1e-7, 0.333333, 1 / 3, 7.0001, 2 ** -14 * 1.5, 123.456, NaN, -Infinity, -0];
    const torch = [11878, 49408, 168, 1, 1, 31743, 31743, 31744, 31744, 32770, 13653, 13653, 18176, 1536, 22455, 32256, 64512, 32768];
    expect(xs.map(halfBits)).toEqual(torch);
  });

  it('round-trips every half and rounds every midpoint between neighbours to the even one', () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = halfValue(h);
      if (Number.isNaN(v)) continue;
      expect(halfBits(v)).toBe(h === 0x8000 ? 0x8000 : h);
      const next = h + 1;
      if ((h & 0x7fff) >= 0x7bff || (next & 0x7fff) === 0) continue;
      const mid = (v + halfValue(next)) / 2;
      if (Math.fround(mid) !== mid) continue;
      const even = h & 1 ? next : h;
      if (halfBits(mid) !== even) expect.fail(`midpoint of ${h} and ${next} rounded to ${halfBits(mid)}`);
    }
  });
});

describe('float16 tensors', () => {
  it('hold two bytes an element and read back as the rounded values, from any offset', async () => {
    const x = randHost([7, 13], 3, -300, 300);
    const t = tensor(x.data, { shape: x.shape, dtype: 'float16' });
    expect(t.dtype).toBe('float16');
    expect(t.storage.bytes).toBe(Math.ceil((91 * 2) / 4) * 4);
    await expectClose(t, halfHost(x), 0, 0);
    const odd = t.slice(1, 3, 8);
    const want = host([7, 5]);
    for (let i = 0; i < 7; i++) for (let j = 0; j < 5; j++) want.data[i * 5 + j] = roundHalf(x.data[i * 13 + 3 + j]!);
    await expectClose(odd, want, 0, 0);
    await expectClose(t.T.contiguous(), halfHost({ shape: [13, 7], data: Float64Array.from({ length: 91 }, (_, k) => x.data[(k % 7) * 13 + Math.floor(k / 7)]!) }), 0, 0);
  });

  it('cast from float32 rounds as the host does (ties to even, overflow to infinity, subnormals, NaN)', async () => {
    const vals = [0, -0, 1, 0.1, 65504, 65519, 65520, 1e6, -1e6, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 1e-9, NaN, Infinity, -Infinity, 1 + 2 ** -11, 1 + 3 * 2 ** -11];
    const r = randHost([300], 9, -70000, 70000);
    const all = [...vals, ...r.data];
    const h = cast(tensor(all), 'float16');
    const got = await h.data();
    all.forEach((v, i) => {
      const want = roundHalf(v);
      if (!(Object.is(got[i], want) || (Number.isNaN(want) && Number.isNaN(got[i]!)) || (want === 0 && got[i] === 0))) {
        expect.fail(`cast(${v}) gave ${got[i]}, want ${want}`);
      }
    });
  });

  it('cast to float32 is exact and to int32 truncates toward zero', async () => {
    const bits = new Uint16Array(0x7c00);
    for (let i = 0; i < bits.length; i++) bits[i] = i;
    const x = tensor(Array.from(bits, halfValue), { dtype: 'float16' });
    const f = await cast(x, 'float32').data();
    for (let i = 0; i < bits.length; i++) if (f[i] !== halfValue(i)) expect.fail(`half ${i} widened to ${f[i]}`);
    const n = await cast(tensor([2.5, -2.5, 100.75, -0.5], { dtype: 'float16' }), 'int32').data();
    expect([...n]).toEqual([2, -2, 100, 0]);
    expect(await x.to('float16')).toBe(x);
  });

  const unaryDomain: Partial<Record<UnaryName, [number, number]>> = {
    log: [0.05, 10], sqrt: [0.01, 10], rsqrt: [0.05, 10], reciprocal: [0.2, 3], powScalar: [0.1, 3], exp: [-8, 8],
  };
  for (const op of ['relu', 'gelu', 'silu', 'exp', 'log', 'tanh', 'sigmoid', 'rsqrt', 'square', 'abs', 'clamp'] as UnaryName[]) {
    it(`${op} computes in float32 and rounds once to float16`, async () => {
      const [lo, hi] = unaryDomain[op] ?? [-6, 6];
      const x = halfHost(randHost([3, 129], op.length, lo, hi));
      const y = unary(op, tensor(x.data, { shape: x.shape, dtype: 'float16' }), -0.5, 0.7);
      expect(y.dtype).toBe('float16');
      // One rounding of the float32 result: within half an ulp of float16, plus float32's error.
      await expectClose(y, halfHost(cpuUnary(op, x, -0.5, 0.7)), 2 ** -10, 1e-6);
    });
  }

  for (const op of ['add', 'sub', 'mul', 'div', 'maximum'] as BinaryName[]) {
    it(`${op} broadcasts float16 with float16, and promotes float16 with float32 to float32`, async () => {
      const a = halfHost(randHost([2, 1, 7], 1, -4, 4));
      const b = halfHost(randHost([3, 1], 2, 0.5, 3));
      const ah = tensor(a.data, { shape: a.shape, dtype: 'float16' });
      const y = binary(op, ah, tensor(b.data, { shape: b.shape, dtype: 'float16' }));
      expect(y.dtype).toBe('float16');
      await expectClose(y, halfHost(cpuBinary(op, a, b)), 2 ** -10, 1e-6);
      const z = binary(op, ah, tensor(b.data, { shape: b.shape }));
      expect(z.dtype).toBe('float32');
      await expectClose(z, cpuBinary(op, a, b), 2e-6, 1e-6);
    });
  }

  it('where, comparisons and in-place writes keep the dtypes PyTorch gives', async () => {
    const a = tensor([1, -2, 3], { dtype: 'float16' });
    const b = tensor([0.5, 0.5, 0.5], { dtype: 'float16' });
    expect(where(tensor([1, 0, 1]), a, b).dtype).toBe('float16');
    expect(binary('gt', a, b).dtype).toBe('float32');
    expect([...(await add(a, 1).data())]).toEqual([2, -1, 4]);
  });

  it('sums, means and maxima accumulate in float32 and round once; argmax reads halves', async () => {
    const x = halfHost(randHost([5, 300, 3], 4, -20, 20));
    const t = tensor(x.data, { shape: x.shape, dtype: 'float16' });
    const s = sum(t, 1);
    expect(s.dtype).toBe('float16');
    const total = (v: number[]): number => v.reduce((a, b) => a + b, 0);
    await expectClose(s, halfHost(cpuReduce(x, [1], false, total)), 2 ** -10, 1e-3);
    await expectClose(mean(t.permute(2, 0, 1), [1, 2]), halfHost(cpuReduce(x, [0, 1], false, (v) => total(v) / v.length)), 2 ** -10, 1e-4);
    await expectClose(max(t), halfHost(cpuReduce(x, undefined, false, (v) => Math.max(...v))), 0, 0);
    const flat = [...x.data];
    expect(await argmax(t).item()).toBe(flat.indexOf(Math.max(...flat)));
  });

  it('is refused by name, with the way out, by ops not written for it', () => {
    const a = tensor([[1, 2], [3, 4]], { dtype: 'float16' });
    expect(() => softmax(mul(a, 1), -1)).toThrow(/softmax.*does not take float16 tensors.*\.float\(\)/);
    expect(() => indexSelect(a, 0, tensor([1, 0], { dtype: 'int32' }))).toThrow(/does not take float16 tensors/);
  });

  it('concatenates (through the elementwise copy)', async () => {
    const a = tensor([[1, 2], [3, 4]], { dtype: 'float16' });
    const c = cat([a, a.T], 1);
    expect(c.dtype).toBe('float16');
    expect(await c.toArray()).toEqual([[1, 2, 1, 3], [3, 4, 2, 4]]);
  });

  it('needs shader-f16 on the adapter', () => {
    expect(engine().hasF16).toBe(true);
    expect(toHalfArray([1, 2, 3]).length).toBe(4);
  });
});


// f16 storage, f32 accumulation: the float64 product of the rounded operands, rounded once.
describe.each(MATMUL_VARIANTS)('float16 matmul (the %s kernel)', (variant) => {
  beforeAll(() => forceMatmulVariant(variant));
  afterAll(() => forceMatmulVariant(null));

  it('multiplies odd shapes, transposed and batched operands, and adds bias and activation', async () => {
    for (const [m, k, n] of [[1, 3, 17], [17, 129, 3], [33, 64, 20], [5, 8, 1]] as const) {
      const a = halfHost(randHost([m, k], m + k));
      const b = halfHost(randHost([k, n], k + n));
      const y = matmul(toHalf(a), toHalf(b));
      expect(y.dtype).toBe('float16');
      await expectClose(y, halfHost(cpuMatmul(a, b)), 2 ** -10, 1e-4);
    }
    const x = halfHost(randHost([2, 3, 40], 1));
    const w = halfHost(randHost([12, 40], 2, -0.3, 0.3));
    const bias = halfHost(randHost([12], 3));
    await expectClose(linear(toHalf(x), toHalf(w), toHalf(bias), 'gelu'), halfHost(cpuLinear(x, w, bias, 'gelu')), 2 ** -10, 1e-4);
    const bt = halfHost(randHost([2, 24, 40], 4));
    const at = toHalf(x).transpose(-1, -2);
    const prod = matmul(toHalf(bt), at);
    const want = cpuMatmul(bt, { shape: [2, 40, 3], data: Float64Array.from({ length: 240 }, (_, i) => x.data[Math.floor(i / 120) * 120 + (i % 3) * 40 + Math.floor((i % 120) / 3)]!) });
    await expectClose(prod, halfHost(want), 2 ** -10, 1e-4);
  });
});

describe('float16 matmul', () => {
  it('takes one dtype for both operands and the bias, naming the mismatch', () => {
    const a = tensor([[1, 2]], { dtype: 'float16' });
    expect(() => matmul(a, tensor([[1], [2]]))).toThrow(/float16 and float32; expected one dtype/);
    expect(() => linear(a, tensor([[1, 2]], { dtype: 'float16' }), tensor([1]))).toThrow(/bias must be float16/);
  });

  it('splits K over the binding limit, accumulating in the float16 output', async () => {
    engine().setBindingLimit(4096);
    try {
      // A stored [K, M] (read transposed) and B [K, N]: both split along K.
      const at = halfHost(randHost([3000, 3], 5));
      const b = halfHost(randHost([3000, 2], 6));
      const a = host([3, 3000]);
      for (let i = 0; i < 3; i++) for (let k = 0; k < 3000; k++) a.data[i * 3000 + k] = at.data[k * 3 + i]!;
      await expectClose(matmul(toHalf(at).T, toHalf(b)), halfHost(cpuMatmul(a, b)), 4 * 2 ** -10, 2e-2);
    } finally {
      engine().setBindingLimit(null);
    }
  });
});
