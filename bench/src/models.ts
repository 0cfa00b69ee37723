/**
 * Whole-network benchmark: forward pass and full training step of seven networks at their
 * usual input sizes, ours (through @tl/models) against TF.js WebGPU on the same Dawn adapter,
 * onnxruntime-node's WebGPU execution provider on the same adapter (forward only) and PyTorch
 * eager in float32 (on the CPU, or on a CUDA GPU with --torch-device cuda), with effective
 * GFLOP/s, dispatches and host milliseconds per step, and a per-layer-type breakdown of our
 * forward pass.
 *
 *   pnpm bench:models [--quick] [--only resnet18,mobilenet_v2,...] [--batch N] [--reps N]
 *                     [--peers tfjs,ort,torch] [--no-train] [--no-breakdown]
 *                     [--python PATH] [--torch-device cpu|cuda] [--no-interleaved] [--export-onnx]
 *
 * --export-onnx exports the networks' ONNX files first, also without the ort peer, so that a
 * later run with it spends its time on the benchmark (bench/scripts/device-run.sh's core stage).
 *
 * After the networks, ResNet-18 and the mobile networks run their forward passes once more,
 * taking turns, so that their effective GFLOP/s ratio compares like with like (a network
 * timed alone early in a long run can land on a slower stretch of a shared machine).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as A from '@tl/autograd';
import { BENCH_DIR, machineMeta, maxRelError, median } from './harness.js';
import { NETWORK_IDS, NETWORKS, type NetworkId } from './models/networks.js';
import { DEFAULT_PYTHON, onnxFile, ortWebGpu, torchAvailable, torchTimes, type TorchDevice, type TorchTimes } from './models/ort.js';
import { buildOurs, countFlops, forwardBreakdown, forwardOnce, Instrument, trainer, type Breakdown } from './models/ours.js';
import { nchwToNhwc, tfjsNet } from './models/tfjs.js';
import { startTfjsWebGpu } from './training/tfjs-gradients.js';

const PEERS = ['tfjs', 'ort', 'torch'] as const;
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    batch: { type: 'string' },
    reps: { type: 'string' },
    peers: { type: 'string', default: PEERS.join(',') },
    train: { type: 'boolean', default: true },
    breakdown: { type: 'boolean', default: true },
    python: { type: 'string', default: DEFAULT_PYTHON },
    'torch-device': { type: 'string', default: 'cpu' },
    interleaved: { type: 'boolean', default: true },
    'export-onnx': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
  allowNegative: true,
});
const usage = `usage: pnpm bench:models [--quick] [--only ${NETWORK_IDS.join(',')}] [--batch N] [--reps N] [--peers ${PEERS.join(',')}] [--no-train] [--no-breakdown] [--python PATH] [--torch-device cpu|cuda] [--no-interleaved] [--export-onnx]`;
if (args.help) {
  console.log(usage);
  process.exit(0);
}
const list = (s: string | undefined, allowed: readonly string[], flag: string): string[] | undefined => {
  const items = s?.split(',').map((x) => x.trim()).filter(Boolean);
  for (const x of items ?? []) {
    if (!allowed.includes(x)) {
      console.error(`${flag}: unknown "${x}"; expected a comma-separated list of ${allowed.join(', ')}\n${usage}`);
      process.exit(2);
    }
  }
  return items;
};
const only = (list(args.only, NETWORK_IDS, '--only') ?? [...NETWORK_IDS]) as NetworkId[];
const peers = new Set(list(args.peers, PEERS, '--peers') ?? []);
const torchDevice = args['torch-device'] as TorchDevice;
if (torchDevice !== 'cpu' && torchDevice !== 'cuda') {
  console.error(`--torch-device: expected cpu or cuda, got ${JSON.stringify(torchDevice)}\n${usage}`);
  process.exit(2);
}
const python = args.python;
const torchLabel = `PyTorch ${torchDevice === 'cuda' ? 'CUDA' : 'CPU'}`;
const int = (s: string | undefined, dflt: number, flag: string): number => {
  const v = s === undefined ? dflt : Number(s);
  if (!Number.isInteger(v) || v < 1) {
    console.error(`${flag} must be a positive integer, got ${JSON.stringify(s)}`);
    process.exit(2);
  }
  return v;
};
/** Batch 2 at 224 px keeps a full run within tens of minutes on lavapipe; --quick takes 1. */
const batch = int(args.batch, args.quick ? 1 : 2, '--batch');
const reps = int(args.reps, args.quick ? 2 : 4, '--reps');
/** Our forward output against TF.js's (same weights) above this fails the run. */
const TOLERANCE = 1e-3;

await A.init();
const eng = A.engine();
const tf = peers.has('tfjs') ? await startTfjsWebGpu(eng.gpu) : undefined;
const torch = peers.has('torch') ? torchAvailable(python, torchDevice) : 'not asked for (--peers)';
if (torch !== true && peers.has('torch')) console.error(`PyTorch skipped: ${torch}`);

const meta = {
  ...machineMeta(eng.adapterDescription),
  tfjs: tf?.version_core ?? null,
  batch,
  reps,
  options: { quick: args.quick, only, peers: [...peers], train: args.train, breakdown: args.breakdown, interleaved: args.interleaved, python, torchDevice },
  timing: 'each sample is one forward pass (or one training step) from recording to the output on the host; median of the samples after one untimed warm-up; ours and TF.js alternate',
  flops: 'forward FLOPs counted from the modules (2 x output elements x fan-in of every Conv2d, Linear and Conv1D) plus attention (4 S^2 D per layer); a training step counts 3x the forward',
  loadAvgAtStart: os.loadavg().map((x) => Number(x.toFixed(2))),
};
console.error(`adapter: ${meta.adapter}; LP_NUM_THREADS=${meta.lpNumThreads}; ${meta.cpu}; batch ${batch}, ${reps} samples`);
if (meta.loadAvgAtStart[0]! > 0.5) console.error(`warning: load average ${meta.loadAvgAtStart.join(' ')}; other processes will skew the timings`);
if (args['export-onnx']) {
  for (const id of only) {
    try {
      console.error(`ONNX: ${onnxFile(python, id, batch)}`);
    } catch (e) {
      console.error(`ONNX export of ${id} failed: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
    }
  }
}

interface Side {
  ms: number;
  recordMs?: number;
  dispatches?: number;
}
interface Row {
  network: NetworkId;
  label: string;
  batch: number;
  /** Forward GFLOPs per sample. */
  gflops: number;
  forward: { ours: Side | null; tfjs: Side | null; ort: Side | null; torch: Side | null };
  train: { ours: (Side & { loss: number }) | null; tfjs: Side | null; torch: Side | null };
  tfjsMaxRelErr: number | null;
  breakdown: Breakdown | null;
  notes: string[];
}

const rows: Row[] = [];
const failures: string[] = [];
const now = (): number => performance.now();
const t0 = now();

for (const id of only) {
  const net = NETWORKS[id];
  const row: Row = { network: id, label: net.label, batch, gflops: 0, forward: { ours: null, tfjs: null, ort: null, torch: null }, train: { ours: null, tfjs: null, torch: null }, tfjsMaxRelErr: null, breakdown: null, notes: [] };
  rows.push(row);
  console.error(`${net.label} (batch ${batch}, ${net.kind === 'image' ? `${net.size} px` : `sequence ${net.size}`})`);
  const ours = buildOurs(id, batch);
  const inst = new Instrument(ours.model);
  try {
    // The counting pass is also the warm-up (it compiles the pipelines).
    row.gflops = (await countFlops(id, ours, inst)) / batch / 1e9;
    const peer = tf && net.kind === 'image' ? await tfjsNet(tf, ours.model, net.classes, 1e-4) : undefined;
    if (tf && !peer) row.notes.push('TF.js: not written for this network');
    const xp = tf && peer ? tf.tensor(nchwToNhwc((await ours.input.data()) as Float32Array, ours.input.shape as number[]), [batch, net.size, net.size, 3]) : undefined;
    const yp = tf && peer ? tf.tensor1d((await ours.labels.data()) as Int32Array, 'int32') : undefined;

    // Forward.
    // Dispatches of the last call: the first also folds the batch norms once.
    const fo: { ms: number; recordMs: number; dispatches: number }[] = [];
    const fp: number[] = [];
    if (peer) {
      const y = peer.forward(xp!);
      const theirs = (await y.data()) as Float32Array;
      y.dispose();
      const mine = A.tidy(() => A.noGrad(() => ours.model.eval().forward(ours.input)));
      row.tfjsMaxRelErr = maxRelError(theirs, (await mine.data()) as Float32Array);
      mine.dispose();
      if (!(row.tfjsMaxRelErr <= TOLERANCE)) failures.push(`${net.label}: TF.js's forward output differs from ours (max rel err ${row.tfjsMaxRelErr})`);
    }
    // The counting pass ran instrumented, unfolded: one forward as timed compiles the folded
    // kernels (on lavapipe ~0.1-0.5 s each) outside the samples.
    await forwardOnce(ours);
    for (let i = 0; i < reps; i++) {
      fo.push(await forwardOnce(ours));
      if (peer) {
        const s = now();
        const y = peer.forward(xp!);
        await y.data();
        fp.push(now() - s);
        y.dispose();
      }
    }
    row.forward.ours = { ms: median(fo.map((f) => f.ms)), recordMs: median(fo.map((f) => f.recordMs)), dispatches: fo.at(-1)!.dispatches };
    if (fp.length) row.forward.tfjs = { ms: median(fp) };
    console.error(`  forward: ours ${row.forward.ours.ms.toFixed(0)} ms (record ${row.forward.ours.recordMs!.toFixed(1)} ms, ${row.forward.ours.dispatches} dispatches)${fp.length ? `, TF.js ${median(fp).toFixed(0)} ms (max rel err ${row.tfjsMaxRelErr?.toExponential(1)})` : ''}`);

    if (args.breakdown) {
      row.breakdown = await forwardBreakdown(ours, inst);
      console.error(`  breakdown: ${row.breakdown.types.map((t) => `${t.tag} ${t.ms.toFixed(0)} ms x${t.count}`).join(', ')}`);
    }

    if (args.train) {
      const tr = trainer(ours);
      const to: (Side & { loss: number })[] = [];
      const tp: number[] = [];
      try {
        await tr.step();
        if (peer) {
          const l = peer.step(xp!, yp!);
          await l.data();
          l.dispose();
        }
        for (let i = 0; i < reps; i++) {
          to.push(await tr.step());
          if (peer) {
            const s = now();
            const l = peer.step(xp!, yp!);
            await l.data();
            tp.push(now() - s);
            l.dispose();
          }
        }
      } finally {
        tr.dispose();
      }
      row.train.ours = { ms: median(to.map((s) => s.ms)), recordMs: median(to.map((s) => s.recordMs!)), dispatches: to[0]!.dispatches!, loss: to[0]!.loss };
      if (!to.every((s) => Number.isFinite(s.loss))) failures.push(`${net.label}: non-finite training loss`);
      if (tp.length) row.train.tfjs = { ms: median(tp) };
      console.error(`  train step: ours ${row.train.ours.ms.toFixed(0)} ms (record ${row.train.ours.recordMs!.toFixed(1)} ms, ${row.train.ours.dispatches} dispatches)${tp.length ? `, TF.js ${median(tp).toFixed(0)} ms` : ''}`);
    }
    peer?.dispose();
    xp?.dispose();
    yp?.dispose();
  } catch (e) {
    failures.push(`${net.label} (ours / TF.js): ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
  } finally {
    ours.dispose();
    await eng.sync();
  }

  if (peers.has('ort')) {
    try {
      const o = await ortWebGpu(python, id, batch);
      await o.run();
      const ms: number[] = [];
      for (let i = 0; i < reps; i++) {
        const s = now();
        await o.run();
        ms.push(now() - s);
      }
      await o.release();
      row.forward.ort = { ms: median(ms) };
      console.error(`  onnxruntime WebGPU forward ${median(ms).toFixed(0)} ms`);
    } catch (e) {
      row.notes.push(`onnxruntime WebGPU failed: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
      console.error(`  ${row.notes.at(-1)}`);
    }
  }
  if (torch === true) {
    try {
      const t: TorchTimes = torchTimes(python, torchDevice, id, batch, reps);
      row.forward.torch = { ms: t.forward_ms };
      if (args.train) row.train.torch = { ms: t.train_ms };
      const where = t.gpu ? `on ${t.gpu} (CUDA, float32: TF32 off)` : `${t.threads} thread(s)`;
      row.notes.push(`PyTorch ${t.torch}, ${where}`);
      console.error(`  ${torchLabel}: forward ${t.forward_ms.toFixed(0)} ms, train ${t.train_ms.toFixed(0)} ms (${where})`);
    } catch (e) {
      row.notes.push(`PyTorch failed: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
    }
  } else if (peers.has('torch')) row.notes.push(`PyTorch skipped: ${torch}`);
}

/** Forward ms of ResNet-18 and the mobile networks, measured in turns (see the header). */
const INTERLEAVED: readonly NetworkId[] = ['resnet18', 'mobilenet_v2', 'efficientnet_b0'];
const interleaved: Partial<Record<NetworkId, number>> = {};
const turns = INTERLEAVED.filter((id) => only.includes(id) && rows.find((r) => r.network === id)?.forward.ours);
if (args.interleaved && turns.includes('resnet18') && turns.length > 1) {
  const nets = turns.map((id) => buildOurs(id, batch));
  try {
    for (const n of nets) await forwardOnce(n);
    const ms: number[][] = nets.map(() => []);
    for (let round = 0; round < 2 * reps; round++) {
      for (let k = 0; k < nets.length; k++) ms[k]!.push((await forwardOnce(nets[k]!)).ms);
    }
    turns.forEach((id, k) => (interleaved[id] = median(ms[k]!)));
    console.error(`interleaved forward: ${turns.map((id) => `${NETWORKS[id].label} ${interleaved[id]!.toFixed(0)} ms`).join(', ')}`);
  } finally {
    for (const n of nets) n.dispose();
  }
}
const seconds = (now() - t0) / 1000;

// Report -----------------------------------------------------------------------------------------

const f = (x: number | null | undefined, d = 3): string => (x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x >= 100 ? x.toFixed(0) : x.toPrecision(d));
const ips = (s: Side | null): number | null => (s ? (batch * 1000) / s.ms : null);
const gfs = (s: Side | null, gflops: number, mult = 1): number | null => (s ? (mult * gflops * batch * 1000) / s.ms : null);
const ref = rows.find((r) => r.network === 'resnet18');
const refGfs = ref ? gfs(ref.forward.ours, ref.gflops) : null;
const out: string[] = [];
out.push(`### Forward pass, batch ${batch} (img/s or sequences/s; effective GFLOP/s in brackets)\n`);
out.push(`| network | GFLOP / sample | ours | vs ResNet-18 GFLOP/s | dispatches | host ms | TF.js WebGPU | ORT WebGPU | ${torchLabel} | ours / TF.js | ours / ORT |`);
out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  const o = r.forward.ours;
  const cell = (s: Side | null): string => (s ? `${f(ips(s))} (${f(gfs(s, r.gflops))})` : 'n/a');
  const ratio = (s: Side | null): string => (s && o ? `${(s.ms / o.ms).toFixed(2)}x` : 'n/a');
  const vsRef = o && refGfs ? (gfs(o, r.gflops)! / refGfs).toFixed(2) : 'n/a';
  out.push(`| ${r.label} | ${f(r.gflops)} | ${cell(o)} | ${vsRef} | ${o?.dispatches ?? 'n/a'} | ${f(o?.recordMs)} | ${cell(r.forward.tfjs)} | ${cell(r.forward.ort)} | ${cell(r.forward.torch)} | ${ratio(r.forward.tfjs)} | ${ratio(r.forward.ort)} |`);
}
if (interleaved.resnet18 !== undefined) {
  const gflopsOf = (id: NetworkId): number => rows.find((r) => r.network === id)!.gflops;
  const refI = (gflopsOf('resnet18') * batch * 1000) / interleaved.resnet18;
  out.push(`\n### Forward pass in turns (${2 * reps} rounds after the networks above; median ms, effective GFLOP/s and its ratio to ResNet-18's)\n`);
  out.push('| network | ms | GFLOP/s | vs ResNet-18 GFLOP/s |');
  out.push('| --- | ---: | ---: | ---: |');
  for (const id of turns) {
    const g = (gflopsOf(id) * batch * 1000) / interleaved[id]!;
    out.push(`| ${NETWORKS[id].label} | ${f(interleaved[id])} | ${f(g)} | ${(g / refI).toFixed(2)} |`);
  }
}
if (args.train) {
  out.push(`\n### Training step (forward, cross-entropy, backward, SGD), batch ${batch} (img/s; effective GFLOP/s = 3x forward FLOPs)\n`);
  out.push(`| network | ours ms | ours | dispatches | host ms | TF.js WebGPU | ${torchLabel} | ours / TF.js |`);
  out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    const o = r.train.ours;
    const cell = (s: Side | null): string => (s ? `${f(ips(s))} (${f(gfs(s, r.gflops, 3))})` : 'n/a');
    out.push(`| ${r.label} | ${f(o?.ms)} | ${cell(o)} | ${o?.dispatches ?? 'n/a'} | ${f(o?.recordMs)} | ${cell(r.train.tfjs)} | ${cell(r.train.torch)} | ${r.train.tfjs && o ? `${(r.train.tfjs.ms / o.ms).toFixed(2)}x` : 'n/a'} |`);
  }
}
if (args.breakdown) {
  const types = [...new Set(rows.flatMap((r) => r.breakdown?.types.map((t) => t.tag) ?? []))];
  out.push('\n### Our forward pass by layer type: ms replayed one dispatch at a time (dispatches)\n');
  out.push(`| network | ${types.join(' | ')} | floor ms / dispatch |`);
  out.push(`| --- | ${types.map(() => '---:').join(' | ')} | ---: |`);
  for (const r of rows) {
    if (!r.breakdown) continue;
    const by = new Map(r.breakdown.types.map((t) => [t.tag, t]));
    out.push(`| ${r.label} | ${types.map((t) => (by.has(t) ? `${f(by.get(t)!.ms)} (${by.get(t)!.count})` : '')).join(' | ')} | ${r.breakdown.floorMs.toFixed(2)} |`);
  }
}
const notes = rows.flatMap((r) => r.notes.map((n) => `- ${r.label}: ${n}`));
if (notes.length) out.push(`\nNotes:\n${[...new Set(notes)].join('\n')}`);
const loadAvgAtEnd = os.loadavg().map((x) => Number(x.toFixed(2)));
out.push(`\n${meta.date.slice(0, 16).replace('T', ' ')} UTC, ${meta.adapter}, LP_NUM_THREADS=${meta.lpNumThreads}, ${meta.cpu}, TF.js ${meta.tfjs}, ${seconds.toFixed(0)} s, load average ${meta.loadAvgAtStart[0]} at start, ${loadAvgAtEnd[0]} at end`);
console.log(out.join('\n'));

const resultsDir = join(BENCH_DIR, 'results');
mkdirSync(resultsDir, { recursive: true });
const json = JSON.stringify({ meta: { ...meta, loadAvgAtEnd, seconds: Math.round(seconds), failures }, rows, interleavedForwardMs: interleaved }, null, 2) + '\n';
// The minute in the name keeps a partial run (--only, --no-train) from replacing a whole
// run of the same day.
writeFileSync(join(resultsDir, `models-${meta.date.slice(0, 10)}-${meta.date.slice(11, 16).replace(':', '')}-b${batch}.json`), json);
writeFileSync(join(resultsDir, 'models-latest.json'), json);

if (failures.length) {
  console.error(`\nFAILED:\n${failures.map((x) => `  ${x}`).join('\n')}`);
  process.exit(1);
}
process.exit(0);
