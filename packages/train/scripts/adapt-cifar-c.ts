/**
 * Source-only against AdaBN (and optionally Deep CORAL) on CIFAR JPEGs under CIFAR-10-C's
 * corruptions: the CIFAR-10 ResNets of ../shared/data, the test JPEGs corrupted at each severity,
 * BatchNorm statistics re-estimated on those images without their labels, then scored with them.
 *
 *   pnpm --dir bench exec tsx ../packages/train/scripts/adapt-cifar-c.ts [--depth 20] [--per-class 50] [--batch 100] [--out results.json]
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import * as A from '@tl/autograd';
import { fromPretrained, getModelSpec, isImageModelSpec, parseSafetensors, type Module } from '@tl/models';
import { adaBN, CORRUPTIONS, corruptPixels, JPEG_QUALITY, TensorDataset, Trainer, type Corruption, type TrainableModel } from '../src/index.js';

const { values: args } = parseArgs({
  options: {
    depth: { type: 'string', default: '20' },
    'per-class': { type: 'string', default: '50' },
    batch: { type: 'string', default: '100' },
    data: { type: 'string', default: resolve(import.meta.dirname, '../../../../shared/data') },
    severities: { type: 'string', default: '1,2,3,4,5' },
    out: { type: 'string' },
  },
});
const perClass = Number(args['per-class']);
const batch = Number(args.batch);
const id = `cifar_resnet${args.depth}`;
const severities = args.severities!.split(',').map(Number);
const spec = getModelSpec(id);
if (!isImageModelSpec(spec)) throw new Error(`${id} is not an image model`);

/** The first `perClass` test JPEGs of each class as 8-bit HWC pixels, with their labels. */
async function loadCifar(): Promise<{ pixels: Uint8Array[]; labels: number[]; classes: string[] }> {
  const root = join(args.data!, 'cifar10-test');
  const classes = readdirSync(root).sort();
  const pixels: Uint8Array[] = [];
  const labels: number[] = [];
  for (const [c, name] of classes.entries()) {
    for (const f of readdirSync(join(root, name)).sort().slice(0, perClass)) {
      const { data, info } = await sharp(join(root, name, f)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      if (info.width !== 32 || info.height !== 32 || info.channels !== 3) throw new Error(`${f}: expected 32x32 RGB, got ${info.width}x${info.height}x${info.channels}`);
      pixels.push(new Uint8Array(data));
      labels.push(c);
    }
  }
  return { pixels, labels, classes };
}

async function corrupt(px: Uint8Array, kind: Corruption | 'clean', severity: number, seed: number): Promise<Uint8Array> {
  if (kind === 'clean') return px;
  if (kind !== 'jpegCompression') return corruptPixels(px, { height: 32, width: 32, channels: 3 }, kind, severity, seed);
  const jpeg = await sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).jpeg({ quality: JPEG_QUALITY[severity - 1] }).toBuffer();
  return new Uint8Array(await sharp(jpeg).raw().toBuffer());
}

/** The model's input: [0, 1] pixels normalised with its mean and std, CHW. */
function toInput(px: Uint8Array): Float32Array {
  const x = new Float32Array(3 * 32 * 32);
  for (let i = 0; i < 32 * 32; i++) for (let c = 0; c < 3; c++) x[c * 1024 + i] = (px[i * 3 + c]! / 255 - spec.mean[c]!) / spec.std[c]!;
  return x;
}

async function accuracy(model: TrainableModel, ds: TensorDataset): Promise<number> {
  return (await new Trainer(model, { batchSize: batch, logger: () => {} }).evaluate(ds)).accuracy!;
}

await A.init();
const cifar = await loadCifar();
const weights = join(args.data!, 'pretrained', `cifar10-resnet${args.depth}.safetensors`);
const model = (await fromPretrained(id, { weights })) as unknown as TrainableModel & Module;
// Each setting starts from the checkpoint's own statistics, read from the file.
const original = parseSafetensors(readFileSync(weights), weights).all();
const rows: { corruption: string; severity: number; sourceOnly: number; adaBN: number }[] = [];
const settings: [Corruption | 'clean', number][] = [['clean', 0], ...CORRUPTIONS.flatMap((c) => severities.map((s) => [c, s] as [Corruption, number]))];
console.log(`${id} on ${cifar.labels.length} CIFAR-10 test JPEGs (${perClass} per class); AdaBN on the same images without their labels, batches of ${batch}`);
for (const [kind, severity] of settings) {
  const t0 = performance.now();
  const inputs = await Promise.all(cifar.pixels.map(async (px, i) => toInput(await corrupt(px, kind, severity, 1000 * severity + i))));
  const ds = new TensorDataset(inputs, cifar.labels, [3, 32, 32], `cifar-c:${kind}:${severity}:${perClass}`, cifar.classes);
  model.loadStateDict(original, { strict: true });
  const sourceOnly = await accuracy(model, ds);
  await adaBN(model, ds, { batchSize: batch });
  const adapted = await accuracy(model, ds);
  rows.push({ corruption: kind, severity, sourceOnly, adaBN: adapted });
  console.log(`${kind} ${severity}: source-only ${(100 * sourceOnly).toFixed(1)} %, AdaBN ${(100 * adapted).toFixed(1)} % (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
}
const pct = (v: number): string => (100 * v).toFixed(1);
console.log(`\n| corruption | ${severities.map((s) => `severity ${s} source / AdaBN`).join(' | ')} |\n| --- | ${severities.map(() => '---').join(' | ')} |`);
for (const c of ['clean', ...CORRUPTIONS]) {
  const r = rows.filter((x) => x.corruption === c);
  console.log(`| ${c} | ${r.map((x) => `${pct(x.sourceOnly)} / ${pct(x.adaBN)}`).join(' | ')} |`);
}
const corrupted = rows.filter((r) => r.corruption !== 'clean');
const mean = (k: 'sourceOnly' | 'adaBN'): number => corrupted.reduce((a, r) => a + r[k], 0) / corrupted.length;
console.log(`mean over the ${corrupted.length} corrupted sets: source-only ${pct(mean('sourceOnly'))} %, AdaBN ${pct(mean('adaBN'))} %`);
if (args.out) writeFileSync(args.out, JSON.stringify({ model: id, perClass, batch, rows }, null, 2));
