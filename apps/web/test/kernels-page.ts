/**
 * The core cases of the kernel suite, run in a real browser page on navigator.gpu through
 * @tl/tensor's browser entry, each against its float64 CPU reference from the same package.
 * Built with esbuild (browser conditions) by browser.test.ts; results land on
 * `window.__kernels` for the test to assert.
 */
import * as T from '@tl/tensor';
import {
  cpuAdamStep, cpuArgmax, cpuAvgPool2d, cpuBatchNormTrain, cpuBinary, cpuConv2d, cpuConv2dBackwardInput, cpuConv2dBackwardWeight,
  cpuCrossEntropy, cpuCrossEntropyBackward, cpuLayerNorm, cpuLogSoftmax, cpuMatmul, cpuMaxPool2d, cpuMean, cpuSoftmax, cpuSum, cpuUnary,
  host, type HostTensor, type Tensor,
} from '@tl/tensor';

export interface CaseResult {
  name: string;
  ok: boolean;
  /** Largest |got - want|. */
  maxAbs: number;
  detail: string;
}

let seed = 1;
function rand(shape: number[], lo = -1, hi = 1): HostTensor {
  const r = new T.Rng(seed++);
  const h = host(shape);
  for (let i = 0; i < h.data.length; i++) h.data[i] = Math.fround(lo + (hi - lo) * r.next());
  return h;
}

const gpu = (h: HostTensor, dtype: 'float32' | 'int32' = 'float32'): Tensor =>
  T.tensor(dtype === 'int32' ? Int32Array.from(h.data) : Float32Array.from(h.data), { shape: h.shape, dtype });

async function compare(name: string, got: Tensor, want: HostTensor, rtol: number, atol: number): Promise<CaseResult> {
  if (got.shape.join() !== want.shape.join()) return { name, ok: false, maxAbs: NaN, detail: `shape [${got.shape}] != [${want.shape}]` };
  const g = await got.data();
  let maxAbs = 0;
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < want.data.length; i++) {
    const w = want.data[i]!;
    const v = g[i]!;
    if (w === v || (Number.isNaN(w) && Number.isNaN(v))) continue;
    const d = Math.abs(v - w);
    if (d > maxAbs || Number.isNaN(d)) maxAbs = d;
    const excess = d - (atol + rtol * Math.abs(w));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  return {
    name, ok: worst < 0, maxAbs,
    detail: worst < 0 ? `[${want.shape}] max |err| ${maxAbs.toExponential(2)}` : `element ${worst} of [${want.shape}]: got ${g[worst]}, want ${want.data[worst]}`,
  };
}

type Case = [string, () => Promise<CaseResult>];

function cases(): Case[] {
  const out: Case[] = [];
  const add = (name: string, fn: (n: string) => Promise<CaseResult>): void => {
    out.push([name, () => fn(name)]);
  };
  // matmul: odd sizes, batched with broadcast, a transposed (non-contiguous) view.
  for (const [m, k, n] of [[1, 1, 1], [3, 17, 5], [129, 33, 65], [64, 128, 96]] as const) {
    add(`matmul ${m}x${k} @ ${k}x${n}`, (name) => {
      const a = rand([m, k]);
      const b = rand([k, n]);
      return compare(name, T.matmul(gpu(a), gpu(b)), cpuMatmul(a, b), 1e-4, 1e-5);
    });
  }
  add('matmul batched [3,7,9] @ [9,11]', (name) => {
    const a = rand([3, 7, 9]);
    const b = rand([9, 11]);
    return compare(name, T.matmul(gpu(a), gpu(b)), cpuMatmul(a, b), 1e-4, 1e-5);
  });
  add('matmul transposed view', (name) => {
    const a = rand([17, 13]);
    const b = rand([17, 6]);
    const at = host([13, 17]);
    for (let i = 0; i < 13; i++) for (let j = 0; j < 17; j++) at.data[i * 17 + j] = a.data[j * 13 + i]!;
    return compare(name, T.matmul(gpu(a).T, gpu(b)), cpuMatmul(at, b), 1e-4, 1e-5);
  });
  // conv2d forward (bias, activation, stride, groups, dilation) and both backward passes.
  const convs: { x: number[]; w: number[]; opts: T.Conv2dGradOptions }[] = [
    { x: [2, 3, 9, 9], w: [4, 3, 3, 3], opts: { padding: 1 } },
    { x: [1, 4, 17, 13], w: [6, 2, 3, 3], opts: { stride: 2, padding: 1, groups: 2 } },
    { x: [3, 1, 28, 28], w: [16, 1, 3, 3], opts: { padding: 1 } },
    { x: [2, 5, 11, 11], w: [3, 5, 5, 5], opts: { dilation: 2, padding: 2 } },
    { x: [2, 8, 7, 7], w: [8, 8, 1, 1], opts: {} },
  ];
  for (const c of convs) {
    const tag = `x[${c.x}] w[${c.w}] ${JSON.stringify(c.opts)}`;
    add(`conv2d ${tag}`, (name) => {
      const x = rand(c.x);
      const w = rand(c.w);
      const b = rand([c.w[0]!]);
      return compare(name, T.conv2d(gpu(x), gpu(w), { ...c.opts, bias: gpu(b), activation: 'relu' }), cpuConv2d(x, w, { ...c.opts, bias: b, activation: 'relu' }), 1e-4, 1e-5);
    });
    add(`conv2d backward input ${tag}`, (name) => {
      const x = rand(c.x);
      const w = rand(c.w);
      const y = cpuConv2d(x, w, c.opts);
      const gy = rand(y.shape);
      return compare(name, T.conv2dBackwardInput(gpu(gy), gpu(w), c.x, c.opts), cpuConv2dBackwardInput(gy, w, c.x, c.opts), 1e-4, 1e-5);
    });
    add(`conv2d backward weight ${tag}`, (name) => {
      const x = rand(c.x);
      const y = cpuConv2d(x, rand(c.w), c.opts);
      const gy = rand(y.shape);
      return compare(name, T.conv2dBackwardWeight(gpu(x), gpu(gy), c.w, c.opts), cpuConv2dBackwardWeight(x, gy, c.w, c.opts), 1e-4, 1e-4);
    });
  }
  // The pointwise (1x1) kernel with each way of sharing weights the adapter allows, with a
  // folded batch norm's scale, a bias, an activation and a squeeze-excitation gate on its input.
  for (const variant of T.WEIGHT_SHARING) {
    add(`conv2d 1x1 pointwise (weights shared by ${variant}) with scale, bias, relu6 and an input gate`, async (name) => {
      if (variant === 'subgroup' && T.engine().subgroupMinSize < 8) {
        return { name, ok: true, maxAbs: 0, detail: `skipped: the adapter has no subgroups of 8+ lanes (${T.engine().subgroupMinSize || 'none'})` };
      }
      const [xs, ws] = [[2, 24, 8, 12], [20, 24, 1, 1]];
      const x = rand(xs);
      const w = rand(ws);
      const b = rand([20]);
      const sc = rand([20]);
      const gate = rand([2, 24], 0, 1);
      const plane = 8 * 12;
      const gated = host(xs, x.data.map((v, i) => v * gate.data[Math.floor(i / plane)]!));
      T.forceWeightSharing(variant);
      try {
        const y = T.conv2d(gpu(x), gpu(w), { bias: gpu(b), scale: gpu(sc), activation: 'relu6', inputScale: gpu(gate) });
        return await compare(name, y, cpuConv2d(gated, w, { bias: b, scale: sc, activation: 'relu6' }), 1e-4, 1e-5);
      } finally {
        T.forceWeightSharing(null);
      }
    });
  }
  // Winograd's algorithm for each pass of a 3x3 stride-1 convolution, forced.
  for (const algorithm of ['winograd2x2', 'winograd4x4'] as const) {
    const forced = (fn: () => Promise<CaseResult>): Promise<CaseResult> => {
      T.forceConvAlgorithm(algorithm);
      return fn().finally(() => T.forceConvAlgorithm(null));
    };
    const [xs, ws, opts] = [[2, 12, 10, 11], [10, 12, 3, 3], { padding: 1 }];
    add(`conv2d ${algorithm} x[${xs}] w[${ws}] with bias and relu`, (name) => forced(() => {
      const x = rand(xs);
      const w = rand(ws);
      const b = rand([ws[0]!]);
      return compare(name, T.conv2d(gpu(x), gpu(w), { ...opts, bias: gpu(b), activation: 'relu' }), cpuConv2d(x, w, { ...opts, bias: b, activation: 'relu' }), 2e-4, 1e-4);
    }));
    add(`conv2d ${algorithm} backward input`, (name) => forced(() => {
      const w = rand(ws);
      const gy = rand([2, 10, 10, 11]);
      return compare(name, T.conv2dBackwardInput(gpu(gy), gpu(w), xs, opts), cpuConv2dBackwardInput(gy, w, xs, opts), 2e-4, 1e-4);
    }));
    add(`conv2d ${algorithm} backward weight`, (name) => forced(() => {
      const x = rand(xs);
      const gy = rand([2, 10, 10, 11]);
      return compare(name, T.conv2dBackwardWeight(gpu(x), gpu(gy), ws, opts), cpuConv2dBackwardWeight(x, gy, ws, opts), 2e-4, 4e-4);
    }));
  }
  // Autotuning in the page: a new 3x3 convolution class is measured at the next wait and its
  // choice lands in IndexedDB, read back here through a connection of its own.
  add('autotune stores a convolution choice in IndexedDB', async (name) => {
    const x = rand([1, 6, 12, 12]);
    const w = rand([5, 6, 3, 3]);
    const cls = 'conv3x3 forward f32 N1 C8 O8 H16 W16';
    T.setAutotune(true);
    try {
      const r = await compare(name, T.conv2d(gpu(x), gpu(w), { padding: 1 }), cpuConv2d(x, w, { padding: 1 }), 1e-4, 1e-5);
      if (!r.ok) return r;
    } finally {
      T.setAutotune(null);
    }
    const key = T.adapterKey(T.engine());
    const stored = await readIndexedDb('tl-autotune', 'choices', key) as Record<string, T.TuneEntry> | undefined;
    const entry = stored?.[cls];
    const ok = entry !== undefined && T.CONV_ALGORITHMS.includes(entry.variant as T.ConvAlgorithm) &&
      Object.keys(entry.ms).sort().join() === [...T.CONV_ALGORITHMS].sort().join();
    return { name, ok, maxAbs: 0, detail: ok ? `${cls}: ${entry.variant} (${JSON.stringify(entry.ms)})` : `IndexedDB holds ${JSON.stringify(Object.keys(stored ?? {}))} for ${key}` };
  });
  // softmax family: rows of 1, 17, 129 and 1000; along dim 0.
  for (const shape of [[4, 1], [3, 17], [5, 129], [2, 1000]]) {
    add(`softmax [${shape}]`, (name) => {
      const x = rand(shape, -5, 5);
      return compare(name, T.softmax(gpu(x)), cpuSoftmax(x), 1e-5, 1e-6);
    });
    add(`logSoftmax [${shape}]`, (name) => {
      const x = rand(shape, -5, 5);
      return compare(name, T.logSoftmax(gpu(x)), cpuLogSoftmax(x), 1e-5, 1e-5);
    });
  }
  add('softmax dim 0 [7,3]', (name) => {
    const x = rand([7, 3], -3, 3);
    return compare(name, T.softmax(gpu(x), 0), cpuSoftmax(x, 0), 1e-5, 1e-6);
  });
  add('crossEntropy [9,5] (label smoothing 0.1)', (name) => {
    const x = rand([9, 5], -3, 3);
    const labels = Array.from({ length: 9 }, (_, i) => (i * 3) % 5);
    return compare(name, T.crossEntropy(gpu(x), labels, { labelSmoothing: 0.1 }), cpuCrossEntropy(x, labels, { labelSmoothing: 0.1 }), 1e-5, 1e-5);
  });
  add('crossEntropy backward [9,5]', (name) => {
    const x = rand([9, 5], -3, 3);
    const labels = Array.from({ length: 9 }, (_, i) => (i * 2) % 5);
    const g = host([], [1]);
    return compare(name, T.crossEntropyBackward(gpu(x), labels, gpu(g)), cpuCrossEntropyBackward(x, labels, g), 1e-5, 1e-6);
  });
  // elementwise: the unary table and broadcasting binaries.
  for (const op of ['exp', 'log', 'sqrt', 'relu', 'gelu', 'silu', 'sigmoid', 'tanh', 'abs', 'square'] as const) {
    add(`unary ${op} [1031]`, (name) => {
      const x = op === 'log' || op === 'sqrt' ? rand([1031], 0.01, 4) : rand([1031], -4, 4);
      return compare(name, T.unary(op, gpu(x)), cpuUnary(op, x), 1e-5, 1e-6);
    });
  }
  for (const op of ['add', 'sub', 'mul', 'div', 'maximum'] as const) {
    add(`binary ${op} [3,1,5] with [4,5]`, (name) => {
      const a = rand([3, 1, 5]);
      const b = op === 'div' ? rand([4, 5], 0.5, 2) : rand([4, 5]);
      return compare(name, T.binary(op, gpu(a), gpu(b)), cpuBinary(op, a, b), 1e-6, 1e-7);
    });
  }
  // reductions.
  add('sum over dims [1,2] of [4,33,17]', (name) => {
    const x = rand([4, 33, 17]);
    return compare(name, T.sum(gpu(x), [1, 2]), cpuSum(x, [1, 2]), 1e-5, 1e-5);
  });
  add('mean over dim 0 of [129,7]', (name) => {
    const x = rand([129, 7]);
    return compare(name, T.mean(gpu(x), [0]), cpuMean(x, [0]), 1e-5, 1e-6);
  });
  add('sum of everything [5000]', (name) => {
    const x = rand([5000]);
    return compare(name, T.sum(gpu(x)), cpuSum(x), 1e-5, 1e-4);
  });
  add('argmax dim 1 [13,10]', (name) => {
    const x = rand([13, 10]);
    return compare(name, T.argmax(gpu(x), 1), cpuArgmax(x, 1), 0, 0);
  });
  // normalisation and pooling.
  add('layerNorm [6,40] with affine', (name) => {
    const x = rand([6, 40]);
    const w = rand([40]);
    const b = rand([40]);
    return compare(name, T.layerNorm(gpu(x), 40, gpu(w), gpu(b)), cpuLayerNorm(x, 40, w, b).y, 1e-4, 1e-5);
  });
  add('batchNorm (training statistics) [4,6,5,5]', (name) => {
    const x = rand([4, 6, 5, 5]);
    const w = rand([6]);
    const b = rand([6]);
    return compare(name, T.batchNormTrain(gpu(x), gpu(w), gpu(b)).y, cpuBatchNormTrain(x, w, b).y, 1e-4, 1e-5);
  });
  add('maxPool2d 3x3 stride 2 pad 1 [2,3,15,15]', (name) => {
    const x = rand([2, 3, 15, 15]);
    const o = { kernelSize: 3, stride: 2, padding: 1 };
    return compare(name, T.maxPool2d(gpu(x), o), cpuMaxPool2d(x, o).values, 0, 0);
  });
  add('avgPool2d 2x2 [2,3,14,14]', (name) => {
    const x = rand([2, 3, 14, 14]);
    const o = { kernelSize: 2 };
    return compare(name, T.avgPool2d(gpu(x), o), cpuAvgPool2d(x, o), 1e-6, 1e-7);
  });
  // float16 where the adapter has shader-f16: the float64 reference of the rounded inputs, rounded once.
  if (T.engine().hasF16) {
    const half = (h: HostTensor): HostTensor => host(h.shape, [...h.data].map(T.roundHalf));
    const f16 = (h: HostTensor): Tensor => T.tensor(Float32Array.from(h.data), { shape: h.shape, dtype: 'float16' });
    add('float16 matmul 33x64 @ 64x20', (name) => {
      const a = half(rand([33, 64]));
      const b = half(rand([64, 20]));
      return compare(name, T.matmul(f16(a), f16(b)), half(cpuMatmul(a, b)), 2 ** -10, 1e-4);
    });
    add('float16 conv2d 3x3 pad 1 [2,3,9,9]', (name) => {
      const x = half(rand([2, 3, 9, 9]));
      const w = half(rand([4, 3, 3, 3]));
      return compare(name, T.conv2d(f16(x), f16(w), { padding: 1 }), half(cpuConv2d(x, w, { padding: 1 })), 2 ** -10, 1e-4);
    });
    add('float16 gelu [129]', (name) => {
      const x = half(rand([129], -4, 4));
      return compare(name, T.gelu(f16(x)), half(cpuUnary('gelu', x)), 2 ** -10, 1e-6);
    });
  }
  // the fused optimizer kernel.
  add('adamStep (AdamW) [1000]', async (name) => {
    const p = rand([1000]);
    const g = rand([1000]);
    const m = rand([1000], -0.1, 0.1);
    const v = rand([1000], 0, 0.1);
    const h = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, decoupled: true, step: 3 };
    const [pg, gg, mg, vg] = [gpu(p), gpu(g), gpu(m), gpu(v)];
    T.adamStep(pg, gg, mg, vg, h);
    const pw = Float64Array.from(p.data);
    cpuAdamStep(pw, Float64Array.from(g.data), Float64Array.from(m.data), Float64Array.from(v.data), h);
    return compare(name, pg, host([1000], pw), 1e-5, 1e-6);
  });
  return out;
}

/** The record `key` of object store `store` in IndexedDB database `db`. */
function readIndexedDb(db: string, store: string, key: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(db);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const conn = open.result;
      const get = conn.transaction(store, 'readonly').objectStore(store).get(key);
      get.onerror = () => reject(get.error);
      get.onsuccess = () => {
        conn.close();
        resolve(get.result);
      };
    };
  });
}

async function run(): Promise<{ adapter: string; fallback: boolean; core: boolean; f16: boolean; results: CaseResult[]; seconds: number }> {
  const t0 = performance.now();
  const e = await T.init();
  const results: CaseResult[] = [];
  for (const [name, fn] of cases()) {
    const c0 = performance.now();
    window.__kernelsProgress = name;
    try {
      results.push(await T.tidyAsync(fn));
      if (new URLSearchParams(location.search).has('verbose')) console.log(`${name}: ${(performance.now() - c0).toFixed(0)} ms`);
    } catch (err) {
      results.push({ name, ok: false, maxAbs: NaN, detail: `threw: ${(err as Error).message}` });
    }
  }
  return {
    adapter: e.adapterDescription,
    fallback: !!(e.adapter.info as { isFallbackAdapter?: boolean }).isFallbackAdapter,
    core: e.adapter.features.has('core-features-and-limits' as GPUFeatureName),
    f16: e.hasF16,
    results,
    seconds: (performance.now() - t0) / 1000,
  };
}

declare global {
  interface Window {
    __kernels?: Awaited<ReturnType<typeof run>> | { error: string };
    __kernelsProgress?: string;
  }
}

run().then(
  (r) => (window.__kernels = r),
  (err: Error) => (window.__kernels = { error: String(err.stack ?? err) }),
);
