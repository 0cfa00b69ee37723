/**
 * Memory benchmark: the peak of live GPU bytes (`memory().peakBytes`) over one full
 * fine-tuning step (forward, cross-entropy, backward, AdamW update) of BERT-base at sequence
 * 128 and ResNet-50 at 224 px: float32, float32 with gradient checkpointing, and mixed precision
 * (the forward under autocast, float16 matmuls with float32 weights). Random weights: the
 * bytes do not depend on their values. The optimizer state exists before the measured step
 * (an update with zero gradients creates it), as in every step after the first.
 *
 *   pnpm bench:memory [--only bert,resnet50] [--batch 8]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { BertForSequenceClassification, ResNet, type ClassifierModel } from '@tl/models';
import { adamw } from '@tl/train';
import { BENCH_DIR } from './harness.js';

const { values: args } = parseArgs({
  options: {
    only: { type: 'string' },
    batch: { type: 'string', default: '8' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
const IDS = ['bert', 'resnet50'] as const;
type Id = (typeof IDS)[number];
if (args.help) {
  console.log(`usage: pnpm bench:memory [--only ${IDS.join(',')}] [--batch 8]`);
  process.exit(0);
}
const batch = Number(args.batch);
if (!Number.isInteger(batch) || batch < 1) {
  console.error(`--batch must be a positive integer, got ${JSON.stringify(args.batch)}`);
  process.exit(2);
}
const only = args.only?.split(',').map((s) => s.trim()).filter(Boolean) ?? [...IDS];
for (const s of only) {
  if (!IDS.includes(s as Id)) {
    console.error(`--only: unknown network "${s}"; expected a comma-separated list of ${IDS.join(', ')}`);
    process.exit(2);
  }
}

interface Network {
  label: string;
  make(): ClassifierModel;
  input(): Tensor;
  classes: number;
}

const SEQ = 128;
const NETWORKS: Record<Id, Network> = {
  bert: {
    label: `BERT-base, sequence ${SEQ}`,
    make: () => new BertForSequenceClassification({ num_labels: 2 }),
    input: () => A.tensor(Int32Array.from({ length: batch * SEQ }, (_, i) => 1000 + ((i * 7919) % 28000)), { shape: [batch, SEQ], dtype: 'int32' }),
    classes: 2,
  },
  resnet50: {
    label: 'ResNet-50, 224 px',
    make: () => new ResNet({ layers: [3, 4, 6, 3], block: 'bottleneck', numClasses: 10 }),
    input: () => A.randn([batch, 3, 224, 224], { seed: 1 }),
    classes: 10,
  },
};

interface Row {
  network: string;
  batch: number;
  checkpointing: boolean;
  precision: 'float32' | 'autocast float16';
  /** Weights and optimizer state, live before the step. */
  residentBytes: number;
  peakBytes: number;
  /** peakBytes - residentBytes: activations, gradients and temporaries. */
  stepBytes: number;
  seconds: number;
}

const MiB = 2 ** 20;
await A.init();
const eng = A.engine();
const rows: Row[] = [];
for (const id of only as Id[]) {
  const net = NETWORKS[id];
  const arms = [
    { checkpointing: false, fp16: false },
    { checkpointing: true, fp16: false },
    ...(eng.hasF16 ? [{ checkpointing: false, fp16: true }] : []),
  ];
  if (!eng.hasF16) console.error(`the adapter lacks shader-f16: no autocast arm`);
  for (const { checkpointing, fp16 } of arms) {
    const precision = fp16 ? 'autocast float16' : 'float32';
    A.manualSeed(0);
    const model = net.make().train();
    if (checkpointing) model.gradientCheckpointing();
    const optimizer = adamw({ lr: 1e-5 }).create([{ params: model.parameters() }]);
    A.noGrad(() => {
      for (const p of model.parameters()) p.grad = A.keep(A.zeros(p.shape));
    });
    optimizer.step();
    optimizer.zeroGrad();
    const input = net.input();
    const labels = Array.from({ length: batch }, (_, i) => i % net.classes);
    await A.sync();
    A.resetPeakMemory();
    const residentBytes = A.memory().liveBytes;
    const t0 = performance.now();
    const loss = A.tidy(() => {
      const l = A.autocast(() => A.crossEntropy(model.forward(input), labels), { enabled: fp16 });
      A.backward(l);
      return A.noGrad(() => A.mul(l, 1));
    });
    optimizer.step();
    optimizer.zeroGrad();
    const value = (await loss.data())[0]!;
    const seconds = (performance.now() - t0) / 1000;
    const peakBytes = A.memory().peakBytes;
    rows.push({ network: net.label, batch, checkpointing, precision, residentBytes, peakBytes, stepBytes: peakBytes - residentBytes, seconds });
    console.error(`${net.label} batch ${batch}${checkpointing ? ' checkpointed' : ''} ${precision}: peak ${(peakBytes / MiB).toFixed(1)} MiB (resident ${(residentBytes / MiB).toFixed(1)}), loss ${value.toFixed(4)}, ${seconds.toFixed(1)} s`);
    for (const t of [loss, input]) t.dispose();
    optimizer.dispose();
    model.dispose();
    await A.sync();
  }
}

const mib = (b: number): string => (b / MiB).toFixed(1);
console.log('| network | batch | precision | checkpointing | weights + AdamW state (MiB) | peak (MiB) | peak - resident (MiB) | step (s) |');
console.log('| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  console.log(`| ${r.network} | ${r.batch} | ${r.precision} | ${r.checkpointing ? 'on' : 'off'} | ${mib(r.residentBytes)} | ${mib(r.peakBytes)} | ${mib(r.stepBytes)} | ${r.seconds.toFixed(1)} |`);
}

const meta = { date: new Date().toISOString(), adapter: eng.adapterDescription, cpu: `${os.cpus()[0]?.model ?? 'unknown'} x${os.cpus().length}`, node: process.version, loadAvg: os.loadavg().map((x) => Number(x.toFixed(2))) };
const dir = join(BENCH_DIR, 'results');
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, `memory-${only.join('-')}-batch${batch}.json`), `${JSON.stringify({ meta, rows }, null, 2)}\n`);
