import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cpuLinear, cpuMatmul, forceMatmulVariant, host, linear, matmul, MATMUL_VARIANTS, memory, type HostTensor, type MatmulActivation, type Tensor,
} from '../src/node.js';
import { expectClose, randHost, setup, toGpu } from './helpers.js';

beforeAll(setup);

const RTOL = 1e-4;
const ATOL = 1e-5;

/** Swaps the last two dims of a host tensor (what a .transpose() view reads). */
function hostT(h: HostTensor): HostTensor {
  const s = h.shape;
  const [r, c] = s.slice(-2) as [number, number];
  const out = host([...s.slice(0, -2), c, r]);
  const batch = h.data.length / (r * c);
  for (let z = 0; z < batch; z++) {
    for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out.data[z * r * c + j * r + i] = h.data[z * r * c + i * c + j]!;
  }
  return out;
}

/** A GPU view with the values of `h` whose last two dims are stored transposed (strides [1, rows]). */
function transposedView(h: HostTensor): Tensor {
  return toGpu(hostT(h)).transpose(-2, -1);
}

// Every candidate kernel must pass the whole suite: the autotuner may pick any of them.
describe.each(MATMUL_VARIANTS)('matmul (the %s kernel) against the float64 reference', (variant) => {
  beforeAll(() => forceMatmulVariant(variant));
  afterAll(() => forceMatmulVariant(null));

  it('2-D on odd shapes', async () => {
    const shapes: [number, number, number][] = [[1, 1, 1], [1, 3, 17], [3, 17, 1], [17, 129, 3], [129, 1, 257], [257, 17, 129], [33, 64, 20]];
    for (const [m, k, n] of shapes) {
      const a = randHost([m, k], m + k);
      const b = randHost([k, n], k + n);
      await expectClose(matmul(toGpu(a), toGpu(b)), cpuMatmul(a, b), RTOL, ATOL);
    }
  });

  it('all four transpose combinations read through the views', async () => {
    for (const [m, k, n] of [[17, 129, 257], [64, 32, 16], [3, 1, 5], [5, 7, 1]] as const) {
      const a = randHost([m, k], 11);
      const b = randHost([k, n], 12);
      const want = cpuMatmul(a, b);
      for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
        const ga = ta ? transposedView(a) : toGpu(a);
        const gb = tb ? transposedView(b) : toGpu(b);
        if (ta && m > 1 && k > 1) expect(ga.isContiguous).toBe(false);
        await expectClose(matmul(ga, gb), want, RTOL, ATOL);
      }
    }
  });

  it('sliced and strided views, and views at unaligned offsets', async () => {
    const a = randHost([20, 40], 21);
    const b = randHost([40, 24], 22);
    const ga = toGpu(a);
    const gb = toGpu(b);
    // Rows 3.. and columns 1..37 of a; every other column of b.
    const as = ga.slice(0, 3).slice(1, 1, 37);
    const bs = gb.slice(0, 1, 37).slice(1, 0, 24, 2);
    const ha = host([17, 36], Array.from({ length: 17 * 36 }, (_, i) => a.data[(3 + Math.floor(i / 36)) * 40 + 1 + (i % 36)]!));
    const hb = host([36, 12], Array.from({ length: 36 * 12 }, (_, i) => b.data[(1 + Math.floor(i / 12)) * 24 + 2 * (i % 12)]!));
    // b's columns have stride 2 and rows stride 24: the one layout that needs a copy,
    // which must be freed with the call.
    const live = memory().liveTensors;
    const y = matmul(as, bs);
    expect(memory().liveTensors).toBe(live + 1);
    await expectClose(y, cpuMatmul(ha, hb), RTOL, ATOL);
    await expectClose(matmul(as, bs.slice(1, 0, 4)), cpuMatmul(ha, host([36, 4], Array.from({ length: 144 }, (_, i) => hb.data[Math.floor(i / 4) * 12 + (i % 4)]!))), RTOL, ATOL);
  });

  it('aligned rows with K not a multiple of 4 (vec4 loads along K plus a tail)', async () => {
    const a = randHost([20, 40], 23);
    const w = randHost([12, 40], 24);
    const ha = host([20, 37], Array.from({ length: 20 * 37 }, (_, i) => a.data[Math.floor(i / 37) * 40 + (i % 37)]!));
    const hw = host([12, 37], Array.from({ length: 12 * 37 }, (_, i) => w.data[Math.floor(i / 37) * 40 + (i % 37)]!));
    const ga = toGpu(a).slice(1, 0, 37);
    const gw = toGpu(w).slice(1, 0, 37);
    await expectClose(linear(ga, gw), cpuLinear(ha, hw), RTOL, ATOL);
    const b = randHost([37, 8], 25);
    await expectClose(matmul(ga, toGpu(b)), cpuMatmul(ha, b), RTOL, ATOL);
  });

  it('batched with broadcast batch dims', async () => {
    const cases: [number[], number[]][] = [
      [[3, 17, 20], [20, 9]],
      [[20, 9], [3, 9, 17]],
      [[2, 3, 5, 8], [2, 3, 8, 4]],
      [[2, 1, 5, 8], [3, 8, 6]],
      [[4, 1, 7], [4, 7, 5]],
      [[1, 3, 4], [2, 4, 129]],
    ];
    for (const [sa, sb] of cases) {
      const a = randHost(sa, sa.length * 5 + sa[0]!);
      const b = randHost(sb, sb.length * 3 + sb[0]!);
      await expectClose(matmul(toGpu(a), toGpu(b)), cpuMatmul(a, b), RTOL, ATOL);
    }
  });

  it('batched transposed views, expanded operands and a permuted batch', async () => {
    const a = randHost([3, 17, 12], 31);
    const b = randHost([12, 10], 32);
    await expectClose(matmul(transposedView(a), toGpu(b).expand(3, 12, 10)), cpuMatmul(a, b), RTOL, ATOL);
    const bb = randHost([2, 3, 12, 8], 33);
    await expectClose(matmul(toGpu(a), transposedView(bb)), cpuMatmul(a, bb), RTOL, ATOL);
    // [3, 2, 12, 8] stored, read as [2, 3, 12, 8] through permuted batch strides.
    const stored = randHost([3, 2, 12, 8], 34);
    const perm = host([2, 3, 12, 8]);
    for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) perm.data.set(stored.data.subarray((j * 2 + i) * 96, (j * 2 + i + 1) * 96), (i * 3 + j) * 96);
    await expectClose(matmul(toGpu(a), toGpu(stored).permute(1, 0, 2, 3)), cpuMatmul(a, perm), RTOL, ATOL);
  });

  it('1-D operands', async () => {
    const v = randHost([17], 41);
    const w = randHost([17], 42);
    const m = randHost([5, 17], 43);
    const mt = randHost([17, 6], 44);
    const batched = randHost([2, 3, 17, 4], 45);
    const dot = matmul(toGpu(v), toGpu(w));
    expect(dot.shape).toEqual([]);
    await expectClose(dot, cpuMatmul(v, w), RTOL, ATOL);
    await expectClose(matmul(toGpu(m), toGpu(v)), cpuMatmul(m, v), RTOL, ATOL);
    await expectClose(matmul(toGpu(v), toGpu(mt)), cpuMatmul(v, mt), RTOL, ATOL);
    await expectClose(matmul(toGpu(v), toGpu(batched)), cpuMatmul(v, batched), RTOL, ATOL);
    const rows = randHost([2, 3, 4, 17], 46);
    await expectClose(matmul(transposedView(rows), toGpu(v)), cpuMatmul(rows, v), RTOL, ATOL);
    // A strided vector (a column of a matrix).
    const col = toGpu(mt).select(1, 2);
    const hcol = host([17], Array.from({ length: 17 }, (_, i) => mt.data[i * 6 + 2]!));
    await expectClose(matmul(toGpu(m), col), cpuMatmul(m, hcol), RTOL, ATOL);
  });

  it('bias and every activation in the epilogue', async () => {
    const a = randHost([19, 33], 51, -2, 2);
    const b = randHost([33, 21], 52, -2, 2);
    const bias = randHost([21], 53);
    // The epilogue is one generator shared by every variant: each activation once, on the default kernel.
    const acts: MatmulActivation[] = variant === 'reg' ? ['relu', 'relu6', 'gelu', 'geluTanh', 'silu', 'sigmoid', 'tanh'] : ['gelu', 'tanh'];
    await expectClose(matmul(toGpu(a), toGpu(b), { bias: toGpu(bias) }), cpuMatmul(a, b, { bias }), RTOL, ATOL);
    for (const activation of acts) {
      await expectClose(matmul(toGpu(a), transposedView(b), { bias: toGpu(bias), activation }), cpuMatmul(a, b, { bias, activation }), RTOL, ATOL);
    }
    await expectClose(matmul(toGpu(a), toGpu(b), { activation: 'gelu' }), cpuMatmul(a, b, { activation: 'gelu' }), RTOL, ATOL);
    // Aligned N (vec4 stores) and a strided bias.
    const b8 = randHost([33, 8], 54);
    const bias16 = randHost([16], 55);
    const hb = host([8], Array.from({ length: 8 }, (_, i) => bias16.data[2 * i]!));
    await expectClose(matmul(toGpu(a), toGpu(b8), { bias: toGpu(bias16).slice(0, 0, 16, 2), activation: 'silu' }), cpuMatmul(a, b8, { bias: hb, activation: 'silu' }), RTOL, ATOL);
    // Matrix-vector: the bias has the one column of b.
    const v = randHost([33], 56);
    const one = host([1], [0.25]);
    await expectClose(matmul(toGpu(a), toGpu(v), { bias: toGpu(one), activation: 'relu' }), cpuMatmul(a, v, { bias: one, activation: 'relu' }), RTOL, ATOL);
  });

  it('linear reads the [out, in] weight transposed in place', async () => {
    const x = randHost([2, 5, 24], 61);
    const w = randHost([10, 24], 62);
    const bias = randHost([10], 63);
    await expectClose(linear(toGpu(x), toGpu(w), toGpu(bias)), cpuLinear(x, w, bias), RTOL, ATOL);
    await expectClose(linear(toGpu(x), toGpu(w)), cpuLinear(x, w), RTOL, ATOL);
    const x1 = randHost([24], 64);
    await expectClose(linear(toGpu(x1), toGpu(w), toGpu(bias), 'gelu'), cpuLinear(x1, w, bias, 'gelu'), RTOL, ATOL);
    // A weight that is itself a transposed view is read as stored: no copy either way.
    await expectClose(linear(toGpu(x), transposedView(w)), cpuLinear(x, w), RTOL, ATOL);
    const odd = randHost([7, 129], 65);
    const wOdd = randHost([3, 129], 66);
    await expectClose(linear(toGpu(odd), toGpu(wOdd)), cpuLinear(odd, wOdd), RTOL, ATOL);
  });

  it('linear and q · kᵀ on 64 rows or more copy the transposed operand to row-major first, with the same results', async () => {
    // Batches of rows too: [2, 40, K] meets the weight as one product of 80 rows.
    for (const [xs, n] of [[[70, 36], 44], [[2, 40, 24], 20], [[65, 129], 7], [[64, 32], 1]] as [number[], number][]) {
      const x = randHost(xs, xs.length + n);
      const w = randHost([n, xs[xs.length - 1]!], n);
      const bias = randHost([n], 3);
      await expectClose(linear(toGpu(x), toGpu(w), toGpu(bias), 'relu'), cpuLinear(x, w, bias, 'relu'), RTOL, ATOL);
    }
    const q = randHost([2, 3, 80, 16], 71);
    const k = randHost([2, 3, 72, 16], 72);
    const kt = host([2, 3, 16, 72]);
    for (let b = 0; b < 6; b++) for (let i = 0; i < 72; i++) for (let j = 0; j < 16; j++) kt.data[(b * 16 + j) * 72 + i] = k.data[(b * 72 + i) * 16 + j]!;
    await expectClose(matmul(toGpu(q), toGpu(k).transpose(-2, -1)), cpuMatmul(q, kt), RTOL, ATOL);
  });

  it('empty dims give empty or zero results', async () => {
    const z = matmul(toGpu(randHost([0, 4], 1)), toGpu(randHost([4, 3], 2)));
    expect(z.shape).toEqual([0, 3]);
    const k0 = matmul(toGpu(randHost([2, 0], 1)), toGpu(randHost([0, 3], 2)));
    expect([...(await k0.data())]).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('splits grids past 65535 workgroups per dim into several dispatches', async () => {
    const cases: [number[], number[]][] = [
      [[70001, 1, 2], [70001, 2, 1]], // batch (z)
      [[65535 * 64 + 5, 1], [1, 2]], // rows (y): 8-row tiles, 8 per workgroup
      [[1, 1], [1, 65535 * 128 + 3]], // columns (x): one row: 4-column tiles, 32 per workgroup
    ];
    for (const [sa, sb] of cases) {
      const a = randHost(sa, 71);
      const b = randHost(sb, 72);
      await expectClose(matmul(toGpu(a), toGpu(b)), cpuMatmul(a, b), RTOL, ATOL);
    }
  });

  it('rejects mismatched shapes and bad options with clear errors', () => {
    const a = toGpu(randHost([3, 4], 1));
    expect(() => matmul(a, toGpu(randHost([5, 2], 2)))).toThrow(/\[3, 4\] and \[5, 2\] cannot be multiplied/);
    expect(() => matmul(toGpu(randHost([2, 3, 4], 1)), toGpu(randHost([3, 4, 2], 2)))).toThrow(/batch dims \[2\].*\[3\].*cannot be broadcast/);
    expect(() => matmul(a, toGpu(randHost([1], 2)).reshape([]))).toThrow(/at least one dim/);
    expect(() => matmul(a, toGpu(randHost([4, 2], 2)), { bias: toGpu(randHost([3], 3)) })).toThrow(/bias has shape \[3\]; expected \[2\]/);
    expect(() => matmul(a, toGpu(randHost([4, 2], 2)), { activation: 'softmax' as MatmulActivation })).toThrow(/unknown activation 'softmax'/);
    expect(() => matmul(toGpu(randHost([3, 4], 1), 'int32'), toGpu(randHost([4, 2], 2)))).toThrow(/a must be float32/);
    expect(() => linear(toGpu(randHost([2, 5], 1)), toGpu(randHost([3, 4], 2)))).toThrow(/has 5 features; weight \[3, 4\] expects 4/);
    expect(() => linear(toGpu(randHost([2, 5], 1)), toGpu(randHost([5], 2)))).toThrow(/weight must be 2-D/);
  });

  it('large enough to cover the vec4 paths and tile edges', async () => {
    for (const [m, k, n] of [[130, 256, 68], [67, 132, 129]] as const) {
      const a = randHost([m, k], m);
      const b = randHost([k, n], n);
      const want = cpuMatmul(a, b);
      await expectClose(matmul(toGpu(a), toGpu(b)), want, RTOL, ATOL);
      await expectClose(matmul(transposedView(a), transposedView(b)), want, RTOL, ATOL);
    }
  });
});
