import { beforeAll, describe, expect, it } from 'vitest';
import {
  BINARY, UNARY, assign, binary, cast, collapseDims, cpuBinary, cpuMap, cpuUnary, cpuWhere, host, tensor, unary, where,
  type BinaryName, type UnaryName,
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
