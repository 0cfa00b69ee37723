/**
 * Source-only against AdaBN (and optionally Deep CORAL) on CIFAR JPEGs under CIFAR-10-C's
 * corruptions: the CIFAR-10 ResNets of ../shared/data, the test JPEGs corrupted at each severity,
 * BatchNorm statistics re-estimated on those images without their labels, then scored with them.
 *
 *   pnpm --dir bench exec tsx ../packages/train/scripts/adapt-cifar-c.ts [--depth 20] [--per-class 50] [--batch 100] [--out results.json]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as A from '@tl/autograd';
import { fromPretrained, getModelSpec, isImageModelSpec, parseSafetensors, type Module } from '@tl/models';
import { adaBN, CORRUPTIONS, TensorDataset, Trainer, type Corruption, type TrainableModel } from '../src/index.js';
import { corruptImage, loadCifarImages, toInput } from './cifar-c-images.js';

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
const { mean: inputMean, std: inputStd } = spec;

async function accuracy(model: TrainableModel, ds: TensorDataset): Promise<number> {
  return (await new Trainer(model, { batchSize: batch, logger: () => {} }).evaluate(ds)).accuracy!;
}

await A.init();
const cifar = await loadCifarImages(join(args.data!, 'cifar10-test'), perClass);
const weights = join(args.data!, 'pretrained', `cifar10-resnet${args.depth}.safetensors`);
const model = (await fromPretrained(id, { weights })) as unknown as TrainableModel & Module;
// Each setting starts from the checkpoint's own statistics, read from the file.
const original = parseSafetensors(readFileSync(weights), weights).all();
const rows: { corruption: string; severity: number; sourceOnly: number; adaBN: number }[] = [];
const settings: [Corruption | 'clean', number][] = [['clean', 0], ...CORRUPTIONS.flatMap((c) => severities.map((s) => [c, s] as [Corruption, number]))];
console.log(`${id} on ${cifar.labels.length} CIFAR-10 test JPEGs (${perClass} per class); AdaBN on the same images without their labels, batches of ${batch}`);
for (const [kind, severity] of settings) {
  const t0 = performance.now();
  const inputs = await Promise.all(cifar.pixels.map(async (px, i) => toInput(await corruptImage(px, kind, severity, 1000 * severity + i), inputMean, inputStd)));
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
