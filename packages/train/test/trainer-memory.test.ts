/** The trainer's peak-memory figure: measured per epoch (reset at its start), within what the
 * engine saw, and at least the weights and their gradients. */
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { lambdaCallback, sgd, Trainer } from '../src/index.js';
import { setup } from '../../tensor/test/helpers.js';
import { model, toyData } from './toy.js';

beforeAll(setup);

describe('Trainer peak memory', () => {
  it('logs each epoch its own peak of live bytes', async () => {
    const m = model();
    const weightBytes = m.parameters().reduce((s, p) => s + A.bucketSize(p.size * 4), 0);
    const spike = 1 << 22;
    // After each epoch's logs (before the next epoch's reset) 4 MiB come and go: the engine
    // sees them, neither epoch may count them.
    const t = new Trainer(m, {
      optimizer: sgd({ lr: 0.05 }), epochs: 2, batchSize: 8, logger: () => {},
      callbacks: [lambdaCallback({ onEpochEnd: () => A.zeros([spike / 4]).dispose() })],
    });
    // Other test files in this worker may leave tensors alive: the spike is judged above them.
    const before = A.memory().liveBytes;
    const h = await t.fit(toyData(16, 1));
    expect(A.memory().peakBytes).toBeGreaterThanOrEqual(spike);
    for (const e of h) {
      expect(e.peakMemoryBytes).toBeGreaterThanOrEqual(2 * weightBytes);
      expect(e.peakMemoryBytes! - before).toBeLessThan(spike);
    }
    m.dispose();
  });
});
