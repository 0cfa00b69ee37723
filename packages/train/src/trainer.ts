/**
 * The training loop: feature extraction (frozen backbone, cached features), fine-tuning of all
 * or chosen blocks, gradual unfreezing, per-parameter learning rates, schedules, clipping,
 * accumulation, early stopping, checkpoints that resume bit for bit (checkpoint.ts), and a
 * clear stop when the run diverges (divergence.ts). Each step runs inside a scope, so GPU
 * memory stays flat across steps. A model with several heads (multi-task) trains on the
 * weighted sum of its heads' losses, with metrics per head.
 */
import * as A from '@tl/autograd';
import { keep, Tensor } from '@tl/autograd';
import { nameMatcher, parseSafetensors, serializeSafetensors, type HostTensor } from '@tl/models';
import type { Callback } from './callbacks.js';
import type { ModelOutput, TrainableModel, Task } from './model.js';
import { CHECKPOINT_VERSION, readCheckpoint, writeCheckpoint, type CheckpointState } from './checkpoint.js';
import type { Dataset } from './data/dataset.js';
import { checkDivergenceFactor, DEFAULT_DIVERGENCE_FACTOR, describeNonFinite, epochProblem, firstNonFinite, firstNonFiniteOnDevice, stepLossProblem } from './divergence.js';
import { TrainingError } from './errors.js';
import { DataLoader, collate, IGNORE_INDEX, type Batch, type HeadTargetBatch } from './data/loader.js';
import { argmaxRows, classificationReport, meanAbsoluteError, topKAccuracy, type ClassificationReport } from './metrics.js';
import { adamw, clipFactor, type Optimizer, type OptimizerSpec, type ParamGroup } from './optim.js';
import { constant, ReduceOnPlateau, type Schedule } from './schedule.js';
import type { BlobStore } from './store.js';

export { TrainingError };

export type { ModelOutput, TrainableModel, Task } from './model.js';

const TASKS: readonly Task[] = ['classification', 'multilabel', 'regression'];

/** How one head of a multi-task model trains. */
export interface TaskOptions {
  /** Default: the model's task for the head (MultiTaskModel.headTasks), else 'classification'. */
  task?: Task;
  /** Factor of this head's loss in the total (Keras' loss_weights); default 1. */
  weight?: number;
  /** Regression loss; default the trainer's regressionLoss, else 'mse'. */
  loss?: 'mse' | 'l1';
  /** Default the trainer's labelSmoothing. */
  labelSmoothing?: number;
}

interface ResolvedTask {
  name: string;
  task: Task;
  weight: number;
  loss: 'mse' | 'l1';
  labelSmoothing?: number;
}

export interface TrainerOptions {
  optimizer?: OptimizerSpec;
  schedule?: Schedule;
  epochs?: number;
  batchSize?: number;
  callbacks?: Callback[];
  task?: Task;
  /**
   * One entry per head of a model that returns one output per head: the loss is the sum of
   * weight × head loss. A MultiTaskModel's heads that are not named here train with their own
   * task and weight 1. Samples carry one target per head (`label: { species: 3, age: ... }`).
   */
  tasks?: Readonly<Record<string, TaskOptions>>;
  /** Regression loss (default 'mse'). */
  regressionLoss?: 'mse' | 'l1';
  labelSmoothing?: number;
  /** Clip gradients to this global L2 norm. */
  gradClip?: number;
  /** Micro-batches per optimizer step. */
  accumulate?: number;
  /** Learning rate of the head (classifierPath) when it differs from the rest. */
  headLr?: number;
  /** Layer-wise lr decay: block i from the head gets lr * layerDecay^i (blockOrder()). */
  layerDecay?: number;
  /** Apply weight decay to biases and normalisation parameters too (default: off for them). */
  decayNormAndBias?: boolean;
  /** With a frozen backbone and no augmentation, compute features once and train the head on them. */
  cacheFeatures?: boolean;
  /** Where cached features persist between runs (keyed by weights, preprocessing and data). */
  featureStore?: BlobStore;
  /** Write a checkpoint here at the end of every epoch (never one with non-finite weights). */
  checkpointStore?: BlobStore;
  /** A step's training loss or an epoch's validation loss above this many times the first
   * epoch's mean training loss stops the run as diverged; default 1e4, Infinity turns the rule
   * off. Non-finite losses and weights always stop it. */
  divergenceFactor?: number;
  seed?: number;
  /** Progress events (the CLI draws bars from them). */
  onEvent?: (e: TrainerEvent) => void;
  /** One-line messages (default: console.log). */
  logger?: (line: string) => void;
}

export type TrainerEvent =
  | { type: 'epochBegin'; epoch: number; epochs: number; steps: number; cached: boolean }
  | { type: 'step'; epoch: number; step: number; steps: number; loss: number; accuracy: number | null; lr: number; samplesPerSec: number }
  | { type: 'epochEnd'; epoch: number; logs: EpochLogs };

/** One head's metrics in an epoch (multi-task). */
export interface HeadLogs {
  trainLoss: number;
  trainAccuracy?: number;
  valLoss?: number;
  valAccuracy?: number;
  valMacroF1?: number;
  valMae?: number;
}

/** The metrics of the epoch; with several heads, the losses are the weighted sums of theirs. */
export interface EpochLogs extends HeadLogs {
  epoch: number;
  /** Per head, for a multi-task model. */
  heads?: Record<string, HeadLogs>;
  lr: number;
  seconds: number;
  samplesPerSec: number;
  cachedFeatures: boolean;
}

export interface HeadEvalResult {
  /** Mean loss over the samples with a target (with several heads: the weighted sum of theirs). */
  loss: number;
  /** Samples evaluated (of a head: those with a target for it). */
  total: number;
  accuracy?: number;
  correct?: number;
  report?: ClassificationReport;
  topK?: number;
  mae?: number;
}

export interface EvalResult extends HeadEvalResult {
  /** Per head, for a multi-task model. */
  heads?: Record<string, HeadEvalResult>;
}

export interface Prediction {
  /** Row-major [N, width]. */
  outputs: Float32Array;
  width: number;
}

export class Trainer {
  readonly opts: Required<Pick<TrainerOptions, 'epochs' | 'batchSize' | 'task' | 'accumulate' | 'seed'>> & TrainerOptions;
  readonly optimizer: Optimizer;
  readonly schedule: Schedule;
  stopTraining = false;
  hasValidation = false;
  history: EpochLogs[] = [];
  globalStep = 0;
  private startEpoch = 0;
  /** The heads of a multi-task model and how each trains; null for a model with one output. */
  private readonly tasks: readonly ResolvedTask[] | null;
  private paramNames = new Map<Tensor, string>();
  private featureMemo = new Map<string, { feats: Float32Array[]; shape: number[] }>();
  private toldTokenTypes = false;
  private readonly divergenceFactor: number;
  /** Epochs done at the last checkpoint written or resumed from (all its weights finite). */
  private lastCheckpoint: number | null = null;
  private resumedFrom: string | null = null;

  constructor(readonly model: TrainableModel, opts: TrainerOptions = {}) {
    this.opts = { epochs: 10, batchSize: 32, task: 'classification', accumulate: 1, seed: 0, ...opts };
    if (!Number.isInteger(this.opts.epochs) || this.opts.epochs < 1) throw new RangeError(`epochs must be a positive integer, got ${this.opts.epochs}`);
    if (!Number.isInteger(this.opts.accumulate) || this.opts.accumulate < 1) throw new RangeError(`accumulate must be a positive integer, got ${this.opts.accumulate}`);
    this.tasks = resolveTasks(model, opts);
    this.divergenceFactor = checkDivergenceFactor(opts.divergenceFactor ?? DEFAULT_DIVERGENCE_FACTOR);
    const spec = opts.optimizer ?? adamw({ lr: 1e-3 });
    this.optimizer = spec.create(this.paramGroups(spec));
    this.schedule = opts.schedule ?? constant();
  }

  log(line: string): void {
    (this.opts.logger ?? console.log)(line);
  }

  /**
   * One group per parameter tensor, so unfreezing a block with its own lr, discriminative
   * rates and layer-wise decay are all a matter of that group's lr. Weight decay is off for
   * biases and norm weights (tensors of rank <= 1) unless asked for.
   */
  private paramGroups(spec: OptimizerSpec): ParamGroup[] {
    const base = spec.options.lr ?? (spec.kind === 'sgd' ? 0.01 : 1e-3);
    const wd = spec.options.weightDecay ?? (spec.kind === 'adamw' ? 1e-2 : 0);
    const head = this.model.classifierPath ? nameMatcher(this.model.classifierPath) : () => false;
    const blocks = this.model.blockOrder?.() ?? [];
    const groups: ParamGroup[] = [];
    for (const [name, p] of this.model.namedParameters()) {
      this.paramNames.set(p, name);
      let lr = base;
      if (this.opts.layerDecay !== undefined && blocks.length > 0) {
        const bi = blocks.findIndex((b) => name === b || name.startsWith(`${b}.`));
        const depth = bi < 0 ? 0 : blocks.length - 1 - bi;
        lr = base * this.opts.layerDecay ** depth;
      }
      if (this.opts.headLr !== undefined && head(name)) lr = this.opts.headLr;
      const decay = this.opts.decayNormAndBias || p.rank > 1 ? wd : 0;
      groups.push({ params: [p], lr, weightDecay: decay, name });
    }
    return groups;
  }

  /** Sets the learning rate (before the schedule) of the parameters matching `pattern`. */
  setLr(pattern: string, lr: number): void {
    const match = nameMatcher(pattern);
    for (const g of this.optimizer.groups) {
      if (match(g.name)) {
        g.initialLr = lr;
        g.lr = lr;
      }
    }
  }

  private get totalSteps(): number {
    return this.opts.epochs * this.stepsPerEpoch;
  }
  private stepsPerEpoch = 1;

  /** The output and targets of a model with one output, or an error saying what does not fit. */
  private single(out: ModelOutput, batch: Batch): { out: Tensor; y: Tensor } {
    if (!(out instanceof Tensor)) {
      throw new TrainingError(`${this.model.constructor.name} returns one output per head (${Object.keys(out).join(', ')}); name them in the trainer's tasks option`);
    }
    if (!batch.y) {
      throw new TrainingError(`the samples carry one target per head (${Object.keys(batch.targets ?? {}).join(', ')}), but ${this.model.constructor.name} has one output; use a multi-head model (MultiTaskModel) with the trainer's tasks option`);
    }
    return { out, y: batch.y };
  }

  private lossFn(output: ModelOutput, batch: Batch): Tensor {
    const { out, y } = this.single(output, batch);
    switch (this.opts.task) {
      case 'classification':
        return A.crossEntropy(out, y, { labelSmoothing: this.opts.labelSmoothing });
      case 'multilabel':
        return A.binaryCrossEntropyWithLogits(out, y);
      case 'regression': {
        const pred = out.rank === 2 && out.shape[1] === 1 && y.rank === 1 ? out.reshape([out.shape[0]!]) : out;
        return this.opts.regressionLoss === 'l1' ? A.l1Loss(pred, y) : A.mseLoss(pred, y);
      }
    }
  }

  /**
   * Each head's output and targets (multi-task), checked against the tasks. A head with no
   * target in this batch has `target` null.
   */
  private perHead(output: ModelOutput, batch: Batch): { task: ResolvedTask; out: Tensor; target: HeadTargetBatch | null }[] {
    const tasks = this.tasks!;
    const heads = tasks.map((t) => t.name);
    if (output instanceof Tensor) throw new TrainingError(`the tasks name heads (${heads.join(', ')}), but ${this.model.constructor.name} returns one tensor`);
    for (const k of Object.keys(output)) {
      if (!heads.includes(k)) throw new TrainingError(`${this.model.constructor.name} returns an output "${k}" that the tasks do not name (tasks: ${heads.join(', ')})`);
    }
    if (!batch.targets) {
      throw new TrainingError(`the model has heads (${heads.join(', ')}), but the samples carry a single target; give each sample one target per head, e.g. label: { ${heads[0]}: ... }`);
    }
    for (const k of Object.keys(batch.targets)) {
      if (!heads.includes(k)) throw new TrainingError(`the samples have targets for "${k}", which is not a head of the model (heads: ${heads.join(', ')})`);
    }
    return tasks.map((task) => {
      const out = output[task.name];
      if (!out) throw new TrainingError(`${this.model.constructor.name} returned no output for the head "${task.name}" (outputs: ${Object.keys(output).join(', ')})`);
      const target = batch.targets![task.name];
      return { task, out, target: target && target.count > 0 ? target : null };
    });
  }

  /** Mean loss of one head over the rows that have a target for it. */
  private headLoss(t: ResolvedTask, out: Tensor, target: HeadTargetBatch): Tensor {
    if (t.task === 'classification') {
      if (target.y.dtype !== 'int32') throw new TrainingError(`head "${t.name}" is a classification head, but its targets are vectors; give class indices (numbers)`);
      return A.crossEntropy(out, target.y, { labelSmoothing: t.labelSmoothing });
    }
    if (target.y.dtype !== 'float32') {
      throw new TrainingError(`head "${t.name}" is a ${t.task} head, but its targets are class indices (numbers); give them as Float32Array (e.g. Float32Array.of(0.5))`);
    }
    if (out.rank !== 2 || out.shape[1] !== target.y.shape[1]) {
      throw new TrainingError(`head "${t.name}" outputs [${out.shape.join(', ')}], but its targets are [${target.y.shape.join(', ')}]`);
    }
    const reduction = target.present ? 'none' : 'mean';
    const el = t.task === 'multilabel'
      ? A.binaryCrossEntropyWithLogits(out, target.y, reduction)
      : t.loss === 'l1' ? A.l1Loss(out, target.y, reduction) : A.mseLoss(out, target.y, reduction);
    if (!target.present) return el;
    // The mean over the rows that have a target: absent rows hold 0 and are masked out.
    return A.mul(A.sum(A.mul(el, target.present)), 1 / (target.count * out.shape[1]!));
  }

  /** The weighted sum of the heads' losses (null when no head has a target in the batch), and
   * each head's loss (0 without targets) as [1]. */
  private multiLoss(heads: { task: ResolvedTask; out: Tensor; target: HeadTargetBatch | null }[]): { total: Tensor | null; losses: Tensor[] } {
    let total: Tensor | null = null;
    const losses: Tensor[] = [];
    for (const { task, out, target } of heads) {
      if (!target) {
        losses.push(A.zeros([1]));
        continue;
      }
      const l = this.headLoss(task, out, target);
      const weighted = A.mul(l, task.weight);
      total = total ? A.add(total, weighted) : weighted;
      losses.push(A.noGrad(() => l.reshape([1])));
    }
    return { total, losses };
  }

  /** The model's output for a batch (from cached features: the head's). */
  private run(batch: Batch, cached: boolean): ModelOutput {
    return cached ? this.model.forwardHead!(batch.x) : this.model.forward(batch.x, batch.mask ?? undefined, this.tokenTypes(batch));
  }

  /** A training step's loss of a model with one output: with an auxiliary classifier, the main
   * loss plus `auxLossWeight` times the auxiliary one. Its output, for the step's metrics. */
  private trainLoss(batch: Batch, cached: boolean): { out: ModelOutput; loss: Tensor } {
    const m = this.model;
    if (cached || !m.forwardWithAux) {
      const out = this.run(batch, cached);
      return { out, loss: this.lossFn(out, batch) };
    }
    const weight = m.auxLossWeight;
    if (weight === undefined || !(weight >= 0)) throw new TrainingError(`${m.constructor.name} has forwardWithAux, so it must declare auxLossWeight >= 0, got ${weight}`);
    const { logits, auxLogits } = m.forwardWithAux(batch.x);
    const main = this.lossFn(logits, batch);
    return { out: logits, loss: auxLogits ? A.add(main, A.mul(this.lossFn(auxLogits, batch), weight)) : main };
  }

  /** The batch's token type ids when the model takes them; otherwise none, and says so once. */
  private tokenTypes(batch: Batch): Tensor | undefined {
    if (!batch.tokenTypeIds) return undefined;
    if (this.model.acceptsTokenTypeIds ?? this.model.forward.length >= 3) return batch.tokenTypeIds;
    if (!this.toldTokenTypes) {
      this.toldTokenTypes = true;
      this.log(`the samples carry token type ids, but ${this.model.constructor.name}.forward takes none (its third argument); they are not used`);
    }
    return undefined;
  }

  /** Whether only the head trains: the features can then be computed once. */
  private backboneFrozen(): boolean {
    if (!this.model.classifierPath || !this.model.forwardFeatures || !this.model.forwardHead) return false;
    const head = nameMatcher(this.model.classifierPath);
    return this.model.namedParameters({ trainable: true }).every(([n]) => head(n));
  }

  async fit(train: Dataset, val?: Dataset | null): Promise<EpochLogs[]> {
    this.hasValidation = !!val && val.length > 0;
    if (train.length === 0) throw new TrainingError('the training set is empty');
    const before = await firstNonFiniteOnDevice(this.model.stateDict());
    if (before) {
      throw new TrainingError(this.resumedFrom
        ? `the checkpoint in ${this.resumedFrom} is not finite: ${describeNonFinite(before)}; the run that wrote it had diverged, so start afresh with a lower learning rate`
        : `the model's weights are not finite before training: ${describeNonFinite(before)}; load weights without NaN or Inf (the file is damaged or was saved by a run that diverged)`);
    }
    const loader = new DataLoader(train, { batchSize: this.opts.batchSize, shuffle: true, seed: this.opts.seed, augment: train.augments });
    this.stepsPerEpoch = Math.ceil(loader.length / this.opts.accumulate);
    const schedule = this.schedule.withTotal?.(this.totalSteps) ?? this.schedule;
    for (const cb of this.opts.callbacks ?? []) await cb.onTrainBegin?.(this);
    for (let epoch = this.startEpoch; epoch < this.opts.epochs && !this.stopTraining; epoch++) {
      for (const cb of this.opts.callbacks ?? []) await cb.onEpochBegin?.(this, epoch);
      const t0 = performance.now();
      const cached = !!this.opts.cacheFeatures && this.backboneFrozen() && !train.augments;
      this.model.train();
      let lossSum = 0;
      let correct = 0;
      let seen = 0;
      const headSums = (this.tasks ?? []).map(() => ({ loss: 0, count: 0, hits: 0 }));
      const batches = cached ? await this.featureBatches(train, loader, epoch) : loader.epoch(epoch);
      this.opts.onEvent?.({ type: 'epochBegin', epoch, epochs: this.opts.epochs, steps: loader.length, cached });
      let micro = 0;
      let step = 0;
      for await (const batch of batches) {
        const { loss, hits, heads } = await this.trainStep(batch, cached, schedule, micro);
        micro = (micro + 1) % this.opts.accumulate;
        lossSum += loss * batch.size;
        correct += hits ?? 0;
        seen += batch.size;
        heads?.forEach((h, i) => {
          const sum = headSums[i]!;
          sum.loss += h.loss * h.count;
          sum.count += h.count;
          sum.hits += h.hits;
        });
        batch.dispose();
        step++;
        const problem = stepLossProblem(loss, this.history, this.divergenceFactor);
        if (problem) throw this.diverged(problem, epoch, `step ${step} of ${loader.length}`);
        const secs = (performance.now() - t0) / 1000;
        this.opts.onEvent?.({
          type: 'step', epoch, step, steps: loader.length, loss, accuracy: hits === null ? null : hits / batch.size,
          lr: this.optimizer.groups[0]?.lr ?? 0, samplesPerSec: seen / Math.max(secs, 1e-9),
        });
      }
      if (micro !== 0) this.optimizerStep(schedule);
      const seconds = (performance.now() - t0) / 1000;
      const logs: EpochLogs = {
        epoch, trainLoss: lossSum / Math.max(seen, 1), lr: this.optimizer.groups[0]?.lr ?? 0, seconds,
        samplesPerSec: seen / Math.max(seconds, 1e-9), cachedFeatures: cached,
        ...(this.opts.task === 'classification' && !this.tasks ? { trainAccuracy: correct / Math.max(seen, 1) } : {}),
      };
      if (this.tasks) {
        logs.heads = {};
        this.tasks.forEach((t, i) => {
          const { loss, count, hits } = headSums[i]!;
          logs.heads![t.name] = { trainLoss: count ? loss / count : NaN, ...(t.task === 'classification' ? { trainAccuracy: count ? hits / count : NaN } : {}) };
        });
        logs.trainLoss = weightedTotal(this.tasks, this.tasks.map((t) => logs.heads![t.name]!.trainLoss));
      }
      const r = val && val.length > 0 ? await this.evaluate(val, { cached }) : null;
      if (r) {
        Object.assign(logs, valLogs(r));
        for (const [name, h] of Object.entries(r.heads ?? {})) Object.assign(logs.heads![name]!, valLogs(h));
      }
      const problem = epochProblem(logs.trainLoss, r, this.history, this.divergenceFactor);
      if (problem) throw this.diverged(problem, epoch, null);
      // With a checkpoint to write, the weights are read back here anyway (before the callbacks,
      // so the checkpoint is the state that was checked); without one, the check stays on the GPU.
      const store = this.opts.checkpointStore;
      const weights = store ? await this.model.stateDictData() : null;
      const bad = weights ? firstNonFinite(hostArrays(weights)) : await firstNonFiniteOnDevice(this.model.stateDict());
      if (bad) throw this.diverged(`after its last step ${describeNonFinite(bad)}`, epoch, null);
      if (schedule instanceof ReduceOnPlateau) schedule.observe(logs.valLoss ?? logs.trainLoss);
      this.history.push(logs);
      for (const cb of this.opts.callbacks ?? []) await cb.onEpochEnd?.(this, epoch, logs);
      this.opts.onEvent?.({ type: 'epochEnd', epoch, logs });
      if (store && weights) await this.writeCheckpoint(store, epoch + 1, weights);
    }
    for (const cb of this.opts.callbacks ?? []) await cb.onTrainEnd?.(this);
    return this.history;
  }

  private async trainStep(
    batch: Batch, cached: boolean, schedule: Schedule, micro: number,
  ): Promise<{ loss: number; hits: number | null; heads: { loss: number; count: number; hits: number }[] | null }> {
    const stats = A.tidy(() => {
      const single = this.tasks ? null : this.trainLoss(batch, cached);
      const out = single ? single.out : this.run(batch, cached);
      const heads = this.tasks ? this.perHead(out, batch) : null;
      const { total: loss, losses } = heads ? this.multiLoss(heads) : { total: single?.loss ?? null, losses: [] };
      if (!loss) throw new TrainingError(`samples ${batch.indices.join(', ')} have no target for any head (${this.tasks!.map((t) => t.name).join(', ')})`);
      const scaled = this.opts.accumulate > 1 ? A.mul(loss, 1 / this.opts.accumulate) : loss;
      A.backward(scaled);
      return A.noGrad(() => {
        const parts = [loss.reshape([1]), ...losses];
        if (heads) {
          for (const h of heads) parts.push(h.task.task === 'classification' && h.target ? A.sum(A.eq(A.argmax(h.out, 1), h.target.y)).reshape([1]) : A.zeros([1]));
        } else if (this.opts.task === 'classification') {
          const { out: logits, y } = this.single(out, batch);
          parts.push(A.sum(A.eq(A.argmax(logits, 1), y)).reshape([1]));
        }
        return A.cat(parts);
      });
    });
    if (micro === this.opts.accumulate - 1) this.optimizerStep(schedule);
    const values = await stats.data();
    stats.dispose();
    const loss = values[0]!;
    if (this.tasks) {
      const n = this.tasks.length;
      const heads = this.tasks.map((t, i) => ({ loss: values[1 + i]!, count: batch.targets?.[t.name]?.count ?? 0, hits: values[1 + n + i]! }));
      return { loss, hits: null, heads };
    }
    return { loss, hits: this.opts.task === 'classification' ? values[1]! : null, heads: null };
  }

  /** The stop of a diverged run: where, what, which checkpoint is kept, and what to change. */
  private diverged(problem: string, epoch: number, step: string | null): TrainingError {
    const store = this.opts.checkpointStore;
    const kept = !store ? ''
      : this.lastCheckpoint === null ? `; no checkpoint was written to ${store.description} before it`
      : `; the last finite checkpoint (after epoch ${this.lastCheckpoint}) is kept in ${store.description}`;
    const lr = this.optimizer.groups[0]?.lr ?? 0;
    const at = step === null ? `at the end of epoch ${epoch + 1}` : `in epoch ${epoch + 1}, ${step}`;
    return new TrainingError(`training diverged ${at}: ${problem}${kept}. Lower the learning rate (it was ${lr.toPrecision(3)}), clip the gradients or check the data for NaN.`);
  }

  private optimizerStep(schedule: Schedule): void {
    for (const g of this.optimizer.groups) g.lr = schedule.lr(this.globalStep, g.initialLr);
    if (this.opts.gradClip !== undefined) {
      const params = this.optimizer.groups.flatMap((g) => g.params);
      this.optimizer.gradScale?.dispose();
      this.optimizer.gradScale = null;
      this.optimizer.gradScale = clipScale(params, this.opts.gradClip);
    }
    this.optimizer.step();
    this.optimizer.zeroGrad();
    this.globalStep++;
  }

  /** Batches of cached backbone features (computed once per data set and weights). */
  private async featureBatches(ds: Dataset, loader: DataLoader, epoch: number): Promise<AsyncIterable<Batch>> {
    const { feats, shape } = await this.features(ds);
    const labels = ds.labels();
    const order = loader.order(epoch);
    const bs = this.opts.batchSize;
    return (async function* () {
      for (let s = 0; s < order.length; s += bs) {
        const idx = order.slice(s, s + bs);
        yield collate(idx.map((i) => ({ input: feats[i]!, label: labels[i]! })), idx, shape);
      }
    })();
  }

  private async features(ds: Dataset): Promise<{ feats: Float32Array[]; shape: number[] }> {
    const key = `${ds.fingerprint}|${await this.backboneHash()}`;
    const memo = this.featureMemo.get(key);
    if (memo) return memo;
    const file = `features/${fnv(key)}.safetensors`;
    const stored = await this.opts.featureStore?.read(file);
    if (stored) {
      const f = parseSafetensors(stored, file);
      if (f.metadata.key === key) {
        const all = f.get('features');
        const per = all.shape.slice(1);
        const n = per.reduce((a, d) => a * d, 1);
        const feats = Array.from({ length: all.shape[0]! }, (_, i) => (all.data as Float32Array).slice(i * n, (i + 1) * n));
        const r = { feats, shape: per };
        this.featureMemo.set(key, r);
        this.log(`loaded ${feats.length} cached feature vectors from ${this.opts.featureStore!.description}`);
        return r;
      }
    }
    const wasTraining = this.model.training;
    this.model.eval();
    const feats: Float32Array[] = [];
    let shape: number[] = [];
    const loader = new DataLoader(ds, { batchSize: Math.max(this.opts.batchSize, 64), shuffle: false });
    for await (const batch of loader.epoch(0)) {
      const f = A.tidy(() => A.noGrad(() => this.model.forwardFeatures!(batch.x, batch.mask ?? undefined, this.tokenTypes(batch))));
      const data = (await f.data()) as Float32Array;
      shape = f.shape.slice(1);
      const n = data.length / batch.size;
      for (let i = 0; i < batch.size; i++) feats[batch.indices[i]!] = data.slice(i * n, (i + 1) * n);
      f.dispose();
      batch.dispose();
    }
    this.model.train(wasTraining);
    const r = { feats, shape };
    this.featureMemo.set(key, r);
    if (this.opts.featureStore) {
      const n = shape.reduce((a, d) => a * d, 1);
      const all = new Float32Array(feats.length * n);
      feats.forEach((f, i) => all.set(f, i * n));
      await this.opts.featureStore.write(file, serializeSafetensors({ features: { dtype: 'F32', shape: [feats.length, ...shape], data: all } }, { key }));
    }
    return r;
  }

  /** A hash of every backbone weight and buffer (the cache key must change when they do). */
  private async backboneHash(): Promise<string> {
    const head = this.model.classifierPath ? nameMatcher(this.model.classifierPath) : () => false;
    let h = 0x811c9dc5;
    for (const [name, t] of this.model.stateDict()) {
      if (head(name)) continue;
      const d = new Uint32Array((await t.data()).buffer);
      for (let i = 0; i < d.length; i++) h = Math.imul(h ^ d[i]!, 0x01000193) >>> 0;
      for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
    }
    return h.toString(16);
  }

  async evaluate(ds: Dataset, opts: { cached?: boolean; topK?: number } = {}): Promise<EvalResult> {
    const wasTraining = this.model.training;
    this.model.eval();
    const cached = opts.cached ?? (!!this.opts.cacheFeatures && this.backboneFrozen());
    const loader = new DataLoader(ds, { batchSize: Math.max(this.opts.batchSize, 64), shuffle: false });
    const batches = cached ? await this.featureBatches(ds, loader, 0) : loader.epoch(0);
    try {
      return this.tasks ? await this.evaluateHeads(this.tasks, batches, cached, opts.topK) : await this.evaluateSingle(batches, cached, opts.topK);
    } finally {
      this.model.train(wasTraining);
    }
  }

  private async evaluateSingle(batches: AsyncIterable<Batch>, cached: boolean, topK?: number): Promise<EvalResult> {
    let lossSum = 0;
    let n = 0;
    const outs: Float32Array[] = [];
    const targets: number[] = [];
    let width = 0;
    for await (const batch of batches) {
      const [out, loss] = A.tidy(() => A.noGrad(() => {
        const o = this.run(batch, cached);
        return [this.single(o, batch).out, this.lossFn(o, batch)] as const;
      }));
      lossSum += (await loss.item()) * batch.size;
      const data = (await out.data()) as Float32Array;
      width = data.length / batch.size;
      outs.push(data);
      targets.push(...(await batch.y!.data()));
      n += batch.size;
      out.dispose();
      loss.dispose();
      batch.dispose();
    }
    const all = concatRows(outs);
    const result: EvalResult = { loss: n ? lossSum / n : NaN, total: n };
    if (this.opts.task === 'classification' && n > 0) Object.assign(result, classificationResult(all, targets, width, topK));
    if (this.opts.task === 'regression') result.mae = meanAbsoluteError(all, targets);
    return result;
  }

  /** Per head: the mean loss and metrics over the samples that have a target for it. */
  private async evaluateHeads(tasks: readonly ResolvedTask[], batches: AsyncIterable<Batch>, cached: boolean, topK?: number): Promise<EvalResult> {
    const acc = tasks.map(() => ({ lossSum: 0, count: 0, outs: [] as Float32Array[], targets: [] as number[], width: 0 }));
    let n = 0;
    for await (const batch of batches) {
      const heads = A.tidy(() => A.noGrad(() => {
        const per = this.perHead(this.run(batch, cached), batch);
        const { losses } = this.multiLoss(per);
        return per.map((h, i) => ({ ...h, loss: losses[i]! }));
      }));
      for (const [i, h] of heads.entries()) {
        const a = acc[i]!;
        const out = (await h.out.data()) as Float32Array;
        a.width = out.length / batch.size;
        if (h.target) {
          const y = await h.target.y.data();
          const present = h.target.present ? await h.target.present.data() : null;
          const k = y.length / batch.size;
          const rows = [...Array(batch.size).keys()].filter((r) => (h.task.task === 'classification' ? y[r] !== IGNORE_INDEX : !present || present[r] === 1));
          a.outs.push(pickRows(out, a.width, rows));
          for (const r of rows) for (let j = 0; j < k; j++) a.targets.push(y[r * k + j]!);
          a.lossSum += (await h.loss.item()) * h.target.count;
          a.count += h.target.count;
        }
        h.out.dispose();
        h.loss.dispose();
      }
      n += batch.size;
      batch.dispose();
    }
    const results: Record<string, HeadEvalResult> = {};
    tasks.forEach((t, i) => {
      const a = acc[i]!;
      const r: HeadEvalResult = { loss: a.count ? a.lossSum / a.count : NaN, total: a.count };
      const all = concatRows(a.outs);
      if (t.task === 'classification' && a.count > 0) Object.assign(r, classificationResult(all, a.targets, a.width, topK));
      if (t.task === 'regression' && a.count > 0) r.mae = meanAbsoluteError(all, a.targets);
      results[t.name] = r;
    });
    return { loss: weightedTotal(tasks, tasks.map((t) => results[t.name]!.loss)), total: n, heads: results };
  }

  /** Logits (classification) or outputs for every sample, row-major [N, K]. */
  async predict(ds: Dataset): Promise<Prediction> {
    if (this.tasks) throw new TrainingError(`${this.model.constructor.name} has several heads (${this.tasks.map((t) => t.name).join(', ')}); use predictHeads`);
    return (await this.predictAll(ds)).get(SINGLE) ?? { outputs: new Float32Array(0), width: 0 };
  }

  /** Every head's outputs for every sample (multi-task models). */
  async predictHeads(ds: Dataset): Promise<Record<string, Prediction>> {
    if (!this.tasks) throw new TrainingError(`${this.model.constructor.name} has one output; use predict`);
    return Object.fromEntries(await this.predictAll(ds));
  }

  private async predictAll(ds: Dataset): Promise<Map<string, Prediction>> {
    const wasTraining = this.model.training;
    this.model.eval();
    const loader = new DataLoader(ds, { batchSize: Math.max(this.opts.batchSize, 64), shuffle: false });
    const parts = new Map<string, Float32Array[]>();
    let rows = 0;
    try {
      for await (const batch of loader.epoch(0)) {
        rows += batch.size;
        const out = A.tidy(() => A.noGrad(() => this.run(batch, false)));
        for (const [name, t] of out instanceof Tensor ? [[SINGLE, out] as const] : Object.entries(out)) {
          if (!parts.has(name)) parts.set(name, []);
          parts.get(name)!.push((await t.data()) as Float32Array);
          t.dispose();
        }
        batch.dispose();
      }
    } finally {
      this.model.train(wasTraining);
    }
    return new Map([...parts].map(([name, p]) => {
      const outputs = concatRows(p);
      return [name, { outputs, width: outputs.length / rows }];
    }));
  }

  // Checkpoints ----------------------------------------------------------------------------

  /** Writes a checkpoint of the current state; refuses when a weight is not finite. */
  async saveCheckpoint(store: BlobStore, nextEpoch: number): Promise<void> {
    const weights = await this.model.stateDictData();
    const bad = firstNonFinite(hostArrays(weights));
    if (bad) throw new TrainingError(`not writing a checkpoint to ${store.description}: ${describeNonFinite(bad)}`);
    await this.writeCheckpoint(store, nextEpoch, weights);
  }

  private async writeCheckpoint(store: BlobStore, nextEpoch: number, weights: Map<string, HostTensor>): Promise<void> {
    // Each blob names the checkpoint it belongs to, so resume can tell a set torn by a crash
    // between the writes from a whole one.
    const tag = `${nextEpoch}:${this.globalStep}`;
    const { tensors: optArrays, ...optimizer } = await this.optimizer.stateDict();
    const optTensors = Object.fromEntries(Object.entries(optArrays).map(([k, v]) => [k, { dtype: 'F32' as const, shape: [v.length], data: v }]));
    const callbacks: CheckpointState['callbacks'] = {};
    const cbTensors = new Map<string, { dtype: 'F32' | 'I32'; shape: number[]; data: Float32Array | Int32Array }>();
    for (const c of this.statefulCallbacks()) {
      const { json, tensors } = c.stateDict!();
      const keys = [...(tensors?.keys() ?? [])];
      callbacks[c.name] = { json, tensors: keys };
      for (const [k, v] of tensors ?? []) {
        const data = v instanceof Tensor ? await v.data() : v.data;
        cbTensors.set(`${c.name}/${k}`, { dtype: v.dtype === 'int32' ? 'I32' : 'F32', shape: [...v.shape], data });
      }
    }
    const state: CheckpointState = {
      version: CHECKPOINT_VERSION,
      tag,
      nextEpoch,
      globalStep: this.globalStep,
      rng: A.getRngState(),
      optimizer,
      schedule: this.schedule instanceof ReduceOnPlateau ? this.schedule.state() : null,
      callbacks,
      trainable: this.model.namedParameters().filter(([, p]) => p.requiresGrad).map(([n]) => n),
      history: this.history,
    };
    await writeCheckpoint(store, state, {
      model: serializeSafetensors(weights, { format: 'pt', checkpoint: tag }),
      optimizer: serializeSafetensors(optTensors, { checkpoint: tag }),
      callbacks: cbTensors.size > 0 ? serializeSafetensors(cbTensors, { checkpoint: tag }) : null,
    });
    this.lastCheckpoint = nextEpoch;
  }

  /** Restores weights, optimizer, schedule, RNG, callbacks and history; `fit` then continues
   * from the next epoch. Returns false when the store has no checkpoint. */
  async resume(store: BlobStore): Promise<boolean> {
    const ckpt = await readCheckpoint(store);
    if (!ckpt) return false;
    const { state } = ckpt;
    const stateful = this.statefulCallbacks();
    const saved = Object.keys(state.callbacks);
    const given = stateful.map((c) => c.name);
    const extra = saved.filter((n) => !given.includes(n));
    if (extra.length > 0) {
      throw new TrainingError(`the checkpoint in ${store.description} holds the state of callback ${extra.map((n) => `"${n}"`).join(', ')}, which the callbacks given (${given.join(', ') || 'none with state'}) lack; resume with the callbacks of the interrupted run`);
    }
    const missing = given.filter((n) => !saved.includes(n));
    if (missing.length > 0) {
      throw new TrainingError(`callback ${missing.map((n) => `"${n}"`).join(', ')} keeps state, but the checkpoint in ${store.description} has none for it (the interrupted run did not have it); resume with the callbacks of that run`);
    }
    const cbFile = ckpt.callbacks;
    const trainable = new Set<string>(state.trainable);
    for (const [n, p] of this.model.namedParameters()) p.requiresGrad = trainable.has(n);
    this.model.loadStateDict(ckpt.model.all(), { strict: true });
    const tensors = Object.fromEntries(ckpt.optimizer.keys().map((k) => [k, ckpt.optimizer.get(k).data as Float32Array]));
    this.optimizer.loadStateDict({ ...state.optimizer, tensors });
    if (state.schedule && this.schedule instanceof ReduceOnPlateau) this.schedule.setState(state.schedule);
    for (const c of stateful) {
      const { json, tensors: keys } = state.callbacks[c.name]!;
      const cbTensors = keys.length > 0 ? new Map(keys.map((k) => [k, cbFile!.get(`${c.name}/${k}`)])) : undefined;
      c.loadStateDict!(cbTensors ? { json, tensors: cbTensors } : { json }, this);
    }
    A.setRngState(state.rng);
    this.globalStep = state.globalStep;
    this.history = state.history;
    this.startEpoch = state.nextEpoch;
    this.lastCheckpoint = state.nextEpoch;
    this.resumedFrom = store.description;
    // Written again from staged/ parts, so the next checkpoint's staging cannot mix with them.
    if (!ckpt.settled) await writeCheckpoint(store, state, ckpt.bytes);
    return true;
  }

  /** The callbacks that keep state, checked to have distinct names (their key in checkpoints). */
  private statefulCallbacks(): Callback[] {
    const stateful = (this.opts.callbacks ?? []).filter((c) => c.stateDict && c.loadStateDict);
    const names = stateful.map((c) => c.name);
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup !== undefined) throw new TrainingError(`two callbacks that keep state are named "${dup}"; checkpoints file callback state by name, so give them distinct names (earlyStopping({ name }))`);
    return stateful;
  }
}

const hostArrays = (w: Map<string, HostTensor>): [string, Float32Array | Int32Array][] => [...w].map(([k, v]) => [k, v.data]);

/** The factor min(1, maxNorm / ||g||) that the optimizer kernels apply to every gradient. */
function clipScale(params: Tensor[], maxNorm: number): Tensor {
  return A.noGrad(() => A.tidy(() => {
    const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
    if (grads.length === 0) return keep(A.ones([1]));
    const sq = A.cat(grads.map((g) => A.sum(A.square(g)).reshape([1])));
    const total = A.sqrt(A.sum(sq)).reshape([1]);
    return keep(clipFactor(total, maxNorm));
  }));
}

/** The key predictAll files a single-output model's outputs under. */
const SINGLE = '';

/**
 * The heads of a multi-task run: those of the model (MultiTaskModel.headTasks) or of the
 * `tasks` option, with the option's settings over the model's defaults. Null for a model
 * with one output.
 */
function resolveTasks(model: TrainableModel, opts: TrainerOptions): ResolvedTask[] | null {
  const own = model.headTasks;
  const given = opts.tasks;
  if (!own && !given) return null;
  const names = own ? Object.keys(own) : Object.keys(given!);
  if (opts.task !== undefined) {
    throw new RangeError(`give task (a model with one output) or tasks (one entry per head), not both; got task ${JSON.stringify(opts.task)} with heads ${names.join(', ')}`);
  }
  if (names.length === 0) throw new RangeError('tasks must name at least one head');
  for (const n of Object.keys(given ?? {})) {
    if (own && !(n in own)) throw new RangeError(`tasks names "${n}", which is not a head of ${model.constructor.name} (heads: ${names.join(', ')})`);
  }
  return names.map((name) => {
    const o = given?.[name] ?? {};
    const task = o.task ?? own?.[name] ?? 'classification';
    if (!TASKS.includes(task)) throw new RangeError(`tasks.${name}.task must be one of ${TASKS.join(', ')}, got ${JSON.stringify(task)}`);
    if (own && task !== own[name]) throw new RangeError(`tasks.${name}.task is "${task}", but the model's head "${name}" is a ${own[name]} head`);
    const weight = o.weight ?? 1;
    if (!(Number.isFinite(weight) && weight >= 0)) throw new RangeError(`tasks.${name}.weight must be a finite number >= 0, got ${weight}`);
    const loss = o.loss ?? opts.regressionLoss ?? 'mse';
    if (loss !== 'mse' && loss !== 'l1') throw new RangeError(`tasks.${name}.loss must be 'mse' or 'l1', got ${JSON.stringify(loss)}`);
    if (o.loss !== undefined && task !== 'regression') throw new RangeError(`tasks.${name}.loss is for regression heads; "${name}" is a ${task} head`);
    return { name, task, weight, loss, labelSmoothing: o.labelSmoothing ?? opts.labelSmoothing };
  });
}

/** Σ weight × loss over the heads that had targets (a head without any has NaN). */
function weightedTotal(tasks: readonly ResolvedTask[], losses: number[]): number {
  let total = 0;
  let any = false;
  tasks.forEach((t, i) => {
    const l = losses[i]!;
    if (Number.isNaN(l)) return;
    total += t.weight * l;
    any = true;
  });
  return any ? total : NaN;
}

/** The validation entries of the epoch logs from an evaluation. */
function valLogs(r: HeadEvalResult): Pick<HeadLogs, 'valLoss' | 'valAccuracy' | 'valMacroF1' | 'valMae'> {
  return {
    valLoss: r.loss,
    ...(r.accuracy !== undefined ? { valAccuracy: r.accuracy } : {}),
    ...(r.report ? { valMacroF1: r.report.macroF1 } : {}),
    ...(r.mae !== undefined ? { valMae: r.mae } : {}),
  };
}

function classificationResult(logits: Float32Array, targets: number[], width: number, topK?: number): Pick<HeadEvalResult, 'accuracy' | 'correct' | 'report' | 'topK'> {
  const report = classificationReport(argmaxRows(logits, width), targets, width);
  return { accuracy: report.accuracy, correct: report.correct, report, ...(topK ? { topK: topKAccuracy(logits, targets, width, topK) } : {}) };
}

function pickRows(data: Float32Array, width: number, rows: number[]): Float32Array {
  const out = new Float32Array(rows.length * width);
  rows.forEach((r, i) => out.set(data.subarray(r * width, (r + 1) * width), i * width));
  return out;
}

function concatRows(parts: Float32Array[]): Float32Array {
  const all = new Float32Array(parts.reduce((a, o) => a + o.length, 0));
  let off = 0;
  for (const o of parts) {
    all.set(o, off);
    off += o.length;
  }
  return all;
}

function fnv(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}
