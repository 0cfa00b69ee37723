/**
 * Distillation measured: a small CIFAR ResNet trained from scratch on a few CIFAR-10 images, with
 * the pretrained ResNet-56 of ../shared/data as its teacher and without, on the same budget
 * (epochs, batches, optimizer, seed); both scored on held-out test images.
 *
 *   pnpm --dir bench exec tsx ../packages/train/scripts/distill-cifar.ts [--train-per-class 100] [--epochs 10] [--temperature 4] [--alpha 0.9]
 */
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import * as A from '@tl/autograd';
import { CifarResNet, fromPretrained, getModelSpec, isImageModelSpec } from '@tl/models';
import { adamw, cosine, distill, TensorDataset, Trainer, type Objective, type TrainableModel } from '../src/index.js';

const { values: args } = parseArgs({
  options: {
    data: { type: 'string', default: resolve(import.meta.dirname, '../../../../shared/data') },
    'train-per-class': { type: 'string', default: '100' },
    'test-per-class': { type: 'string', default: '100' },
    epochs: { type: 'string', default: '10' },
    temperature: { type: 'string', default: '4' },
    alpha: { type: 'string', default: '0.9' },
    seed: { type: 'string', default: '0' },
    widths: { type: 'string', default: '8,16,32' },
  },
});
const trainPer = Number(args['train-per-class']);
const testPer = Number(args['test-per-class']);
const epochs = Number(args.epochs);
const seed = Number(args.seed);
const widths = args.widths!.split(',').map(Number) as [number, number, number];
const spec = getModelSpec('cifar_resnet56');
if (!isImageModelSpec(spec)) throw new Error('cifar_resnet56 is not an image model');

/** The test JPEGs of each class: the first `trainPer` to train on, the next `testPer` to score. */
async function split(): Promise<{ train: TensorDataset; test: TensorDataset }> {
  const root = join(args.data!, 'cifar10-test');
  const classes = readdirSync(root).sort();
  const parts = { train: { x: [] as Float32Array[], y: [] as number[] }, test: { x: [] as Float32Array[], y: [] as number[] } };
  for (const [c, name] of classes.entries()) {
    const files = readdirSync(join(root, name)).sort();
    if (files.length < trainPer + testPer) throw new Error(`${join(root, name)} has ${files.length} images; ${trainPer} + ${testPer} asked`);
    for (const [i, f] of files.slice(0, trainPer + testPer).entries()) {
      const px = await sharp(join(root, name, f)).removeAlpha().raw().toBuffer();
      const x = new Float32Array(3 * 32 * 32);
      for (let k = 0; k < 1024; k++) for (let ch = 0; ch < 3; ch++) x[ch * 1024 + k] = (px[k * 3 + ch]! / 255 - spec.mean[ch]!) / spec.std[ch]!;
      const part = i < trainPer ? parts.train : parts.test;
      part.x.push(x);
      part.y.push(c);
    }
  }
  return {
    train: new TensorDataset(parts.train.x, parts.train.y, [3, 32, 32], `cifar-train-${trainPer}`, classes),
    test: new TensorDataset(parts.test.x, parts.test.y, [3, 32, 32], `cifar-test-${testPer}`, classes),
  };
}

await A.init();
const { train, test } = await split();
const teacher = (await fromPretrained('cifar_resnet56', { weights: join(args.data!, 'pretrained', 'cifar10-resnet56.safetensors') })) as unknown as TrainableModel;
const teacherAcc = (await new Trainer(teacher, { batchSize: 100, logger: () => {} }).evaluate(test)).accuracy!;
const student = (): CifarResNet => {
  A.manualSeed(seed);
  return new CifarResNet({ depth: 8, numClasses: 10, widths });
};
const params = student().numParameters();
console.log(`teacher ResNet-56 (${teacher.numParameters().toLocaleString('en')} parameters): ${(100 * teacherAcc).toFixed(1)} % on the ${test.length} held-out images`);
console.log(`student ResNet-8 widths ${widths.join('/')} (${params.toLocaleString('en')} parameters) from scratch on ${train.length} images, ${epochs} epochs, batch 50, AdamW 3e-3 cosine, seed ${seed}`);
const arms: [string, () => Objective | undefined][] = [
  ['labels only', () => undefined],
  [`distilled (T ${args.temperature}, alpha ${args.alpha})`, () => distill({ teacher, temperature: Number(args.temperature), alpha: Number(args.alpha), cache: true })],
];
const results: string[] = [];
for (const [name, objective] of arms) {
  const t0 = performance.now();
  const m = student();
  const obj = objective();
  const trainer = new Trainer(m, { objective: obj, optimizer: adamw({ lr: 3e-3, weightDecay: 5e-4 }), schedule: cosine(), epochs, batchSize: 50, seed, logger: () => {} });
  await trainer.fit(train, null);
  obj?.dispose?.();
  const r = await trainer.evaluate(test);
  const secs = (performance.now() - t0) / 1000;
  results.push(`| ${name} | ${(100 * r.accuracy!).toFixed(1)} % (${r.correct}/${r.total}) | ${(100 * trainer.history.at(-1)!.trainAccuracy!).toFixed(1)} % | ${secs.toFixed(0)} s |`);
  console.log(results.at(-1));
  m.dispose();
}
console.log(`\n| student | held-out accuracy | last-epoch train accuracy | time |\n| --- | --- | --- | --- |\n${results.join('\n')}`);
