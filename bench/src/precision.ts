/**
 * Half precision against float32 on the same adapter, in one run: matmul kernel throughput
 * with float16 and float32 operands, and whole networks (BERT-base at sequence 128, ResNet-18
 * at 224 px) in four arms: float32; autocast (float16 matmuls on float32 weights); a half
 * model under autocast (weights stored in float16, inference only); and a training step in
 * float32 against one under autocast with loss scaling. Each arm reports its median time,
 * the bytes of the weights it runs on, and the peak of live GPU bytes above what was live
 * when it started (`memory().peakBytes`: activations, saved tensors, casts and temporaries;
 * both models' weights stay live throughout, so they are left out of that figure); arms alternate, so a change of load
 * on a shared machine hits all alike. Random weights: neither time nor bytes depend on them.
 *
 *   pnpm bench:precision [--only matmul,bert,resnet18] [--batch 2] [--reps 3]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { BertForSequenceClassification, ResNet, type ClassifierModel } from '@tl/models';
import { GradScaler } from '@tl/train';
import { BENCH_DIR, median } from './harness.js';

const IDS = ['matmul', 'bert', 'resnet18'] as const;
type Id = (typeof IDS)[number];
const { values: args } = parseArgs({
  options: {
    only: { type: 'string' },
    batch: { type: 'string', default: '2' },
    reps: { type: 'string', default: '3' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  console.log(`usage: pnpm bench:precision [--only ${IDS.join(',')}] [--batch 2] [--reps 3]`);
  process.exit(0);
}
const positiveInt = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
};
const batch = positiveInt('batch', args.batch);
const reps = positiveInt('reps', args.reps);
const only = args.only?.split(',').map((s) => s.trim()).filter(Boolean) ?? [...IDS];
for (const s of only) {
  if (!IDS.includes(s as Id)) {
    console.error(`--only: unknown part "${s}"; expected a comma-separated list of ${IDS.join(', ')}`);
    process.exit(2);
  }
}

await A.init();
const eng = A.engine();
if (!eng.hasF16) {
  console.error(`${eng.adapterDescription} lacks shader-f16: there is no half precision to compare`);
  process.exit(1);
}
const MiB = 2 ** 20;

interface Arm {
  name: string;
  /** Bytes of the weights the arm runs on. */
  weightBytes?: number;
  /** Records one call's work; the caller waits for the GPU. */
  run(): Tensor;
}

interface ArmResult {
  name: string;
  ms: number;
  weightMiB: number;
  peakMiB: number;
}

/** Median milliseconds and peak bytes of each arm, the arms taking turns. */
async function compare(arms: Arm[]): Promise<ArmResult[]> {
  const times = arms.map(() => [] as number[]);
  const peaks = arms.map(() => 0);
  for (let r = 0; r <= reps; r++) {
    for (const [k, arm] of arms.entries()) {
      await A.sync();
      A.resetPeakMemory();
      const resident = A.memory().liveBytes;
      const t0 = performance.now();
      const out = A.tidy(() => arm.run());
      await out.data();
      const ms = performance.now() - t0;
      out.dispose();
      // The first round compiles pipelines: its time is not a sample, its peak is.
      if (r > 0) times[k]!.push(ms);
      peaks[k] = Math.max(peaks[k]!, A.memory().peakBytes - resident);
    }
  }
  return arms.map((a, k) => ({ name: a.name, ms: median(times[k]!), weightMiB: (a.weightBytes ?? 0) / MiB, peakMiB: peaks[k]! / MiB }));
}

const sections: { title: string; unit: string; rows: ArmResult[]; flops?: number }[] = [];

if (only.includes('matmul')) {
  for (const [m, k, n] of [[1024, 1024, 1024], [256, 768, 3072]] as const) {
    const a32 = A.randn([m, k], { seed: 1 });
    const b32 = A.randn([k, n], { seed: 2 });
    const a16 = a32.half();
    const b16 = b32.half();
    const rows = await compare([
      { name: 'float32', run: () => A.matmul(a32, b32) },
      { name: 'float16 (f32 accumulation)', run: () => A.matmul(a16, b16) },
    ]);
    sections.push({ title: `matmul [${m}, ${k}] x [${k}, ${n}]`, unit: 'GFLOP/s', rows, flops: 2 * m * k * n });
    for (const t of [a32, b32, a16, b16]) t.dispose();
  }
}

interface Network {
  title: string;
  make(): ClassifierModel;
  input(): Tensor;
  classes: number;
}
const SEQ = 128;
const NETWORKS: Record<'bert' | 'resnet18', Network> = {
  bert: {
    title: `BERT-base, sequence ${SEQ}, batch ${batch}`,
    make: () => new BertForSequenceClassification({ num_labels: 2 }),
    input: () => A.tensor(Int32Array.from({ length: batch * SEQ }, (_, i) => 1000 + ((i * 7919) % 28000)), { shape: [batch, SEQ], dtype: 'int32' }),
    classes: 2,
  },
  resnet18: {
    title: `ResNet-18, 224 px, batch ${batch}`,
    make: () => new ResNet({ layers: [2, 2, 2, 2], block: 'basic', numClasses: 10 }),
    input: () => A.randn([batch, 3, 224, 224], { seed: 1 }),
    classes: 10,
  },
};

for (const id of ['bert', 'resnet18'] as const) {
  if (!only.includes(id)) continue;
  const net = NETWORKS[id];
  A.manualSeed(0);
  const model = net.make();
  const half = net.make();
  half.loadStateDict(model.stateDict());
  half.half().eval();
  const bytesOf = (m: ClassifierModel): number => m.parameters().reduce((n, p) => n + p.storage.bytes, 0);
  const [full32, half16] = [bytesOf(model), bytesOf(half)];
  const input = net.input();
  const labels = Array.from({ length: batch }, (_, i) => i % net.classes);
  const scaler = new GradScaler();
  const step = (fp16: boolean): Tensor => {
    model.train();
    const loss = A.autocast(() => A.crossEntropy(model.forward(input), labels), { enabled: fp16 });
    A.backward(fp16 ? scaler.scaleLoss(loss) : loss);
    for (const p of model.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
    return A.noGrad(() => A.mul(loss, 1));
  };
  const forward = (m: ClassifierModel, fp16: boolean): Tensor => {
    m.eval();
    return A.noGrad(() => A.autocast(() => m.forward(input), { enabled: fp16 }));
  };
  sections.push({
    title: `${net.title}: inference`, unit: 'ms',
    rows: await compare([
      { name: 'float32', weightBytes: full32, run: () => forward(model, false) },
      { name: 'autocast', weightBytes: full32, run: () => forward(model, true) },
      { name: 'half weights + autocast', weightBytes: half16, run: () => forward(half, true) },
    ]),
  });
  sections.push({
    title: `${net.title}: training step (forward, backward)`, unit: 'ms',
    rows: await compare([
      { name: 'float32', weightBytes: full32, run: () => step(false) },
      { name: 'autocast + loss scaling', weightBytes: full32, run: () => step(true) },
    ]),
  });
  for (const t of [input]) t.dispose();
  model.dispose();
  half.dispose();
}

for (const s of sections) {
  const base = s.rows[0]!;
  console.log(`\n${s.title}\n`);
  if (s.flops !== undefined) {
    console.log('| arm | ms | GFLOP/s | speed vs float32 |');
    console.log('| --- | ---: | ---: | ---: |');
    for (const r of s.rows) console.log(`| ${r.name} | ${r.ms.toFixed(1)} | ${(s.flops / r.ms / 1e6).toFixed(1)} | ${(base.ms / r.ms).toFixed(2)}x |`);
  } else {
    console.log('| arm | ms | speed vs float32 | weights MiB | peak above resident MiB | vs float32 |');
    console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
    for (const r of s.rows) {
      console.log(`| ${r.name} | ${r.ms.toFixed(0)} | ${(base.ms / r.ms).toFixed(2)}x | ${r.weightMiB.toFixed(1)} | ${r.peakMiB.toFixed(1)} | ${(r.peakMiB / base.peakMiB).toFixed(2)}x |`);
    }
  }
}

const meta = { date: new Date().toISOString(), adapter: eng.adapterDescription, cpu: `${os.cpus()[0]?.model ?? 'unknown'} x${os.cpus().length}`, node: process.version, loadAvg: os.loadavg().map((x) => Number(x.toFixed(2))), batch, reps };
const dir = join(BENCH_DIR, 'results');
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, `precision-${only.join('-')}.json`), `${JSON.stringify({ meta, sections }, null, 2)}\n`);
