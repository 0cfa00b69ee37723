import { beforeAll, describe, expect, it } from 'vitest';
import {
  cat, chunk, concat, cpuCat, cpuChunk, cpuFlip, cpuPad, cpuRepeat, cpuSplit, cpuStack, cpuTril, cpuTriu,
  flip, host, memory, ones, pad, repeat, split, stack, tensor, tril, triu, type HostTensor, type PadMode,
} from '../src/node.js';
import { expectClose, permuteHost, randHost, setup, toGpu } from './helpers.js';

beforeAll(setup);

/** The host copy of `h.permute(dims)`, to pair with a GPU permuted view. */

const bigInts = (shape: number[], base: number): HostTensor => {
  const h = host(shape);
  h.data.forEach((_, i) => (h.data[i] = base + i * 7919));
  return h;
};

describe('cat and stack', () => {
  it('cat joins odd shapes along positive and negative dims', async () => {
    const parts = [randHost([3, 5, 2], 1), randHost([3, 17, 2], 2), randHost([3, 1, 2], 3)];
    await expectClose(cat(parts.map((p) => toGpu(p)), 1), cpuCat(parts, 1), 0, 0);
    await expectClose(concat(parts.map((p) => toGpu(p)), -2), cpuCat(parts, -2), 0, 0);
    const rows = [randHost([2, 129], 4), randHost([1, 129], 5), randHost([0, 129], 6)];
    await expectClose(cat(rows.map((p) => toGpu(p)), 0), cpuCat(rows, 0), 0, 0);
  });
  it('cat reads transposed and sliced inputs through their strides', async () => {
    const a = randHost([5, 3], 7);
    const b = randHost([3, 8], 8);
    const ga = toGpu(a).T; // [3, 5]
    const gb = toGpu(b).slice(1, 1, 8, 3); // [3, 3]: columns 1, 4, 7
    const hb = host([3, 3], [0, 1, 2].flatMap((r) => [1, 4, 7].map((c) => b.data[r * 8 + c]!)));
    await expectClose(cat([ga, gb], -1), cpuCat([permuteHost(a, [1, 0]), hb], -1), 0, 0);
  });
  it('cat and stack keep int32 exactly', async () => {
    const a = bigInts([2, 3], 100000001);
    const b = bigInts([2, 3], -200000003);
    const c = cat([toGpu(a, 'int32'), toGpu(b, 'int32')], 1);
    expect(c.dtype).toBe('int32');
    await expectClose(c, cpuCat([a, b], 1), 0, 0);
    const s = stack([toGpu(a, 'int32'), toGpu(b, 'int32')], -1);
    expect(s.dtype).toBe('int32');
    await expectClose(s, cpuStack([a, b], -1), 0, 0);
  });
  it('stack inserts a dim at every position, including scalars', async () => {
    const xs = [randHost([3, 5], 1), randHost([3, 5], 2), randHost([3, 5], 3)];
    for (const dim of [0, 1, 2, -1, -3]) {
      await expectClose(stack(xs.map((x) => toGpu(x)), dim), cpuStack(xs, dim), 0, 0);
    }
    const t = toGpu(randHost([4, 3], 9)).T;
    await expectClose(stack([t, t], 1), cpuStack([permuteHost(randHost([4, 3], 9), [1, 0]), permuteHost(randHost([4, 3], 9), [1, 0])], 1), 0, 0);
    expect(await stack([tensor(1), tensor(2)]).toArray()).toEqual([1, 2]);
  });
  it('leaves no temporaries behind', () => {
    const xs = [toGpu(randHost([3, 4], 1)), toGpu(randHost([3, 4], 2))];
    const before = memory().liveTensors;
    const s = stack(xs, 1);
    const c = cat(xs, -1);
    expect(memory().liveTensors).toBe(before + 2);
    s.dispose();
    c.dispose();
  });
  it('names mismatched shapes and dtypes', () => {
    const a = toGpu(randHost([3, 4], 1));
    expect(() => cat([a, toGpu(randHost([2, 5], 2))], 0)).toThrow('cat: tensor 1 has shape [2, 5] but tensor 0 has [3, 4]; sizes must match except in dim 0');
    expect(() => cat([a, toGpu(randHost([3, 4, 1], 2))], 0)).toThrow(/tensor 1 has shape \[3, 4, 1\]/);
    expect(() => cat([a, toGpu(randHost([3, 4], 2), 'int32')], 0)).toThrow(/tensor 1 is int32 but tensor 0 is float32/);
    expect(() => cat([], 0)).toThrow(/at least one/);
    expect(() => cat([a], 2)).toThrow(/dim 2 is out of range/);
    expect(() => stack([a, toGpu(randHost([4, 3], 2))])).toThrow('stack: tensor 1 has shape [4, 3] but tensor 0 has [3, 4]; all must match');
  });
});

describe('split and chunk', () => {
  it('return views that match the reference', async () => {
    const x = randHost([4, 17, 3], 1);
    const gx = toGpu(x);
    for (const [arg, dim] of [[5, 1], [[2, 0, 15], -2], [3, 0], [100, 2]] as [number | number[], number][]) {
      const parts = split(gx, arg, dim);
      const want = cpuSplit(x, arg, dim);
      expect(parts.length).toBe(want.length);
      for (let i = 0; i < parts.length; i++) {
        expect(parts[i]!.storage).toBe(gx.storage);
        await expectClose(parts[i]!, want[i]!, 0, 0);
      }
    }
    for (const n of [1, 3, 4, 5, 17, 20]) {
      const parts = chunk(gx, n, 1);
      const want = cpuChunk(x, n, 1);
      expect(parts.map((p) => p.shape[1])).toEqual(want.map((w) => w.shape[1]));
      for (let i = 0; i < parts.length; i++) await expectClose(parts[i]!, want[i]!, 0, 0);
    }
  });
  it('splits a transposed view without copying', async () => {
    const x = randHost([6, 5], 2);
    const gx = toGpu(x);
    const [a, b] = chunk(gx.T, 2, -1);
    expect(a!.storage).toBe(gx.storage);
    const xt = permuteHost(x, [1, 0]);
    const want = cpuChunk(xt, 2, -1);
    await expectClose(a!, want[0]!, 0, 0);
    await expectClose(b!, want[1]!, 0, 0);
  });
  it('rejects sections that do not add up', () => {
    const x = toGpu(randHost([3, 6], 1));
    expect(() => split(x, [2, 3], 1)).toThrow('split: sections [2, 3] sum to 5 but dim 1 has size 6');
    expect(() => split(x, 0, 1)).toThrow(/positive integer/);
    expect(() => chunk(x, 0)).toThrow(/positive integer/);
  });
});

describe('pad', () => {
  const cases: [PadMode, number[]][] = [
    ['constant', [1, 2]], ['constant', [2, 0, 1, 3, 1, 1]], ['constant', [-1, 2, 0, -2]],
    ['reflect', [2, 3]], ['reflect', [1, 2, 2, 1]], ['replicate', [3, 1, 0, 2]], ['replicate', [0, 0, 0, 0, 2, 1]],
  ];
  for (const [mode, pads] of cases) {
    it(`${mode} [${pads}]`, async () => {
      const x = randHost([2, 3, 5, 7], pads.length + mode.length);
      const value = mode === 'constant' ? 1.5 : undefined;
      await expectClose(pad(toGpu(x), pads, { mode, value }), cpuPad(x, pads, { mode, value }), 0, 0);
    });
  }
  it('reads permuted inputs and pads int32 with an integer value', async () => {
    const x = randHost([4, 3, 6], 3);
    const xp = permuteHost(x, [2, 0, 1]);
    for (const mode of ['constant', 'reflect', 'replicate'] as PadMode[]) {
      await expectClose(pad(toGpu(x).permute(2, 0, 1), [2, 1, 1, 3], { mode }), cpuPad(xp, [2, 1, 1, 3], { mode }), 0, 0);
    }
    const xi = bigInts([2, 3], 123456789);
    const got = pad(toGpu(xi, 'int32'), [1, 1, 1, 0], { value: -7 });
    expect(got.dtype).toBe('int32');
    await expectClose(got, cpuPad(xi, [1, 1, 1, 0], { value: -7 }), 0, 0);
  });
  it('pads an expanded (stride-0) input', async () => {
    const row = randHost([1, 5], 4);
    const e = toGpu(row).expand(3, 5);
    const full = host([3, 5], [...row.data, ...row.data, ...row.data]);
    await expectClose(pad(e, [0, 0, 1, 1]), cpuPad(full, [0, 0, 1, 1]), 0, 0);
    await expectClose(pad(e, [1, 1, 1, 1], { mode: 'reflect' }), cpuPad(full, [1, 1, 1, 1], { mode: 'reflect' }), 0, 0);
  });
  it('matches F.pad on a hand-checked row', async () => {
    const x = tensor([[0, 1, 2, 3, 4]]);
    expect(await pad(x, [2, 3], { mode: 'reflect' }).toArray()).toEqual([[2, 1, 0, 1, 2, 3, 4, 3, 2, 1]]);
    expect(await pad(x, [2, 3], { mode: 'replicate' }).toArray()).toEqual([[0, 0, 0, 1, 2, 3, 4, 4, 4, 4]]);
    expect(await pad(x, [-1, 1, 1, 0], { value: 9 }).toArray()).toEqual([[9, 9, 9, 9, 9], [1, 2, 3, 4, 9]]);
  });
  it('names bad pads', () => {
    const x = toGpu(randHost([3, 4], 1));
    expect(() => pad(x, [1])).toThrow(/even number of pads/);
    expect(() => pad(x, [1, 1, 1, 1, 1, 1])).toThrow(/at most 2 per dim/);
    expect(() => pad(x, [4, 0], { mode: 'reflect' })).toThrow('pad: reflect pads (4, 0) on dim 1 must be less than its size 4');
    expect(() => pad(x, [0, 0, -2, -2])).toThrow(/negative size/);
    expect(() => pad(x, [1, 1], { mode: 'replicate', value: 2 })).toThrow(/takes no value/);
  });
});

describe('flip, repeat, tril, triu', () => {
  it('flip on contiguous and permuted inputs', async () => {
    const x = randHost([3, 17, 4], 1);
    for (const dims of [[0], [-1], [0, 2], [0, 1, 2]]) {
      await expectClose(flip(toGpu(x), dims), cpuFlip(x, dims), 0, 0);
    }
    await expectClose(flip(toGpu(x).permute(1, 2, 0), [1]), cpuFlip(permuteHost(x, [1, 2, 0]), [1]), 0, 0);
    expect(() => flip(toGpu(x), [0, -3])).toThrow(/more than once/);
    expect(await flip(tensor(5), []).toArray()).toEqual(5);
  });
  it('repeat tiles, adds leading dims, and reads views', async () => {
    const x = randHost([2, 3], 2);
    for (const reps of [[1, 1], [3, 2], [2, 1, 3], [2, 0]]) {
      await expectClose(repeat(toGpu(x), reps), cpuRepeat(x, reps), 0, 0);
    }
    await expectClose(repeat(toGpu(x).T, 2, 2), cpuRepeat(permuteHost(x, [1, 0]), [2, 2]), 0, 0);
    const xi = bigInts([3], 999999937);
    await expectClose(repeat(toGpu(xi, 'int32'), 2, 2), cpuRepeat(xi, [2, 2]), 0, 0);
    expect(await repeat(tensor(2), 3).toArray()).toEqual([2, 2, 2]);
    expect(() => repeat(toGpu(x), 2)).toThrow('repeat: got 1 counts for a tensor of rank 2; need at least 2');
  });
  it('tril and triu with diagonals, batched and transposed', async () => {
    const x = randHost([2, 5, 7], 3);
    for (const k of [0, 1, -2, 9, -9]) {
      await expectClose(tril(toGpu(x), k), cpuTril(x, k), 0, 0);
      await expectClose(triu(toGpu(x), k), cpuTriu(x, k), 0, 0);
    }
    await expectClose(tril(toGpu(x).transpose(-1, -2)), cpuTril(permuteHost(x, [0, 2, 1])), 0, 0);
    expect(await triu(ones([3, 3]), 1).toArray()).toEqual([[0, 1, 1], [0, 0, 1], [0, 0, 0]]);
    expect(() => tril(toGpu(randHost([4], 1)))).toThrow(/at least 2 dims/);
  });
});
