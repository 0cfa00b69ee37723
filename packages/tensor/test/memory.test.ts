import { beforeAll, describe, expect, it } from 'vitest';
import { conv2d, matmul, memory, randn, relu, softmax, sync, tidy } from '../src/node.js';
import { setup } from './helpers.js';

beforeAll(setup);

describe('memory stays flat', () => {
  it('1,000 scoped steps of conv + matmul + softmax leave live buffers and bytes where they were', async () => {
    const x = randn([4, 3, 16, 16], { seed: 1 });
    const w = randn([8, 3, 3, 3], { seed: 2 });
    const fc = randn([8 * 16 * 16, 10], { seed: 3 });
    const step = (): void => {
      tidy(() => {
        const h = relu(conv2d(x, w, { padding: 1 }));
        return softmax(matmul(h.reshape(4, -1), fc), -1).dispose();
      });
    };
    for (let i = 0; i < 10; i++) step();
    await sync();
    const before = memory();
    for (let i = 0; i < 1000; i++) {
      step();
      if (i % 100 === 99) await sync();
    }
    await sync();
    const after = memory();
    expect(after.liveBuffers).toBe(before.liveBuffers);
    expect(after.liveBytes).toBe(before.liveBytes);
    expect(after.liveTensors).toBe(before.liveTensors);
    expect(after.pooledBytes).toBe(before.pooledBytes);
  });
});
