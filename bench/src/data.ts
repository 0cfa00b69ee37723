/**
 * Data benchmark: which bounds training, the image pipeline or the GPU step?
 *
 * - Pipeline: images/s of the DataLoader over a folder of generated photo-sized JPEGs (500 x 375
 *   and 375 x 500, as the ants/bees photos) at 224 px with the training augmentation (random
 *   resized crop, flip, colour jitter), decoded every time (no cache: the first epoch, or a data
 *   set larger than the cache), on the main thread (`workers: 0`, the path before decode
 *   workers) and with 1, 2 and 4 decode workers.
 * - GPU: training steps/s and images/s of ResNet-18 and MobileNetV2 at 224 px, batch 8 (forward,
 *   cross-entropy, backward, SGD; random weights), as the Trainer runs a step.
 *
 * - Memory (`--memory`): peak RSS of one epoch over 1,000 and over 8,000 generated 96 px JPEGs
 *   at the same settings (`--image-size 32`, one decode worker, a 3 MB cache that 1,000 images
 *   already overflow), each run a process of its own (data-memory-child.ts), run once as Node
 *   starts it and once with the main thread's young generation fixed (--max-semi-space-size=1;
 *   see packages/train/test/memory.test.ts for why).
 *
 *   pnpm bench:data [--images 160] [--steps 3] [--batch 8]
 *   pnpm bench:data --memory
 */
import { execFileSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, readdirSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import * as A from '@tl/autograd';
import { fromPretrained } from '@tl/models';
import { closeImageWorkers, DataLoader, imageFolder, SGD } from '@tl/train';

const { values: args } = parseArgs({
  options: {
    images: { type: 'string', default: '160' },
    steps: { type: 'string', default: '3' },
    batch: { type: 'string', default: '8' },
    memory: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  console.log('usage: pnpm bench:data [--images 160] [--steps 3] [--batch 8]\n       pnpm bench:data --memory');
  process.exit(0);
}
const N = Number(args.images);
const STEPS = Number(args.steps);
const BATCH = Number(args.batch);

// Photos: smooth gradients with texture and noise, so JPEG decoding does real work.
const dir = join(os.tmpdir(), `tl-bench-data-${N}`);
async function photos(): Promise<void> {
  if (existsSync(dir) && readdirSync(join(dir, 'b')).length === N / 2) return;
  for (const c of ['a', 'b']) mkdirSync(join(dir, c), { recursive: true });
  for (let i = 0; i < N; i++) {
    const [w, h] = i % 3 === 0 ? [375, 500] : [500, 375];
    const px = Buffer.alloc(w * h * 3);
    let s = i + 1;
    for (let k = 0; k < w * h; k++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      const x = k % w;
      const y = (k / w) | 0;
      px[k * 3] = (x * 255) / w + (s >>> 28);
      px[k * 3 + 1] = ((y * 255) / h + 40 * Math.sin((x + i) / 9)) & 255;
      px[k * 3 + 2] = (128 + 60 * Math.sin((x * y) / 500 + i)) & 255;
    }
    await sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(join(dir, i % 2 ? 'a' : 'b', `${i}.jpg`));
  }
}

async function pipeline(workers: number): Promise<number> {
  const { train } = await imageFolder(dir, { imageSize: 224, augment: { scale: [0.08, 1], jitter: 0.4 }, workers, cache: 0 });
  const loader = new DataLoader(train, { batchSize: 32, shuffle: true, seed: 0, augment: true, prefetch: 4 });
  // One warm-up epoch (workers start, code compiles), then one timed.
  for await (const _ of loader.sampleBatches(0)) void _;
  const t = performance.now();
  let n = 0;
  for await (const b of loader.sampleBatches(1)) n += b.samples.length;
  const rate = n / ((performance.now() - t) / 1000);
  await closeImageWorkers();
  return rate;
}

async function gpuStep(id: string): Promise<number> {
  A.manualSeed(0);
  const model = await fromPretrained(id, { numClasses: 10 });
  model.train();
  const opt = new SGD(model.parameters({ trainable: true }), { lr: 0.01 });
  const x = A.tensor(Float32Array.from({ length: BATCH * 3 * 224 * 224 }, (_, i) => Math.sin(i)), { shape: [BATCH, 3, 224, 224] });
  const y = A.tensor(Int32Array.from({ length: BATCH }, (_, i) => i % 10), { shape: [BATCH], dtype: 'int32' });
  const step = async (): Promise<void> => {
    const loss = A.tidy(() => {
      const l = A.crossEntropy(model.forward(x), y);
      A.backward(l);
      return l;
    });
    opt.step();
    opt.zeroGrad();
    await loss.data();
    loss.dispose();
  };
  await step();
  const t = performance.now();
  for (let s = 0; s < STEPS; s++) await step();
  const perStep = (performance.now() - t) / 1000 / STEPS;
  x.dispose();
  y.dispose();
  model.dispose();
  return 1 / perStep;
}

/** `n` JPEGs of side x side in two class folders (kept between runs). */
async function squares(dir: string, n: number, side: number): Promise<void> {
  if (existsSync(join(dir, 'b')) && readdirSync(join(dir, 'b')).length === n / 2) return;
  for (const c of ['a', 'b']) mkdirSync(join(dir, c), { recursive: true });
  for (let i = 0; i < n; i++) {
    const px = Buffer.alloc(side * side * 3);
    for (let k = 0; k < side * side; k++) {
      px[k * 3] = (i * 37) & 255;
      px[k * 3 + 1] = ((k % side) * 2 + i) & 255;
      px[k * 3 + 2] = (k * 255) / (side * side);
    }
    await sharp(px, { raw: { width: side, height: side, channels: 3 } }).jpeg({ quality: 85 }).toFile(join(dir, i % 2 ? 'a' : 'b', `${i}.jpg`));
  }
}

async function memory(): Promise<void> {
  const root = join(os.tmpdir(), 'tl-bench-data-memory');
  const [small, big, cacheMb, workers, size] = [1000, 8000, '3', '1', '32'];
  await squares(join(root, 'big'), big, 96);
  if (!existsSync(join(root, 'small'))) {
    for (const c of ['a', 'b']) mkdirSync(join(root, 'small', c), { recursive: true });
    for (let i = 0; i < small; i++) linkSync(join(root, 'big', i % 2 ? 'a' : 'b', `${i}.jpg`), join(root, 'small', i % 2 ? 'a' : 'b', `${i}.jpg`));
  }
  const child = fileURLToPath(new URL('./data-memory-child.ts', import.meta.url));
  const mb = (folder: string, flags: string[]): number => {
    const out = execFileSync(process.execPath, [...flags, '--import', 'tsx', child, join(root, folder), cacheMb, workers, size], { encoding: 'utf8' });
    return (JSON.parse(out.trim().split('\n').pop()!) as { maxRssBytes: number }).maxRssBytes / 2 ** 20;
  };
  console.log(`memory: one epoch, 96 px JPEGs, image size ${size}, ${workers} decode worker, ${cacheMb} MB cache; ${os.availableParallelism()} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  const rows: string[] = [];
  for (const [name, flags] of [['as Node starts', []], ['--max-semi-space-size=1', ['--max-semi-space-size=1']]] as const) {
    const a = mb('small', [...flags]);
    const b = mb('big', [...flags]);
    rows.push(`| ${name} | ${a.toFixed(0)} MB | ${b.toFixed(0)} MB | ${(b / a).toFixed(2)}x |`);
    console.log(rows.at(-1));
  }
  console.log(`\n| main thread | ${small.toLocaleString('en')} images | ${big.toLocaleString('en')} images | ratio |\n|---|---|---|---|\n${rows.join('\n')}`);
}

if (args.memory) {
  await memory();
  process.exit(0);
}
await photos();
const rows: [string, string][] = [];
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
console.log(`data benchmark: ${N} JPEGs of 500x375, 224 px training crops; ${os.availableParallelism()} cores (${cpu}), load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
for (const w of [0, 1, 2, 4]) {
  const r = await pipeline(w);
  const row: [string, string] = [w === 0 ? 'pipeline, main thread (workers: 0)' : `pipeline, ${w} decode worker${w > 1 ? 's' : ''}`, `${r.toFixed(0)} img/s`];
  rows.push(row);
  console.log(row.join(': '));
}
await A.init();
const adapter = A.engine().adapterDescription;
for (const id of ['resnet18', 'mobilenet_v2']) {
  const sps = await gpuStep(id);
  const row: [string, string] = [`${id} train step, batch ${BATCH}, 224 px`, `${sps.toFixed(2)} steps/s = ${(sps * BATCH).toFixed(1)} img/s`];
  rows.push(row);
  console.log(row.join(': '));
}
console.log(`\n| what | rate |\n|---|---|\n${rows.map((r) => `| ${r[0]} | ${r[1]} |`).join('\n')}`);
console.log(`(GPU: ${adapter}; load average after: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')})`);
