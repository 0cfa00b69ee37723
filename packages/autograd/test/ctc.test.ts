/** CTC loss against PyTorch 1.13 (fixtures/make_ctc_fixtures.py): the GPU kernels through
 * autograd and the float64 references, value and gradient. */
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '../src/index.js';
import type { CtcLossOptions } from '../src/index.js';
import { expectClose, permuteHost, setup } from '../../tensor/test/helpers.js';
import type { SafetensorsFile } from '../../models/src/index.js';
import { gpu, loadFixture, want } from './fixture-io.js';

beforeAll(setup);

interface Case {
  blank: number;
  reduction: 'mean' | 'sum' | 'none';
  zero_infinity: boolean;
  input_lengths: number[];
  target_lengths: number[];
}

const NAMES = ['mean_padded', 'sum_repeats', 'none_blank_last', 'impossible_zero_infinity', 'long'];
const load = (name: string): { f: SafetensorsFile; c: Case; opts: CtcLossOptions } => {
  const f = loadFixture(`ctc_${name}`);
  const c = JSON.parse(f.metadata.config!) as Case;
  return { f, c, opts: { blank: c.blank, reduction: c.reduction, zeroInfinity: c.zero_infinity } };
};

describe('ctcLoss against PyTorch', () => {
  for (const name of NAMES) {
    it(`${name}: loss and gradient of the log-probabilities (GPU)`, async () => {
      const { f, c, opts } = load(name);
      const lp = gpu(f, 'log_probs', true);
      const y = A.ctcLoss(lp, gpu(f, 'targets'), c.input_lengths, c.target_lengths, opts);
      await expectClose(y, want(f, 'y'), 1e-4, 1e-5);
      A.backward(y, gpu(f, 'gy'));
      await expectClose(lp.grad!, want(f, 'grad.log_probs'), 1e-4, 1e-5);
    });

    it(`${name}: the float64 references`, () => {
      const { f, c, opts } = load(name);
      const lp = want(f, 'log_probs');
      const tg = want(f, 'targets');
      const y = A.cpuCtcLoss(lp, tg, c.input_lengths, c.target_lengths, opts);
      const yw = want(f, 'y').data;
      y.data.forEach((v, i) => expect(v).toBeCloseTo(yw[i]!, 4));
      const g = A.cpuCtcLossBackward(lp, tg, c.input_lengths, c.target_lengths, want(f, 'gy'), opts);
      const gw = want(f, 'grad.log_probs').data;
      g.data.forEach((v, i) => expect(Math.abs(v - gw[i]!)).toBeLessThan(1e-5 + 1e-4 * Math.abs(gw[i]!)));
    });
  }

  it('through logSoftmax of batch-first logits read as a transposed view: the logits gradient', async () => {
    const { f, c, opts } = load('mean_padded');
    const logitsTNC = want(f, 'logits');
    const ntc = permuteHost(logitsTNC, [1, 0, 2]);
    const logits = A.tensor(Float32Array.from(ntc.data), { shape: ntc.shape });
    logits.requiresGrad = true;
    const lp = A.logSoftmax(logits, -1).transpose(0, 1);
    const y = A.ctcLoss(lp, f.get('targets').data as Int32Array, c.input_lengths, c.target_lengths, opts);
    await expectClose(y, want(f, 'y'), 1e-4, 1e-5);
    A.backward(y, gpu(f, 'gy'));
    await expectClose(logits.grad!, permuteHost(want(f, 'grad.logits'), [1, 0, 2]), 1e-4, 1e-5);
  });

  it('an impossible alignment without zeroInfinity: loss inf, its frames NaN, the other sequence untouched', async () => {
    const { f, c } = load('impossible_zero_infinity');
    const lp = gpu(f, 'log_probs', true);
    const y = A.ctcLoss(lp, gpu(f, 'targets'), c.input_lengths, c.target_lengths, { reduction: 'none' });
    const losses = await y.data();
    expect(losses[0]).toBe(Infinity);
    expect(Number.isFinite(losses[1])).toBe(true);
    A.backward(y, A.ones([2]));
    const g = await lp.grad!.data();
    const [, N, C] = lp.shape as [number, number, number];
    for (let t = 0; t < c.input_lengths[0]!; t++) for (let k = 0; k < C; k++) expect(g[(t * N) * C + k]).toBeNaN();
    for (let t = 0; t < 8; t++) for (let k = 0; k < C; k++) expect(Number.isFinite(g[(t * N + 1) * C + k])).toBe(true);
  });

  it('bad arguments name the value and what was expected', () => {
    const lp = A.zeros([4, 2, 3]);
    expect(() => A.ctcLoss(lp, [1, 2], [4, 5], [1, 1])).toThrow(/input length 5 \(sequence 1\) must be an integer in \[1, 4\]/);
    expect(() => A.ctcLoss(lp, [1, 0], [4, 4], [1, 1])).toThrow(/target 0 \(sequence 1, position 0\) .* other than the blank 0/);
    expect(() => A.ctcLoss(lp, [1, 2, 2], [4, 4], [1, 1])).toThrow(/concatenated targets hold 3 labels; the target lengths add up to 2/);
    expect(() => A.ctcLoss(A.zeros([4, 3]), [1], [4], [1])).toThrow(/logProbs must be \[T, N, C\]/);
    expect(() => A.ctcLoss(lp, [1, 2], [4, 4], [1, 1], { blank: 3 })).toThrow(/blank 3 must be a class index in \[0, 3\)/);
  });
});
