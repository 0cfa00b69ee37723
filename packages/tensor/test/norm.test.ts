import { beforeAll, describe, expect, it } from 'vitest';
import {
  batchNorm, batchNormBackward, batchNormStats, batchNormTrain, cpuBatchNorm, cpuBatchNormBackward, cpuBatchNormStats, cpuBatchNormTrain,
  cpuLayerNorm, cpuLayerNormBackward, cpuUpdateRunningStats, forceRowMode, host, layerNorm, layerNormBackward, layerNormWithStats, memory, tidy,
  updateRunningStats, type HostTensor,
} from '../src/node.js';
import { expectClose, randHost, setup, toGpu } from './helpers.js';

beforeAll(setup);

function dot(a: HostTensor, b: HostTensor): number {
  return a.data.reduce((s, v, i) => s + v * b.data[i]!, 0);
}

/** Central differences of f at x, in float64. */
function finiteDiff(x: HostTensor, f: (h: HostTensor) => number, h = 1e-6): HostTensor {
  return host(x.shape, [...x.data].map((_, i) => {
    const p = host(x.shape, x.data);
    const m = host(x.shape, x.data);
    p.data[i]! += h;
    m.data[i]! -= h;
    return (f(p) - f(m)) / (2 * h);
  }));
}

function expectNear(a: HostTensor, b: HostTensor, tol: number): void {
  a.data.forEach((v, i) => expect(Math.abs(v - b.data[i]!)).toBeLessThan(tol * (1 + Math.abs(b.data[i]!))));
}

describe('layerNorm', () => {
  // [rows..., normalized...]: many short rows (one per invocation), few long ones (a workgroup
  // each), odd sizes, a multi-dim normalized shape.
  const cases: [number[], number[]][] = [
    [[1, 3], [3]],
    [[17, 129], [129]],
    [[3000, 17], [17]],
    [[3, 100000], [100000]],
    [[2, 5, 3, 7], [3, 7]],
    [[257], [257]],
    [[2100, 16], [16]],
    [[5, 2, 256], [2, 256]],
  ];
  const runs = [...cases.map((c) => [...c, null] as const), [[17, 129], [129], 'group'] as const, [[5, 2, 256], [2, 256], 'group'] as const];
  for (const [shape, ns, mode] of runs) {
    it(`[${shape}] over [${ns}]${mode ? ` (${mode} mode)` : ''}`, async () => {
      forceRowMode(mode);
      try {
        await layerNormCase([...shape], [...ns]);
      } finally {
        forceRowMode(null);
      }
    });
  }

  async function layerNormCase(shape: number[], ns: number[]): Promise<void> {
    {
      const x = randHost(shape, shape[0]! + ns.length, -2, 3);
      const w = randHost(ns, 2, 0.5, 1.5);
      const b = randHost(ns, 3);
      const gx = toGpu(x);
      const gw = toGpu(w);
      const want = cpuLayerNorm(x, ns, w, b);
      await expectClose(layerNorm(gx, ns, gw, toGpu(b)), want.y, 1e-4, 1e-5);
      await expectClose(layerNorm(gx, ns), cpuLayerNorm(x, ns).y, 1e-4, 1e-5);
      const s = layerNormWithStats(gx, ns, gw, toGpu(b));
      await expectClose(s.y, want.y, 1e-4, 1e-5);
      await expectClose(s.mean, want.mean, 1e-5, 1e-6);
      await expectClose(s.rstd, want.rstd, 1e-5);

      const gy = randHost(shape, 9);
      const ref = cpuLayerNormBackward(gy, x, want.mean, want.rstd, w);
      const g = layerNormBackward(toGpu(gy), gx, s.mean, s.rstd, gw);
      await expectClose(g.dx, ref.dx, 1e-4, 2e-5);
      const rows = x.data.length / w.data.length;
      await expectClose(g.dweight!, ref.dweight, 1e-4, 1e-6 * rows);
      await expectClose(g.dbias!, ref.dbias, 1e-4, 1e-6 * rows);
      const noW = layerNormBackward(toGpu(gy), gx, s.mean, s.rstd, undefined, { paramGrads: false });
      expect(noW.dweight).toBeNull();
      await expectClose(noW.dx, cpuLayerNormBackward(gy, x, want.mean, want.rstd).dx, 1e-4, 2e-5);
    }
  }

  it('reads non-contiguous inputs and gradients', async () => {
    const x = randHost([9, 6], 4);
    const gy = randHost([6, 9], 5);
    const t = toGpu(x).transpose(0, 1); // [6, 9]
    const h = host([6, 9]);
    for (let i = 0; i < 6; i++) for (let j = 0; j < 9; j++) h.data[i * 9 + j] = x.data[j * 6 + i]!;
    const s = layerNormWithStats(t, 9);
    const want = cpuLayerNorm(h, 9);
    await expectClose(s.y, want.y, 1e-4, 1e-5);
    const ggy = toGpu(host([9, 6], [...Array(54).keys()].map((k) => gy.data[(k % 6) * 9 + Math.floor(k / 6)]!))).transpose(0, 1);
    const g = layerNormBackward(ggy, t, s.mean, s.rstd);
    const ref = cpuLayerNormBackward(gy, h, want.mean, want.rstd);
    await expectClose(g.dx, ref.dx, 1e-4, 2e-5);
    await expectClose(g.dbias!, ref.dbias, 1e-5, 1e-6);
  });

  it('rejects a normalizedShape that is not the trailing dims', () => {
    const x = toGpu(randHost([2, 3], 1));
    expect(() => layerNorm(x, [2])).toThrow(/trailing dims/);
    expect(() => layerNorm(x, 3, toGpu(randHost([4], 1)))).toThrow(/weight has shape \[4\]/);
  });

  it('the CPU backward reference matches finite differences of the CPU forward', () => {
    const x = randHost([3, 5], 1, -2, 2);
    const w = randHost([5], 2, 0.5, 1.5);
    const b = randHost([5], 3);
    const gy = randHost([3, 5], 4);
    const f = cpuLayerNorm(x, 5, w, b);
    const ref = cpuLayerNormBackward(gy, x, f.mean, f.rstd, w);
    expectNear(ref.dx, finiteDiff(x, (h) => dot(cpuLayerNorm(h, 5, w, b).y, gy)), 1e-6);
    expectNear(ref.dweight, finiteDiff(w, (h) => dot(cpuLayerNorm(x, 5, h, b).y, gy)), 1e-6);
    expectNear(ref.dbias, finiteDiff(b, (h) => dot(cpuLayerNorm(x, 5, w, h).y, gy)), 1e-6);
  });
});

describe('batchNorm', () => {
  const shapes = [[1, 3], [17, 5], [4, 3, 17, 9], [2, 129, 3, 3], [8, 16, 56, 56], [3, 1, 257]];
  for (const shape of shapes) {
    it(`[${shape}]`, async () => {
      const C = shape[1]!;
      const x = randHost(shape, C + shape[0]!, -1, 3);
      const w = randHost([C], 2, 0.5, 1.5);
      const b = randHost([C], 3);
      const gx = toGpu(x);
      const gw = toGpu(w);
      const gb = toGpu(b);
      const n = x.data.length / C;

      const rm = randHost([C], 4);
      const rv = randHost([C], 5, 0.5, 2);
      await expectClose(batchNorm(gx, toGpu(rm), toGpu(rv), gw, gb), cpuBatchNorm(x, rm, rv, w, b), 1e-5, 1e-5);
      await expectClose(batchNorm(gx, toGpu(rm), toGpu(rv)), cpuBatchNorm(x, rm, rv), 1e-5, 1e-5);

      const st = batchNormStats(gx);
      const wantSt = cpuBatchNormStats(x);
      await expectClose(st.mean, wantSt.mean, 1e-5, 1e-6);
      await expectClose(st.var, wantSt.var, 1e-4, 1e-6);
      if (n > 1) await expectClose(st.varUnbiased, wantSt.varUnbiased, 1e-4, 1e-6);

      const tr = batchNormTrain(gx, gw, gb, 1e-5);
      const wantTr = cpuBatchNormTrain(x, w, b, 1e-5);
      await expectClose(tr.y, wantTr.y, 1e-4, 1e-5);
      await expectClose(tr.mean, wantTr.mean, 1e-5, 1e-6);
      await expectClose(tr.invstd, wantTr.invstd, 1e-4);

      const gy = randHost(shape, 6);
      const ref = cpuBatchNormBackward(gy, x, wantTr.mean, wantTr.invstd, w);
      const g = batchNormBackward(toGpu(gy), gx, tr.mean, tr.invstd, gw);
      await expectClose(g.dx, ref.dx, 1e-4, 1e-5);
      await expectClose(g.dweight!, ref.dweight, 1e-4, 1e-6 * n);
      await expectClose(g.dbias!, ref.dbias, 1e-4, 1e-6 * n);

      const gRm = toGpu(rm);
      const gRv = toGpu(rv);
      const buffers = [gRm.buffer, gRv.buffer];
      updateRunningStats(gRm, gRv, tr.mean, tr.varUnbiased, 0.1);
      const wantRs = cpuUpdateRunningStats(rm, rv, wantTr.mean, wantTr.varUnbiased, 0.1);
      expect([gRm.buffer, gRv.buffer]).toEqual(buffers);
      await expectClose(gRm, wantRs.runningMean, 1e-5, 1e-6);
      if (n > 1) await expectClose(gRv, wantRs.runningVar, 1e-4, 1e-6);
    });
  }

  it('reads a non-contiguous (channels-last) input', async () => {
    const xl = randHost([2, 5, 7, 3], 7); // N, H, W, C
    const t = toGpu(xl).permute(0, 3, 1, 2); // [2, 3, 5, 7]
    const h = host([2, 3, 5, 7]);
    for (let n = 0; n < 2; n++) for (let c = 0; c < 3; c++) for (let i = 0; i < 5; i++) for (let j = 0; j < 7; j++) {
      h.data[((n * 3 + c) * 5 + i) * 7 + j] = xl.data[((n * 5 + i) * 7 + j) * 3 + c]!;
    }
    const tr = batchNormTrain(t);
    const want = cpuBatchNormTrain(h);
    await expectClose(tr.y, want.y, 1e-4, 1e-5);
    const gy = randHost([2, 3, 5, 7], 8);
    const g = batchNormBackward(toGpu(gy), t, tr.mean, tr.invstd);
    await expectClose(g.dx, cpuBatchNormBackward(gy, h, want.mean, want.invstd).dx, 1e-4, 1e-5);
  });

  it('the CPU backward reference matches finite differences of the CPU forward', () => {
    const x = randHost([3, 2, 4], 1, -2, 2);
    const w = randHost([2], 2, 0.5, 1.5);
    const b = randHost([2], 3);
    const gy = randHost([3, 2, 4], 4);
    const f = cpuBatchNormTrain(x, w, b);
    const ref = cpuBatchNormBackward(gy, x, f.mean, f.invstd, w);
    expectNear(ref.dx, finiteDiff(x, (h) => dot(cpuBatchNormTrain(h, w, b).y, gy)), 1e-6);
    expectNear(ref.dweight, finiteDiff(w, (h) => dot(cpuBatchNormTrain(x, h, b).y, gy)), 1e-6);
    expectNear(ref.dbias, finiteDiff(b, (h) => dot(cpuBatchNormTrain(x, w, h).y, gy)), 1e-6);
  });

  it('checks shapes and frees its intermediates', async () => {
    const x = toGpu(randHost([4, 3, 5], 1));
    expect(() => batchNorm(x, toGpu(randHost([4], 1)), toGpu(randHost([3], 1)))).toThrow(/runningMean has shape \[4\]/);
    expect(() => batchNormTrain(toGpu(randHost([3], 1)))).toThrow(/\[N, C, \.\.\.\]/);
    const before = memory().liveBuffers;
    const out = tidy(() => {
      const tr = batchNormTrain(x);
      const g = batchNormBackward(x, x, tr.mean, tr.invstd);
      return [tr.y, g.dx];
    });
    expect(memory().liveBuffers).toBe(before + 2);
    for (const t of out) t.dispose();
  });
});
