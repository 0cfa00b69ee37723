import { beforeAll, describe, expect, it } from 'vitest';
import { bucketSize, memory, resetPeakMemory, sync, Tensor } from '../src/node.js';
import { setup } from './helpers.js';

beforeAll(setup);

describe('peak memory', () => {
  it('allocating and freeing known sizes moves live and peak bytes by their buckets', async () => {
    await sync();
    resetPeakMemory();
    const start = memory();
    expect(start.peakBytes).toBe(start.liveBytes);

    const a = Tensor.empty([1024]);
    const b = Tensor.empty([1000, 3]);
    const aBytes = 4096;
    const bBytes = bucketSize(12000);
    expect(bBytes).toBe(12288);
    expect(memory().liveBytes).toBe(start.liveBytes + aBytes + bBytes);
    expect(memory().peakBytes).toBe(start.liveBytes + aBytes + bBytes);

    a.dispose();
    expect(memory().liveBytes).toBe(start.liveBytes + bBytes);
    expect(memory().peakBytes).toBe(start.liveBytes + aBytes + bBytes);

    // A smaller allocation after the free stays under the peak.
    const c = Tensor.empty([512]);
    expect(memory().peakBytes).toBe(start.liveBytes + aBytes + bBytes);

    resetPeakMemory();
    expect(memory().peakBytes).toBe(start.liveBytes + bBytes + 2048);
    b.dispose();
    c.dispose();
    expect(memory().liveBytes).toBe(start.liveBytes);
    expect(memory().peakBytes).toBe(start.liveBytes + bBytes + 2048);

    // A larger one than the peak raises it to the new live total.
    const d = Tensor.empty([8192]);
    expect(memory().peakBytes).toBe(start.liveBytes + 32768);
    d.dispose();
  });
});
