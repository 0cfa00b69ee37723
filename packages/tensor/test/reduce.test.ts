import { beforeAll, describe, expect, it } from 'vitest';
import {
  argmax, argmin, cpuArgmax, cpuArgmin, cpuMax, cpuMean, cpuMin, cpuStd, cpuSum, cpuVariance, host, max, mean, memory, min, std, sum,
  tensor, tidy, variance, varMean, type Dims, type HostTensor, type Tensor,
} from '../src/node.js';
import { expectClose, randHost, setup, toGpu } from './helpers.js';

beforeAll(setup);

/** The largest row sum of |x| over `dims`: float32 sums are checked against it, not against
 * the (possibly cancelling) result. */
function absScale(x: HostTensor, dims?: Dims): number {
  const a = cpuSum(host(x.shape, x.data.map(Math.abs)), dims);
  return Math.max(1, ...a.data);
}

const cases: [number[], (Dims | undefined)[]][] = [
  [[1], [undefined, 0]],
  [[3], [undefined, -1]],
  [[17, 3], [0, 1, [0, 1]]],
  [[129], [0]],
  [[257, 5], [0, 1]],
  [[3, 17, 5], [[0, 2], [1], [1, 2], [0, 1], [2]]],
  [[2, 3, 4, 5], [[1, 3], [0, 2, 3], undefined]],
  [[100000], [undefined]],
  [[3, 40000], [1, 0]],
  // Several reduced dims with a split last one, and with a last one too short to split.
  [[8, 3, 2000], [[0, 2]]],
  [[4000, 3, 5], [[0, 2]]],
];

describe('sum, mean, max, min over dim sets', () => {
  for (const [shape, dimsList] of cases) {
    it(`[${shape}]`, async () => {
      const x = randHost(shape, shape.length * 31 + shape[0]!);
      const gx = toGpu(x);
      for (const dims of dimsList) {
        for (const keepdim of [false, true]) {
          const scale = absScale(x, dims);
          await expectClose(sum(gx, dims, { keepdim }), cpuSum(x, dims, { keepdim }), 1e-5, 2e-7 * scale);
          const count = x.data.length / cpuSum(x, dims).data.length;
          await expectClose(mean(gx, dims, { keepdim }), cpuMean(x, dims, { keepdim }), 1e-5, (2e-7 * scale) / count);
          await expectClose(max(gx, dims, { keepdim }), cpuMax(x, dims, { keepdim }), 0, 0);
          await expectClose(min(gx, dims, { keepdim }), cpuMin(x, dims, { keepdim }), 0, 0);
        }
      }
    });
  }

  it('reads transposed, strided and expanded views through their strides', async () => {
    const x = randHost([6, 33, 10], 3);
    const gx = toGpu(x);
    const views: [Tensor, HostTensor][] = [];
    // permute(2, 0, 1), then a strided slice of dim 2.
    const p = gx.permute(2, 0, 1).slice(2, 1, 30, 3);
    const ph = host(p.shape);
    let k = 0;
    for (let a = 0; a < 10; a++) for (let b = 0; b < 6; b++) for (let c = 1; c < 30; c += 3) ph.data[k++] = x.data[b * 330 + c * 10 + a]!;
    views.push([p, ph]);
    const e = gx.select(0, 2).slice(0, 0, 1).expand(7, 33, 10).select(1, 4); // [7, 10], stride 0 on dim 0
    const eh = host([7, 10]);
    for (let a = 0; a < 7; a++) for (let c = 0; c < 10; c++) eh.data[a * 10 + c] = x.data[2 * 330 + c]!;
    views.push([e, eh]);
    for (const [v, h] of views) {
      for (const dims of [undefined, 0, -1, [0, v.rank - 1]]) {
        await expectClose(sum(v, dims), cpuSum(h, dims), 1e-5, 2e-7 * absScale(h, dims));
        await expectClose(max(v, dims), cpuMax(h, dims), 0, 0);
        await expectClose(variance(v, dims), cpuVariance(h, dims), 1e-4, 1e-6);
      }
      await expectClose(argmax(v, 1), cpuArgmax(h, 1), 0, 0);
      await expectClose(argmin(v), cpuArgmin(h), 0, 0);
    }
  });

  it('keeps int32 for int32 inputs', async () => {
    const x = tensor(new Int32Array([5, -7, 100000001, 3, 9, 9]), { shape: [2, 3] });
    const s = sum(x, 1);
    expect(s.dtype).toBe('int32');
    expect([...(await s.data())]).toEqual([100000001 - 2, 21]);
    expect([...(await max(x, 0).data())]).toEqual([5, 9, 100000001]);
    expect([...(await min(x).data())]).toEqual([-7]);
    expect(() => mean(x)).toThrow(/float32/);
  });
});

describe('variance and std', () => {
  for (const [shape, dimsList] of cases) {
    it(`[${shape}]`, async () => {
      const x = randHost(shape, shape.length * 17 + 5, -2, 3);
      const gx = toGpu(x);
      for (const dims of dimsList) {
        for (const correction of [1, 0, 2]) {
          const opts = { correction, keepdim: correction === 0 };
          await expectClose(variance(gx, dims, opts), cpuVariance(x, dims, opts), 2e-5, 1e-6);
          await expectClose(std(gx, dims, opts), cpuStd(x, dims, opts), 2e-5, 1e-6);
        }
      }
    });
  }

  it('stays accurate for a large mean (Welford, not E[x²] - E[x]²)', async () => {
    const x = randHost([4, 30000], 9, 1000, 1001);
    const gx = toGpu(x);
    await expectClose(variance(gx, 1), cpuVariance(x, 1), 1e-3);
    const vm = varMean(gx, 1, { correction: 0 });
    await expectClose(vm.var, cpuVariance(x, 1, { correction: 0 }), 1e-3);
    await expectClose(vm.mean, cpuMean(x, 1), 1e-6);
  });

  it('one element with correction 1 is NaN, as in PyTorch', async () => {
    const v = await variance(tensor([3]), 0).data();
    expect(Number.isNaN(v[0])).toBe(true);
  });
});

describe('argmax and argmin', () => {
  it('match the reference along each dim and flattened, first index on ties', async () => {
    for (const shape of [[1], [17], [3, 129], [257, 3], [2, 5, 7], [100000]]) {
      // Few distinct values, so ties are everywhere.
      const x = randHost(shape, shape[0]! + 11, 0, 5);
      x.data.forEach((v, i) => (x.data[i] = Math.floor(v)));
      const gx = toGpu(x);
      for (const dim of [undefined, ...shape.map((_, i) => i)]) {
        const a = argmax(gx, dim);
        expect(a.dtype).toBe('int32');
        await expectClose(a, cpuArgmax(x, dim), 0, 0);
        await expectClose(argmin(gx, dim, { keepdim: true }), cpuArgmin(x, dim, { keepdim: true }), 0, 0);
      }
    }
  });

  it('the first index wins a tie split across chunks', async () => {
    const x = new Float32Array(50000).fill(1);
    x[30001] = 7;
    x[40000] = 7;
    x[49999] = 7;
    x[20000] = -3;
    x[45000] = -3;
    const gx = tensor(x);
    expect(await argmax(gx).item()).toBe(30001);
    expect(await argmin(gx).item()).toBe(20000);
  });

  it('NaN counts as the extreme and propagates through max and min', async () => {
    const x = host([2, 5], [1, NaN, 3, NaN, 0, 4, 2, 9, 1, 9]);
    const gx = toGpu(x);
    expect([...(await argmax(gx, 1).data())]).toEqual([1, 2]);
    expect([...(await argmin(gx, 1).data())]).toEqual([1, 3]);
    const m = await max(gx, 1).data();
    expect(Number.isNaN(m[0])).toBe(true);
    expect(m[1]).toBe(9);
    expect(Number.isNaN((await min(gx, 1).data())[0])).toBe(true);
  });
});

describe('edges', () => {
  it('0-d tensors, size-0 reductions and bad dims', async () => {
    const s = tensor(2.5);
    expect(await sum(s).item()).toBe(2.5);
    expect((await sum(s, 0)).shape).toEqual([]);
    const z = toGpu(host([3, 0]));
    expect([...(await sum(z, 1).data())]).toEqual([0, 0, 0]);
    expect(Number.isNaN((await mean(z, 1).data())[0])).toBe(true);
    expect(sum(z, 0).shape).toEqual([0]);
    expect(() => max(z, 1)).toThrow(/zero elements/);
    expect(() => argmax(z, 1)).toThrow(/zero elements/);
    const x = toGpu(randHost([2, 3], 1));
    expect(() => sum(x, [0, -2])).toThrow(/more than once/);
    expect(() => sum(x, 2)).toThrow(/out of range/);
  });

  it('frees every intermediate buffer', async () => {
    const x = toGpu(randHost([3, 100000], 4));
    const before = memory().liveBuffers;
    const r = tidy(() => [sum(x), variance(x, 1), argmax(x, 1)]);
    expect(memory().liveBuffers).toBe(before + 3);
    for (const t of r) t.dispose();
    expect(memory().liveBuffers).toBe(before);
  });
});
