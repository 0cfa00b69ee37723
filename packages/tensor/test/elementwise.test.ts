import { beforeAll, describe, expect, it } from 'vitest';
import {
  BINARY, UNARY, assign, binary, cast, collapseDims, cpuBinary, cpuMap, cpuUnary, cpuWhere, engine, host, tensor, unary, where,
  type BinaryName, type HostTensor, type Tensor, type UnaryName,
} from '../src/node.js';
import { expectClose, randHost, setup, toGpu } from './helpers.js';

beforeAll(setup);

const domain: Partial<Record<UnaryName, [number, number]>> = {
  log: [0.05, 10], sqrt: [0.01, 10], rsqrt: [0.05, 10], reciprocal: [0.2, 3], powScalar: [0.1, 3],
};

describe('unary ops against the float64 reference', () => {
  for (const op of Object.keys(UNARY) as UnaryName[]) {
    it(op, async () => {
      const [lo, hi] = domain[op] ?? [-8, 8];
      for (const shape of [[1], [17], [3, 129], [2, 3, 257]]) {
        const x = randHost(shape, shape.length * 7 + op.length, lo, hi);
        const alpha = op === 'clamp' ? -0.5 : op === 'powScalar' ? 2.5 : 0.1;
        const beta = op === 'clamp' ? 0.7 : 0;
        const y = unary(op, toGpu(x), alpha, beta);
        await expectClose(y, cpuUnary(op, x, alpha, beta), 2e-5, 2e-6);
        y.dispose();
      }
    });
  }
});

describe('binary ops with broadcasting', () => {
  const pairs: [number[], number[]][] = [[[17], [17]], [[3, 1], [1, 129]], [[2, 3, 5], [5]], [[1], [4, 3]], [[2, 1, 7], [3, 1]]];
  for (const op of Object.keys(BINARY) as BinaryName[]) {
    it(op, async () => {
      for (const [sa, sb] of pairs) {
        const a = randHost(sa, 1, op === 'pow' ? 0.1 : -4, 4);
        const b = randHost(sb, 2, op === 'div' ? 0.5 : -3, 3);
        if (op === 'eq' || op === 'ne') b.data.set(a.data.slice(0, Math.min(a.data.length, b.data.length)).map((v, i) => (i % 2 ? v : 0)).slice(0, b.data.length));
        const y = binary(op, toGpu(a), toGpu(b));
        await expectClose(y, cpuBinary(op, a, b), 2e-5, 1e-6);
      }
    });
  }
  it('scalar operands on either side', async () => {
    const a = randHost([3, 5], 3);
    await expectClose(binary('sub', 1, toGpu(a)), cpuBinary('sub', 1, a));
    await expectClose(binary('div', toGpu(a), 4), cpuBinary('div', a, 4));
  });
  it('pow with negative bases and integer exponents', async () => {
    const a = host([4], [-2, -3, 0, 2]);
    const b = host([4], [2, 3, 2, 0.5]);
    await expectClose(binary('pow', toGpu(a), toGpu(b)), host([4], [4, -27, 0, Math.SQRT2]), 1e-6);
  });
  it('rejects shapes that do not broadcast', () => {
    expect(() => binary('add', toGpu(randHost([3, 4], 1)), toGpu(randHost([5], 2)))).toThrow(/cannot be broadcast/);
  });
});

describe('int32', () => {
  it('keeps int32 for integer arithmetic and gives float masks for comparisons', async () => {
    const a = tensor(new Int32Array([5, -7, 100000001, 3]));
    const b = tensor(new Int32Array([2, 3, 1, 3]));
    const s = binary('add', a, b);
    expect(s.dtype).toBe('int32');
    expect([...(await s.data())]).toEqual([7, -4, 100000002, 6]);
    const m = binary('eq', a, b);
    expect(m.dtype).toBe('float32');
    expect([...(await m.data())]).toEqual([0, 0, 0, 1]);
    expect([...(await cast(tensor([1.7, -1.7, 3]), 'int32').data())]).toEqual([1, -1, 3]);
  });
});

describe('where and non-contiguous inputs', () => {
  it('where broadcasts all three operands', async () => {
    const c = host([3, 1], [1, 0, 1]);
    const a = randHost([3, 4], 5);
    const b = randHost([4], 6);
    await expectClose(where(toGpu(c), toGpu(a), toGpu(b)), cpuWhere(c, a, b));
  });
  it('reads transposed, sliced and expanded views through their strides', async () => {
    const a = randHost([6, 9], 8);
    const ga = toGpu(a);
    const t = ga.transpose(0, 1).slice(0, 1, 8, 2); // [4, 6]
    const want = host([4, 6]);
    for (let i = 0; i < 4; i++) for (let j = 0; j < 6; j++) want.data[i * 6 + j] = a.data[j * 9 + (1 + 2 * i)]!;
    await expectClose(unary('exp', t), cpuUnary('exp', want), 2e-6);
    const e = ga.slice(0, 2, 3).expand(5, 9);
    await expectClose(unary('identity', e), cpuMap([host([1, 9], a.data.slice(18, 27))], (v) => v, [5, 9]));
  });
});

describe('collapsed coordinate walks', () => {
  it('merges the dims every operand walks as one and drops those of size 1', () => {
    expect(collapseDims([2, 3, 4, 5], [[3, 1, 0, 0]])).toEqual({ shape: [6, 20], strides: [[1, 0]] });
    expect(collapseDims([2, 3, 4, 5], [[0, 1, 0, 0]])).toEqual({ shape: [2, 3, 20], strides: [[0, 1, 0]] });
    expect(collapseDims([1, 4, 1, 6], [[9, 6, 9, 1], [0, 1, 0, 4]])).toEqual({ shape: [4, 6], strides: [[6, 1], [1, 4]] });
    expect(collapseDims([1, 1], [[5, 7]])).toEqual({ shape: [], strides: [[]] });
  });
  it('per-channel, per-sample and permuted operands and a strided output match the reference', async () => {
    const x = randHost([2, 3, 4, 5], 11);
    const s = randHost([2, 3, 1, 1], 12);
    const c = randHost([3, 1, 1], 13);
    await expectClose(binary('mul', toGpu(s), toGpu(x)), cpuBinary('mul', s, x), 1e-6);
    await expectClose(binary('add', toGpu(x), toGpu(c)), cpuBinary('add', x, c), 1e-6);
    const p = toGpu(randHost([5, 2, 4, 3], 14));
    const pv = p.permute(1, 3, 2, 0);
    const ph = host([2, 3, 4, 5]);
    const pd = await p.data();
    for (let a = 0; a < 2; a++) for (let b = 0; b < 3; b++) for (let h = 0; h < 4; h++) for (let w = 0; w < 5; w++) {
      ph.data[((a * 3 + b) * 4 + h) * 5 + w] = pd[((w * 2 + a) * 4 + h) * 3 + b]!;
    }
    await expectClose(binary('sub', pv, toGpu(s)), cpuBinary('sub', ph, s), 1e-6);
    const dst = toGpu(host([2, 4, 3, 5]));
    assign(dst.transpose(1, 2), binary('mul', toGpu(s), toGpu(x)));
    const back = host([2, 3, 4, 5]);
    const dd = await dst.data();
    for (let a = 0; a < 2; a++) for (let b = 0; b < 3; b++) for (let h = 0; h < 4; h++) for (let w = 0; w < 5; w++) {
      back.data[((a * 3 + b) * 4 + h) * 5 + w] = dd[((a * 4 + h) * 3 + b) * 5 + w]!;
    }
    await expectClose(toGpu(back), cpuBinary('mul', s, x), 1e-6);
  });
});

describe('add, sub, mul and div four elements at a time (float32, innermost dim a multiple of 4)', () => {
  const ops = ['add', 'sub', 'mul', 'div'] as const;
  const cases: { name: string; a: () => [Tensor, HostTensor]; b: () => [Tensor, HostTensor] }[] = [
    { name: 'same shape, contiguous', a: () => both([2, 3, 4, 8], 1), b: () => both([2, 3, 4, 8], 2, 0.5, 2) },
    { name: 'a per-channel gate over NCHW (one value for each group of four)', a: () => both([3, 1, 1], 3, 0.5, 2), b: () => both([2, 3, 4, 8], 4) },
    { name: 'a row broadcast over the leading dims (read through coordinates)', a: () => both([2, 3, 4, 8], 5), b: () => both([1, 8], 6, 0.5, 2) },
    { name: 'a view at an offset that is not a multiple of 4 (the scalar kernel)', a: () => sliced(7), b: () => both([3, 8], 8, 0.5, 2) },
    { name: 'a transposed view (the scalar kernel)', a: () => transposed(9), b: () => both([8, 4], 10, 0.5, 2) },
    { name: '4n + 2 elements (the scalar kernel)', a: () => both([2, 5, 3], 11), b: () => both([3], 12, 0.5, 2) },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      for (const op of ops) {
        const [ga, ha] = c.a();
        const [gb, hb] = c.b();
        await expectClose(binary(op, ga, gb), cpuBinary(op, ha, hb), 1e-6, 1e-7);
        await expectClose(binary(op, ga, 0.75), cpuBinary(op, ha, 0.75), 1e-6, 1e-7);
        await expectClose(binary(op, 1.5, gb), cpuBinary(op, 1.5, hb), 1e-6, 1e-7);
      }
    });
  }

  it('takes the vec4 kernel where it applies and the scalar one elsewhere', () => {
    const codes: string[] = [];
    const e = engine();
    const dispatch = e.dispatch.bind(e);
    e.dispatch = (d) => {
      codes.push(d.code);
      dispatch(d);
    };
    try {
      binary('mul', both([3, 1, 1], 13)[0], both([2, 3, 4, 8], 14)[0]);
      binary('mul', transposed(15)[0], both([8, 4], 16)[0]);
    } finally {
      delete (e as { dispatch?: unknown }).dispatch;
    }
    expect(codes.map((c) => c.includes('array<vec4<f32>>'))).toEqual([true, false]);
  });

  function both(shape: number[], seed: number, lo = -1, hi = 1): [Tensor, HostTensor] {
    const h = randHost(shape, seed, lo, hi);
    return [toGpu(h), h];
  }
  /** Rows 0..2 of a [3, 9] tensor from column 1: offset 1, rows 9 apart. */
  function sliced(seed: number): [Tensor, HostTensor] {
    const h = randHost([3, 9], seed);
    const want = host([3, 8]);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 8; j++) want.data[i * 8 + j] = h.data[i * 9 + j + 1]!;
    return [toGpu(h).narrow(1, 1, 8), want];
  }
  function transposed(seed: number): [Tensor, HostTensor] {
    const h = randHost([4, 8], seed);
    const want = host([8, 4]);
    for (let i = 0; i < 4; i++) for (let j = 0; j < 8; j++) want.data[j * 4 + i] = h.data[i * 8 + j]!;
    return [toGpu(h).transpose(0, 1), want];
  }
});
