import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { parseSafetensors } from '@tl/models';
import { Adam, AdamW, SGD, clipGradNorm, constant, cosine, exponential, linear, multiStep, oneCycle, plateau, stepLR, type Optimizer } from '../src/index.js';
import { expectClose, setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

const fixtureDir = new URL('../fixtures/', import.meta.url);

describe('optimizers match torch.optim step for step', () => {
  for (const name of ['sgd_plain', 'sgd_momentum_wd', 'sgd_nesterov', 'adam', 'adam_wd', 'adamw']) {
    it(name, async () => {
      const f = parseSafetensors(readFileSync(new URL(`opt_${name}.safetensors`, fixtureDir)));
      const c = JSON.parse(f.metadata.config!);
      const p = A.tensor(f.get('p0').data);
      p.requiresGrad = true;
      const opts = { lr: c.lr, weightDecay: c.weight_decay ?? 0 };
      const opt: Optimizer =
        c.kind === 'SGD' ? new SGD([p], { ...opts, momentum: c.momentum, dampening: c.dampening, nesterov: c.nesterov })
        : c.kind === 'Adam' ? new Adam([p], { ...opts, betas: c.betas, eps: c.eps })
        : new AdamW([p], { ...opts, betas: c.betas, eps: c.eps });
      for (let s = 0; s < c.steps; s++) {
        p.grad = A.keep(A.tensor(f.get(`grad${s}`).data));
        opt.step();
        const want = f.get(`p${s + 1}`);
        await expectClose(p, { shape: want.shape, data: Float64Array.from(want.data) }, 1e-5, 1e-6);
      }
    });
  }

  it('skips frozen parameters and those without gradients; per-group lr', async () => {
    const a = A.ones([3]);
    const b = A.ones([3]);
    const c = A.ones([3]);
    for (const t of [a, b, c]) t.requiresGrad = true;
    const opt = new SGD([{ params: [a], lr: 0.5 }, { params: [b, c], lr: 0.1 }]);
    a.grad = A.keep(A.ones([3]));
    b.grad = A.keep(A.ones([3]));
    c.grad = A.keep(A.ones([3]));
    c.requiresGrad = false;
    opt.step();
    expect([...(await a.data())]).toEqual([0.5, 0.5, 0.5]);
    expect([...(await b.data())].map((v) => +v.toFixed(6))).toEqual([0.9, 0.9, 0.9]);
    expect([...(await c.data())]).toEqual([1, 1, 1]);
    expect(() => new SGD([a, a])).not.toThrow();
    expect(() => new SGD([{ params: [a] }, { params: [a] }])).toThrow(/more than one group/);
  });

  it('clips gradients by global norm on the GPU', async () => {
    const a = A.tensor([3, 0]);
    const b = A.tensor([0, 4]);
    a.grad = A.keep(A.tensor([3, 0]));
    b.grad = A.keep(A.tensor([0, 4]));
    const total = clipGradNorm([a, b], 1);
    expect(await total.item()).toBeCloseTo(5, 5);
    expect([...(await a.grad.data())].map((v) => +v.toFixed(5))).toEqual([0.6, 0]);
    expect([...(await b.grad!.data())].map((v) => +v.toFixed(5))).toEqual([0, 0.8]);
  });

  it('a NaN gradient makes the norm and every clipped gradient NaN, as in PyTorch', async () => {
    const a = A.tensor([3, 0]);
    const b = A.tensor([0, 4]);
    a.grad = A.keep(A.tensor([NaN, 0]));
    b.grad = A.keep(A.tensor([0, 4]));
    expect(Number.isNaN(await clipGradNorm([a, b], 1).item())).toBe(true);
    expect([...(await a.grad.data()), ...(await b.grad!.data())].every(Number.isNaN)).toBe(true);
  });

  it('saves and restores its state', async () => {
    const p = A.tensor([1, 2, 3]);
    p.requiresGrad = true;
    const opt = new AdamW([p], { lr: 0.1 });
    p.grad = A.keep(A.tensor([1, -1, 0.5]));
    opt.step();
    const state = await opt.stateDict();
    const q = A.tensor(await p.data());
    q.requiresGrad = true;
    const opt2 = new AdamW([q], { lr: 0.1 });
    opt2.loadStateDict(state);
    for (const [o, t] of [[opt, p], [opt2, q]] as const) {
      t.grad = A.keep(A.tensor([0.3, 0.2, -0.1]));
      o.step();
    }
    expect([...(await q.data())]).toEqual([...(await p.data())]);
  });
});

describe('schedules match torch.optim.lr_scheduler', () => {
  const want = JSON.parse(readFileSync(new URL('schedules.json', fixtureDir), 'utf8')) as Record<string, number[]>;
  const check = (name: string, values: number[]): void => {
    expect(values.length).toBe(want[name]!.length);
    values.forEach((v, i) => expect(v, `${name} step ${i}`).toBeCloseTo(want[name]![i]!, 10));
  };
  const run = (s: { lr(step: number, base: number): number }, n: number): number[] => Array.from({ length: n }, (_, i) => s.lr(i, 0.1));
  it('step, multistep, exponential, linear, constant', () => {
    check('step', run(stepLR({ stepSize: 3, gamma: 0.5 }), 10));
    check('multistep', run(multiStep({ milestones: [2, 5, 7], gamma: 0.1 }), 10));
    check('exponential', run(exponential({ gamma: 0.9 }), 10));
    check('linear', run(linear({ startFactor: 0.25, endFactor: 1, totalIters: 4 }), 8));
    expect(run(constant(), 3)).toEqual([0.1, 0.1, 0.1]);
  });
  it('cosine, with restarts', () => {
    check('cosine', run(cosine({ tMax: 8, etaMin: 0.001 }), 12));
    check('cosine_restarts', run(cosine({ etaMin: 0.01, restarts: { t0: 3, tMult: 2 } }), 15));
  });
  it('one-cycle, cos and linear', () => {
    check('onecycle', run(oneCycle({ maxLr: 1, totalSteps: 20, pctStart: 0.3 }), 20));
    check('onecycle_linear', run(oneCycle({ maxLr: 0.5, totalSteps: 10, pctStart: 0.25, annealStrategy: 'linear', divFactor: 10, finalDivFactor: 100 }), 10));
  });
  it('reduce-on-plateau', () => {
    const s = plateau({ mode: 'min', factor: 0.5, patience: 2, threshold: 1e-4 });
    const out: number[] = [];
    for (const m of want.plateau_metrics!) {
      out.push(s.lr(0, 0.1));
      s.observe(m);
    }
    check('plateau', out);
  });
});
