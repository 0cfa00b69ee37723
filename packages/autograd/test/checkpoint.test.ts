/**
 * Gradient checkpointing: the same gradients as the plain graph (dropout included, through the
 * restored generator state), running statistics updated once, and a lower peak of live bytes.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '../src/index.js';
import type { Tensor } from '../src/index.js';
import { setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

function leaf(shape: number[], seed: number, scale = 0.3): Tensor {
  const t = A.keep(A.randn(shape, { seed, std: scale }));
  t.requiresGrad = true;
  return t;
}

type Block = (x: Tensor) => Tensor;

/** Runs x through the blocks, each checkpointed or not, backpropagates sum(y * r) and reads
 * back the output, the gradient of every tensor that wants one, and the generator state. */
async function run(blocks: Block[], x: Tensor, leaves: Tensor[], checkpointed: boolean, seed = 7): Promise<{ y: Float32Array; grads: Float32Array[]; rng: { seed: number; stream: number } }> {
  A.zeroGrad([x, ...leaves]);
  A.manualSeed(seed);
  const y = A.tidy(() => {
    let h = x;
    for (const b of blocks) h = checkpointed ? A.checkpoint(b, h) : b(h);
    const r = A.randn(h.shape, { seed: 99 });
    A.backward(A.sum(A.mul(h, r)));
    return A.noGrad(() => A.mul(h, 1));
  });
  const grads: Float32Array[] = [];
  for (const t of [x, ...leaves].filter((l) => l.requiresGrad)) grads.push((await t.grad!.data()) as Float32Array);
  const out = { y: (await y.data()) as Float32Array, grads, rng: A.getRngState() };
  y.dispose();
  return out;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

async function expectSameRun(blocks: Block[], x: Tensor, leaves: Tensor[]): Promise<void> {
  const plain = await run(blocks, x, leaves, false);
  const ckpt = await run(blocks, x, leaves, true);
  expect(maxDiff(ckpt.y, plain.y)).toBeLessThanOrEqual(1e-6);
  plain.grads.forEach((g, i) => {
    expect(g.some((v) => v !== 0)).toBe(true);
    expect(maxDiff(ckpt.grads[i]!, g), `gradient ${i}`).toBeLessThanOrEqual(1e-6);
  });
  expect(ckpt.rng).toEqual(plain.rng);
}

describe('checkpoint', () => {
  it('gives an MLP the gradients of the plain graph, for the input and every parameter', async () => {
    const [w1, b1, w2, b2] = [leaf([24, 8], 1), leaf([24], 2), leaf([8, 24], 3), leaf([8], 4)];
    const mlp: Block = (h) => A.linear(A.gelu(A.linear(h, w1, b1)), w2, b2);
    const x = leaf([5, 8], 5, 1);
    await expectSameRun([mlp, mlp, mlp], x, [w1, b1, w2, b2]);
    for (const t of [w1, b1, w2, b2, x]) t.dispose();
  });

  it('recomputes a transformer block with dropout identically (generator state restored)', async () => {
    const [e, f] = [16, 32];
    const p = {
      ln1: leaf([e], 10, 1), qkv: leaf([3 * e, e], 11), proj: leaf([e, e], 12),
      ln2: leaf([e], 13, 1), fc1: leaf([f, e], 14), fc2: leaf([e, f], 15),
    };
    const block: Block = (h) => {
      const [b, t] = h.shape as [number, number, number];
      const qkv = A.linear(A.layerNorm(h, e, p.ln1), p.qkv).reshape(b, t, 3, e).permute(2, 0, 1, 3);
      const [q, k, v] = [0, 1, 2].map((i) => qkv.select(0, i)) as [Tensor, Tensor, Tensor];
      const att = A.dropout(A.softmax(A.mul(A.matmul(q, k.transpose(1, 2)), 1 / Math.sqrt(e)), -1), 0.2);
      const a = A.add(h, A.dropout(A.linear(A.matmul(att, v), p.proj), 0.2));
      return A.add(a, A.dropout(A.linear(A.gelu(A.linear(A.layerNorm(a, e, p.ln2), p.fc1)), p.fc2), 0.2));
    };
    const x = leaf([2, 7, e], 16, 1);
    await expectSameRun([block, block], x, Object.values(p));
    for (const t of [...Object.values(p), x]) t.dispose();
  });

  it('reaches the parameters when the input needs no gradient, and updates running statistics once', async () => {
    const w = leaf([6, 4], 20);
    const gamma = leaf([6], 21, 1);
    const stats = () => [A.keep(A.zeros([6])), A.keep(A.ones([6]))] as const;
    const x = A.keep(A.randn([5, 4], { seed: 22 }));
    const results = [];
    for (const checkpointed of [false, true]) {
      const [mean, variance] = stats();
      const block: Block = (h) => A.relu(A.batchNorm(A.linear(h, w), mean, variance, gamma, null, { training: true }));
      const r = await run([block], x, [w, gamma], checkpointed);
      results.push({ ...r, mean: await mean.data(), variance: await variance.data() });
      mean.dispose();
      variance.dispose();
    }
    const [plain, ckpt] = results as [typeof results[0], typeof results[0]];
    expect(ckpt.grads).toHaveLength(2);
    expect(maxDiff(ckpt.grads[0]!, plain.grads[0]!)).toBeLessThanOrEqual(1e-6);
    expect(maxDiff(ckpt.grads[1]!, plain.grads[1]!)).toBeLessThanOrEqual(1e-6);
    expect(maxDiff(ckpt.mean as Float32Array, plain.mean as Float32Array)).toBe(0);
    expect(maxDiff(ckpt.variance as Float32Array, plain.variance as Float32Array)).toBe(0);
    for (const t of [w, gamma, x]) t.dispose();
  });

  it('holds a lower peak of live bytes over a deep stack', async () => {
    const ws = Array.from({ length: 8 }, (_, i) => leaf([64, 64], 30 + i, 0.1));
    const x = leaf([256, 64], 40, 1);
    const peak = async (checkpointed: boolean): Promise<number> => {
      A.zeroGrad([x, ...ws]);
      await A.sync();
      A.resetPeakMemory();
      const base = A.memory().peakBytes;
      A.tidy(() => {
        let h = x;
        for (const w of ws) {
          const block: Block = (t) => A.tanh(A.linear(A.gelu(A.linear(t, w)), w));
          h = checkpointed ? A.checkpoint(block, h) : block(h);
        }
        A.backward(A.sum(h));
      });
      await A.sync();
      return A.memory().peakBytes - base;
    };
    const plain = await peak(false);
    const ckpt = await peak(true);
    // Plain keeps ~4 activations of 64 KiB per block; checkpointed one per block plus one block's
    // (the 16 KiB weight gradients are in both).
    expect(ckpt).toBeLessThan(0.6 * plain);
    for (const t of [...ws, x]) t.dispose();
  });

  it('outside recording calls fn, and a function of nothing that wants a gradient records nothing', () => {
    const x = A.ones([3]);
    const y = A.noGrad(() => A.checkpoint((t) => A.mul(t, 2), x));
    expect(y.gradNode).toBeNull();
    const z = A.checkpoint((t) => A.mul(t, 2), x);
    expect(z.requiresGrad).toBe(false);
    expect(A.checkpoint((t) => t, x)).toBe(x);
    for (const t of [x, y, z]) t.dispose();
  });

  it('names a bad argument', () => {
    const x = A.ones([2]);
    expect(() => A.checkpoint((t) => t, x, 3 as unknown as Tensor)).toThrow(/checkpoint: input 1 must be a Tensor, got number/);
    expect(() => A.checkpoint((() => 5) as unknown as Block, x)).toThrow(/checkpoint: fn must return a Tensor, got number/);
    x.dispose();
  });
});
