import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '../src/index.js';
import { BINARY, UNARY, cpuBinary, cpuMap, cpuUnary, cpuWhere, host, type BinaryName, type UnaryName } from '../src/index.js';
import { randHost, setup } from '../../tensor/test/helpers.js';
import { gradcheck } from './gradcheck.js';

beforeAll(setup);

const domain: Partial<Record<UnaryName, [number, number]>> = {
  log: [0.2, 3], sqrt: [0.2, 3], rsqrt: [0.2, 3], reciprocal: [0.3, 2], powScalar: [0.2, 2],
};
const nonDifferentiable = new Set<UnaryName>(['sign', 'floor', 'ceil', 'round']);

describe('unary backward rules vs finite differences', () => {
  for (const op of Object.keys(UNARY) as UnaryName[]) {
    if (nonDifferentiable.has(op)) continue;
    it(op, async () => {
      const [lo, hi] = domain[op] ?? [-3, 3];
      const alpha = op === 'clamp' ? -0.5 : op === 'powScalar' ? 2.5 : 0.1;
      const beta = op === 'clamp' ? 0.7 : 0;
      await gradcheck({
        inputs: [randHost([3, 17], op.length, lo, hi)],
        gpu: ([x]) => A.unary(op, x!, alpha, beta),
        cpu: ([x]) => cpuUnary(op, x!, alpha, beta),
      });
    });
  }
});

describe('binary backward rules with broadcasting', () => {
  const diff = (Object.keys(BINARY) as BinaryName[]).filter((op) => (BINARY[op] as A.BinaryOp).gradA !== null);
  for (const op of diff) {
    it(op, async () => {
      for (const [sa, sb] of [[[4, 5], [4, 5]], [[3, 1, 5], [4, 1]], [[7], [2, 7]]] as [number[], number[]][]) {
        await gradcheck({
          inputs: [randHost(sa, 1, op === 'pow' ? 0.3 : -2, 2), randHost(sb, 2, op === 'div' || op === 'pow' ? 0.5 : -2, 2)],
          gpu: ([a, b]) => A.binary(op, a!, b!),
          cpu: ([a, b]) => cpuBinary(op, a!, b!),
        });
      }
    });
  }
  it('scalar operands and where', async () => {
    await gradcheck({ inputs: [randHost([5, 3], 4, 0.5, 2)], gpu: ([a]) => A.div(2, a!), cpu: ([a]) => cpuBinary('div', 2, a!) });
    const cond = host([3, 1], [1, 0, 1]);
    await gradcheck({
      inputs: [cond, randHost([3, 4], 5), randHost([4], 6)],
      grad: [false, true, true],
      gpu: ([c, a, b]) => A.where(c!, a!, b!),
      cpu: ([c, a, b]) => cpuWhere(c!, a!, b!),
    });
  });
});

describe('views carry gradients', () => {
  it('transpose, slice, select, expand, reshape, unsqueeze, contiguous', async () => {
    await gradcheck({
      inputs: [randHost([4, 6], 3)],
      gpu: ([x]) => A.mul(x!.transpose(0, 1).slice(0, 1, 6, 2).reshape(2, 6).unsqueeze(0).expand(3, 2, 6).contiguous(), 2),
      cpu: ([x]) => {
        const out = host([3, 2, 6]);
        // x^T [6,4] rows 1,3,5 -> [3,4] -> reshape [2,6] -> broadcast to [3,2,6]
        const rows = [1, 3, 5];
        const flat: number[] = [];
        for (const r of rows) for (let c = 0; c < 4; c++) flat.push(x!.data[c * 6 + r]!);
        for (let k = 0; k < 3; k++) for (let i = 0; i < 12; i++) out.data[k * 12 + i] = 2 * flat[i]!;
        return out;
      },
    });
    await gradcheck({
      inputs: [randHost([3, 5], 8)],
      gpu: ([x]) => A.exp(x!.select(1, 2)),
      cpu: ([x]) => cpuMap([host([3], [0, 1, 2].map((i) => x!.data[i * 5 + 2]!))], Math.exp),
    });
  });
});

describe('the tape', () => {
  it('accumulates across backward calls until zeroGrad, and rejects a second pass through a freed graph', async () => {
    const x = A.tensor([1, 2, 3]);
    x.requiresGrad = true;
    const y = A.mul(x, x);
    A.backward(y, A.ones([3]));
    expect([...(await x.grad!.data())]).toEqual([2, 4, 6]);
    expect(() => A.backward(y, A.ones([3]))).toThrow(/second time/);
    const z = A.mul(x, 3);
    A.backward(z, A.ones([3]));
    expect([...(await x.grad!.data())]).toEqual([5, 7, 9]);
    A.zeroGrad([x]);
    expect(x.grad).toBeNull();
  });
  it('retainGraph allows a second backward', async () => {
    const x = A.tensor([2]);
    x.requiresGrad = true;
    const y = A.mul(x, x);
    A.backward(y, undefined, { retainGraph: true });
    A.backward(y);
    expect([...(await x.grad!.data())]).toEqual([8]);
  });
  it('explains backward from a non-scalar and from a tensor without grad', () => {
    const x = A.tensor([1, 2]);
    expect(() => A.backward(A.mul(x, 2))).toThrow(/does not require grad/);
    x.requiresGrad = true;
    expect(() => A.backward(A.mul(x, 2))).toThrow(/needs an explicit gradient of shape \[2\]/);
  });
  it('noGrad records nothing; detach cuts the graph; frozen inputs record no node', () => {
    const x = A.tensor([1, 2]);
    x.requiresGrad = true;
    const y = A.noGrad(() => A.exp(x));
    expect(y.requiresGrad).toBe(false);
    expect(y.gradNode).toBeNull();
    expect(A.detach(x).requiresGrad).toBe(false);
    const frozen = A.tensor([1, 2]);
    expect(A.relu(A.mul(frozen, 2)).gradNode).toBeNull();
  });
  it('a diamond graph sums both paths', async () => {
    const x = A.tensor([0.5, -1]);
    x.requiresGrad = true;
    const a = A.exp(x);
    const y = A.add(A.mul(a, a), a);
    A.backward(y, A.ones([2]));
    const g = await x.grad!.data();
    [0.5, -1].forEach((v, i) => expect(g[i]).toBeCloseTo(2 * Math.exp(2 * v) + Math.exp(v), 5));
  });
  it('backward frees saved activations: memory returns to where it was', async () => {
    const x = A.randn([64, 64], { seed: 1 });
    x.requiresGrad = true;
    const run = (): void => A.tidy(() => {
      const y = A.tanh(A.mul(A.exp(A.mul(x, 0.1)), x));
      A.backward(y, A.onesLike(y));
    });
    run();
    A.zeroGrad([x]);
    await A.sync();
    const before = A.memory();
    for (let i = 0; i < 20; i++) {
      run();
      A.zeroGrad([x]);
    }
    const after = A.memory();
    expect(after.liveBuffers).toBe(before.liveBuffers);
    expect(after.liveTensors).toBe(before.liveTensors);
  });
});
