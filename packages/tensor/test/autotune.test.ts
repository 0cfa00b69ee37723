/**
 * The matmul variants on the chunked paths (tensors over a lowered binding limit), the
 * pipeline cache keyed by kernel spec, and the autotuner: shape classes, measuring queued
 * classes, the stored choices in the Node store and their use by the next engine.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  adapterKey, autotuneFilePath, CONV_ALGORITHMS, conv2d, conv2dBackwardInput, convAlgorithm, convShapeClass, cpuConv2d, cpuConv2dBackwardInput,
  cpuLinear, cpuMatmul, engine, forceMatmulVariant, linear, matmul, MATMUL_VARIANTS, matmulShapeClass, setAutotune, tuneChoices, tunePending,
  type ConvProblem, type Dispatch, type MatmulProblem,
} from '../src/node.js';
import { expectClose, randHost, setup, toGpu } from './helpers.js';
import { host, type HostTensor } from '../src/node.js';

beforeAll(setup);

function transposeHost(h: HostTensor): HostTensor {
  const [r, c] = h.shape as [number, number];
  const out = host([c, r]);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out.data[j * r + i] = h.data[i * c + j]!;
  return out;
}

describe.each(MATMUL_VARIANTS)('the %s kernel over a lowered binding limit (4 KB)', (variant) => {
  beforeAll(() => {
    forceMatmulVariant(variant);
    engine().setBindingLimit(4096);
  });
  afterAll(() => {
    forceMatmulVariant(null);
    engine().setBindingLimit(null);
  });

  it('splits M of a row-major a and the output, with vec4 loads and a partial vec4 tail', async () => {
    const a = randHost([300, 17], 1);
    const b = randHost([17, 9], 2);
    await expectClose(matmul(toGpu(a), toGpu(b)), cpuMatmul(a, b), 1e-5, 1e-5);
    const wide = randHost([300, 20], 30);
    const narrow = host([300, 17]);
    for (let i = 0; i < 300; i++) narrow.data.set(wide.data.subarray(i * 20, i * 20 + 17), i * 17);
    await expectClose(matmul(toGpu(wide).narrow(1, 0, 17), toGpu(b)), cpuMatmul(narrow, b), 1e-5, 1e-5);
  });

  it('accumulates chunks of K (transposed a; row-major b with bias and activation once)', async () => {
    const at = randHost([257, 12], 5);
    const b = randHost([257, 3], 6);
    await expectClose(matmul(toGpu(at).T, toGpu(b)), cpuMatmul(transposeHost(at), b), 1e-5, 1e-5);
    const a = randHost([5, 400], 7);
    const b2 = randHost([400, 7], 8);
    const bias = randHost([7], 9);
    await expectClose(matmul(toGpu(a), toGpu(b2), { bias: toGpu(bias), activation: 'gelu' }), cpuMatmul(a, b2, { bias, activation: 'gelu' }), 1e-4, 1e-5);
  });

  it('splits the output features of a linear weight over the limit', async () => {
    const x = randHost([3, 50], 12);
    const w = randHost([203, 50], 13);
    const bias = randHost([203], 14);
    await expectClose(linear(toGpu(x), toGpu(w), toGpu(bias), 'relu'), cpuLinear(x, w, bias, 'relu'), 1e-5, 1e-5);
  });
});

describe('pipelines cached by kernel spec', () => {
  it('a second matmul of the same spec neither compiles nor generates WGSL', () => {
    const a = toGpu(randHost([9, 13], 1));
    const b = toGpu(randHost([13, 7], 2));
    matmul(a, b);
    const count = engine().pipelineCount;
    const seen: string[] = [];
    const e = engine();
    const dispatch = e.dispatch.bind(e);
    const checking = e.checkPipelineKeys;
    e.checkPipelineKeys = false;
    // Reading `code` is what generates the text: a cache hit must not touch it.
    e.dispatch = (d) => {
      const probe = Object.create(d) as typeof d;
      Object.defineProperty(probe, 'code', { get: () => (seen.push(d.key ?? ''), d.code) });
      dispatch(probe);
    };
    try {
      matmul(toGpu(randHost([9, 13], 3)), b);
    } finally {
      delete (e as { dispatch?: unknown }).dispatch;
      e.checkPipelineKeys = checking;
    }
    expect(seen).toEqual([]);
    expect(engine().pipelineCount).toBe(count);
  });
});

describe('checkPipelineKeys', () => {
  it('fails a dispatch whose key already names a pipeline built from other WGSL', () => {
    const e = engine();
    const checking = e.checkPipelineKeys;
    e.checkPipelineKeys = true;
    const out = toGpu(randHost([4], 1));
    const writes = (value: string): Dispatch => ({
      key: 'test/one key, two texts',
      code: `@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n@compute @workgroup_size(1) fn main() { o[0] = ${value}; }`,
      buffers: [out.buffer],
      workgroups: [1],
      label: 'keyCheck',
    });
    try {
      e.dispatch(writes('1.0'));
      e.dispatch(writes('1.0'));
      expect(() => e.dispatch(writes('2.0'))).toThrow(/keyCheck: pipeline key 'test\/one key, two texts' was built from other WGSL/);
      e.checkPipelineKeys = false;
      expect(() => e.dispatch(writes('2.0'))).not.toThrow();
    } finally {
      e.checkPipelineKeys = checking;
    }
  });
});

describe('the autotuner', () => {
  const cache = mkdtempSync(join(tmpdir(), 'tl-autotune-'));
  const saved = process.env.TL_CACHE;
  beforeAll(() => {
    process.env.TL_CACHE = cache;
  });
  afterEach(() => setAutotune(null));
  afterAll(() => {
    if (saved === undefined) delete process.env.TL_CACHE;
    else process.env.TL_CACHE = saved;
  });

  it('buckets problems into shape classes by storage order, vec4 loads and powers of two', () => {
    const p: MatmulProblem = { M: 100, N: 64, K: 3, batch: 1, transA: false, transB: true, vecA: false, vecB: true };
    expect(matmulShapeClass(p)).toBe('matmul NT sv M128 N64 K4 B1');
    expect(matmulShapeClass({ ...p, M: 65 })).toBe(matmulShapeClass(p));
    expect(matmulShapeClass({ ...p, M: 129 })).not.toBe(matmulShapeClass(p));
  });

  it('measures a new class at the next wait, stores the choice, and keeps results exact', async () => {
    setAutotune(true);
    const a = randHost([3, 40, 24], 41);
    const b = randHost([24, 36], 42);
    const want = cpuMatmul(a, b);
    const cls = 'matmul NN vv M128 N64 K32 B1';
    expect(tuneChoices(engine()).entries[cls]).toBeUndefined();
    // The batch folds into M = 120: one [120, 24] x [24, 36] product.
    const y = matmul(toGpu(a), toGpu(b));
    await expectClose(y, want, 1e-5, 1e-5);
    const entry = tuneChoices(engine()).entries[cls];
    expect(entry, JSON.stringify(tuneChoices(engine()).entries)).toBeDefined();
    expect(Object.keys(entry!.ms).sort()).toEqual([...MATMUL_VARIANTS].sort());
    for (const ms of Object.values(entry!.ms)) expect(ms).toBeGreaterThan(0);
    expect(MATMUL_VARIANTS).toContain(entry!.variant);

    const path = autotuneFilePath();
    expect(path).toBe(join(cache, 'autotune.json'));
    expect(existsSync(path)).toBe(true);
    const file = JSON.parse(readFileSync(path, 'utf8')) as { version: number; adapters: Record<string, Record<string, { variant: string }>> };
    expect(file.version).toBe(1);
    expect(file.adapters[adapterKey(engine())]![cls]!.variant).toBe(entry!.variant);
    // The chosen kernel gives the same result within float rounding.
    await expectClose(matmul(toGpu(a), toGpu(b)), want, 1e-5, 1e-5);
  });

  it('buckets 3x3 convolutions by pass, dtype, batch, channels and plane', () => {
    const p: ConvProblem = { kind: 'conv3x3', pass: 'forward', batch: 3, inChannels: 48, outChannels: 64, height: 28, width: 30, half: false };
    expect(convShapeClass(p)).toBe('conv3x3 forward f32 N4 C64 O64 H32 W32');
    expect(convShapeClass({ ...p, pass: 'inputGrad', half: true })).toBe('conv3x3 inputGrad f16 N4 C64 O64 H32 W32');
  });

  it('chooses the algorithm of a 3x3 convolution and of its input gradient by measuring them', async () => {
    setAutotune(true);
    const x = randHost([2, 8, 12, 10], 51);
    const w = randHost([6, 8, 3, 3], 52);
    const gy = randHost([2, 6, 12, 10], 53);
    const classes = ['conv3x3 forward f32 N2 C8 O8 H16 W16', 'conv3x3 inputGrad f32 N2 C8 O8 H16 W16'];
    for (const cls of classes) expect(tuneChoices(engine()).entries[cls]).toBeUndefined();
    const y = conv2d(toGpu(x), toGpu(w), { padding: 1 });
    const gx = conv2dBackwardInput(toGpu(gy), toGpu(w), [2, 8, 12, 10], { padding: 1 });
    await expectClose(y, cpuConv2d(x, w, { padding: 1 }), 1e-5, 1e-5);
    await expectClose(gx, cpuConv2dBackwardInput(gy, w, [2, 8, 12, 10], { padding: 1 }), 1e-5, 1e-5);
    const entries = tuneChoices(engine()).entries;
    for (const cls of classes) {
      const entry = entries[cls];
      expect(entry, JSON.stringify(Object.keys(entries))).toBeDefined();
      expect(Object.keys(entry!.ms).sort()).toEqual([...CONV_ALGORITHMS].sort());
      expect(CONV_ALGORITHMS).toContain(entry!.variant);
    }
    // The stored choice is what runs next, and it gives the same result within rounding.
    expect(convAlgorithm([2, 8, 12, 10], [6, 8, 3, 3], { padding: 1 })).toBe(entries[classes[0]!]!.variant);
    expect(convAlgorithm([2, 8, 12, 10], [6, 8, 3, 3], { padding: 1 }, 'inputGrad')).toBe(entries[classes[1]!]!.variant);
    await expectClose(conv2d(toGpu(x), toGpu(w), { padding: 1 }), cpuConv2d(x, w, { padding: 1 }), 1e-4, 1e-5);
  });

  it('tunes nothing when off, and tunePending measures what was queued', async () => {
    setAutotune(false);
    const before = Object.keys(tuneChoices(engine()).entries).length;
    await matmul(toGpu(randHost([5, 3], 1)), toGpu(randHost([3, 2], 2))).data();
    expect(Object.keys(tuneChoices(engine()).entries).length).toBe(before);

    setAutotune(true);
    matmul(toGpu(randHost([2, 7, 5], 3)), toGpu(randHost([2, 5, 9], 4)));
    const results = await tunePending(engine());
    expect(results.map((r) => r.shapeClass)).toEqual(['matmul NN ss M8 N16 K8 B2']);
    expect(await tunePending(engine())).toEqual([]);
  });
});
