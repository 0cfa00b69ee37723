import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '../src/index.js';
import type { Tensor } from '../src/index.js';
import { setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

/** conv-bn-relu x3, global average pool, linear: plain SGD on raw tensors. */
function smallCnn(): { params: Tensor[]; buffers: Tensor[]; forward: (x: Tensor) => Tensor } {
  const chans = [3, 8, 16, 16];
  const leaf = (t: Tensor): Tensor => {
    t.requiresGrad = true;
    return A.keep(t);
  };
  const convs = [0, 1, 2].map((i) => leaf(A.mul(A.randn([chans[i + 1]!, chans[i]!, 3, 3], { seed: 10 + i }), Math.sqrt(2 / (chans[i]! * 9)))));
  const gammas = [1, 2, 3].map((i) => leaf(A.ones([chans[i]!])));
  const betas = [1, 2, 3].map((i) => leaf(A.zeros([chans[i]!])));
  const rms = [1, 2, 3].map((i) => A.keep(A.zeros([chans[i]!])));
  const rvs = [1, 2, 3].map((i) => A.keep(A.ones([chans[i]!])));
  const fcW = leaf(A.mul(A.randn([10, 16], { seed: 20 }), 0.25));
  const fcB = leaf(A.zeros([10]));
  return {
    params: [...convs, ...gammas, ...betas, fcW, fcB],
    buffers: [...rms, ...rvs],
    forward: (x) => {
      let h = x;
      for (let i = 0; i < 3; i++) {
        h = A.conv2d(h, convs[i]!, { padding: 1, stride: i === 0 ? 1 : 2 });
        h = A.relu(A.batchNorm(h, rms[i]!, rvs[i]!, gammas[i], betas[i], { training: true }));
      }
      return A.linear(A.adaptiveAvgPool2d(h, 1).flatten(1), fcW, fcB);
    },
  };
}

describe('a small CNN trained with plain SGD', () => {
  it('overfits 32 random images to 100% accuracy, and memory after 500 steps equals memory after 10', async () => {
    const net = smallCnn();
    const x = A.randn([32, 3, 16, 16], { seed: 5 });
    const labels = A.tensor(Int32Array.from({ length: 32 }, (_, i) => (i * 7) % 10), { dtype: 'int32' });
    const sgdStep = (lr: number): Tensor => A.tidy(() => {
      const loss = A.crossEntropy(net.forward(x), labels);
      A.backward(loss);
      A.noGrad(() => {
        for (const p of net.params) {
          A.assign(p, A.sub(p, A.mul(p.grad!, lr)));
          p.grad!.dispose();
          p.grad = null;
        }
      });
      return loss;
    });
    let memAt10 = A.memory();
    let last = NaN;
    for (let i = 0; i < 500; i++) {
      const loss = sgdStep(0.1);
      if (i % 50 === 49 || i === 9) last = await loss.item();
      loss.dispose();
      if (i === 9) {
        await A.sync();
        memAt10 = A.memory();
      }
    }
    await A.sync();
    const memAt500 = A.memory();
    expect(memAt500.liveBuffers).toBe(memAt10.liveBuffers);
    expect(memAt500.liveBytes).toBe(memAt10.liveBytes);
    expect(memAt500.liveTensors).toBe(memAt10.liveTensors);
    const pred = A.noGrad(() => A.argmax(net.forward(x), 1));
    const correct = [...(await pred.data())].filter((p, i) => p === (i * 7) % 10).length;
    expect(last).toBeLessThan(0.05);
    expect(correct).toBe(32);
  }, 600_000);
});
