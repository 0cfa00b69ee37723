import { describe, expect, it } from 'vitest';
import {
  adamStep, add, arange, assign, cpuAdamStep, cpuEmbedding, cpuEmbeddingBackward, embedding, embeddingBackward, indexSelect, cpuBinary, cpuLinear, cpuMatmul, cpuRand, cpuSgdStep, cpuUnary, engine, full,
  host, linear, matmul, max, mean, mul, rand, relu, scaleInPlace, sgdStep, softmax, sum, tensor, Tensor, zeros, type HostTensor,
} from '../src/node.js';
import { expectClose, randHost, toGpu, withBindingLimit } from './helpers.js';

/** The lowered binding limit: 960 float32 elements bind from any start (a 256-byte alignment). */
const LIMIT = 4096;

withBindingLimit(LIMIT);

function transposeHost(h: HostTensor): HostTensor {
  const [r, c] = h.shape as [number, number];
  const out = host([c, r]);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out.data[j * r + i] = h.data[i * c + j]!;
  return out;
}

describe('tensors over the storage binding limit (lowered to 4 KB)', () => {
  it('setBindingLimit rejects values it cannot honour', () => {
    expect(() => engine().setBindingLimit(100)).toThrow(/setBindingLimit: 100 bytes; expected a multiple of 4/);
    expect(engine().bindingLimit).toBe(LIMIT);
  });

  it('matmul with a row-major a and the output over the limit splits M', async () => {
    const a = randHost([300, 17], 1);
    const b = randHost([17, 9], 2);
    await expectClose(matmul(toGpu(a), toGpu(b)), cpuMatmul(a, b), 1e-5, 1e-5);
    const a4 = randHost([129, 40], 3);
    const b4 = randHost([40, 12], 4);
    await expectClose(matmul(toGpu(a4), toGpu(b4)), cpuMatmul(a4, b4), 1e-5, 1e-5);
    // Rows 20 apart read as vec4s along K = 17: the last row's tail is a partial vec4.
    const wide = randHost([300, 20], 30);
    const narrow = host([300, 17]);
    for (let i = 0; i < 300; i++) narrow.data.set(wide.data.subarray(i * 20, i * 20 + 17), i * 17);
    await expectClose(matmul(toGpu(wide).narrow(1, 0, 17), toGpu(b)), cpuMatmul(narrow, b), 1e-5, 1e-5);
  });

  it('matmul with a transposed a over the limit accumulates chunks of K', async () => {
    const at = randHost([257, 12], 5);
    const b = randHost([257, 3], 6);
    const got = matmul(toGpu(at).T, toGpu(b));
    await expectClose(got, cpuMatmul(transposeHost(at), b), 1e-5, 1e-5);
  });

  it('matmul with a row-major b over the limit accumulates chunks of K, bias and activation once', async () => {
    const a = randHost([5, 400], 7);
    const b = randHost([400, 7], 8);
    const bias = randHost([7], 9);
    const got = matmul(toGpu(a), toGpu(b), { bias: toGpu(bias), activation: 'gelu' });
    await expectClose(got, cpuMatmul(a, b, { bias, activation: 'gelu' }), 1e-4, 1e-5);
    const b4 = randHost([512, 8], 10);
    const a4 = randHost([3, 512], 11);
    await expectClose(matmul(toGpu(a4), toGpu(b4)), cpuMatmul(a4, b4), 1e-4, 1e-5);
  });

  it('linear with the weight over the limit splits its output features', async () => {
    const x = randHost([3, 50], 12);
    const w = randHost([203, 50], 13);
    const bias = randHost([203], 14);
    await expectClose(linear(toGpu(x), toGpu(w), toGpu(bias), 'relu'), cpuLinear(x, w, bias, 'relu'), 1e-5, 1e-5);
    const x4 = randHost([2, 64], 15);
    const w4 = randHost([100, 64], 16);
    await expectClose(linear(toGpu(x4), toGpu(w4)), cpuLinear(x4, w4), 1e-5, 1e-5);
  });

  it('matmul with only the output over the limit', async () => {
    const a = randHost([64, 8], 17);
    const b = randHost([8, 64], 18);
    await expectClose(matmul(toGpu(a), toGpu(b)), cpuMatmul(a, b), 1e-5, 1e-5);
  });

  it('a small view of storage over the limit binds as a range', async () => {
    const w = randHost([40, 100], 19);
    const rows = toGpu(w).narrow(0, 3, 5);
    const want = host([5, 100]);
    want.data.set(w.data.subarray(300, 800));
    await expectClose(relu(rows), cpuUnary('relu', want), 0, 0);
    const b = randHost([100, 2], 20);
    await expectClose(matmul(rows, toGpu(b)), cpuMatmul(want, b), 1e-5, 1e-5);
  });

  it('elementwise ops run in ranges, with small broadcast inputs read whole', async () => {
    const a = randHost([37, 129], 21);
    const b = randHost([37, 129], 22);
    const row = randHost([129], 23);
    await expectClose(add(toGpu(a), toGpu(b)), cpuBinary('add', a, b), 1e-7, 0);
    await expectClose(mul(toGpu(a), toGpu(row)), cpuBinary('mul', a, row), 1e-7, 0);
    await expectClose(mul(toGpu(a), 3), cpuBinary('mul', a, 3), 1e-7, 0);
    await expectClose(toGpu(a).clone(), a, 0, 0);
    const dst = zeros([37, 129]);
    assign(dst, toGpu(b));
    await expectClose(dst, b, 0, 0);
    const ints = tensor(Int32Array.from({ length: 3000 }, (_, i) => i - 1500), { shape: [3000] });
    const sq = await add(ints, ints).data();
    expect(sq).toBeInstanceOf(Int32Array);
    expect(sq[0]).toBe(-3000);
    expect(sq[2999]).toBe(2998);
  });

  it('fills and random draws run in ranges and match the unchunked values', async () => {
    expect([...(await full([3000], 2.5).data())].every((v) => v === 2.5)).toBe(true);
    const r = await arange(0, 2500).data();
    expect(r[0]).toBe(0);
    expect(r[2499]).toBe(2499);
    const chunked = await rand([50, 61], { seed: 7, low: -1, high: 1 }).data();
    await expectClose(rand([50, 61], { seed: 7, low: -1, high: 1 }), cpuRand([50, 61], 7, 0, -1, 1), 1e-6, 1e-7);
    engine().setBindingLimit(null);
    try {
      expect(await rand([50, 61], { seed: 7, low: -1, high: 1 }).data()).toEqual(chunked);
    } finally {
      engine().setBindingLimit(LIMIT);
    }
  });

  it('whole-tensor sum, mean and max reduce each range, then the ranges', async () => {
    const x = randHost([33, 100], 24);
    const xg = toGpu(x);
    let s = 0;
    let m = -Infinity;
    for (const v of x.data) {
      s += v;
      m = Math.max(m, v);
    }
    expect(await sum(xg).item()).toBeCloseTo(s, 3);
    expect(await mean(xg).item()).toBeCloseTo(s / x.data.length, 6);
    expect(await max(xg).item()).toBe(m);
    expect([...sum(xg, undefined, { keepdim: true }).shape]).toEqual([1, 1]);
  });

  it('optimizer steps run in ranges and match the unchunked step bit for bit', async () => {
    const n = 3001;
    const p = randHost([n], 25);
    const g = randHost([n], 26);
    const h = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, decoupled: true, step: 3 };
    const run = (): Tensor[] => {
      const [pt, gt, m, v] = [toGpu(p), toGpu(g), full([n], 0.01), full([n], 0.02)];
      const scale = tensor([0.5]);
      adamStep(pt, gt, m, v, h, scale);
      scaleInPlace(gt, scale);
      return [pt, gt, m, v];
    };
    const read = (ts: Tensor[]): Promise<(Float32Array | Int32Array)[]> => Promise.all(ts.map((t) => t.data()));
    const chunked = run();
    engine().setBindingLimit(null);
    let whole: Tensor[];
    try {
      whole = run();
    } finally {
      engine().setBindingLimit(LIMIT);
    }
    expect(await read(chunked)).toEqual(await read(whole));

    const pw = Float64Array.from(p.data);
    const m = new Float64Array(n).fill(Math.fround(0.01));
    const v = new Float64Array(n).fill(Math.fround(0.02));
    cpuAdamStep(pw, g.data.map((x) => x * 0.5), m, v, h);
    await expectClose(chunked[0]!, { shape: [n], data: pw }, 1e-5, 1e-6);

    const sg = { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 1e-3, nesterov: true, firstStep: true };
    const [pt, gt, buf] = [toGpu(p), toGpu(g), zeros([n])];
    sgdStep(pt, gt, buf, sg);
    const ps = Float64Array.from(p.data);
    cpuSgdStep(ps, g.data, new Float64Array(n), sg);
    await expectClose(pt, { shape: [n], data: ps }, 1e-5, 1e-6);
  });

  it('embedding of a table over the limit takes windows of rows; its gradient is written in windows too', async () => {
    // 300 x 7 floats: windows of 137 rows; indices repeat, span every window and fall outside.
    const V = 300;
    const w = randHost([V, 7], 31);
    const idx = host([4, 9], [0, 136, 137, 138, 273, 274, 299, -1, 300, 5, 5, 299, 150, 0, 1000, 137, 42, 43,
      7, 8, 9, 10, 280, 281, 136, 137, 2, 3, 4, 298, 297, 296, 295, 294, 200, 100]);
    await expectClose(embedding(toGpu(idx, 'int32'), toGpu(w)), cpuEmbedding(idx, w), 0, 0);
    const g = randHost([4, 9, 7], 32);
    for (const opts of [{}, { paddingIdx: 137 }]) {
      await expectClose(embeddingBackward(toGpu(idx, 'int32'), toGpu(g), V, opts), cpuEmbeddingBackward(idx, g, V, opts), 1e-5, 1e-6);
    }
    // Along another dim, or with a row over the limit, the op says so.
    expect(() => indexSelect(toGpu(w), 1, toGpu(host([1], [0]), 'int32'))).toThrow(/indexSelect: .* splits a table over it only along its first dim/);
    expect(() => embedding(toGpu(host([1], [0]), 'int32'), toGpu(randHost([2, 1100], 33)))).toThrow(/embedding: a tensor of 4400 bytes exceeds .*one row of embedding's table is over it/);
  });

  it('ops that cannot split a tensor over the limit name the op, the size and the limit', () => {
    const big = toGpu(randHost([40, 100], 27));
    expect(() => softmax(big, -1)).toThrow(/softmax.*16000 bytes exceeds the adapter's storage binding limit of 4096 bytes/);
    expect(() => big.T.contiguous()).toThrow(/copy: a tensor of 16000 bytes exceeds .* 4096 bytes .*copy splits only a contiguous output/);
    expect(() => matmul(toGpu(randHost([2, 40, 30], 28)), toGpu(randHost([30, 3], 29)).expand(2, 30, 3).contiguous()))
      .toThrow(/matmul: a tensor of 9600 bytes exceeds .* splits only products without batch dims/);
    expect(() => sum(big, 0)).toThrow(/sum: a tensor of 16000 bytes exceeds/);
  });

  it('allocation past maxBufferSize is a clear error', () => {
    const max = engine().device.limits.maxBufferSize;
    const elements = Math.floor(max / 4) + 1;
    expect(() => Tensor.empty([elements])).toThrow(/cannot allocate a tensor of \d+ bytes: the adapter's maxBufferSize is/);
  });
});
