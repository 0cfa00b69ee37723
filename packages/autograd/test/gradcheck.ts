import { expect } from 'vitest';
import { backward, host, type HostTensor, type Tensor } from '../src/index.js';
import { expectClose, randHost, toGpu } from '../../tensor/test/helpers.js';

export interface GradCase {
  inputs: HostTensor[];
  /** Which inputs require a gradient (default: all float inputs). */
  grad?: boolean[];
  /** Inputs uploaded as int32 (labels, indices). */
  int?: boolean[];
  gpu: (xs: Tensor[]) => Tensor;
  cpu: (hs: HostTensor[]) => HostTensor;
  eps?: number;
  rtol?: number;
  /** Absolute tolerance as a fraction of the largest reference gradient. */
  atolScale?: number;
  seed?: number;
}

/**
 * Checks an op's forward against its float64 reference and every gradient against central
 * finite differences of that reference: d/dx sum(f(x) * R) for a random upstream R.
 */
export async function gradcheck(c: GradCase): Promise<void> {
  const eps = c.eps ?? 1e-5;
  const rtol = c.rtol ?? 2e-3;
  const atolScale = c.atolScale ?? 2e-4;
  const wantY = c.cpu(c.inputs);
  const r = randHost(wantY.shape, c.seed ?? 99);
  const xs = c.inputs.map((h, i) => {
    const t = toGpu(h, c.int?.[i] ? 'int32' : 'float32');
    t.requiresGrad = c.grad ? c.grad[i]! : !c.int?.[i];
    return t;
  });
  const y = c.gpu(xs);
  await expectClose(y, wantY, 1e-4, 1e-5);
  const rg = toGpu(r);
  backward(y, rg);
  const loss = (hs: HostTensor[]): number => {
    const out = c.cpu(hs);
    let s = 0;
    for (let i = 0; i < out.data.length; i++) s += out.data[i]! * r.data[i]!;
    return s;
  };
  for (let i = 0; i < xs.length; i++) {
    if (!xs[i]!.requiresGrad) continue;
    const numeric = host(c.inputs[i]!.shape);
    const hs = c.inputs.map((h) => ({ shape: h.shape, data: new Float64Array(h.data) }));
    const x = hs[i]!.data;
    for (let j = 0; j < x.length; j++) {
      const v = x[j]!;
      x[j] = v + eps;
      const lp = loss(hs);
      x[j] = v - eps;
      const lm = loss(hs);
      x[j] = v;
      numeric.data[j] = (lp - lm) / (2 * eps);
    }
    const g = xs[i]!.grad;
    expect(g, `input ${i} got no gradient`).not.toBeNull();
    const maxAbs = numeric.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    await expectClose(g!, numeric, rtol, atolScale * maxAbs + 1e-6);
  }
  for (const t of [...xs, y, rg]) t.dispose();
}
