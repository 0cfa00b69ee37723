import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '../src/index.js';
import { cpuMatmul, host, roundHalf, type HostTensor } from '../src/index.js';
import { expectClose, randHost, setup, toGpu } from '../../tensor/test/helpers.js';

beforeAll(setup);

const rounded = (h: HostTensor): HostTensor => ({ shape: [...h.shape], data: h.data.map(roundHalf) });
const transpose = (h: HostTensor): HostTensor => {
  const [r, c] = h.shape as [number, number];
  const out = host([c, r]);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out.data[j * r + i] = h.data[i * c + j]!;
  return out;
};

describe('float16 through autograd', () => {
  it('a cast records its gradient, and every gradient takes its input dtype', async () => {
    const xh = randHost([3, 17], 1, -2, 2);
    const x = toGpu(xh);
    x.requiresGrad = true;
    const y = x.half();
    expect(y.dtype).toBe('float16');
    const loss = A.sum(A.mul(y, y));
    expect(loss.dtype).toBe('float16');
    A.backward(loss.float());
    expect(x.grad!.dtype).toBe('float32');
    // d/dx sum(h(x)^2) = 2 h(x), rounded to float16 by the multiply's float16 gradient.
    await expectClose(x.grad!, { shape: xh.shape, data: xh.data.map((v) => roundHalf(2 * roundHalf(v))) }, 0, 0);

    const w = A.tensor([1, -2, 3], { dtype: 'float16' });
    w.requiresGrad = true;
    A.backward(A.sum(A.mul(w, 3)));
    expect(w.grad!.dtype).toBe('float16');
    expect([...(await w.grad!.data())]).toEqual([3, 3, 3]);
  });
});

describe('autocast', () => {
  it('runs linear in float16 on float16 copies, with float32 weight gradients', async () => {
    const xh = randHost([5, 33], 2, -1, 1);
    const wh = randHost([7, 33], 3, -0.5, 0.5);
    const bh = randHost([7], 4, -0.5, 0.5);
    const [x, w, b] = [toGpu(xh), toGpu(wh), toGpu(bh)];
    w.requiresGrad = true;
    b.requiresGrad = true;
    const y = A.autocast(() => A.linear(x, w, b));
    expect(A.isAutocastEnabled()).toBe(false);
    expect(y.dtype).toBe('float16');
    // The float64 product of the rounded operands, rounded once: f16 storage, f32 accumulation.
    const want = cpuMatmul(rounded(xh), transpose(rounded(wh)));
    for (let i = 0; i < 5; i++) for (let j = 0; j < 7; j++) want.data[i * 7 + j] = roundHalf(want.data[i * 7 + j]! + roundHalf(bh.data[j]!));
    await expectClose(y, want, 2 ** -10, 1e-3);
    const loss = A.autocast(() => A.crossEntropy(y, [0, 1, 2, 3, 4]));
    expect(loss.dtype).toBe('float32');
    A.backward(loss);
    expect(w.grad!.dtype).toBe('float32');
    expect(b.grad!.dtype).toBe('float32');

    // The same step in float32: autocast's gradients agree to float16's precision.
    const [x2, w2, b2] = [toGpu(xh), toGpu(wh), toGpu(bh)];
    w2.requiresGrad = true;
    b2.requiresGrad = true;
    A.backward(A.crossEntropy(A.linear(x2, w2, b2), [0, 1, 2, 3, 4]));
    const g32 = await w2.grad!.data();
    const g16 = await w.grad!.data();
    const scale = Math.max(...g32.map(Math.abs));
    for (let i = 0; i < g32.length; i++) expect(Math.abs(g16[i]! - g32[i]!)).toBeLessThan(4e-3 * scale);
  });

  it('runs convolutions in float16, batch norm and pooling on their float16 output, softmax and layer norm in float32', () => {
    const x = A.tensor([[1, 2, 3]]);
    const w = A.tensor([[1, 0, 0], [0, 1, 0]]);
    A.autocast(() => {
      const h = A.linear(x, w);
      expect(h.dtype).toBe('float16');
      expect(A.softmax(h).dtype).toBe('float32');
      expect(A.layerNorm(h, [2]).dtype).toBe('float32');
      expect(A.gelu(h).dtype).toBe('float16');
      expect(A.add(h, A.tensor([1, 1])).dtype).toBe('float32');
      const img = A.randn([2, 3, 8, 8], { seed: 1 });
      const c = A.conv2d(img, A.randn([4, 3, 3, 3], { seed: 2 }), { padding: 1 });
      expect(c.dtype).toBe('float16');
      const n = A.batchNorm(c, A.zeros([4]), A.ones([4]), A.ones([4]), A.zeros([4]), { training: true });
      expect(n.dtype).toBe('float16');
      expect(A.maxPool2d(n, { kernelSize: 2 }).dtype).toBe('float16');
    });
    expect(A.autocast(() => A.linear(x, w), { enabled: false }).dtype).toBe('float32');
    expect(() => A.autocast(() => 0, { dtype: 'bfloat16' as 'float16' })).toThrow(/bfloat16.*float16/);
  });

  it('holds no float16 copy of a trainable weight between forward and backward (linear, conv2d)', async () => {
    const w = A.randn([1024, 1024], { seed: 5 });
    w.requiresGrad = true;
    const x = A.randn([2, 1024], { seed: 6 });
    await A.sync();
    const before = A.memory().liveBytes;
    const y = A.autocast(() => A.linear(x, w));
    // y is 4 KiB; a kept float16 copy of the weight would be 2 MiB.
    expect(A.memory().liveBytes - before).toBeLessThan(2 ** 20);
    A.backward(A.sum(y.float()));
    expect(w.grad!.dtype).toBe('float32');
    const gw = await w.grad!.data();
    const xs = await x.data();
    // d sum(x W^T) / dW[i, j] = sum over rows of x[r, j], rounded to float16 once.
    for (const j of [0, 17, 1023]) expect(gw[5 * 1024 + j]).toBe(A.roundHalf(A.roundHalf(xs[j]!) + A.roundHalf(xs[1024 + j]!)));

    const k = A.randn([256, 256, 3, 3], { seed: 7 });
    k.requiresGrad = true;
    const img = A.randn([1, 256, 4, 4], { seed: 8 });
    await A.sync();
    const before2 = A.memory().liveBytes;
    const c = A.autocast(() => A.conv2d(img, k, { padding: 1 }));
    // c is 8 KiB; a kept float16 copy of the kernel would be 1.1 MiB.
    expect(A.memory().liveBytes - before2).toBeLessThan(2 ** 19);
    A.backward(A.sum(c.float()));
    expect(k.grad!.dtype).toBe('float32');
    expect(Number.isFinite(await A.sum(k.grad!).item())).toBe(true);
  });

  it('stays on across an async function until it settles', async () => {
    let inside = false;
    await A.autocast(async () => {
      await Promise.resolve();
      inside = A.isAutocastEnabled();
    });
    expect(inside).toBe(true);
    expect(A.isAutocastEnabled()).toBe(false);
  });
});
