/** `tl train`: fine-tune a registered image model on the user's data into a run folder (text models: text.ts). */
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as A from '@tl/autograd';
import { ClassifierModel, fromPretrained, getModelSpec, isImageModelSpec, isTextModelSpec, listModels, StateDictError, type ImageModelSpec } from '@tl/models';
import {
  adam, adamw, constant, cosine, dirStore, earlyStopping, idxDataset, imageFolder, imageList, linear, oneCycle, plateau, sgd, stepLR,
  stratifiedSplit, Trainer, unfreezeAt, type Callback, type Dataset, type OptimizerSpec, type Schedule, DataError,
  BadImageLog, balancedClassWeights, DEFAULT_CACHE_MB, ImageCache, type ImageFolderResult,
  mixBatch, withBatchTransform, type AugmentOptions, type Objective,
} from '@tl/train';
import sharp from 'sharp';
import { startEngine } from '../engine.js';
import { CliError, nearest } from '../errors.js';
import { table, type Progress } from '../progress.js';
import { renderReport, type Mistake, type StepRecord } from '../report.js';
import { freshRunFolder, prepareRunFolder, writeAtomic } from '../run-folder.js';
import { checkWeightsRef, describeMismatch, localWeights } from '../weights.js';
import { applyLora, checkLoraConflicts, finishLora } from '../lora-flag.js';
import { checkTeacherFlags, teacherObjective } from '../teacher-flag.js';

/** How a run starts: continuing the run folder `resume`, or replacing what --out holds. */
export interface RunStart {
  resume?: string;
  overwrite: boolean;
}

export interface TrainConfig {
  model: string;
  weights?: string;
  data: string;
  val?: string;
  valSplit: number;
  numClasses?: number;
  freeze: string;
  unfreezeAt: string[];
  epochs: number;
  batchSize: number;
  lr: number;
  headLr?: number;
  layerDecay?: number;
  optimizer: 'sgd' | 'adam' | 'adamw';
  momentum: number;
  weightDecay: number;
  schedule: 'constant' | 'step' | 'cosine' | 'onecycle' | 'plateau' | 'linear';
  warmup: number;
  labelSmoothing: number;
  dropout: number;
  earlyStop?: number;
  imageSize?: number;
  augment: boolean;
  /** Training-image policies on top of (or, alone, instead of) --augment's light preset. */
  autoAugment?: 'trivial';
  randomErasing?: number;
  /** Beta(alpha, alpha) of mixup / CutMix on each training batch (soft targets). */
  mixup?: number;
  cutmix?: number;
  cacheFeatures: boolean;
  /** Image decode workers (0: the main thread), the decoded-image cache in MB, and the size
   * above which images are skipped unread. */
  workers?: number;
  cacheMb?: number;
  maxPixels?: number;
  /** 'balanced': class weights n / (classes * count) in the loss (scikit-learn's). */
  classWeights?: 'balanced';
  gradClip?: number;
  /** Micro-batches per optimizer step (the effective batch is batchSize × accumulate). */
  accumulate: number;
  /** Recompute each block in backward instead of keeping its activations (Module.gradientCheckpointing). */
  gradientCheckpointing?: boolean;
  /** Mixed precision with loss scaling (Trainer's fp16). */
  fp16?: boolean;
  seed: number;
  out: string;
  /** Text models: the columns of --data, tokens per text, and the config.json of a model
   * trained from scratch (without --weights). */
  textColumn?: string;
  textPairColumn?: string;
  labelColumn?: string;
  maxLength?: number;
  configJson?: string;
  /** LoRA adapters instead of full fine-tuning: r=8,alpha=16,targets=query,value[,dropout=0.1]. */
  lora?: string;
  /** Distillation: a run folder or weights file of the teacher, its model id when a file, the
   * softmax temperature and the weight of the teacher's term. */
  teacher?: string;
  teacherModel?: string;
  temperature?: number;
  alpha?: number;
}

export const TRAIN_DEFAULTS: Omit<TrainConfig, 'model' | 'data'> = {
  valSplit: 0.2, freeze: 'none', unfreezeAt: [], epochs: 5, batchSize: 32, lr: 1e-3, optimizer: 'adamw', momentum: 0.9,
  weightDecay: 0.01, schedule: 'cosine', warmup: 0, labelSmoothing: 0, dropout: 0, augment: false, cacheFeatures: false, accumulate: 1, seed: 0, out: '',
};

/** Each numeric setting's valid range, checked before anything is loaded. */
const RANGES: [keyof TrainConfig, string, (v: number) => boolean, string][] = [
  ['epochs', 'epochs', (v) => Number.isInteger(v) && v >= 1, 'a positive integer'],
  ['batchSize', 'batch-size', (v) => Number.isInteger(v) && v >= 1, 'a positive integer'],
  ['valSplit', 'val-split', (v) => v >= 0 && v < 1, 'a fraction in [0, 1)'],
  ['imageSize', 'image-size', (v) => Number.isInteger(v) && v >= 1 && v <= 4096, 'a positive integer number of pixels (at most 4096)'],
  ['numClasses', 'num-classes', (v) => Number.isInteger(v) && v >= 2, 'an integer of at least 2'],
  ['lr', 'lr', (v) => v > 0, 'a positive number'],
  ['headLr', 'head-lr', (v) => v > 0, 'a positive number'],
  ['layerDecay', 'layer-decay', (v) => v > 0 && v <= 1, 'a factor in (0, 1]'],
  ['momentum', 'momentum', (v) => v >= 0 && v < 1, 'a number in [0, 1)'],
  ['weightDecay', 'weight-decay', (v) => v >= 0, 'a number of at least 0'],
  ['warmup', 'warmup', (v) => Number.isInteger(v) && v >= 0, 'a whole number of steps'],
  ['labelSmoothing', 'label-smoothing', (v) => v >= 0 && v < 1, 'a number in [0, 1)'],
  ['dropout', 'dropout', (v) => v >= 0 && v < 1, 'a probability in [0, 1)'],
  ['earlyStop', 'early-stop', (v) => Number.isInteger(v) && v >= 1, 'a positive integer'],
  ['gradClip', 'grad-clip', (v) => v > 0, 'a positive number'],
  ['accumulate', 'accumulate', (v) => Number.isInteger(v) && v >= 1, 'a positive integer'],
  ['randomErasing', 'random-erasing', (v) => v >= 0 && v <= 1, 'a probability in [0, 1]'],
  ['mixup', 'mixup', (v) => v >= 0, 'an alpha of at least 0'],
  ['cutmix', 'cutmix', (v) => v >= 0, 'an alpha of at least 0'],
  ['seed', 'seed', (v) => Number.isInteger(v) && v >= 0, 'a whole number'],
  ['workers', 'workers', (v) => Number.isInteger(v) && v >= 0 && v <= 64, 'a whole number of threads (0: decode on the main thread)'],
  ['cacheMb', 'cache-mb', (v) => v >= 0, 'a number of megabytes of at least 0'],
  ['maxPixels', 'max-pixels', (v) => v >= 1, 'a positive number of pixels'],
  ['maxLength', 'max-length', (v) => Number.isInteger(v) && v >= 1, 'a positive integer'],
];

function checkRanges(cfg: TrainConfig): void {
  for (const [key, flag, ok, expected] of RANGES) {
    const v = cfg[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw new CliError(`--${flag} must be ${expected}, got ${JSON.stringify(v)}`, 2);
  }
  for (const key of ['data', 'val', 'weights', 'out', 'freeze'] as const) {
    const v = cfg[key];
    if (v !== undefined && typeof v !== 'string') throw new CliError(`--${key} must be a string, got ${JSON.stringify(v)}`, 2);
  }
  if (!Array.isArray(cfg.unfreezeAt)) throw new CliError(`--unfreeze-at must be a list of <epoch>:<glob>[:lr], got ${JSON.stringify(cfg.unfreezeAt)}`, 2);
  for (const u of cfg.unfreezeAt) parseUnfreezeAt(u);
  checkLoraConflicts(cfg);
}

/** Where text models start from instead: Hugging Face's Trainer defaults (a BERT fine-tuned
 * at the image default of 1e-3 diverges). */
const TEXT_DEFAULTS: Partial<TrainConfig> = { lr: 5e-5, epochs: 3 };

const IMAGE_ONLY = {
  imageSize: 'image-size', augment: 'augment', workers: 'workers', cacheMb: 'cache-mb', maxPixels: 'max-pixels', classWeights: 'class-weights', teacher: 'teacher', teacherModel: 'teacher-model', temperature: 'temperature', alpha: 'alpha', autoAugment: 'auto-augment', randomErasing: 'random-erasing', mixup: 'mixup', cutmix: 'cutmix',
} as const;
const TEXT_ONLY = { textColumn: 'text-column', textPairColumn: 'text-pair-column', maxLength: 'max-length', configJson: 'config-json' } as const;

const CHOICES: Record<string, readonly string[]> = {
  autoAugment: ['trivial'],
  classWeights: ['balanced'],
  optimizer: ['sgd', 'adam', 'adamw'],
  schedule: ['constant', 'step', 'cosine', 'onecycle', 'plateau', 'linear'],
};

export function validateConfig(c: Partial<TrainConfig>): TrainConfig {
  for (const [k, opts] of Object.entries(CHOICES)) {
    const v = (c as Record<string, unknown>)[k];
    if (v !== undefined && !opts.includes(String(v))) {
      const near = nearest(String(v), opts);
      throw new CliError(`--${k.replace(/[A-Z]/g, (ch) => `-${ch.toLowerCase()}`)} ${v} is not one of ${opts.join(', ')}${near ? `; did you mean ${near}?` : ''}`, 2);
    }
  }
  if (!c.model) throw new CliError('tl train: --model is required (or run `tl train` with no arguments for the embedded default)', 2);
  const known = listModels().map((s) => s.id);
  const text = known.includes(c.model) && isTextModelSpec(getModelSpec(c.model));
  if (!c.data && text) throw new CliError('tl train: --data is required: a CSV (with a header line) or JSONL file of texts and labels', 2);
  if (!c.data) throw new CliError('tl train: --data is required: an image folder (one sub-folder per class), a CSV/JSONL of path,label, or an IDX images file', 2);
  if (!known.includes(c.model)) {
    const near = nearest(c.model, known);
    throw new CliError(`unknown model "${c.model}"${near ? ` (did you mean ${near}?)` : ''}; known models: ${known.join(', ')}`, 2);
  }
  const misplaced = Object.entries(text ? IMAGE_ONLY : TEXT_ONLY).find(([k]) => {
    const v = (c as Record<string, unknown>)[k];
    return v !== undefined && v !== false;
  });
  if (misplaced) throw new CliError(`--${misplaced[1]} is for ${text ? 'image' : 'text'} models; ${c.model} is ${text ? 'a text' : 'an image'} model`, 2);
  const cfg = { ...TRAIN_DEFAULTS, ...(text ? TEXT_DEFAULTS : {}), ...c } as TrainConfig;
  checkRanges(cfg);
  if (!cfg.out) cfg.out = freshRunFolder(cfg.model);
  return cfg;
}

/** The data and weights paths exist and the weights are readable safetensors (or a Hub/URL reference): before the GPU starts. */
export async function checkInputs(c: TrainConfig): Promise<void> {
  for (const [flag, p] of [['--data', c.data], ['--val', c.val]] as const) {
    if (p !== undefined && !existsSync(p)) throw new CliError(`${flag} ${p} does not exist`, 2);
  }
  if (c.weights && !isTextModelSpec(getModelSpec(c.model))) await checkWeightsRef(c.weights, '--weights');
  await checkTeacherFlags(c);
}

function optimizerSpec(c: TrainConfig): OptimizerSpec {
  if (c.optimizer === 'sgd') return sgd({ lr: c.lr, momentum: c.momentum, weightDecay: c.weightDecay });
  if (c.optimizer === 'adam') return adam({ lr: c.lr, weightDecay: c.weightDecay });
  return adamw({ lr: c.lr, weightDecay: c.weightDecay });
}

function scheduleFor(c: TrainConfig, stepsPerEpoch: number): Schedule {
  switch (c.schedule) {
    case 'constant': return constant();
    case 'step': return stepLR({ stepSize: Math.max(1, Math.round((c.epochs * stepsPerEpoch) / 3)), gamma: 0.1 });
    case 'cosine': return cosine({ warmupSteps: c.warmup });
    case 'onecycle': return oneCycle({ maxLr: c.lr });
    case 'plateau': return plateau({ patience: 1, factor: 0.5 });
    case 'linear': return linear({ startFactor: 1, endFactor: 0.01, totalIters: c.epochs * stepsPerEpoch });
  }
}

export function parseUnfreezeAt(s: string): { epoch: number; pattern: string; lr?: number } {
  const m = /^(\d+):([^:]+)(?::([0-9.eE+-]+))?$/.exec(s);
  if (!m || (m[3] !== undefined && !(Number(m[3]) > 0))) throw new CliError(`--unfreeze-at ${s}: expected <epoch>:<glob>[:lr], e.g. 3:layer4 or 3:layer4.*:1e-4`, 2);
  return { epoch: Number(m[1]), pattern: m[2]!, ...(m[3] ? { lr: Number(m[3]) } : {}) };
}

/** --augment is a light preset for small data (crops of 60-100 % of the area, flips, colour
 * jitter 0.2); --auto-augment or --random-erasing alone start from torchvision's recipe
 * (RandomResizedCrop at 8-100 %, flips). */
export function augmentOptions(c: TrainConfig): AugmentOptions | false {
  if (!c.augment && !c.autoAugment && !c.randomErasing) return false;
  return {
    ...(c.augment ? { scale: [0.6, 1] as [number, number], jitter: 0.2 } : {}),
    ...(c.autoAugment ? { autoAugment: c.autoAugment } : {}),
    ...(c.randomErasing ? { erasing: c.randomErasing } : {}),
  };
}

/** The training set with mixup / CutMix on its batches, where --mixup or --cutmix asks. */
export function mixedTraining(train: Dataset, numClasses: number, c: TrainConfig): Dataset {
  if (!c.mixup && !c.cutmix) return train;
  return withBatchTransform(train, mixBatch({ numClasses, mixupAlpha: c.mixup ?? 0, cutmixAlpha: c.cutmix ?? 0, inputShape: train.inputShape }));
}

/** Image data as `tl train` reads it: the layout of --data found (class folders, Hugging Face
 * imagefolder, CSV/JSONL lists, IDX), --val mapped onto the training classes by name, and one
 * decoded-image cache and one bad-image log for both. */
export async function loadData(spec: ImageModelSpec, c: TrainConfig): Promise<{ train: Dataset; val: Dataset | null; classes: string[]; badImages: BadImageLog; notes: string[] }> {
  const badImages = new BadImageLog();
  const read = {
    workers: c.workers, cache: new ImageCache(c.cacheMb ?? DEFAULT_CACHE_MB), maxPixels: c.maxPixels, badImages, labelColumn: c.labelColumn,
  };
  const pre = {
    imageSize: c.imageSize ?? spec.inputSize, mean: spec.mean, std: spec.std, channels: spec.channels ?? 3, cropPct: spec.cropPct, interpolation: spec.interpolation,
    augment: augmentOptions(c), valSplit: c.val ? undefined : c.valSplit, seed: c.seed, ...read,
  };
  if (!existsSync(c.data)) throw new CliError(`--data ${c.data} does not exist`, 2);
  let result: ImageFolderResult;
  const notes: string[] = [];
  if (statSync(c.data).isDirectory()) result = await imageFolder(c.data, pre);
  else if (/\.(csv|jsonl|ndjson)$/i.test(c.data)) result = await imageList(c.data, pre);
  else if (/images-idx3-ubyte(\.gz)?$/.test(c.data)) {
    const labels = c.data.replace('images-idx3', 'labels-idx1');
    const ds = await idxDataset(c.data, labels, pre);
    const classes = [...new Set(ds.labels() as number[])].sort((a, b) => a - b).map(String);
    const split = c.val ? null : stratifiedSplit(ds, c.valSplit, c.seed);
    result = { train: split ? split.train : ds, val: split ? split.val : null, classes };
  } else throw new CliError(`--data ${c.data}: expected a folder (class folders, or Hugging Face imagefolder: train/ validation/ test/ and/or metadata.csv), a .csv/.jsonl list of path,label, or an *-images-idx3-ubyte(.gz) file`, 2);
  if (result.layout) notes.push(`--data ${c.data}: ${result.layout}`);
  const ownVal = result.layout?.includes('validation') ?? false;
  let val = result.val;
  if (c.val) {
    if (ownVal) throw new CliError(`--data ${c.data} has a validation split of its own; leave out --val, or move that folder away`, 2);
    if (!existsSync(c.val)) throw new CliError(`--val ${c.val} does not exist`, 2);
    const vo = { ...pre, valSplit: undefined, augment: false as const, classes: result.classes };
    const v = statSync(c.val).isDirectory() ? await imageFolder(c.val, vo) : await imageList(c.val, vo);
    val = v.train;
  }
  if (result.test) notes.push(`--data ${c.data}: its test split (${result.test.length} images) is not used in training; score it with tl eval`);
  return { train: result.train, val, classes: result.classes, badImages, notes };
}

export async function trainCommand(c: TrainConfig, progress: Progress, start: RunStart): Promise<void> {
  const spec = getModelSpec(c.model);
  if (!isImageModelSpec(spec)) throw new CliError(`tl train: ${c.model} is a ${spec.task} model; the CLI trains image and text models`, 2);
  await startEngine();
  A.manualSeed(c.seed);
  let data;
  try {
    data = await loadData(spec, c);
  } catch (e) {
    if (e instanceof DataError) throw new CliError(e.message, 2);
    throw e;
  }
  const numClasses = c.numClasses ?? data.classes.length;
  if (numClasses < data.classes.length) throw new CliError(`--num-classes ${numClasses} is fewer than the ${data.classes.length} classes of ${c.data} (${data.classes.join(', ')})`, 2);
  let model;
  const path = c.weights ? await localWeights(c.weights, '--weights') : undefined;
  try {
    model = await fromPretrained(c.model, { weights: path, numClasses, imgSize: c.imageSize });
  } catch (e) {
    if (e instanceof StateDictError) throw await describeMismatch(e, c.model, c.weights!, path!);
    throw e;
  }
  if (!(model instanceof ClassifierModel)) throw new CliError(`${c.model} has no classification head`);
  const kd = c.teacher ? await teacherObjective(c, numClasses, c.imageSize, !augmentOptions(c) && !c.mixup && !c.cutmix) : null;
  await fitRun(c, {
    ...(kd ? { objective: kd.objective, results: { distillation: kd.record } } : {}),
    notes: [...data.notes, ...(kd ? [kd.description] : [])], badImages: data.badImages,
    classWeights: c.classWeights === 'balanced' ? balancedClassWeights(data.train.labels(), numClasses) : undefined,
    model, data: { ...data, train: mixedTraining(data.train, numClasses, c) }, head: [model.headPattern()], noun: 'images', unit: 'img/s', files: ['model.safetensors', 'config.json', 'metrics.jsonl', 'report.html', 'checkpoint/'],
    mistakes: (trainer, val) => misclassified(trainer, val, data.classes),
    write: (out) => writeAtomic(join(out, 'config.json'), JSON.stringify({ ...c, task: 'image-classification' }, null, 2)),
  }, progress, start);
}

/** A model and its data, ready to train into the run folder `c.out`. */
export interface RunSetup {
  model: ClassifierModel;
  data: { train: Dataset; val: Dataset | null; classes: string[] };
  /** What `--freeze backbone` leaves trainable. */
  head: string[];
  /** What a sample is called in the summary ('images'), and the throughput unit ('img/s'). */
  noun: string;
  unit: string;
  /** The run folder's files, for the last line. */
  files: string[];
  /** Some misclassified validation samples, for the report. */
  mistakes(trainer: Trainer, val: Dataset): Promise<Mistake[]>;
  /** Writes the run's configuration files into the folder `out`, once everything is validated. */
  write(out: string): Promise<void>;
  /** Lines for the log once the run is validated (what the checkpoint did not have). */
  notes?: string[];
  /** Images skipped as unreadable: listed in the run folder's skipped-images.tsv. */
  badImages?: BadImageLog;
  /** Per-class loss weights (--class-weights balanced). */
  classWeights?: Float32Array;
  /** What is learnt, when not the labels alone (distillation). */
  objective?: Objective;
  /** More entries for results.json (the distillation's teacher and weights). */
  results?: Record<string, unknown>;
}

/** Freezing, callbacks, the Trainer and its metrics.jsonl, model.safetensors and report.html:
 * what every model type's run does once its model and data are ready. */
export async function fitRun(c: TrainConfig, run: RunSetup, progress: Progress, start: RunStart): Promise<void> {
  const { resume } = start;
  const { model, data } = run;
  const out = resolve(c.out);
  progress.unit = run.unit;
  if (c.freeze === 'backbone') model.freeze().unfreeze(run.head);
  else if (c.freeze !== 'none') {
    try {
      model.freeze(c.freeze);
    } catch (e) {
      throw new CliError(`--freeze: ${(e as Error).message}`, 2);
    }
  }
  const lm = c.lora ? applyLora(model, c.lora, { weights: c.weights, text: run.noun === 'texts' }) : null;
  if (c.gradientCheckpointing) {
    try {
      model.gradientCheckpointing();
    } catch (e) {
      throw new CliError(`--gradient-checkpointing: ${(e as Error).message}`, 2);
    }
  }
  if (c.dropout > 0) {
    const head = model.forwardHead.bind(model);
    const m = model;
    model.forwardHead = (f) => head(A.dropout(f, c.dropout, m.training));
  }
  const callbacks: Callback[] = c.unfreezeAt.map((s) => {
    const u = parseUnfreezeAt(s);
    return unfreezeAt(u.epoch, u.pattern, u.lr !== undefined ? { lr: u.lr } : {});
  });
  if (c.earlyStop) callbacks.push(earlyStopping({ patience: c.earlyStop }));
  const stepsPerEpoch = Math.ceil(Math.ceil(data.train.length / c.batchSize) / c.accumulate);
  const steps: StepRecord[] = [];
  const metricsFile = join(out, 'metrics.jsonl');
  const lines: string[] = [];
  const trainer = new Trainer(model, {
    optimizer: optimizerSpec(c), schedule: scheduleFor(c, stepsPerEpoch), epochs: c.epochs, batchSize: c.batchSize, callbacks, objective: run.objective,
    labelSmoothing: c.labelSmoothing, classWeights: run.classWeights, headLr: c.headLr, layerDecay: c.layerDecay, gradClip: c.gradClip, accumulate: c.accumulate, fp16: c.fp16, cacheFeatures: c.cacheFeatures,
    featureStore: c.cacheFeatures ? dirStore(join(out, 'cache')) : undefined, checkpointStore: dirStore(out), seed: c.seed,
    logger: (l) => progress.line(l),
    onEvent: (e) => {
      progress.event(e);
      if (e.type === 'step') {
        const rec = { type: 'step', epoch: e.epoch, step: steps.length, loss: e.loss, accuracy: e.accuracy, lr: e.lr };
        steps.push({ step: steps.length, loss: e.loss, lr: e.lr });
        lines.push(JSON.stringify(rec));
      } else if (e.type === 'epochEnd') lines.push(JSON.stringify({ type: 'epoch', ...e.logs }));
      if (lines.length >= 50 || e.type === 'epochEnd') void appendFile(metricsFile, lines.splice(0).map((l) => `${l}\n`).join(''));
    },
  });
  if (resume) {
    if (!(await trainer.resume(dirStore(out)))) throw new CliError(`--resume ${resume}: no checkpoint in ${out}`, 2);
    progress.line(`resumed from ${out} at epoch ${trainer.history.length + 1}`);
  }
  // Everything is checked: only now does the run folder change.
  await prepareRunFolder(out, start.overwrite && !resume);
  await run.write(out);
  progress.line(`tl train: resolved configuration\n${JSON.stringify(c, null, 2)}`);
  for (const l of run.notes ?? []) progress.line(l);
  if (!resume) await writeFile(metricsFile, '');
  const parameters = { total: model.numParameters(), trainable: model.numParameters({ trainable: true }) };
  progress.line(`${c.model}: ${parameters.total.toLocaleString('en')} parameters, ${parameters.trainable.toLocaleString('en')} trainable${lm ? ' (LoRA adapters and the head)' : ''}; ${data.train.length} training and ${data.val?.length ?? 0} validation ${run.noun}, ${data.classes.length} classes`);
  if (run.classWeights) progress.line(`class weights (balanced): ${data.classes.map((k, i) => `${k} ${run.classWeights![i]!.toFixed(3)}`).join(', ')}`);
  // Whatever happens in training, the metrics so far and the list of skipped images are written.
  const flush = async (): Promise<void> => {
    if (lines.length) await appendFile(metricsFile, lines.splice(0).map((l) => `${l}\n`).join(''));
    if (run.badImages?.size) await writeAtomic(join(out, SKIPPED_FILE), run.badImages.toTsv());
  };
  try {
    await trainer.fit(data.train, data.val);
  } finally {
    await flush();
  }
  run.objective?.dispose?.();
  if (run.badImages?.size) progress.line(`${run.badImages.summary()}; listed in ${join(out, SKIPPED_FILE)}`);
  const adapter = lm ? await finishLora(lm, out) : null;
  await model.save(join(out, 'model.safetensors'), { model: c.model, classes: JSON.stringify(data.classes) });
  const evalResult = data.val ? await trainer.evaluate(data.val) : null;
  const mistakes = data.val && evalResult ? await run.mistakes(trainer, data.val) : [];
  await writeAtomic(join(out, 'report.html'), renderReport({
    title: `${c.model} on ${c.data}`, config: c as unknown as Record<string, unknown>, history: trainer.history, steps, classes: data.classes,
    report: evalResult?.report ?? null, mistakes, parameters: { ...parameters, adapterBytes: adapter?.adapterBytes },
  }));
  await writeAtomic(join(out, 'results.json'), JSON.stringify({
    parameters, adapter: adapter && { files: adapter.files, bytes: adapter.adapterBytes }, validation: evalResult && { accuracy: evalResult.accuracy, total: evalResult.total }, ...run.results,
  }, null, 2));
  const h = trainer.history;
  progress.line('');
  progress.line(table(['epoch', 'train loss', 'train acc', 'val loss', 'val acc', 'lr', run.unit], h.map((e) => [
    String(e.epoch + 1), e.trainLoss.toFixed(4), pct(e.trainAccuracy), e.valLoss?.toFixed(4) ?? '', pct(e.valAccuracy), e.lr.toExponential(2), e.samplesPerSec.toFixed(1),
  ])));
  if (evalResult) progress.line(`validation: ${pct(evalResult.accuracy)} (${evalResult.correct}/${evalResult.total}), macro F1 ${pct(evalResult.report?.macroF1)}`);
  progress.line(`run folder: ${out} (${[...run.files, 'results.json', ...(adapter ? ['adapter_config.json', 'adapter_model.safetensors'] : [])].join(', ')})`);
  model.dispose();
}

const pct = (v: number | undefined): string => (v === undefined ? '' : `${(100 * v).toFixed(1)}%`);

async function misclassified(trainer: Trainer, val: Dataset, classes: string[]): Promise<Mistake[]> {
  const { outputs, width } = await trainer.predict(val);
  const labels = val.labels() as number[];
  const out: Mistake[] = [];
  for (let i = 0; i < labels.length && out.length < 12; i++) {
    let best = 0;
    for (let c = 1; c < width; c++) if (outputs[i * width + c]! > outputs[i * width + best]!) best = c;
    if (best === labels[i]) continue;
    const s = await val.get(i);
    const [C, H, W] = val.inputShape as [number, number, number];
    const px = Buffer.alloc(H * W * 3);
    const x = s.input as Float32Array;
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of x) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
    for (let k = 0; k < H * W; k++) for (let ch = 0; ch < 3; ch++) px[k * 3 + ch] = Math.round((255 * (x[(C === 1 ? 0 : ch) * H * W + k]! - lo)) / (hi - lo || 1));
    const png = await sharp(px, { raw: { width: W, height: H, channels: 3 } }).png().toBuffer();
    out.push({ image: `data:image/png;base64,${png.toString('base64')}`, truth: classes[labels[i]!] ?? String(labels[i]), predicted: classes[best] ?? String(best) });
  }
  return out;
}

/** The run folder's list of images skipped as unreadable (kind, path, reason). */
export const SKIPPED_FILE = 'skipped-images.tsv';

/** Where a text run keeps its TrainConfig: its config.json is the model's, for transformers. */
export const TRAIN_CONFIG_FILE = 'train_config.json';

/** The TrainConfig of a run folder (null when it is none). */
export async function readTrainConfig(dir: string): Promise<TrainConfig | null> {
  for (const f of [TRAIN_CONFIG_FILE, 'config.json']) {
    if (existsSync(join(dir, f))) return JSON.parse(await readFile(join(dir, f), 'utf8')) as TrainConfig;
  }
  return null;
}

/** The TrainConfig of the run folder `dir` given by `flag`, or a one-line reason it is none. */
export async function readRunConfig(dir: string, flag: string): Promise<TrainConfig> {
  if (!existsSync(dir)) throw new CliError(`${flag} ${dir} does not exist; expected a run folder written by tl train`, 2);
  if (!statSync(dir).isDirectory()) throw new CliError(`${flag} ${dir} is a file; expected a run folder written by tl train`, 2);
  let config;
  try {
    config = await readTrainConfig(dir);
  } catch (e) {
    throw new CliError(`${flag} ${dir}: its config.json is not valid JSON (${(e as Error).message})`, 2);
  }
  if (!config) throw new CliError(`${flag} ${dir} is not a run folder (no config.json); train one with \`tl train --out ${dir}\``, 2);
  if (typeof config.model !== 'string' || !listModels().some((s) => s.id === config.model)) {
    throw new CliError(`${flag} ${dir}: its config.json names no known model (model: ${JSON.stringify(config.model)})`, 2);
  }
  return config;
}

export async function readConfigFile(path: string): Promise<Partial<TrainConfig>> {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new CliError(`${path} is not valid JSON: ${(e as Error).message}`, 2);
  }
}
