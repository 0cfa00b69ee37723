import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '../src/index.js';
import { cpuConv2d, host, type ConvActivation, type HostTensor } from '../src/index.js';
import { expectClose, randHost, setup, toGpu } from '../../tensor/test/helpers.js';
import { gradcheck } from './gradcheck.js';

beforeAll(setup);

const opts = { padding: 1, stride: 2 } as const;

describe('conv2d with a scale, bias and activation epilogue', () => {
  for (const activation of ['silu', 'relu6'] as ConvActivation[]) {
    it(`records scale, bias and ${activation} as ops where a gradient is wanted (gradcheck)`, async () => {
      await gradcheck({
        inputs: [randHost([2, 3, 7, 6], 1), randHost([4, 3, 3, 3], 2), randHost([4], 3), randHost([4], 4)],
        gpu: ([x, w, b, s]) => A.conv2d(x!, w!, { ...opts, bias: b, scale: s, activation }),
        cpu: ([x, w, b, s]) => cpuConv2d(x!, w!, { ...opts, bias: b, scale: s, activation }),
      });
    });
  }

  it('fuses them into the kernel when nothing needs a gradient, with the same values', async () => {
    const [x, w, b, s] = [randHost([2, 8, 9, 9], 5), randHost([8, 1, 3, 3], 6), randHost([8], 7), randHost([8], 8)];
    const want = cpuConv2d(x, w, { padding: 1, groups: 8, bias: b, scale: s, activation: 'silu' });
    const wg = toGpu(w);
    wg.requiresGrad = true;
    const fused = A.noGrad(() => A.conv2d(toGpu(x), wg, { padding: 1, groups: 8, bias: toGpu(b), scale: toGpu(s), activation: 'silu' }));
    expect(fused.gradNode).toBeNull();
    await expectClose(fused, want, 1e-4, 1e-5);
    const recorded = A.conv2d(toGpu(x), wg, { padding: 1, groups: 8, bias: toGpu(b), scale: toGpu(s), activation: 'silu' });
    expect(recorded.gradNode).not.toBeNull();
    await expectClose(recorded, want, 1e-4, 1e-5);
  });

  it('records an input scale (a gate) as a product where a gradient is wanted (gradcheck), fuses it otherwise', async () => {
    const scaled = (x: HostTensor, g: HostTensor): HostTensor => {
      const plane = x.data.length / (x.shape[0]! * x.shape[1]!);
      return host(x.shape, x.data.map((v, i) => v * g.data[Math.floor(i / plane)]!));
    };
    await gradcheck({
      inputs: [randHost([2, 6, 4, 4], 9), randHost([5, 6, 1, 1], 10), randHost([5], 11), randHost([2, 6], 12)],
      gpu: ([x, w, b, g]) => A.conv2d(x!, w!, { bias: b, activation: 'silu', inputScale: g }),
      cpu: ([x, w, b, g]) => cpuConv2d(scaled(x!, g!), w!, { bias: b, activation: 'silu' }),
    });
    const [x, w, g] = [randHost([2, 6, 4, 4], 13), randHost([5, 6, 1, 1], 14), randHost([2, 6, 1, 1], 15)];
    const fused = A.noGrad(() => A.conv2d(toGpu(x), toGpu(w), { inputScale: toGpu(g) }));
    expect(fused.gradNode).toBeNull();
    await expectClose(fused, cpuConv2d(scaled(x, g), w), 1e-5, 1e-5);
  });
});
