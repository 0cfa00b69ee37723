import { describe, expect, it } from 'vitest';
import * as A from '../src/index.js';
import { cpuLinear, cpuMatmul, engine, randValue, type Tensor } from '../src/index.js';
import { randHost, setup, toGpu } from '../../tensor/test/helpers.js';
import { gradcheck } from './gradcheck.js';

describe('linear and matmul gradients with operands over the binding limit', () => {
  it('lowered to 4 KB: every gradient against finite differences of the float64 reference', async () => {
    await setup();
    engine().setBindingLimit(4096);
    try {
      await gradcheck({
        inputs: [randHost([3, 50], 1), randHost([70, 50], 2), randHost([70], 3)],
        gpu: ([x, w, b]) => A.linear(x!, w!, b),
        cpu: ([x, w, b]) => cpuLinear(x!, w!, b),
      });
      await gradcheck({
        inputs: [randHost([3, 40], 4), randHost([40, 60], 5)],
        gpu: ([a, b]) => A.matmul(a!, b!),
        cpu: ([a, b]) => cpuMatmul(a!, b!),
      });
    } finally {
      engine().setBindingLimit(null);
    }
  });

  it("at the adapter's limit: VGG-16's classifier.0, Linear(25088 -> 4096), forward, backward and an SGD step", async () => {
    await setup();
    const [IN, OUT, N] = [25088, 4096, 2];
    expect(OUT * IN * 4).toBeGreaterThan(engine().bindingLimit);
    const bound = 1 / Math.sqrt(IN);
    const seed = 11;
    const wAt = (j: number, k: number): number => Math.fround(-bound + 2 * bound * randValue(seed, 0, j * IN + k));
    const x = randHost([N, IN], 1);
    const c = randHost([N, OUT], 2);
    const bias = randHost([OUT], 3, -bound, bound);
    const lr = 0.1;

    const W = A.rand([OUT, IN], { seed, low: -bound, high: bound });
    const xg = toGpu(x);
    const bg = toGpu(bias);
    for (const t of [W, xg, bg]) t.requiresGrad = true;
    const row = async (t: Tensor, j: number): Promise<Float32Array> => {
      const r = t.narrow(0, j, 1);
      const d = (await r.data()) as Float32Array;
      r.dispose();
      return d;
    };
    // The first rows of each chunk of the output features (forward) and of the weight
    // gradient's rows, and the last.
    const rows = [0, 1335, 1336, 1337, 2672, 2674, 4008, 4011, 4095];
    const before = new Map<number, Float32Array>();
    for (const j of rows) {
      const r = await row(W, j);
      for (const k of [0, 777, IN - 1]) expect(r[k]).toBeCloseTo(wAt(j, k), 7);
      before.set(j, r);
    }

    const y = A.linear(xg, W, bg);
    const cg = toGpu(c);
    A.backward(y, cg);
    const yv = await y.data();
    for (const j of rows) {
      for (let b = 0; b < N; b++) {
        let s = bias.data[j]!;
        const w = before.get(j)!;
        for (let k = 0; k < IN; k++) s += x.data[b * IN + k]! * w[k]!;
        expect(Math.abs(yv[b * OUT + j]! - s)).toBeLessThan(2e-5);
      }
    }

    const dx = await xg.grad!.data();
    for (const k of [0, 1, 12543, IN - 1]) {
      for (let b = 0; b < N; b++) {
        let s = 0;
        for (let j = 0; j < OUT; j++) s += c.data[b * OUT + j]! * wAt(j, k);
        expect(Math.abs(dx[b * IN + k]! - s)).toBeLessThan(2e-5);
      }
    }
    const db = await bg.grad!.data();
    for (const j of rows) expect(db[j]).toBeCloseTo(c.data[j]! + c.data[OUT + j]!, 6);
    const dW = W.grad!;
    const dwRow = (j: number): Float64Array =>
      Float64Array.from({ length: IN }, (_, k) => c.data[j]! * x.data[k]! + c.data[OUT + j]! * x.data[IN + k]!);
    for (const j of rows) {
      const got = await row(dW, j);
      const want = dwRow(j);
      for (let k = 0; k < IN; k++) if (Math.abs(got[k]! - want[k]!) > 1e-6) expect.fail(`dW[${j}, ${k}] = ${got[k]}, want ${want[k]}`);
    }

    // The gradient-norm clipping reduction, in closed form: sum_j sum_b,b' c[b,j] c[b',j] (x_b . x_b').
    const dot = (a: number, b: number): number => {
      let s = 0;
      for (let k = 0; k < IN; k++) s += x.data[a * IN + k]! * x.data[b * IN + k]!;
      return s;
    };
    const [x00, x01, x11] = [dot(0, 0), dot(0, 1), dot(1, 1)];
    let sq = 0;
    for (let j = 0; j < OUT; j++) {
      const [c0, c1] = [c.data[j]!, c.data[OUT + j]!];
      sq += c0 * c0 * x00 + 2 * c0 * c1 * x01 + c1 * c1 * x11;
    }
    const gradSq = A.tidy(() => A.sum(A.square(dW)));
    expect(Math.abs((await gradSq.item()) - sq) / sq).toBeLessThan(1e-5);

    A.sgdStep(W, dW, null, { lr, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, firstStep: true });
    for (const j of rows) {
      const got = await row(W, j);
      const w0 = before.get(j)!;
      const g = dwRow(j);
      for (let k = 0; k < IN; k++) {
        const want = w0[k]! - lr * g[k]!;
        if (Math.abs(got[k]! - want) > 1e-7) expect.fail(`W[${j}, ${k}] after the step = ${got[k]}, want ${want}`);
      }
    }
    for (const t of [W, xg, bg, y, cg, gradSq]) t.dispose();
    engine().pool.trim();
  });
});
