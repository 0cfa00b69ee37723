/**
 * `tl train`, `tl eval` and `tl predict` on speech: folders of class folders of audio files and
 * single clips, read by @tl/train's audioFolder (decoded, mixed down, resampled to the model's
 * rate, padded or cut), with a registered audio model (speech_w2v2_tiny, whose shipped weights
 * are where `tl train --data <audio folder>` starts when no --model is given).
 */
import { readdirSync, statSync } from 'node:fs';
import { extname, join, relative } from 'node:path';
import * as A from '@tl/autograd';
import { ClassifierModel, fromPretrained, getModelSpec, isAudioModelSpec, listModels, StateDictError, Wav2Vec2ForSequenceClassification, type AudioModelSpec } from '@tl/models';
import {
  AUDIO_EXTENSIONS, audioFolder, DataError, describeClipFacts, IMAGE_EXTENSIONS, normalizeClip, readClip, Subset, Trainer,
  type AudioFolderResult, type ClipFacts, type Dataset,
} from '@tl/train';
import { SPEECH_WEIGHTS } from '../embedded.js';
import { startEngine } from '../engine.js';
import { CliError } from '../errors.js';
import type { Progress } from '../progress.js';
import type { Mistake } from '../report.js';
import { writeAtomic } from '../run-folder.js';
import { describeMismatch, localWeights } from '../weights.js';
import { fitRun, type RunStart, type TrainConfig } from './train.js';

export function isAudioModel(id: string): boolean {
  return listModels().some((s) => s.id === id && isAudioModelSpec(s));
}

/** A folder of class folders whose files are audio (and none images): what `tl train --data`
 * with no --model trains the speech backbone on. */
export function isAudioFolder(path: string): boolean {
  let classes;
  try {
    if (!statSync(path).isDirectory()) return false;
    classes = readdirSync(path, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.startsWith('.'));
  } catch {
    return false;
  }
  let audio = 0;
  for (const c of classes) {
    for (const f of readdirSync(join(path, c.name))) {
      const ext = extname(f).toLowerCase();
      if (IMAGE_EXTENSIONS.has(ext)) return false;
      if (AUDIO_EXTENSIONS.has(ext)) audio++;
    }
  }
  return audio > 0;
}

/** Where a run without --model starts on audio: the shipped backbone, 20 epochs of batch 8
 * (a few takes per word make a handful of steps an epoch). */
export const AUDIO_DEFAULTS: Partial<TrainConfig> = { epochs: 20, batchSize: 8 };

/** Flags of the image pipeline that have no meaning for a waveform. */
const NOT_FOR_AUDIO = {
  imageSize: 'image-size', autoAugment: 'auto-augment', randomErasing: 'random-erasing', mixup: 'mixup', cutmix: 'cutmix', workers: 'workers',
  cacheMb: 'cache-mb', maxPixels: 'max-pixels', teacher: 'teacher', teacherModel: 'teacher-model', temperature: 'temperature', alpha: 'alpha',
  lora: 'lora', cacheFeatures: 'cache-features', gradientCheckpointing: 'gradient-checkpointing', classWeights: 'class-weights',
} as const;

function audioSpec(id: string): AudioModelSpec {
  const spec = getModelSpec(id);
  if (!isAudioModelSpec(spec)) throw new CliError(`${id} is a ${spec.task} model, not an audio model`, 2);
  return spec;
}

/** An audio folder read for `spec`, its notices (skipped files, resampling, cutting) on `log`; a data error is one line. */
async function readAudioFolder(path: string, spec: AudioModelSpec, log: (l: string) => void, o: { valSplit?: number; seed?: number; augment?: boolean; classes?: string[] } = {}): Promise<AudioFolderResult> {
  try {
    return await audioFolder(path, { sampleRate: spec.sampleRate, length: spec.clipSamples, log, ...o });
  } catch (e) {
    if (e instanceof DataError) throw new CliError(e.message, 2);
    throw e;
  }
}

/** The file behind sample `i` of a split of the folder `r`. */
function fileOf(r: AudioFolderResult, ds: Dataset, i: number): string {
  return r.files[ds instanceof Subset ? ds.indices[i]! : i]!;
}

async function audioMistakes(trainer: Trainer, val: Dataset, folder: AudioFolderResult, root: string): Promise<Mistake[]> {
  const { outputs, width } = await trainer.predict(val);
  const labels = val.labels() as number[];
  const out: Mistake[] = [];
  for (let i = 0; i < labels.length && out.length < 20; i++) {
    const row = outputs.subarray(i * width, (i + 1) * width);
    const best = row.indexOf(Math.max(...row));
    if (best !== labels[i]) out.push({ text: relative(root, fileOf(folder, val, i)), truth: folder.classes[labels[i]!]!, predicted: folder.classes[best] ?? String(best) });
  }
  return out;
}

export async function trainAudioCommand(c: TrainConfig, progress: Progress, start: RunStart): Promise<void> {
  const spec = audioSpec(c.model);
  const stray = Object.entries(NOT_FOR_AUDIO).find(([k]) => {
    const v = (c as unknown as Record<string, unknown>)[k];
    return v !== undefined && v !== false;
  });
  if (stray) throw new CliError(`--${stray[1]} is for image models; ${c.model} takes audio`, 2);
  if (!isAudioFolder(c.data)) throw new CliError(`--data ${c.data}: expected an audio folder (one sub-folder per class of ${[...AUDIO_EXTENSIONS].join(', ')} files)`, 2);
  if (c.val && !isAudioFolder(c.val)) throw new CliError(`--val ${c.val}: expected an audio folder with the class folders of --data`, 2);
  await startEngine();
  A.manualSeed(c.seed);
  const log = (l: string): void => progress.line(l);
  const folder = await readAudioFolder(c.data, spec, log, { valSplit: c.val ? undefined : c.valSplit, seed: c.seed, augment: c.augment });
  const valFolder = c.val ? await readAudioFolder(c.val, spec, log, { classes: folder.classes }) : null;
  const val = valFolder ? valFolder.train : folder.val;
  const numClasses = c.numClasses ?? folder.classes.length;
  if (numClasses < folder.classes.length) throw new CliError(`--num-classes ${numClasses} is fewer than the ${folder.classes.length} classes of ${c.data} (${folder.classes.join(', ')})`, 2);
  const path = c.weights ? await localWeights(c.weights, '--weights') : undefined;
  let model;
  try {
    // The source words are not the target classes, even when as many.
    model = await fromPretrained(c.model, { weights: path, numClasses, newHead: !!path });
  } catch (e) {
    if (e instanceof StateDictError) throw await describeMismatch(e, c.model, c.weights!, path!);
    throw e;
  }
  if (!(model instanceof Wav2Vec2ForSequenceClassification)) throw new CliError(`${c.model} builds a ${model.constructor.name}, not a Wav2Vec2 sequence classifier`);
  // transformers' recipe for fine-tuning wav2vec2: the convolutional feature encoder stays as pretrained.
  if (path) model.freezeFeatureEncoder();
  await fitRun(c, {
    model, data: { train: folder.train, val, classes: folder.classes },
    notes: [
      path ? `${c.model}: starting from ${c.weights === SPEECH_WEIGHTS ? `the shipped speech backbone (${c.weights})` : c.weights}; the convolutional feature encoder is frozen, as transformers' freeze_feature_encoder` : `${c.model}: from scratch (no --weights)`,
      ...(folder.skipped.length ? [`${folder.skipped.length} files skipped (named above)`] : []),
    ],
    head: [model.headPattern(), 'projector.*'], noun: 'clips', unit: 'clips/s',
    files: ['model.safetensors', 'config.json', 'metrics.jsonl', 'report.html', 'checkpoint/'],
    mistakes: (trainer, v) => audioMistakes(trainer, v, valFolder ?? folder, valFolder ? c.val! : c.data),
    write: (out) => writeAtomic(join(out, 'config.json'), JSON.stringify({ ...c, task: 'audio-classification' }, null, 2)),
  }, progress, start);
}

/** A run's audio model with its trained weights, in eval mode. */
export async function loadAudioRun(id: string, weights: string): Promise<{ model: ClassifierModel; spec: AudioModelSpec }> {
  const spec = audioSpec(id);
  await startEngine();
  const model = await fromPretrained(id, { weights });
  if (!(model instanceof ClassifierModel)) throw new CliError(`${id} has no classification head`);
  return { model: model.eval(), spec };
}

/** The labelled clips to score a run on: --data (an audio folder), or the run's own validation split. */
export async function audioEvalSet(config: TrainConfig, spec: AudioModelSpec, data: string | undefined): Promise<{ ds: Dataset; names: string[]; label: string }> {
  const warn = (l: string): void => {
    process.stderr.write(`${l}\n`);
  };
  if (data) {
    if (!isAudioFolder(data)) throw new CliError(`--data ${data}: expected an audio folder (one sub-folder per class of ${[...AUDIO_EXTENSIONS].join(', ')} files)`, 2);
    const r = await readAudioFolder(data, spec, warn);
    return { ds: r.train, names: r.classes, label: data };
  }
  if (config.val) {
    const r = await readAudioFolder(config.val, spec, warn);
    return { ds: r.train, names: r.classes, label: config.val };
  }
  const r = await readAudioFolder(config.data, spec, warn, { valSplit: config.valSplit || undefined, seed: config.seed });
  return { ds: r.val ?? r.train, names: r.classes, label: r.val ? 'the validation split of the run' : `${config.data} (the run held out no validation split)` };
}

export interface AudioPrediction {
  file: string;
  label?: string;
  index?: number;
  prob?: number;
  topk?: { label: string; index: number; prob: number }[];
  logits?: number[];
  error?: string;
}

/** The top classes of each clip; a file that is not audio, or empty, is an error line of its own. */
export async function predictAudio(files: string[], model: ClassifierModel, spec: AudioModelSpec, classes: string[], topK: number, logits: boolean): Promise<{ results: AudioPrediction[]; notice: string }> {
  const results: AudioPrediction[] = [];
  const facts: ClipFacts[] = [];
  for (const file of files) {
    let clip;
    try {
      const r = await readClip(file, { sampleRate: spec.sampleRate, length: spec.clipSamples });
      clip = normalizeClip(r.clip);
      facts.push(r.facts);
    } catch (e) {
      if (!(e instanceof DataError)) throw e;
      results.push({ file, error: e.message.replace(`${file}: `, '') });
      continue;
    }
    const x = A.tensor(clip, { shape: [1, clip.length] });
    const out = A.tidy(() => A.noGrad(() => model.forward(x)));
    const probs = A.tidy(() => A.softmax(out, -1));
    const raw = (await out.data()) as Float32Array;
    const p = (await probs.data()) as Float32Array;
    for (const t of [x, out, probs]) t.dispose();
    const order = [...p.keys()].sort((a, b) => p[b]! - p[a]!);
    const name = (i: number): string => classes[i] ?? String(i);
    results.push({
      file, label: name(order[0]!), index: order[0], prob: p[order[0]!],
      topk: order.slice(0, Math.min(topK, p.length)).map((i) => ({ label: name(i), index: i, prob: p[i]! })),
      ...(logits ? { logits: [...raw] } : {}),
    });
  }
  return { results, notice: describeClipFacts(facts, spec.sampleRate, spec.clipSamples) };
}
