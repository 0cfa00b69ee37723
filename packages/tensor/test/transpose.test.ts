import { beforeAll, describe, expect, it } from 'vitest';
import { host, memory, tensor, type HostTensor } from '../src/node.js';
import { halfHost, randHost, setup, toGpu, toHalf } from './helpers.js';

beforeAll(setup);

/** `h` with its last two dims swapped, row-major. */
function swapLast(h: HostTensor): HostTensor {
  const r = h.shape.length;
  const [R, C] = [h.shape[r - 2]!, h.shape[r - 1]!];
  const batch = h.data.length / (R * C);
  const out = host([...h.shape.slice(0, -2), C, R]);
  for (let b = 0; b < batch; b++) for (let i = 0; i < R; i++) for (let j = 0; j < C; j++) out.data[(b * C + j) * R + i] = h.data[(b * R + i) * C + j]!;
  return out;
}

describe('contiguous() of transposed views', () => {
  it('copies 2-D, batched, sliced and odd-sized transposes exactly', async () => {
    for (const shape of [[12, 8], [4, 4], [3, 16, 20], [2, 3, 8, 12], [5, 7], [2, 6, 9]]) {
      const h = randHost(shape, shape.length * 13 + shape[0]!);
      const t = toGpu(h).transpose(-2, -1);
      const c = t.contiguous();
      expect(c.isContiguous).toBe(true);
      expect([...c.shape]).toEqual(swapLast(h).shape);
      expect([...(await c.data())]).toEqual([...swapLast(h).data]);
    }
    // Rows of the source with a gap after them (a column slice), read through its stride.
    const wide = randHost([12, 20], 5);
    const sliced = toGpu(wide).slice(1, 4, 12).transpose(0, 1);
    const want = host([8, 12]);
    for (let i = 0; i < 8; i++) for (let j = 0; j < 12; j++) want.data[i * 12 + j] = wide.data[j * 20 + 4 + i]!;
    expect([...(await sliced.contiguous().data())]).toEqual([...want.data]);
  });

  it('copies float16 and int32 elements bit for bit', async () => {
    const h = halfHost(randHost([8, 12], 21));
    const t = toHalf(h).transpose(0, 1).contiguous();
    expect(t.dtype).toBe('float16');
    expect([...(await t.data())]).toEqual([...swapLast(h).data]);
    const ints = Int32Array.from({ length: 16 * 4 }, (_, i) => i * 7 - 100);
    const ti = tensor(ints, { shape: [16, 4], dtype: 'int32' }).transpose(0, 1).contiguous();
    expect([...(await ti.data())]).toEqual([...swapLast(host([16, 4], [...ints])).data]);
  });

  it('frees what it allocates', async () => {
    const x = toGpu(randHost([64, 32], 9));
    const before = memory().liveBuffers;
    for (let i = 0; i < 3; i++) x.transpose(0, 1).contiguous().dispose();
    expect(memory().liveBuffers).toBe(before);
    x.dispose();
  });
});
