import { beforeAll, describe, expect, it } from 'vitest';
import { arange, cpuRand, cpuRandn, full, getRngState, keep, manualSeed, memory, ones, rand, randn, tensor, tidy, zeros, add, mul, assign, sgdStep } from '../src/node.js';
import { setup } from './helpers.js';

beforeAll(setup);

describe('creation', () => {
  it('tensor from nested arrays infers the shape', async () => {
    const t = tensor([[1, 2, 3], [4, 5, 6]]);
    expect(t.shape).toEqual([2, 3]);
    expect(await t.toArray()).toEqual([[1, 2, 3], [4, 5, 6]]);
    expect(() => tensor([[1, 2], [3]])).toThrow(/ragged/);
    expect(() => tensor([1, 2, 3], { shape: [2, 2] })).toThrow(/do not fill/);
  });
  it('zeros, ones, full, arange', async () => {
    expect([...(await zeros([3]).data())]).toEqual([0, 0, 0]);
    expect([...(await ones([2]).data())]).toEqual([1, 1]);
    expect([...(await full([2], 2.5).data())]).toEqual([2.5, 2.5]);
    const r = arange(2, 11, 3);
    expect(r.dtype).toBe('int32');
    expect([...(await r.data())]).toEqual([2, 5, 8]);
    expect([...(await arange(0, 1, 0.25).data())]).toEqual([0, 0.25, 0.5, 0.75]);
  });
  it('rand is the CPU reference bit for bit, randn to float32 rounding', async () => {
    const a = await rand([1000], { seed: 42 }).data();
    const want = cpuRand([1000], 42, 0);
    expect([...a]).toEqual([...want.data].map(Math.fround));
    const n = Array.from(await randn([4096], { seed: 7 }).data());
    const wn = cpuRandn([4096], 7, 0);
    for (let i = 0; i < n.length; i++) expect(Math.abs(n[i]! - wn.data[i]!)).toBeLessThan(1e-4 * (1 + Math.abs(wn.data[i]!)));
    const mean = n.reduce((s, v) => s + v, 0) / n.length;
    const varr = n.reduce((s, v) => s + (v - mean) ** 2, 0) / n.length;
    expect(Math.abs(mean)).toBeLessThan(0.05);
    expect(Math.abs(varr - 1)).toBeLessThan(0.06);
  });
  it('the global generator is reproducible after manualSeed', async () => {
    manualSeed(123);
    const a = await rand([8]).data();
    const b = await rand([8]).data();
    expect(a).not.toEqual(b);
    manualSeed(123);
    expect(await rand([8]).data()).toEqual(a);
    expect(getRngState().stream).toBe(1);
  });
});

describe('views', () => {
  it('reshape, permute, slice, select, squeeze and unsqueeze share storage', async () => {
    const t = arange(24, undefined, 1, 'float32').reshape(2, 3, 4);
    const p = t.permute(2, 0, 1);
    expect(p.shape).toEqual([4, 2, 3]);
    expect(p.storage).toBe(t.storage);
    expect(p.isContiguous).toBe(false);
    expect(await p.toArray()).toEqual([[[0, 4, 8], [12, 16, 20]], [[1, 5, 9], [13, 17, 21]], [[2, 6, 10], [14, 18, 22]], [[3, 7, 11], [15, 19, 23]]]);
    expect(await t.select(1, -1).toArray()).toEqual([[8, 9, 10, 11], [20, 21, 22, 23]]);
    expect(await t.slice(2, 1, 4, 2).toArray()).toEqual([[[1, 3], [5, 7], [9, 11]], [[13, 15], [17, 19], [21, 23]]]);
    expect(t.unsqueeze(1).shape).toEqual([2, 1, 3, 4]);
    expect(t.unsqueeze(1).squeeze(1).shape).toEqual([2, 3, 4]);
    expect(t.reshape(-1, 4).shape).toEqual([6, 4]);
    expect(() => t.reshape(5, -1)).toThrow(/cannot reshape/);
  });
  it('reshape of a non-contiguous view copies only when it must', async () => {
    const t = arange(12, undefined, 1, 'float32').reshape(3, 4);
    const tt = t.transpose(0, 1);
    expect(() => tt.view(12)).toThrow(/not possible/);
    const flat = tt.reshape(12);
    expect(flat.storage).not.toBe(t.storage);
    expect([...(await flat.data())]).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    const s = t.unsqueeze(0).expand(2, 3, 4);
    expect(s.strides).toEqual([0, 4, 1]);
    expect(t.slice(0, 1).reshape(4, 2).storage).toBe(t.storage);
  });
});

describe('memory', () => {
  it('tidy releases every intermediate except the result', async () => {
    const before = memory();
    const kept = tidy(() => {
      const a = ones([64, 64]);
      const b = add(a, 1);
      return mul(b, b);
    });
    const after = memory();
    expect(after.liveBuffers).toBe(before.liveBuffers + 1);
    expect(after.liveTensors).toBe(before.liveTensors + 1);
    expect((await kept.data())[0]).toBe(4);
    kept.dispose();
    expect(memory().liveBuffers).toBe(before.liveBuffers);
  });
  it('keep() lets a tensor outlive its scope', () => {
    const before = memory().liveTensors;
    let k = null as ReturnType<typeof ones> | null;
    tidy(() => {
      k = keep(ones([4]));
      ones([4]);
    });
    expect(memory().liveTensors).toBe(before + 1);
    k!.dispose();
  });
  it('using a disposed tensor says so', () => {
    const t = ones([2]);
    t.dispose();
    expect(() => add(t, 1)).toThrow(/after dispose/);
  });
});

describe('version', () => {
  it('grows when a kernel, a copy or an upload writes the storage, or setData replaces it, and only then', async () => {
    const t = tensor([1, 2, 3, 4]);
    const other = tensor([5, 6, 7, 8]);
    const seen = [t.version];
    const read = add(t, other);
    expect(t.version).toBe(seen[0]);
    assign(t, other);
    seen.push(t.version);
    sgdStep(t, other, null, { lr: 0.1, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, firstStep: true });
    seen.push(t.version);
    const view = t.slice(0, 1, 3);
    assign(view, 0);
    seen.push(t.version);
    expect(view.version).toBe(t.version);
    t.setData(tensor([9, 9, 9, 9]));
    seen.push(t.version);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThan(seen[i - 1]!);
    const before = other.version;
    void add(other, 1);
    expect(other.version).toBe(before);
    expect(await t.toArray()).toEqual([9, 9, 9, 9]);
    for (const x of [t, other, read, view]) x.dispose();
  });
});
