/**
 * Unsupervised domain adaptation measured on CIFAR-10-C-style shifts: the pretrained CIFAR-10
 * ResNet of ../shared/data, labelled source = clean CIFAR test JPEGs, unlabelled target =
 * other test JPEGs under a corruption (their labels never reach training), scored on held-out
 * corrupted JPEGs. Per class: the first `--source` images are the source, the next `--target`
 * the unlabelled target, the next `--test` the held-out target. Arms, one budget for the trained
 * ones (epochs over the source, batch, optimizer, schedule, seed):
 * - pretrained: the checkpoint as it is;
 * - AdaBN: its BatchNorm statistics re-estimated on the unlabelled target;
 * - source-only: fine-tuned on the labelled source (does not depend on the corruption: trained once);
 * - DANN: the same, plus the domain classifier behind gradient reversal on source + target batches;
 * - CORAL: the same, plus Deep CORAL's loss between the two batches' features.
 *
 *   pnpm --dir bench exec tsx ../packages/train/scripts/uda-cifar-c.ts [--settings gaussianNoise:3,gaussianNoise:5,...] [--epochs 1] [--coral-weight 100] [--out results.json]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as A from '@tl/autograd';
import { fromPretrained, getModelSpec, isImageModelSpec, parseSafetensors, type Module } from '@tl/models';
import { adaBN, adamw, coral, CORRUPTIONS, cosine, dann, TensorDataset, Trainer, type Corruption, type Objective, type TrainableModel } from '../src/index.js';
import { corruptImage, loadCifarImages, toInput } from './cifar-c-images.js';

const { values: args } = parseArgs({
  options: {
    depth: { type: 'string', default: '20' },
    data: { type: 'string', default: resolve(import.meta.dirname, '../../../../shared/data') },
    source: { type: 'string', default: '100' },
    target: { type: 'string', default: '50' },
    test: { type: 'string', default: '50' },
    settings: { type: 'string', default: 'gaussianNoise:5,gaussianBlur:5,contrast:5,gaussianNoise:3,gaussianBlur:3,contrast:3' },
    epochs: { type: 'string', default: '1' },
    batch: { type: 'string', default: '32' },
    lr: { type: 'string', default: '3e-4' },
    'coral-weight': { type: 'string', default: '100' },
    seed: { type: 'string', default: '0' },
    out: { type: 'string' },
  },
});
const [nSource, nTarget, nTest, epochs, batch, lr, coralWeight, seed] = (['source', 'target', 'test', 'epochs', 'batch', 'lr', 'coral-weight', 'seed'] as const).map((k) => Number(args[k]));
const id = `cifar_resnet${args.depth}`;
const spec = getModelSpec(id);
if (!isImageModelSpec(spec)) throw new Error(`${id} is not an image model`);
const { mean, std } = spec;
const settings = args.settings!.split(',').map((s) => {
  const [kind, sev] = s.split(':');
  if (!CORRUPTIONS.includes(kind as Corruption) || !(Number(sev) >= 1 && Number(sev) <= 5)) throw new Error(`--settings: ${s} is not <corruption>:<severity 1-5> with a corruption of ${CORRUPTIONS.join(', ')}`);
  return { kind: kind as Corruption, severity: Number(sev) };
});

await A.init();
const images = await loadCifarImages(join(args.data!, 'cifar10-test'), nSource + nTarget + nTest);
const part = (lo: number, hi: number): number[] => images.rank.flatMap((r, i) => (r >= lo && r < hi ? [i] : []));
const sourceIdx = part(0, nSource);
const targetIdx = part(nSource, nSource + nTarget);
const testIdx = part(nSource + nTarget, nSource + nTarget + nTest);
async function dataset(idx: number[], kind: Corruption | 'clean', severity: number, name: string): Promise<TensorDataset> {
  const x = await Promise.all(idx.map(async (i) => toInput(await corruptImage(images.pixels[i]!, kind, severity, 1000 * severity + i), mean, std)));
  return new TensorDataset(x, idx.map((i) => images.labels[i]!), [3, 32, 32], name, images.classes);
}

const weights = join(args.data!, 'pretrained', `cifar10-resnet${args.depth}.safetensors`);
const original = parseSafetensors(readFileSync(weights), weights).all();
const model = (await fromPretrained(id, { weights })) as unknown as TrainableModel & Module;
const reset = (): void => {
  model.loadStateDict(original, { strict: true });
};
const accuracy = async (ds: TensorDataset): Promise<number> => (await new Trainer(model, { batchSize: 100, logger: () => {} }).evaluate(ds)).accuracy!;

/** Fine-tunes the checkpoint on the labelled source with `objective` (plain cross-entropy when
 * none); returns the seconds it took and the last epoch's training logs. */
async function fineTune(source: TensorDataset, objective: Objective | undefined): Promise<{ seconds: number; last: Record<string, number> }> {
  reset();
  A.manualSeed(seed);
  const t0 = performance.now();
  const trainer = new Trainer(model, { objective, optimizer: adamw({ lr, weightDecay: 5e-4 }), schedule: cosine(), epochs, batchSize: batch, seed, logger: () => {} });
  await trainer.fit(source, null);
  objective?.dispose?.();
  const epoch = trainer.history.at(-1)!;
  const last = { ...epoch, ...epoch.metrics } as unknown as Record<string, number>;
  return { seconds: (performance.now() - t0) / 1000, last };
}

const source = await dataset(sourceIdx, 'clean', 0, `cifar-clean-${nSource}`);
const steps = epochs * Math.ceil(source.length / batch);
const budget = `${epochs} epochs over ${source.length} source images, batch ${batch} (+ ${batch} target images for DANN and CORAL), ${steps} steps, AdamW lr ${lr} wd 5e-4, cosine, seed ${seed}`;
console.log(`${id}: source ${source.length} clean images, target ${targetIdx.length} unlabelled corrupted images, held-out test ${testIdx.length} corrupted images; ${budget}`);
const sourceOnly = await fineTune(source, undefined);
const sourceOnlyState = parseSafetensors(await model.toSafetensors(), 'source-only').all();
console.log(`source-only fine-tuning: ${sourceOnly.seconds.toFixed(0)} s, last-epoch train accuracy ${(100 * sourceOnly.last.trainAccuracy!).toFixed(1)} %`);
const cleanTest = await dataset(testIdx, 'clean', 0, 'cifar-clean-test');
reset();
const clean = { pretrained: await accuracy(cleanTest), sourceOnly: 0 };
model.loadStateDict(sourceOnlyState, { strict: true });
clean.sourceOnly = await accuracy(cleanTest);
console.log(`clean held-out images: pretrained ${(100 * clean.pretrained).toFixed(1)} %, source-only fine-tuned ${(100 * clean.sourceOnly).toFixed(1)} %`);

interface Row { corruption: Corruption; severity: number; pretrained: number; adaBN: number; sourceOnly: number; dann: number; coral: number; dannSeconds: number; coralSeconds: number; dannDomainAccuracy: number; coralLoss: number }
const rows: Row[] = [];
const save = (): void => {
  if (args.out) writeFileSync(args.out, JSON.stringify({ model: id, split: { source: nSource, target: nTarget, test: nTest, perClass: true }, budget: { epochs, batch, steps, optimizer: `adamw lr ${lr} wd 5e-4`, schedule: 'cosine', seed }, coralWeight, dannAdversarial: 1, clean, rows }, null, 2) + '\n');
};
for (const { kind, severity } of settings) {
  const t0 = performance.now();
  const target = await dataset(targetIdx, kind, severity, `cifar-${kind}-${severity}-target`);
  const test = await dataset(testIdx, kind, severity, `cifar-${kind}-${severity}-test`);
  reset();
  const pretrained = await accuracy(test);
  await adaBN(model, target, { batchSize: 100 });
  const adapted = await accuracy(test);
  model.loadStateDict(sourceOnlyState, { strict: true });
  const so = await accuracy(test);
  const d = await fineTune(source, dann({ target }));
  const dannAcc = await accuracy(test);
  const c = await fineTune(source, coral({ target, weight: coralWeight }));
  const coralAcc = await accuracy(test);
  rows.push({ corruption: kind, severity, pretrained, adaBN: adapted, sourceOnly: so, dann: dannAcc, coral: coralAcc, dannSeconds: d.seconds, coralSeconds: c.seconds, dannDomainAccuracy: d.last.trainDomainAccuracy!, coralLoss: c.last.trainCoralLoss! });
  save();
  const p = (v: number): string => `${(100 * v).toFixed(1)} %`;
  console.log(`${kind} ${severity}: pretrained ${p(pretrained)}, AdaBN ${p(adapted)}, source-only ${p(so)}, DANN ${p(dannAcc)} (domain accuracy ${p(d.last.trainDomainAccuracy!)}), CORAL ${p(coralAcc)} (loss ${c.last.trainCoralLoss!.toFixed(4)}); ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}
const pct = (v: number): string => (100 * v).toFixed(1);
console.log(`\n| corruption | severity | pretrained | AdaBN | source-only | DANN | CORAL |\n| --- | --- | --- | --- | --- | --- | --- |`);
for (const r of rows) console.log(`| ${r.corruption} | ${r.severity} | ${pct(r.pretrained)} | ${pct(r.adaBN)} | ${pct(r.sourceOnly)} | ${pct(r.dann)} | ${pct(r.coral)} |`);
