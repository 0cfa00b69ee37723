import { beforeAll, describe, expect, it } from 'vitest';
import {
  checkLabels, cpuCrossEntropy, cpuCrossEntropyBackward, cpuLogSoftmax, cpuLogSoftmaxBackward, cpuSoftmax, cpuSoftmaxBackward,
  crossEntropy, crossEntropyBackward, crossEntropyForward, forceRowMode, host, logSoftmax, logSoftmaxBackward, memory, softmax, softmaxBackward,
  tensor, tidy, type CpuCrossEntropyOptions, type HostTensor, type Reduction,
} from '../src/node.js';
import { expectClose, randHost, rng, setup, toGpu } from './helpers.js';

beforeAll(setup);

/** Shapes and dims covering one row per invocation (many rows), one workgroup per row (few
 * long rows), a class dim in the middle, and odd sizes. */
const cases: [number[], number][] = [
  [[1], 0],
  [[3], -1],
  [[17, 129], 1],
  [[257, 3], 0],
  [[2, 17, 5], 1],
  [[3000, 17], 1],
  [[3, 100000], 1],
  [[5, 257], 1],
  [[2500, 12], 1],
  [[6, 256], -1],
];

/** Runs `fn` with every row kernel in `mode` (lavapipe would pick one row per invocation). */
async function inMode(mode: 'thread' | 'group' | null, fn: () => Promise<void>): Promise<void> {
  forceRowMode(mode);
  try {
    await fn();
  } finally {
    forceRowMode(null);
  }
}

describe('softmax and logSoftmax', () => {
  for (const [shape, dim] of cases) {
    // A workgroup per row (what a GPU picks for few long rows) on the odd and long shapes.
    const modes = shape.includes(129) || shape.includes(100000) || shape.includes(256) || shape.includes(17) ? [null, 'group' as const] : [null];
    for (const mode of modes) it(`[${shape}] dim ${dim}${mode ? ` (${mode} mode)` : ''}`, () => inMode(mode, async () => {
      const x = randHost(shape, shape[0]! * 7 + dim, -6, 6);
      const gx = toGpu(x);
      await expectClose(softmax(gx, dim), cpuSoftmax(x, dim), 2e-5, 1e-7);
      await expectClose(logSoftmax(gx, dim), cpuLogSoftmax(x, dim), 1e-5, 1e-5);
      const gy = randHost(shape, 99);
      const y = cpuSoftmax(x, dim);
      const ly = cpuLogSoftmax(x, dim);
      await expectClose(softmaxBackward(toGpu(y), toGpu(gy), dim), cpuSoftmaxBackward(y, gy, dim), 1e-4, 1e-6);
      await expectClose(logSoftmaxBackward(toGpu(ly), toGpu(gy), dim), cpuLogSoftmaxBackward(ly, gy, dim), 1e-4, 1e-5);
    }));
  }

  it('logits of ±1e4 neither overflow nor vanish', async () => {
    for (const shape of [[4, 33], [2, 5000]]) {
      const x = randHost(shape, 5, -1e4, 1e4);
      x.data[3] = 1e4;
      x.data[4] = 1e4 - 0.5;
      const gx = toGpu(x);
      const y = softmax(gx);
      await expectClose(y, cpuSoftmax(x), 1e-4, 1e-7);
      await expectClose(logSoftmax(gx), cpuLogSoftmax(x), 1e-6, 1e-2);
      const d = await y.data();
      expect(d.every((v) => Number.isFinite(v))).toBe(true);
    }
  });

  it('reads non-contiguous inputs', async () => {
    const x = randHost([9, 21], 4, -3, 3);
    const t = toGpu(x).transpose(0, 1).slice(1, 1, 9, 2); // [21, 4]
    const h = host(t.shape);
    for (let i = 0; i < 21; i++) for (let j = 0; j < 4; j++) h.data[i * 4 + j] = x.data[(1 + 2 * j) * 21 + i]!;
    await expectClose(softmax(t, 0), cpuSoftmax(h, 0), 2e-5, 1e-7);
    await expectClose(logSoftmax(t, 1), cpuLogSoftmax(h, 1), 1e-5, 1e-5);
  });

  it('a contiguous view at an unaligned offset', async () => {
    const x = randHost([3, 4], 6, -3, 3);
    const flat = toGpu(host([13], [0, ...x.data])).slice(0, 1).reshape(3, 4);
    expect(flat.offset).toBe(1);
    await expectClose(softmax(flat), cpuSoftmax(x), 2e-5, 1e-7);
    const y = cpuSoftmax(x);
    const g = toGpu(host([13], [0, ...y.data])).slice(0, 1).reshape(3, 4);
    await expectClose(softmaxBackward(g, flat), cpuSoftmaxBackward(y, x), 1e-4, 1e-6);
  });

  it('the CPU backward references match finite differences of the CPU forward', () => {
    const x = randHost([3, 5], 2, -2, 2);
    const gy = randHost([3, 5], 3);
    for (const [fwd, bwd, log] of [[cpuSoftmax, cpuSoftmaxBackward, false], [cpuLogSoftmax, cpuLogSoftmaxBackward, true]] as const) {
      const y = fwd(x, 1);
      const analytic = bwd(y, gy, 1);
      void log;
      const numeric = finiteDiff(x, (h) => dot(fwd(h, 1), gy));
      numeric.forEach((v, i) => expect(Math.abs(v - analytic.data[i]!)).toBeLessThan(1e-6));
    }
  });
});

function dot(a: HostTensor, b: HostTensor): number {
  return a.data.reduce((s, v, i) => s + v * b.data[i]!, 0);
}

function finiteDiff(x: HostTensor, f: (h: HostTensor) => number, h = 1e-6): number[] {
  return [...x.data].map((_, i) => {
    const p = host(x.shape, x.data);
    const m = host(x.shape, x.data);
    p.data[i]! += h;
    m.data[i]! -= h;
    return (f(p) - f(m)) / (2 * h);
  });
}

function labelsFor(n: number, C: number, seed: number, ignore = -100, ignoreEvery = 0): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n }, (_, i) => (ignoreEvery && i % ignoreEvery === 1 ? ignore : Math.floor(r() * C)));
}

describe('crossEntropy', () => {
  const shapes = [[1, 3], [17, 5], [4, 129], [3, 1000], [3000, 10], [2, 7, 3, 5], [6]];
  const configs: { name: string; opts: (C: number) => CpuCrossEntropyOptions; ignoreEvery?: number }[] = [
    { name: 'plain', opts: () => ({}) },
    { name: 'smoothing 0.1', opts: () => ({ labelSmoothing: 0.1 }) },
    { name: 'ignore_index -100', opts: () => ({}), ignoreEvery: 3 },
    { name: 'ignore_index 2 with weights and smoothing', opts: (C) => ({ ignoreIndex: 2, labelSmoothing: 0.2, weight: randHost([C], C, 0.2, 2) }), ignoreEvery: 4 },
    { name: 'weights', opts: (C) => ({ weight: randHost([C], C + 1, 0.2, 2) }) },
  ];
  const runs = [...configs.map((cfg) => ({ cfg, mode: null })), { cfg: configs[3]!, mode: 'group' as const }];
  for (const { cfg, mode } of runs) {
    it(`${cfg.name}${mode ? ` (${mode} mode)` : ''}`, () => inMode(mode, async () => {
      for (const shape of mode ? [[4, 129], [2, 7, 3, 5], [6]] : shapes) {
        const classDim = shape.length === 1 ? 0 : 1;
        const C = shape[classDim]!;
        const n = shape.reduce((a, b) => a * b, 1) / C;
        const x = randHost(shape, n + C, -4, 4);
        const base = cfg.opts(C);
        const labels = labelsFor(n, C, n * 3 + C, base.ignoreIndex ?? -100, cfg.ignoreEvery ?? 0);
        if (base.ignoreIndex === 2) labels.forEach((l, i) => (labels[i] = l === 2 ? 0 : l));
        if (cfg.ignoreEvery) for (let i = 1; i < n; i += cfg.ignoreEvery) labels[i] = base.ignoreIndex ?? -100;
        const gx = toGpu(x);
        const gl = tensor(labels, { shape: shape.filter((_, i) => i !== classDim) });
        for (const reduction of ['mean', 'sum', 'none'] as Reduction[]) {
          const hopts = { ...base, reduction };
          const opts = { ...hopts, weight: base.weight ? toGpu(base.weight) : undefined };
          const fwd = crossEntropyForward(gx, gl, opts);
          await expectClose(fwd.loss, cpuCrossEntropy(x, labels, hopts), 2e-5, 1e-5);
          const gshape = reduction === 'none' ? shape.filter((_, i) => i !== classDim) : [];
          const g = randHost(gshape, 7, 0.5, 2);
          const want = cpuCrossEntropyBackward(x, labels, g, hopts);
          await expectClose(crossEntropyBackward(gx, gl, toGpu(g), { ...opts, totalWeight: fwd.totalWeight }), want, 1e-4, 1e-6);
          await expectClose(crossEntropyBackward(gx, labels, toGpu(g), opts), want, 1e-4, 1e-6);
        }
      }
    }));
  }

  it('logits of 1e4 give finite losses and gradients', async () => {
    const x = randHost([5, 40], 3, -1e4, 1e4);
    const labels = [0, 5, 39, 17, 2];
    const loss = crossEntropy(toGpu(x), labels, { labelSmoothing: 0.1 });
    await expectClose(loss, cpuCrossEntropy(x, labels, { labelSmoothing: 0.1 }), 1e-5);
    const dx = crossEntropyBackward(toGpu(x), labels, tensor(1), { labelSmoothing: 0.1 });
    await expectClose(dx, cpuCrossEntropyBackward(x, labels, host([], [1]), { labelSmoothing: 0.1 }), 1e-4, 1e-7);
  });

  it('a mean over only ignored samples is NaN, as in PyTorch', async () => {
    const loss = await crossEntropy(toGpu(randHost([2, 3], 1)), [-100, -100]).item();
    expect(Number.isNaN(loss)).toBe(true);
  });

  it('out-of-range labels: an error from host data, NaN from GPU data, checkLabels to find them', async () => {
    const x = toGpu(randHost([3, 4], 1));
    expect(() => crossEntropy(x, [0, 4, 1])).toThrow(/target 4 .*out of bounds.*\[0, 4\)/);
    expect(() => crossEntropy(x, [0, -1, 1])).toThrow(/target -1/);
    const bad = tensor(new Int32Array([0, 7, 1]));
    expect(Number.isNaN(await crossEntropy(x, bad).item())).toBe(true);
    const none = await crossEntropy(x, bad, { reduction: 'none' }).data();
    expect(Number.isNaN(none[1])).toBe(true);
    expect(Number.isFinite(none[0])).toBe(true);
    const dx = await crossEntropyBackward(x, bad, tensor(1)).data();
    expect(Number.isNaN(dx[4])).toBe(true);
    await expect(checkLabels(bad, 4)).rejects.toThrow(/target 7/);
    await checkLabels(tensor(new Int32Array([3, -100])), 4);
  });

  it('reads strided labels and weights', async () => {
    const x = randHost([4, 5], 2, -3, 3);
    const lab = [3, 0, 4, 1];
    const wts = randHost([5], 3, 0.5, 2);
    const gl = tensor(new Int32Array([3, 9, 0, 9, 4, 9, 1, 9])).slice(0, 0, 8, 2);
    const gw = toGpu(host([10], [...wts.data].flatMap((v) => [v, -1]))).slice(0, 0, 10, 2);
    const opts = { labelSmoothing: 0.1, weight: wts };
    await expectClose(crossEntropy(toGpu(x), gl, { ...opts, weight: gw }), cpuCrossEntropy(x, lab, opts), 1e-5);
    const want = cpuCrossEntropyBackward(x, lab, host([], [1]), opts);
    await expectClose(crossEntropyBackward(toGpu(x), gl, tensor(1), { ...opts, weight: gw }), want, 1e-4, 1e-6);
  });

  it('rejects mismatched shapes and dtypes', () => {
    const x = toGpu(randHost([3, 4], 1));
    expect(() => crossEntropy(x, [0, 1])).toThrow();
    expect(() => crossEntropy(x, tensor([0, 1, 2]))).toThrow(/int32/);
    expect(() => crossEntropy(x, [0, 1, 2], { weight: tensor([1, 2]) })).toThrow(/weight must have shape \[4\]/);
    expect(() => crossEntropyBackward(x, [0, 1, 2], tensor([1, 1]))).toThrow(/gradLoss/);
  });

  it('the CPU backward reference matches finite differences of the CPU forward', () => {
    const x = randHost([2, 4, 3], 5, -2, 2);
    const labels = [0, 3, -100, 1, 2, 0];
    for (const reduction of ['mean', 'sum', 'none'] as Reduction[]) {
      const opts = { labelSmoothing: 0.3, weight: randHost([4], 1, 0.5, 2), reduction };
      const g = randHost(reduction === 'none' ? [2, 3] : [], 2, 0.5, 1.5);
      const analytic = cpuCrossEntropyBackward(x, labels, g, opts);
      const numeric = finiteDiff(x, (h) => dot(cpuCrossEntropy(h, labels, opts), g));
      numeric.forEach((v, i) => expect(Math.abs(v - analytic.data[i]!)).toBeLessThan(1e-6));
    }
  });

  it('frees its intermediates', async () => {
    const x = toGpu(randHost([8, 10], 1));
    const labels = tensor(labelsFor(8, 10, 1));
    const before = memory().liveBuffers;
    const out = tidy(() => [crossEntropy(x, labels), crossEntropyBackward(x, labels, tensor(1), { labelSmoothing: 0.1 }), crossEntropy(x, [1, 2, 3, 4, 5, 6, 7, 8])]);
    expect(memory().liveBuffers).toBe(before + 3);
    for (const t of out) t.dispose();
  });
});
