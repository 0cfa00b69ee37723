/**
 * Speech transfer from synthetic to real recordings. No pretrained speech model can be
 * downloaded here, so the source task is built: the 15 words of ../shared/data/speech-commands
 * spoken by espeak-ng across voices, rates and pitches; a small Wav2Vec2 (wav2vec2-base's conv
 * geometry at width 32, two transformer layers of width 64) is trained to tell them apart and
 * saved as the shipped backbone. Then, on the real recordings, K takes per word train and the
 * rest test: the shipped backbone with a fresh classifier against the same network from
 * scratch, same steps, same learning rate, same seeds.
 *
 *   pnpm --dir bench exec tsx ../packages/train/scripts/speech-transfer.ts [--pretrain-epochs 20] [--pretrain-lr 1e-3] [--pretrain-grad-clip 1]
 *     [--pretrain-augment off|on] [--pretrain-freeze-encoder on|off] [--shots 1,3] [--seeds 2] [--arms pretrained,scratch] [--config-json '{...}']
 *     [--finetune encoder-frozen|head] [--finetune-lr 1e-3]
 *     [--save ../packages/cli/assets/speech-w2v2-tiny.safetensors] [--out results.json]
 *
 * With --backbone PATH the pretraining is skipped and that checkpoint is fine-tuned; --arms scratch
 * runs the scratch arm alone (no pretraining), so the two arms can run as two processes.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as A from '@tl/autograd';
import { SPEECH_TINY_CONFIG, Wav2Vec2ForSequenceClassification, type Wav2Vec2Config } from '@tl/models';
import { adamw, audioFolder, cosine, mixSeed, Rng, Subset, takePerClass, Trainer, type Dataset } from '../src/node.js';

const { values: args } = parseArgs({
  options: {
    data: { type: 'string', default: resolve(import.meta.dirname, '../../../../shared/data/speech-commands') },
    synth: { type: 'string', default: join(tmpdir(), 'tl-speech-synth') },
    'per-word': { type: 'string', default: '40' },
    'pretrain-epochs': { type: 'string', default: '20' },
    'finetune-epochs': { type: 'string', default: '20' },
    shots: { type: 'string', default: '1,3' },
    seeds: { type: 'string', default: '2' },
    backbone: { type: 'string' },
    arms: { type: 'string', default: 'pretrained,scratch' },
    'pretrain-lr': { type: 'string', default: '1e-3' },
    'pretrain-augment': { type: 'string', default: 'off' },
    'pretrain-grad-clip': { type: 'string', default: '1' },
    'pretrain-freeze-encoder': { type: 'string', default: 'on' },
    'config-json': { type: 'string', default: '{}' },
    finetune: { type: 'string', default: 'encoder-frozen' },
    'finetune-lr': { type: 'string', default: '1e-3' },
    save: { type: 'string' },
    out: { type: 'string' },
  },
});

const VOICES = ['en-us', 'en-gb', 'en-gb-scotland', 'en-gb-x-rp', 'en-gb-x-gbclan', 'en-gb-x-gbcwmd', 'en-029'];
const VARIANTS = ['', '+m3', '+m7', '+f2', '+f4', '+klatt'];

function synthesise(words: string[], dir: string, perWord: number): void {
  const rng = new Rng(7);
  for (const w of words) {
    mkdirSync(join(dir, w), { recursive: true });
    for (let i = 0; i < perWord; i++) {
      const file = join(dir, w, `${i}.wav`);
      if (existsSync(file)) continue;
      const voice = VOICES[rng.int(VOICES.length)]! + VARIANTS[rng.int(VARIANTS.length)]!;
      const speed = String(Math.round(rng.uniform(110, 210)));
      const pitch = String(Math.round(rng.uniform(20, 80)));
      execFileSync('espeak-ng', ['-v', voice, '-s', speed, '-p', pitch, '-w', file, w]);
    }
  }
}

const quiet = (): void => {};
/** The registered shape with --config-json's fields over it (dropouts, SpecAugment: nothing that changes the weights' shapes). */
const config: Wav2Vec2Config = { ...SPEECH_TINY_CONFIG, ...(JSON.parse(args['config-json']!) as Wav2Vec2Config) };

async function train(model: Wav2Vec2ForSequenceClassification, ds: Dataset, epochs: number, lr: number, batchSize: number, seed: number): Promise<void> {
  A.manualSeed(seed);
  const t = new Trainer(model, { optimizer: adamw({ lr, weightDecay: 0.01 }), schedule: cosine({ warmupSteps: 5 }), epochs, batchSize, logger: quiet, seed });
  await t.fit(ds);
}

async function accuracy(model: Wav2Vec2ForSequenceClassification, ds: Dataset): Promise<number> {
  return (await new Trainer(model, { batchSize: 32, logger: quiet }).evaluate(ds)).accuracy!;
}

await A.init();
const words = readdirSync(args.data!, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
const log = (l: string): void => console.log(l);
let backbonePath = args.backbone;
if (args.finetune !== 'encoder-frozen' && args.finetune !== 'head') throw new RangeError(`--finetune takes encoder-frozen or head, got ${args.finetune}`);
const arms = args.arms!.split(',') as ('pretrained' | 'scratch')[];
if (arms.some((a) => a !== 'pretrained' && a !== 'scratch')) throw new RangeError(`--arms takes pretrained and/or scratch, got ${args.arms}`);
const started = Date.now();
if (!backbonePath && arms.includes('pretrained')) {
  synthesise(words, args.synth!, Number(args['per-word']));
  const synth = await audioFolder(args.synth!, { augment: args['pretrain-augment'] === 'on', valSplit: 0.15, seed: 0, log });
  const model = new Wav2Vec2ForSequenceClassification(config, { numLabels: words.length });
  // A random convolutional encoder kept as initialised: its features cannot collapse, and its backward pass is skipped.
  if (args['pretrain-freeze-encoder'] === 'on') model.freezeFeatureEncoder();
  const epochs = Number(args['pretrain-epochs']);
  const t = new Trainer(model, {
    optimizer: adamw({ lr: Number(args['pretrain-lr']), weightDecay: 0.01 }), schedule: cosine({ warmupSteps: 20 }), epochs, batchSize: 16, seed: 0, logger: quiet,
    gradClip: Number(args['pretrain-grad-clip']) || undefined,
    onEvent: (e) => e.type === 'epochEnd' && log(`pretraining epoch ${e.epoch + 1}/${epochs}: train loss ${e.logs.trainLoss.toFixed(3)}, synthetic val accuracy ${e.logs.valAccuracy?.toFixed(3)} (${((Date.now() - started) / 1000).toFixed(0)} s)`),
  });
  await t.fit(synth.train, synth.val);
  const real = await audioFolder(args.data!, { classes: words, log });
  log(`pretrained on ${synth.train.length} synthetic clips in ${((Date.now() - started) / 1000).toFixed(0)} s: synthetic val accuracy ${(await accuracy(model, synth.val!)).toFixed(3)}, real recordings (no real training) ${(await accuracy(model, real.train)).toFixed(3)}`);
  backbonePath = args.save ?? join(tmpdir(), 'speech-w2v2-tiny.safetensors');
  await model.save(backbonePath, { config: JSON.stringify({ ...config, num_labels: words.length, id2label: Object.fromEntries(words.map((w, i) => [String(i), w])) }) });
  log(`saved ${backbonePath}`);
  model.dispose();
}

const real = await audioFolder(args.data!, { classes: words, log });
const augmented = await audioFolder(args.data!, { classes: words, log: quiet, augment: true });
const rows: { shots: number; pretrained: number[]; scratch: number[] }[] = [];
for (const shots of args.shots!.split(',').map(Number)) {
  const row = { shots, pretrained: [] as number[], scratch: [] as number[] };
  for (let s = 0; s < Number(args.seeds); s++) {
    const trainIdx = takePerClass(real.train, shots, mixSeed(s, shots)).indices;
    const held = new Set(trainIdx);
    const test = new Subset(real.train, real.train.labels().map((_, i) => i).filter((i) => !held.has(i)), `test${shots}/${s}`, false);
    const trainSet = new Subset(augmented.train, trainIdx, `shots${shots}/${s}`);
    for (const kind of arms) {
      A.manualSeed(mixSeed(s, 11));
      const model = new Wav2Vec2ForSequenceClassification(config, { numLabels: words.length });
      if (kind === 'pretrained') {
        await model.load(backbonePath!);
        model.resetClassifier(words.length);
      }
      // encoder-frozen: transformers' recipe; head: a probe of the frozen network (projector and classifier learn).
      if (args.finetune === 'head') model.freeze().unfreeze(['projector.*', 'classifier.*']);
      else model.freezeFeatureEncoder();
      await train(model, trainSet, Number(args['finetune-epochs']), Number(args['finetune-lr']), 8, s);
      row[kind].push(await accuracy(model, test));
      model.dispose();
    }
    log(`${shots} per word, seed ${s}: ${arms.map((k) => `${k} ${row[k].at(-1)!.toFixed(3)}`).join(', ')} (${((Date.now() - started) / 1000).toFixed(0)} s so far)`);
  }
  rows.push(row);
}
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]): number => Math.sqrt(mean(xs.map((x) => (x - mean(xs)) ** 2)));
const cell = (xs: number[]): string => (xs.length ? `${mean(xs).toFixed(3)} ± ${sd(xs).toFixed(3)}` : 'not run');
log('| takes per word (train) | test clips | from the synthetic-speech backbone | from scratch |');
log('| --- | --- | --- | --- |');
for (const r of rows) log(`| ${r.shots} | ${(10 - r.shots) * words.length} | ${cell(r.pretrained)} | ${cell(r.scratch)} |`);
log(`total ${((Date.now() - started) / 1000).toFixed(0)} s`);
if (args.out) writeFileSync(args.out, JSON.stringify(rows, null, 2));
