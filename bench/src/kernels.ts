/**
 * Kernel benchmark: this engine against TF.js WebGPU on the same Dawn GPU object, TF.js
 * WASM (XNNPACK) and plain JavaScript, with outputs cross-checked.
 *
 *   pnpm bench:kernels [--quick] [--only matmul,linear,conv,softmax]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tl from '@tl/tensor';
import { buildCase, caseSpecs, familyOf, type Case } from './cases.js';
import { BENCH_DIR, maxRelError, measure, policies, type Timing } from './harness.js';
import { jsCpu, ours, tfjs, type System } from './runners.js';

/** Outputs that differ more than this (relative to the largest reference value) fail the run. */
const TOLERANCE = 1e-3;

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  console.log('usage: pnpm bench:kernels [--quick] [--only matmul,linear,conv,conv2d,depthwise,softmax]');
  process.exit(0);
}
const selectors = args.only?.split(',').map((s) => s.trim()).filter(Boolean);
const known = ['matmul', 'linear', 'conv', 'conv2d', 'depthwise', 'softmax'];
for (const s of selectors ?? []) {
  if (!known.includes(s)) {
    console.error(`--only: unknown kernel "${s}"; expected a comma-separated list of ${known.join(', ')}`);
    process.exit(2);
  }
}
const specs = caseSpecs().filter((s) => !selectors || selectors.includes(s.kernel) || selectors.includes(familyOf(s)));

// Devices -------------------------------------------------------------------------------------

await tl.init();
const eng = tl.engine();
// TF.js's WebGPU backend asks navigator.gpu for its adapter at import time and backend init:
// hand it the engine's own Dawn GPU object, so both use one instance of the same adapter
// (and the LP_NUM_THREADS the engine set before the driver loaded).
Object.defineProperty(globalThis, 'navigator', { value: { gpu: eng.gpu }, configurable: true, writable: true });
const tf = await import('@tensorflow/tfjs-core');
await import('@tensorflow/tfjs-backend-webgpu');
const tfWasm = await import('@tensorflow/tfjs-backend-wasm');
const require = createRequire(import.meta.url);
tfWasm.setWasmPaths(dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + '/');
const backendErrors: Record<string, string> = {};
for (const b of ['wasm', 'webgpu']) {
  const ok = await tf.setBackend(b).catch((e: unknown) => {
    backendErrors[b] = String(e instanceof Error ? e.message : e);
    return false;
  });
  if (!ok) backendErrors[b] ??= 'failed to initialise';
}

const meta = {
  date: new Date().toISOString(),
  adapter: eng.adapterDescription,
  lpNumThreads: process.env.LP_NUM_THREADS ?? null,
  subgroups: eng.hasSubgroups,
  node: process.version,
  cpu: `${os.cpus()[0]?.model ?? 'unknown'} x${os.cpus().length}`,
  tfjs: tf.version_core,
  tfjsWasm: { simd: await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'), threads: backendErrors.wasm ? null : tfWasm.getThreadsCount() },
  options: { quick: args.quick, only: selectors ?? null },
  // Other processes on the same cores skew every figure: recorded so a reader can tell.
  loadAvgAtStart: os.loadavg()[0]!,
  tolerance: TOLERANCE,
};
console.error(`adapter: ${meta.adapter}; LP_NUM_THREADS=${meta.lpNumThreads}; ${meta.cpu}; node ${meta.node}; TF.js ${meta.tfjs}`);
if (meta.loadAvgAtStart > 0.5) console.error(`warning: load average ${meta.loadAvgAtStart.toFixed(2)}; other processes will skew the timings`);
for (const [b, msg] of Object.entries(backendErrors)) console.error(`TF.js ${b}: ${msg}`);

const systems: System[] = [ours(), tfjs(tf, 'webgpu', 'tfjs-webgpu'), tfjs(tf, 'wasm', 'tfjs-wasm'), jsCpu()];
const policy = policies(args.quick);

// Run -----------------------------------------------------------------------------------------

interface Result {
  timing?: Timing;
  /** Why there is no timing: 'not available ...' or the error thrown. */
  missing?: string;
  output?: Float32Array;
}

interface Row {
  kernel: string;
  shape: string;
  ours_ms: number | null;
  peer: string;
  peer_ms: number | null;
  ratio: number | null;
  gflops: number | null;
  peer_gflops: number | null;
  max_rel_err: number | null;
  /** What max_rel_err compares the peer with: 'ours' unless our kernel is missing. */
  err_vs: string | null;
  ours_reps: number | null;
  peer_reps: number | null;
  note?: string;
}

const rows: Row[] = [];
const failures: string[] = [];

async function run(sys: System, c: Case): Promise<Result> {
  let made: Awaited<ReturnType<System['make']>>;
  try {
    made = await sys.make(c);
  } catch (e) {
    return { missing: `failed: ${e instanceof Error ? e.message : String(e)}` };
  }
  if (typeof made === 'string') return { missing: made };
  try {
    const timing = await measure(made, sys.slow ? policy.slow : policy.fast);
    const output = await made.output();
    return { timing, output };
  } catch (e) {
    return { missing: `failed: ${e instanceof Error ? e.message : String(e)}` };
  } finally {
    made.dispose();
  }
}

const gflops = (c: Case, ms: number | undefined): number | null => (ms ? c.flops / ms / 1e6 : null);
const round = (x: number | null, digits: number): number | null => (x === null ? null : Number(x.toPrecision(digits)));

const t0 = performance.now();
for (const spec of specs) {
  const c = buildCase(spec, 1234);
  const results = new Map<string, Result>();
  for (const sys of systems) {
    const r = await run(sys, c);
    results.set(sys.name, r);
    const what = r.timing ? `${r.timing.ms.toFixed(2)} ms (median of ${r.timing.reps} x ${r.timing.iters})` : r.missing;
    console.error(`  ${spec.kernel} ${c.shape}  ${sys.name}: ${what}`);
    if (r.missing?.startsWith('failed')) failures.push(`${spec.kernel} ${c.shape} ${sys.name}: ${r.missing}`);
  }
  // Everything is checked against our output, or against TF.js WebGPU while ours is missing.
  const refName = ['ours', 'tfjs-webgpu', 'tfjs-wasm', 'js-cpu'].find((n) => results.get(n)?.output);
  const ref = refName ? results.get(refName)!.output! : undefined;
  const mine = results.get('ours')!;
  for (const sys of systems.slice(1)) {
    const peer = results.get(sys.name)!;
    const err = ref && peer.output && sys.name !== refName ? maxRelError(peer.output, ref) : null;
    if (err !== null && !(err <= TOLERANCE)) {
      failures.push(`${spec.kernel} ${c.shape}: ${sys.name} and ${refName} disagree, max relative error ${err.toExponential(2)} > ${TOLERANCE}`);
    }
    const note = [mine.missing && `ours ${mine.missing}`, peer.missing && `${sys.name} ${peer.missing}`].filter(Boolean).join('; ');
    rows.push({
      kernel: spec.kernel,
      shape: c.shape,
      ours_ms: round(mine.timing?.ms ?? null, 4),
      peer: sys.name,
      peer_ms: round(peer.timing?.ms ?? null, 4),
      ratio: round(mine.timing && peer.timing ? peer.timing.ms / mine.timing.ms : null, 3),
      gflops: round(gflops(c, mine.timing?.ms), 3),
      peer_gflops: round(gflops(c, peer.timing?.ms), 3),
      max_rel_err: round(err, 3),
      err_vs: err === null ? null : refName!,
      ours_reps: mine.timing?.reps ?? null,
      peer_reps: peer.timing?.reps ?? null,
      ...(note ? { note } : {}),
    });
  }
}
const seconds = (performance.now() - t0) / 1000;

// Report --------------------------------------------------------------------------------------

const fmt = (x: number | null, digits = 3): string => (x === null ? 'n/a' : x >= 100 ? x.toFixed(0) : x.toPrecision(digits));
const header = ['kernel', 'shape', 'ours ms', 'ours GFLOP/s', 'peer', 'peer ms', 'peer GFLOP/s', 'peer ms / ours ms', 'max rel err'];
const lines = [
  `| ${header.join(' | ')} |`,
  `|${header.map((_, i) => (i < 2 || i === 4 ? ' --- ' : ' ---: ')).join('|')}|`,
  ...rows.map(
    (r) =>
      `| ${r.kernel} | ${r.shape} | ${fmt(r.ours_ms)} | ${fmt(r.gflops)} | ${r.peer} | ${fmt(r.peer_ms)} | ${fmt(r.peer_gflops)} | ${r.ratio === null ? 'n/a' : `${r.ratio.toFixed(2)}x`} | ${r.max_rel_err === null ? 'n/a' : r.max_rel_err.toExponential(1)} |`,
  ),
];
console.log(lines.join('\n'));
const notes = [...new Set(rows.flatMap((r) => (r.note ? r.note.split('; ').map((n) => `${r.kernel} ${r.shape}: ${n}`) : [])))];
for (const r of rows) if (r.err_vs && r.err_vs !== 'ours') notes.push(`${r.kernel} ${r.shape}: ${r.peer}'s max rel err is against ${r.err_vs}`);
if (notes.length) console.log(`\nNotes:\n${notes.map((n) => `- ${n}`).join('\n')}`);
console.log(
  `\n${meta.date.slice(0, 10)}, ${meta.adapter}, LP_NUM_THREADS=${meta.lpNumThreads}, ${meta.cpu}, ` +
    `TF.js ${meta.tfjs} (WASM SIMD ${meta.tfjsWasm.simd}, ${meta.tfjsWasm.threads ?? '?'} thread), ${seconds.toFixed(0)} s`,
);

const resultsDir = join(BENCH_DIR, 'results');
mkdirSync(resultsDir, { recursive: true });
const info = eng.adapter.info;
const slug = (info?.device || info?.description || eng.adapterDescription).toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 48).replace(/^-+|-+$/g, '');
const file = join(resultsDir, `kernels-${slug}-${meta.date.slice(0, 10)}.json`);
const json = JSON.stringify({ meta: { ...meta, loadAvgAtEnd: os.loadavg()[0]!, seconds: Math.round(seconds), failures }, rows }, null, 2) + '\n';
writeFileSync(file, json);
writeFileSync(join(resultsDir, 'latest.json'), json);
console.error(`wrote ${file} and latest.json`);

if (failures.length) {
  console.error(`\nFAILED:\n${failures.map((f) => `  ${f}`).join('\n')}`);
  process.exit(1);
}
process.exit(0);
