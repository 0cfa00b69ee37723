import { beforeAll, describe, expect, it } from 'vitest';
import {
  batchNorm, batchNormBackward, batchNormStats, batchNormTrain, cpuBatchNorm, cpuBatchNormBackward, cpuBatchNormStats, cpuBatchNormTrain,
  cpuLayerNorm, cpuLayerNormBackward, engine, forceRowMode, host, layerNorm, layerNormBackward, layerNormWithStats,
  type HostTensor, type Tensor,
} from '../src/node.js';
import { expectClose, halfHost, randHost, setup, toGpu, toHalf } from './helpers.js';

beforeAll(setup);


// float16 outputs: the kernel rounds its f32 result once, the reference its float64 one, so
// they may differ by one half ulp (2^-10 relative); the atol covers f32 rounding in results
// that cancel to near zero. float32 outputs (statistics, parameter gradients) are f32
// accumulations of the rounded inputs: the float32 suite's tolerances.
const HALF_RTOL = 2 ** -10;
const HALF_ATOL = 1e-4;

async function expectHalf(got: Tensor, want: HostTensor, atol = HALF_ATOL): Promise<void> {
  expect(got.dtype).toBe('float16');
  await expectClose(got, halfHost(want), HALF_RTOL, atol);
}

async function expectF32(got: Tensor, want: HostTensor, rtol: number, atol: number): Promise<void> {
  expect(got.dtype).toBe('float32');
  await expectClose(got, want, rtol, atol);
}

describe('layerNorm with float16 activations', () => {
  // Odd rows (f16 elements) and rows of whole vec4s (vec4<f16>), one row and many, a
  // multi-dim normalized shape, a long row.
  const cases: [number[], number[]][] = [
    [[1, 3], [3]],
    [[17, 129], [129]],
    [[3000, 17], [17]],
    [[2, 5, 3, 7], [3, 7]],
    [[257], [257]],
    [[2100, 16], [16]],
    [[5, 2, 256], [2, 256]],
    [[3, 20000], [20000]],
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
    const x = halfHost(randHost(shape, shape[0]! + ns.length, -2, 3));
    const w = randHost(ns, 2, 0.5, 1.5);
    const b = randHost(ns, 3);
    const hx = toHalf(x);
    const gw = toGpu(w);
    const gb = toGpu(b);
    const want = cpuLayerNorm(x, ns, w, b);
    await expectHalf(layerNorm(hx, ns, gw, gb), want.y);
    await expectHalf(layerNorm(hx, ns), cpuLayerNorm(x, ns).y);
    const s = layerNormWithStats(hx, ns, gw, gb);
    await expectHalf(s.y, want.y);
    await expectF32(s.mean, want.mean, 1e-5, 1e-6);
    await expectF32(s.rstd, want.rstd, 1e-5, 1e-6);

    const gy = halfHost(randHost(shape, 9));
    const ref = cpuLayerNormBackward(gy, x, want.mean, want.rstd, w);
    const g = layerNormBackward(toHalf(gy), hx, s.mean, s.rstd, gw);
    await expectHalf(g.dx, ref.dx);
    const rows = x.data.length / w.data.length;
    await expectF32(g.dweight!, ref.dweight, 1e-4, 1e-6 * rows);
    await expectF32(g.dbias!, ref.dbias, 1e-4, 1e-6 * rows);
    const noW = layerNormBackward(toHalf(gy), hx, s.mean, s.rstd, undefined, { paramGrads: false });
    expect(noW.dweight).toBeNull();
    await expectHalf(noW.dx, cpuLayerNormBackward(gy, x, want.mean, want.rstd).dx);
  }

  it('reads non-contiguous inputs and gradients', async () => {
    const x = halfHost(randHost([9, 6], 4));
    const gy = halfHost(randHost([6, 9], 5));
    const t = toHalf(x).transpose(0, 1); // [6, 9]
    const h = host([6, 9]);
    for (let i = 0; i < 6; i++) for (let j = 0; j < 9; j++) h.data[i * 9 + j] = x.data[j * 6 + i]!;
    const s = layerNormWithStats(t, 9);
    const want = cpuLayerNorm(h, 9);
    await expectHalf(s.y, want.y);
    const gyT = host([9, 6], [...Array(54).keys()].map((k) => gy.data[(k % 6) * 9 + Math.floor(k / 6)]!));
    const g = layerNormBackward(toHalf(gyT).transpose(0, 1), t, s.mean, s.rstd);
    const ref = cpuLayerNormBackward(gy, h, want.mean, want.rstd);
    await expectHalf(g.dx, ref.dx);
    await expectF32(g.dbias!, ref.dbias, 1e-5, 1e-6);
  });

  it('takes a float32 gradient of a float16 input (dx keeps the input dtype)', async () => {
    const x = halfHost(randHost([7, 12], 6, -2, 2));
    const gy = randHost([7, 12], 7);
    const s = layerNormWithStats(toHalf(x), 12);
    const want = cpuLayerNorm(x, 12);
    const g = layerNormBackward(toGpu(gy), toHalf(x), s.mean, s.rstd);
    await expectHalf(g.dx, cpuLayerNormBackward(gy, x, want.mean, want.rstd).dx);
  });

  it('refuses float16 parameters and statistics by name', () => {
    const x = toHalf(halfHost(randHost([2, 4], 1)));
    const w16 = toHalf(halfHost(randHost([4], 2)));
    expect(() => layerNorm(x, 4, w16)).toThrow(/layerNorm: weight must be float32, got float16/);
    expect(() => layerNormWithStats(x, 4, undefined, w16)).toThrow(/layerNormWithStats: bias must be float32, got float16/);
    const s = layerNormWithStats(x, 4);
    expect(() => layerNormBackward(x, x, s.mean, s.rstd, w16)).toThrow(/layerNormBackward: weight must be float32, got float16/);
    expect(() => layerNormBackward(x, x, s.mean.half(), s.rstd)).toThrow(/layerNormBackward: mean must be float32, got float16/);
  });
});

describe('batchNorm with float16 activations', () => {
  const shapes = [[1, 3], [17, 5], [4, 3, 17, 9], [2, 129, 3, 3], [8, 16, 28, 28], [3, 1, 257]];
  for (const shape of shapes) {
    it(`[${shape}]`, async () => {
      const C = shape[1]!;
      const x = halfHost(randHost(shape, C + shape[0]!, -1, 3));
      const w = randHost([C], 2, 0.5, 1.5);
      const b = randHost([C], 3);
      const hx = toHalf(x);
      const gw = toGpu(w);
      const gb = toGpu(b);
      const n = x.data.length / C;

      const rm = randHost([C], 4);
      const rv = randHost([C], 5, 0.5, 2);
      await expectHalf(batchNorm(hx, toGpu(rm), toGpu(rv), gw, gb), cpuBatchNorm(x, rm, rv, w, b));
      await expectHalf(batchNorm(hx, toGpu(rm), toGpu(rv)), cpuBatchNorm(x, rm, rv));

      const st = batchNormStats(hx);
      const wantSt = cpuBatchNormStats(x);
      await expectF32(st.mean, wantSt.mean, 1e-5, 1e-6);
      await expectF32(st.var, wantSt.var, 1e-4, 1e-6);
      if (n > 1) await expectF32(st.varUnbiased, wantSt.varUnbiased, 1e-4, 1e-6);

      const tr = batchNormTrain(hx, gw, gb, 1e-5);
      const wantTr = cpuBatchNormTrain(x, w, b, 1e-5);
      await expectHalf(tr.y, wantTr.y);
      await expectF32(tr.mean, wantTr.mean, 1e-5, 1e-6);
      await expectF32(tr.invstd, wantTr.invstd, 1e-4, 1e-6);
      if (n > 1) await expectF32(tr.varUnbiased, wantTr.varUnbiased, 1e-4, 1e-6);

      const gy = halfHost(randHost(shape, 6));
      const ref = cpuBatchNormBackward(gy, x, wantTr.mean, wantTr.invstd, w);
      const g = batchNormBackward(toHalf(gy), hx, tr.mean, tr.invstd, gw);
      await expectHalf(g.dx, ref.dx);
      await expectF32(g.dweight!, ref.dweight, 1e-4, 1e-6 * n);
      await expectF32(g.dbias!, ref.dbias, 1e-4, 1e-6 * n);
    });
  }

  it('reads a non-contiguous (channels-last) input and gradient', async () => {
    const xl = halfHost(randHost([2, 5, 7, 3], 7)); // N, H, W, C
    const gl = halfHost(randHost([2, 5, 7, 3], 8));
    const nchw = (l: HostTensor): HostTensor => {
      const h = host([2, 3, 5, 7]);
      for (let n = 0; n < 2; n++) for (let c = 0; c < 3; c++) for (let i = 0; i < 5; i++) for (let j = 0; j < 7; j++) {
        h.data[((n * 3 + c) * 5 + i) * 7 + j] = l.data[((n * 5 + i) * 7 + j) * 3 + c]!;
      }
      return h;
    };
    const t = toHalf(xl).permute(0, 3, 1, 2); // [2, 3, 5, 7]
    const tr = batchNormTrain(t);
    const want = cpuBatchNormTrain(nchw(xl));
    await expectHalf(tr.y, want.y);
    await expectF32(tr.mean, want.mean, 1e-5, 1e-6);
    const g = batchNormBackward(toHalf(gl).permute(0, 3, 1, 2), t, tr.mean, tr.invstd);
    await expectHalf(g.dx, cpuBatchNormBackward(nchw(gl), nchw(xl), want.mean, want.invstd).dx);
  });

  it('keeps float32 and float16 kernels of one shape apart', async () => {
    const x = halfHost(randHost([2, 3, 4, 4], 9));
    const want = cpuBatchNormTrain(x);
    const y32 = batchNormTrain(toGpu(x)).y;
    const y16 = batchNormTrain(toHalf(x)).y;
    expect(y32.dtype).toBe('float32');
    await expectClose(y32, want.y, 1e-4, 1e-5);
    await expectHalf(y16, want.y);
  });

  it('refuses float16 parameters and running statistics by name', () => {
    const x = toHalf(halfHost(randHost([2, 3, 4], 1)));
    const c32 = toGpu(randHost([3], 2, 0.5, 1));
    const c16 = toHalf(halfHost(randHost([3], 2, 0.5, 1)));
    expect(() => batchNormTrain(x, c16)).toThrow(/batchNormTrain: weight must be float32, got float16/);
    expect(() => batchNormTrain(x, c32, c16)).toThrow(/batchNormTrain: bias must be float32, got float16/);
    expect(() => batchNorm(x, c16, c32)).toThrow(/batchNorm: runningMean must be float32, got float16/);
    expect(() => batchNorm(x, c32, c16)).toThrow(/batchNorm: runningVar must be float32, got float16/);
    const tr = batchNormTrain(x);
    expect(() => batchNormBackward(x, x, tr.mean, tr.invstd, c16)).toThrow(/batchNormBackward: weight must be float32, got float16/);
    expect(() => batchNormBackward(x, x, tr.mean.half(), tr.invstd)).toThrow(/batchNormBackward: mean must be float32, got float16/);
  });

  it('over the binding limit: eval batch norm runs in runs of images; training-form batch norm is refused by name', async () => {
    const e = engine();
    const rm = toGpu(randHost([3], 4));
    const rv = toGpu(randHost([3], 5, 0.5, 2));
    // 1200 halves (2400 bytes) fit 4 KB, though as float32 they would be split.
    const small = halfHost(randHost([4, 3, 10, 10], 6));
    const bigHost = halfHost(randHost([4, 3, 20, 20], 7));
    const big = toHalf(bigHost);
    const sx = toHalf(small);
    e.setBindingLimit(4096);
    try {
      await expectHalf(batchNorm(sx, rm, rv), cpuBatchNorm(small, await hostOf(rm), await hostOf(rv)));
      await expectHalf(batchNorm(big, rm, rv), cpuBatchNorm(bigHost, await hostOf(rm), await hostOf(rv)));
      expect(() => batchNormTrain(big)).toThrow(/^batchNormTrain: a tensor of \d+ bytes exceeds/);
    } finally {
      e.setBindingLimit(null);
    }
  });
});

async function hostOf(t: Tensor): Promise<HostTensor> {
  return host([...t.shape], [...(await t.data())]);
}
