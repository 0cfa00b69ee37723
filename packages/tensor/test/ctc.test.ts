/** The CTC kernels against their float64 references on random batches: odd sizes, a target
 * long enough that one step spans several passes of the workgroup, a single frame. */
import { beforeAll, describe, expect, it } from 'vitest';
import { cpuCtcLoss, cpuCtcLossBackward, cpuLogSoftmax, ctcLossBackward, ctcLossForward, host, tensor, type CtcLossOptions } from '../src/node.js';
import { expectClose, randHost, rng, setup, toGpu } from './helpers.js';

beforeAll(setup);

function batch(T: number, N: number, C: number, seed: number, maxS: number) {
  const lp = cpuLogSoftmax(randHost([T, N, C], seed, -3, 3), -1);
  lp.data.forEach((v, i) => (lp.data[i] = Math.fround(v)));
  const r = rng(seed + 1);
  const inputLengths = Array.from({ length: N }, (_, n) => (n === 0 ? T : 1 + Math.floor(r() * T)));
  const targetLengths = inputLengths.map((t) => Math.min(maxS, Math.floor(r() * (t / 2 + 1))));
  const targets = targetLengths.flatMap((l) => Array.from({ length: l }, () => 1 + Math.floor(r() * (C - 1))));
  return { lp, inputLengths, targetLengths, targets };
}

describe('ctcLoss kernels against the float64 references', () => {
  const cases: [number, number, number, number, CtcLossOptions][] = [
    [1, 3, 3, 0, { reduction: 'none' }],
    [17, 5, 4, 8, { reduction: 'mean' }],
    [150, 2, 29, 70, { reduction: 'sum' }],
    [33, 17, 3, 16, { reduction: 'none', zeroInfinity: true }],
  ];
  for (const [T, N, C, maxS, opts] of cases) {
    it(`T ${T}, N ${N}, C ${C}, targets up to ${maxS}, ${opts.reduction}${opts.zeroInfinity ? ', zeroInfinity' : ''}`, async () => {
      const b = batch(T, N, C, T * 31 + N, maxS);
      const tg = host([b.targets.length], b.targets);
      const want = cpuCtcLoss(b.lp, tg, b.inputLengths, b.targetLengths, opts);
      const r = ctcLossForward(toGpu(b.lp), b.targets, b.inputLengths, b.targetLengths, opts);
      await expectClose(r.loss, want, 1e-4, 1e-4);
      const gy = opts.reduction === 'none' ? randHost([N], 5, 0.5, 1.5) : host([], [0.7]);
      const dx = ctcLossBackward(toGpu(b.lp), r, toGpu(gy), opts);
      await expectClose(dx, cpuCtcLossBackward(b.lp, tg, b.inputLengths, b.targetLengths, gy, opts), 1e-3, 1e-5);
    });
  }

  it('padded int32 targets on the GPU read as the same host rows', async () => {
    const b = batch(12, 3, 5, 9, 4);
    const S = Math.max(...b.targetLengths);
    let k = 0;
    const padded = b.targetLengths.flatMap((l) => Array.from({ length: S }, (_, j) => (j < l ? b.targets[k++]! : 1)));
    const r = ctcLossForward(toGpu(b.lp), tensor(Int32Array.from(padded), { shape: [3, S], dtype: 'int32' }), b.inputLengths, b.targetLengths, { reduction: 'none' });
    const want = cpuCtcLoss(b.lp, host([b.targets.length], b.targets), b.inputLengths, b.targetLengths, { reduction: 'none' });
    await expectClose(r.loss, want, 1e-4, 1e-4);
    expect(r.alpha.shape).toEqual([3, 12, 2 * S + 1]);
  });

  it('without target lengths: the labels >= 0 of each padded row count, on the GPU, value and gradient', async () => {
    const b = batch(20, 4, 6, 11, 7);
    const S = Math.max(...b.targetLengths) + 2;
    let k = 0;
    const padded = b.targetLengths.flatMap((l) => Array.from({ length: S }, (_, j) => (j < l ? b.targets[k++]! : -100)));
    const tg = host([b.targets.length], b.targets);
    for (const reduction of ['mean', 'none'] as const) {
      const r = ctcLossForward(toGpu(b.lp), tensor(Int32Array.from(padded), { shape: [4, S], dtype: 'int32' }), b.inputLengths, null, { reduction });
      await expectClose(r.loss, cpuCtcLoss(b.lp, tg, b.inputLengths, b.targetLengths, { reduction }), 1e-4, 1e-4);
      const gy = reduction === 'none' ? host([4], [1, 0.5, 2, 1]) : host([], [1]);
      await expectClose(ctcLossBackward(toGpu(b.lp), r, toGpu(gy), { reduction }), cpuCtcLossBackward(b.lp, tg, b.inputLengths, b.targetLengths, gy, { reduction }), 1e-3, 1e-5);
    }
    expect(cpuCtcLoss(b.lp, host([4, S], padded), b.inputLengths, null).data[0]).toBeCloseTo(cpuCtcLoss(b.lp, tg, b.inputLengths, b.targetLengths).data[0]!, 10);
  });
});
