import { beforeAll, describe, expect, it } from 'vitest';
import {
  checkIndices, cpuEmbedding, cpuEmbeddingBackward, cpuGather, cpuGatherBackward, cpuIndexSelect,
  cpuIndexSelectBackward, cpuOneHot, embedding, embeddingBackward, gather, gatherBackward, host,
  indexSelect, indexSelectBackward, memory, oneHot, tensor, type HostTensor,
} from '../src/node.js';
import { expectClose, permuteHost, randHost, rng, setup, toGpu } from './helpers.js';

beforeAll(setup);

/** Integers in [lo, hi). */
function randInt(shape: number[], seed: number, lo: number, hi: number): HostTensor {
  const r = rng(seed);
  const h = host(shape);
  for (let i = 0; i < h.data.length; i++) h.data[i] = lo + Math.floor((hi - lo) * r());
  return h;
}

/** The host copy of `h.permute(dims)`, to pair with a GPU permuted view. */

describe('embedding', () => {
  it('picks rows for index tensors of several shapes, zeros out of range', async () => {
    for (const [ishape, V, D] of [[[17], 129, 3], [[3, 5], 7, 17], [[2, 3, 4], 1, 1]] as [number[], number, number][]) {
      const w = randHost([V, D], V + D);
      const idx = randInt(ishape, D, -1, V + 1);
      await expectClose(embedding(toGpu(idx, 'int32'), toGpu(w)), cpuEmbedding(idx, w), 0, 0);
    }
  });
  it('reads transposed weights and strided indices', async () => {
    const wt = randHost([5, 33], 3);
    const idx = randInt([4, 6], 4, 0, 33);
    const gi = toGpu(idx, 'int32').transpose(0, 1).slice(0, 1, 6, 2); // rows 1, 3, 5 of idx.T
    const idxT = permuteHost(idx, [1, 0]);
    const hi = host([3, 4], [1, 3, 5].flatMap((r) => [...idxT.data.slice(r * 4, r * 4 + 4)]));
    await expectClose(embedding(gi, toGpu(wt).T), cpuEmbedding(hi, permuteHost(wt, [1, 0])), 0, 0);
  });
  it('rejects float indices and non-2-D weights', () => {
    expect(() => embedding(tensor([1, 2]), toGpu(randHost([3, 2], 1)))).toThrow(/int32.*float32/);
    expect(() => embedding(tensor(new Int32Array([1])), toGpu(randHost([3], 1)))).toThrow(/2-D/);
  });
});

describe('indexSelect', () => {
  it('selects along every dim, negative dims, duplicates and int32 data', async () => {
    const x = randHost([3, 17, 5], 9);
    for (const dim of [0, 1, -1]) {
      const n = x.shape.at(dim)!;
      const idx = randInt([2 * n + 1], dim + 11, 0, n);
      await expectClose(indexSelect(toGpu(x), dim, toGpu(idx, 'int32')), cpuIndexSelect(x, dim, idx), 0, 0);
    }
    const xi = randInt([4, 6], 2, -100000000, 100000000);
    const idx = host([3], [5, 0, 5]);
    await expectClose(indexSelect(toGpu(xi, 'int32'), 1, toGpu(idx, 'int32')), cpuIndexSelect(xi, 1, idx), 0, 0);
    expect(indexSelect(toGpu(xi, 'int32'), 1, toGpu(idx, 'int32')).dtype).toBe('int32');
  });
  it('reads a permuted x and a strided index', async () => {
    const x = randHost([5, 4, 3], 21);
    const idx = randInt([8], 5, 0, 5);
    const gi = toGpu(idx, 'int32').slice(0, 1, 8, 2);
    const hi = host([4], [1, 3, 5, 7].map((k) => idx.data[k]!));
    await expectClose(indexSelect(toGpu(x).permute(2, 0, 1), 1, gi), cpuIndexSelect(permuteHost(x, [2, 0, 1]), 1, hi), 0, 0);
  });
  it('accepts a 0-d index as PyTorch does', async () => {
    const x = randHost([3, 4], 1);
    const out = indexSelect(toGpu(x), 0, tensor(2, { dtype: 'int32' }));
    await expectClose(out, { shape: [1, 4], data: x.data.slice(8, 12) }, 0, 0);
  });
});

describe('gather', () => {
  it('matches torch.gather on odd shapes and negative dims', async () => {
    const x = randHost([4, 7, 5], 31);
    for (const [dim, ishape] of [[0, [9, 7, 5]], [1, [3, 2, 4]], [-1, [4, 7, 17]]] as [number, number[]][]) {
      const d = dim < 0 ? dim + 3 : dim;
      const idx = randInt(ishape, d + 40, -1, x.shape[d]! + 1);
      await expectClose(gather(toGpu(x), dim, toGpu(idx, 'int32')), cpuGather(x, dim, idx), 0, 0);
    }
  });
  it('reads non-contiguous x and index, and gathers int32 data', async () => {
    const x = randInt([6, 5], 8, -(2 ** 30), 2 ** 30);
    const idx = randInt([4, 6], 9, 0, 5);
    const got = gather(toGpu(x, 'int32'), 1, toGpu(idx, 'int32').T);
    expect(got.dtype).toBe('int32');
    await expectClose(got, cpuGather(x, 1, permuteHost(idx, [1, 0])), 0, 0);
    const xt = randHost([5, 6], 10);
    const idx0 = randInt([4, 5], 11, 0, 6);
    await expectClose(gather(toGpu(xt).T, 0, toGpu(idx0, 'int32')), cpuGather(permuteHost(xt, [1, 0]), 0, idx0), 0, 0);
  });
  it('names the mismatch in shape errors', () => {
    const x = toGpu(randHost([3, 4], 1));
    expect(() => gather(x, 0, tensor(new Int32Array([0, 1])))).toThrow(/same number of dims/);
    expect(() => gather(x, 0, toGpu(host([2, 5]), 'int32'))).toThrow(/exceeds x shape \[3, 4\] in dim 1/);
    expect(() => gather(x, 2, toGpu(host([2, 4]), 'int32'))).toThrow(/dim 2 is out of range/);
  });
});

describe('oneHot and checkIndices', () => {
  it('one-hot encodes, with all-zero rows for out-of-range labels', async () => {
    const labels = host([3, 5], [0, 9, 3, -1, 10, 2, 2, 2, 7, 1, 0, 4, 5, 6, 8]);
    await expectClose(oneHot(toGpu(labels, 'int32'), 10), cpuOneHot(labels, 10), 0, 0);
    const lt = toGpu(labels, 'int32').T;
    await expectClose(oneHot(lt, 10), cpuOneHot(permuteHost(labels, [1, 0]), 10), 0, 0);
    expect(() => oneHot(toGpu(labels, 'int32'), 0)).toThrow(/numClasses/);
  });
  it('checkIndices reads back and names the first bad entry', async () => {
    await expect(checkIndices(tensor(new Int32Array([0, 4, 2])), 5)).resolves.toBeUndefined();
    await expect(checkIndices(tensor(new Int32Array([0, 1, 2, 5, 7, -1]), { shape: [2, 3] }), 5)).rejects.toThrow('index 5 at [1, 0] is out of range [0, 5)');
  });
});

describe('backward kernels (sorted scatter-add)', () => {
  it('embeddingBackward sums duplicate rows and honours paddingIdx', async () => {
    for (const [ishape, V, D, pad] of [[[4, 33], 17, 5, 3], [[1000], 129, 3, -1], [[1], 1, 1, undefined]] as [number[], number, number, number | undefined][]) {
      const idx = randInt(ishape, V, 0, V);
      const g = randHost([...ishape, D], D);
      const opts = pad === undefined ? {} : { paddingIdx: pad };
      const got = embeddingBackward(toGpu(idx, 'int32'), toGpu(g), V, opts);
      await expectClose(got, cpuEmbeddingBackward(idx, g, V, opts), 1e-5, 1e-5);
    }
  });
  it('embeddingBackward drops out-of-range indices and reads a strided gradOut', async () => {
    const idx = host([2, 3], [0, 7, -1, 2, 2, 100]);
    const gt = randHost([3, 4, 2], 5); // gradOut is its [2, 3, 4] permute
    const g = toGpu(gt).permute(2, 0, 1);
    const got = embeddingBackward(toGpu(idx, 'int32'), g, 8);
    await expectClose(got, cpuEmbeddingBackward(idx, permuteHost(gt, [2, 0, 1]), 8), 1e-6, 1e-6);
  });
  it('indexSelectBackward on a middle dim and on the last dim', async () => {
    const shape = [3, 17, 5];
    for (const dim of [1, -1]) {
      const d = dim < 0 ? dim + 3 : dim;
      const idx = randInt([40], d, 0, shape[d]!);
      const gshape = [...shape];
      gshape[d] = 40;
      const g = randHost(gshape, 7 + d);
      await expectClose(indexSelectBackward(toGpu(g), shape, dim, toGpu(idx, 'int32')), cpuIndexSelectBackward(g, shape, dim, idx), 1e-5, 1e-5);
    }
  });
  it('gatherBackward scatter-adds into zeros of the input shape', async () => {
    const shape = [5, 6, 7];
    for (const [dim, ishape] of [[1, [5, 9, 7]], [0, [8, 2, 3]], [-1, [1, 6, 20]]] as [number, number[]][]) {
      const d = dim < 0 ? dim + 3 : dim;
      const idx = randInt(ishape, d + 3, -1, shape[d]! + 1);
      const g = randHost(ishape, d + 4);
      const gi = toGpu(idx, 'int32');
      await expectClose(gatherBackward(toGpu(g), shape, dim, gi), cpuGatherBackward(g, shape, dim, idx), 1e-5, 1e-5);
    }
  });
  it('gatherBackward reads non-contiguous gradOut and index', async () => {
    const idx = randInt([6, 4], 1, 0, 3);
    const g = randHost([6, 4], 2);
    const got = gatherBackward(toGpu(g).T, [3, 6], 0, toGpu(idx, 'int32').T);
    await expectClose(got, cpuGatherBackward(permuteHost(g, [1, 0]), [3, 6], 0, permuteHost(idx, [1, 0])), 1e-6, 1e-6);
  });
  it('is deterministic and handles an empty index', async () => {
    const idx = toGpu(randInt([3000], 1, 0, 4), 'int32');
    const g = toGpu(randHost([3000, 2], 2));
    const a = await embeddingBackward(idx, g, 4).data();
    const b = await embeddingBackward(idx, g, 4).data();
    expect([...a]).toEqual([...b]);
    const empty = embeddingBackward(toGpu(host([0]), 'int32'), toGpu(host([0, 3])), 5);
    await expectClose(empty, host([5, 3]), 0, 0);
  });
  it('leaves no temporaries behind', () => {
    const idx = toGpu(randInt([2, 9], 3, 0, 6), 'int32');
    const g = toGpu(randHost([9, 2, 4], 4)).permute(1, 0, 2); // reshape must copy it
    const before = memory().liveTensors;
    const out = embeddingBackward(idx, g, 6);
    expect(memory().liveTensors).toBe(before + 1);
    out.dispose();
  });
  it('names shape mismatches', () => {
    const idx = tensor(new Int32Array([0, 1, 2]));
    expect(() => embeddingBackward(idx, toGpu(randHost([4, 2], 1)), 5)).toThrow(/gradOut has shape \[4, 2\], expected \[3, 2\]/);
    expect(() => indexSelectBackward(toGpu(randHost([2, 2], 1)), [2, 5], 1, idx)).toThrow(/expected \[2, 3\]/);
    expect(() => gatherBackward(toGpu(randHost([3], 1)), [4], 0, tensor(new Int32Array([0, 1])))).toThrow(/gradOut has shape \[3\] but index has \[2\]/);
    expect(() => embeddingBackward(idx, toGpu(randHost([3, 2], 1)), 5, { paddingIdx: 5 })).toThrow(/paddingIdx 5/);
  });
});
