/**
 * The gradient reversal layer: the identity forward, and backward exactly -lambda times the
 * finite-difference gradient of the same graph without it.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '../src/index.js';
import { host } from '../src/index.js';
import { expectClose, randHost, setup, toGpu } from '../../tensor/test/helpers.js';

beforeAll(setup);

describe('gradReverse', () => {
  it('passes values through and reverses and scales the gradient below it', async () => {
    const xh = randHost([3, 17], 5);
    const r = randHost([3, 17], 6);
    for (const lambda of [1, 0.37]) {
      const x = toGpu(xh);
      x.requiresGrad = true;
      const inner = A.mul(x, 2);
      const reversed = A.gradReverse(inner, lambda);
      await expectClose(reversed, { shape: xh.shape, data: Float64Array.from(xh.data, (v) => 2 * v) }, 1e-6, 1e-7);
      const y = A.tanh(reversed);
      const rg = toGpu(r);
      A.backward(y, rg);
      // d/dx sum(tanh(2x) * r) by central differences, then reversed.
      const eps = 1e-5;
      const want = host(xh.shape);
      for (let i = 0; i < xh.data.length; i++) {
        const v = xh.data[i]!;
        want.data[i] = -lambda * r.data[i]! * (Math.tanh(2 * (v + eps)) - Math.tanh(2 * (v - eps))) / (2 * eps);
      }
      await expectClose(x.grad!, want, 1e-3, 1e-5);
      for (const t of [x, inner, reversed, y, rg]) t.dispose();
    }
  });

  it('refuses a lambda that is not a finite number', () => {
    const x = A.zeros([2]);
    expect(() => A.gradReverse(x, Number.NaN)).toThrow(/lambda must be a finite number, got NaN/);
    x.dispose();
  });
});
