import { beforeAll, describe, expect, it } from 'vitest';
import { engine, matmul, randn } from '../src/node.js';
import { setup } from './helpers.js';

beforeAll(setup);

describe("Dawn's event polling while the GPU works", () => {
  it('polls on a timer after the first millisecond of a wait, instead of spinning the main thread', async () => {
    const a = randn([384, 384]);
    const installed = globalThis.setImmediate;
    let polls = 0;
    globalThis.setImmediate = Object.assign((cb: (...args: unknown[]) => void, ...args: unknown[]) => {
      if (Function.prototype.toString.call(cb).endsWith('{ [native code] }')) polls++;
      return installed(cb, ...args);
    }, { __promisify__: installed.__promisify__ }) as typeof setImmediate;
    try {
      await engine().sync();
      polls = 0;
      let y = a;
      for (let i = 0; i < 24; i++) y = matmul(y, a);
      const t0 = performance.now();
      await engine().sync();
      const ms = performance.now() - t0;
      // A spinning wait polls about ten times a millisecond (measured 889 polls in 85 ms); on
      // the timer, once a millisecond after the first.
      expect(ms).toBeGreaterThan(20);
      expect(polls).toBeLessThan(2.5 * ms + 60);
    } finally {
      globalThis.setImmediate = installed;
    }
  });

  it("leaves the application's own immediates immediate", async () => {
    const order: string[] = [];
    await new Promise<void>((done) => {
      setTimeout(() => {
        order.push('timeout');
        done();
      }, 1);
      setImmediate(() => order.push('immediate'));
    });
    expect(order).toEqual(['immediate', 'timeout']);
  });
});
