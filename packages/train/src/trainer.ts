/**
 * The training loop: feature extraction (frozen backbone, cached features), fine-tuning of all
 * or chosen blocks, gradual unfreezing, per-parameter learning rates, schedules, clipping,
 * accumulation, early stopping, checkpoints that resume bit for bit (checkpoint.ts), and a
 * clear stop when the run diverges (divergence.ts). Each step runs inside a scope, so GPU
 * memory stays flat across steps. What is learnt is an Objective (objectives/): the loop knows
 * no task; classification, multi-label, regression and multi-task are the default objectives
 * picked from the `task` and `tasks` options.
 */
import * as A from '@tl/autograd';
import { keep, Tensor } from '@tl/autograd';
import { nameMatcher, serializeSafetensors, type HostTensor } from '@tl/models';
import type { Callback } from './callbacks.js';
import type { ModelOutput, TrainableModel, Task } from './model.js';
import { CHECKPOINT_VERSION, readCheckpoint, writeCheckpoint, type CheckpointState } from './checkpoint.js';
import type { Dataset } from './data/dataset.js';
import { checkDivergenceFactor, DEFAULT_DIVERGENCE_FACTOR, describeNonFinite, epochProblem, firstNonFinite, firstNonFiniteOnDevice, stepLossProblem } from './divergence.js';
import { TrainingError } from './errors.js';
import { DataLoader, type Batch } from './data/loader.js';
import { MultiTaskObjective, type TaskOptions } from './objectives/multitask.js';
import type { EvalMetrics, NamedBatches, Objective, ObjectiveContext } from './objectives/objective.js';
import { SupervisedObjective } from './objectives/supervised.js';
import { adamw, clipFactor, type Optimizer, type OptimizerSpec } from './optim.js';
import { GradScaler, type GradScalerOptions } from './grad-scaler.js';
import { FeatureCache } from './feature-cache.js';
import { paramGroups } from './param-groups.js';
import { constant, ReduceOnPlateau, type Schedule } from './schedule.js';
import { mixSeed } from '@tl/tensor';
import type { BlobStore } from './store.js';

export { TrainingError };

export type { ModelOutput, TrainableModel, Task } from './model.js';

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
  /** Per-class weights of the classification loss, as PyTorch's CrossEntropyLoss(weight=…). */
  classWeights?: Float32Array;
  /**
   * What is learnt (causal LM, text-to-text, distillation, domain adaptation, …). Default: from
   * `task` / `tasks`, with `labelSmoothing`, `regressionLoss` and `classWeights`.
   */
  objective?: Objective;
  /** Clip gradients to this global L2 norm. */
  gradClip?: number;
  /** Micro-batches per optimizer step. */
  accumulate?: number;
  /**
   * Mixed precision, as Hugging Face's `fp16=True`: forward passes (training and evaluation)
   * under `autocast`, so matmul and linear run in float16 with float32 weights, and dynamic
   * loss scaling (`lossScale`). Where the adapter lacks `shader-f16` the run stays float32 and
   * says so.
   */
  fp16?: boolean;
  /** The loss scaler's settings under `fp16` (PyTorch GradScaler's defaults). */
  lossScale?: GradScalerOptions;
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
  /** Every other figure of the objective, as `train…` and `val…` (valMAP, valPerplexity, …). */
  metrics?: Record<string, number>;
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
  /** The most GPU bytes held by tensors during the epoch's training steps (memory().peakBytes);
   * absent from histories written before it was logged. */
  peakMemoryBytes?: number;
  /** Under `fp16`: the loss scale at the epoch's end, and the optimizer steps it skipped
   * because the scaled gradients overflowed. */
  lossScale?: number;
  skippedSteps?: number;
}

/** An evaluation's figures (per head too, for a multi-task model). */
export type HeadEvalResult = EvalMetrics;
export type EvalResult = EvalMetrics;

export interface Prediction {
  /** Row-major [N, width]. */
  outputs: Float32Array;
  width: number;
}

export class Trainer {
  readonly opts: Required<Pick<TrainerOptions, 'epochs' | 'batchSize' | 'accumulate' | 'seed'>> & TrainerOptions;
  readonly objective: Objective;
  readonly optimizer: Optimizer;
  readonly schedule: Schedule;
  stopTraining = false;
  hasValidation = false;
  history: EpochLogs[] = [];
  globalStep = 0;
  private startEpoch = 0;
  private readonly featureCache: FeatureCache;
  private toldTokenTypes = false;
  private readonly divergenceFactor: number;
  /** Epochs done at the last checkpoint written or resumed from (all its weights finite). */
  private lastCheckpoint: number | null = null;
  private resumedFrom: string | null = null;
  /** Present under `fp16` on an adapter with float16. */
  readonly scaler: GradScaler | null = null;

  constructor(readonly model: TrainableModel, opts: TrainerOptions = {}) {
    this.opts = { epochs: 10, batchSize: 32, accumulate: 1, seed: 0, ...opts };
    if (!Number.isInteger(this.opts.epochs) || this.opts.epochs < 1) throw new RangeError(`epochs must be a positive integer, got ${this.opts.epochs}`);
    if (!Number.isInteger(this.opts.accumulate) || this.opts.accumulate < 1) throw new RangeError(`accumulate must be a positive integer, got ${this.opts.accumulate}`);
    this.objective = opts.objective ?? MultiTaskObjective.resolve(model, opts) ?? new SupervisedObjective(opts);
    this.divergenceFactor = checkDivergenceFactor(opts.divergenceFactor ?? DEFAULT_DIVERGENCE_FACTOR);
    const spec = opts.optimizer ?? adamw({ lr: 1e-3 });
    const groups = paramGroups(model, spec, opts);
    this.optimizer = spec.create(groups);
    this.schedule = opts.schedule ?? constant();
    if (opts.fp16) {
      if (A.autocastAvailable()) this.scaler = new GradScaler(opts.lossScale);
      else this.log(`fp16: the adapter (${A.engine().adapterDescription}) lacks shader-f16, so the run stays in float32`);
    }
    this.featureCache = new FeatureCache(model, {
      batchSize: this.opts.batchSize, store: opts.featureStore, log: (l) => this.log(l),
      forward: (b) => model.forwardFeatures!(b.x, b.mask ?? undefined, this.tokenTypes(b)),
    });
  }

  log(line: string): void {
    (this.opts.logger ?? console.log)(line);
  }

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

  /** The model's output for a batch (from cached features: the head's). */
  private run(batch: Batch, cached: boolean): ModelOutput {
    return cached ? this.model.forwardHead!(batch.x) : this.model.forward(batch.x, batch.mask ?? undefined, this.tokenTypes(batch));
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

  /** What the objective may ask of the loop for a batch. */
  private context(cached: boolean): ObjectiveContext {
    return { model: this.model, cached, forward: (b) => this.run(b, cached), log: (l) => this.log(l) };
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
    const auxiliary = Object.entries(this.objective.auxiliary ?? {}).map(([name, ds], k) => {
      if (ds.length === 0) throw new TrainingError(`the objective's "${name}" data set is empty`);
      return { name, draw: cycle(new DataLoader(ds, { batchSize: this.opts.batchSize, shuffle: true, seed: mixSeed(this.opts.seed, 0x61 + k), augment: ds.augments })) };
    });
    for (const cb of this.opts.callbacks ?? []) await cb.onTrainBegin?.(this);
    for (let epoch = this.startEpoch; epoch < this.opts.epochs && !this.stopTraining; epoch++) {
      for (const cb of this.opts.callbacks ?? []) await cb.onEpochBegin?.(this, epoch);
      const t0 = performance.now();
      A.resetPeakMemory();
      const cached = !!this.opts.cacheFeatures && this.objective.cacheable && auxiliary.length === 0 && this.backboneFrozen() && !train.augments;
      this.model.train();
      let lossSum = 0;
      let rows = 0;
      let seen = 0;
      const sums: Record<string, number> = {};
      const batches = cached ? await this.featureCache.batches(train, loader, epoch) : loader.epoch(epoch);
      this.opts.onEvent?.({ type: 'epochBegin', epoch, epochs: this.opts.epochs, steps: loader.length, cached });
      let micro = 0;
      let step = 0;
      const skippedBefore = this.scaler?.skipped ?? 0;
      for await (const batch of batches) {
        const extra: Record<string, Batch> = {};
        for (const a of auxiliary) extra[a.name] = await a.draw();
        let r: StepFigures;
        try {
          r = await this.trainStep(batch, extra, cached, schedule, micro);
        } finally {
          for (const b of Object.values(extra)) b.dispose();
        }
        micro = (micro + 1) % this.opts.accumulate;
        lossSum += r.loss * r.rows;
        rows += r.rows;
        for (const [k, v] of Object.entries(r.sums)) sums[k] = (sums[k] ?? 0) + v;
        seen += batch.size;
        const size = batch.size;
        batch.dispose();
        step++;
        const problem = stepLossProblem(r.loss, this.history, this.divergenceFactor);
        if (problem) throw this.diverged(problem, epoch, `step ${step} of ${loader.length}`);
        const secs = (performance.now() - t0) / 1000;
        this.opts.onEvent?.({
          type: 'step', epoch, step, steps: loader.length, loss: r.loss, accuracy: r.sums.correct === undefined ? null : r.sums.correct / size,
          lr: this.optimizer.groups[0]?.lr ?? 0, samplesPerSec: seen / Math.max(secs, 1e-9),
        });
      }
      if (micro !== 0) await this.finishStep(schedule);
      const seconds = (performance.now() - t0) / 1000;
      const logs: EpochLogs = {
        epoch, trainLoss: lossSum / Math.max(rows, 1), lr: this.optimizer.groups[0]?.lr ?? 0, seconds,
        samplesPerSec: seen / Math.max(seconds, 1e-9), cachedFeatures: cached, peakMemoryBytes: A.memory().peakBytes,
      };
      if (this.scaler) {
        logs.lossScale = this.scaler.scale;
        logs.skippedSteps = this.scaler.skipped - skippedBefore;
      }
      Object.assign(logs, figureLogs('train', this.objective.trainLogs(sums, rows)));
      const perHead = this.objective.trainHeads?.(sums);
      if (perHead) {
        logs.trainLoss = perHead.loss;
        logs.heads = {};
        for (const [name, h] of Object.entries(perHead.heads)) logs.heads[name] = { trainLoss: h.loss, ...figureLogs('train', h.figures) };
      }
      const r = val && val.length > 0 ? await this.evaluate(val, { cached }) : null;
      if (r) {
        mergeLogs(logs, valLogs(r));
        for (const [name, h] of Object.entries(r.heads ?? {})) mergeLogs((logs.heads ??= {})[name] ??= { trainLoss: NaN }, valLogs(h));
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

  /** One micro-batch: the objective's loss, backward (scaled for accumulation and, under
   * fp16, by the loss scale), and the optimizer step at the last micro-batch; the loss, the
   * sums and the scaler's overflow check read back in one transfer. */
  private async trainStep(batch: Batch, extra: NamedBatches, cached: boolean, schedule: Schedule, micro: number): Promise<StepFigures> {
    let keys: string[] = [];
    let rows = batch.size;
    const last = micro === this.opts.accumulate - 1;
    const scaler = this.scaler;
    const stats = A.tidy(() => {
      const r = A.autocast(
        () => this.objective.trainStep(this.context(cached), batch, extra, { step: this.globalStep, totalSteps: this.totalSteps }),
        { enabled: scaler !== null },
      );
      rows = r.rows ?? batch.size;
      const mean = this.opts.accumulate > 1 ? A.mul(r.loss, 1 / this.opts.accumulate) : r.loss;
      A.backward(scaler ? scaler.scaleLoss(mean) : mean);
      const sums = Object.entries(r.sums ?? {});
      keys = sums.map(([k]) => k);
      // nonFinite keeps its flag out of every scope; it goes once copied into the read-back.
      const check = scaler && last ? scaler.nonFinite(this.trainedParams()) : null;
      const figures = A.noGrad(() => A.cat([r.loss.reshape([1]), ...sums.map(([, t]) => t.reshape([1])), ...(check ? [check] : [])]));
      check?.dispose();
      return figures;
    });
    if (last && !scaler) this.optimizerStep(schedule);
    const values = await stats.data();
    stats.dispose();
    if (last && scaler) this.scaledStep(schedule, values[1 + keys.length]!);
    return { loss: values[0]!, rows, sums: Object.fromEntries(keys.map((k, i) => [k, values[1 + i]!])) };
  }

  private trainedParams(): Tensor[] {
    return this.optimizer.groups.flatMap((g) => g.params);
  }

  /** The step after an accumulation cut short by the epoch's end. */
  private async finishStep(schedule: Schedule): Promise<void> {
    if (!this.scaler) return this.optimizerStep(schedule);
    const flag = this.scaler.nonFinite(this.trainedParams());
    const v = await flag.item();
    flag.dispose();
    this.scaledStep(schedule, v);
  }

  /** Under fp16: the step on unscaled gradients, or none (and a smaller scale) when they overflowed. */
  private scaledStep(schedule: Schedule, flag: number): void {
    const scaler = this.scaler!;
    const unscale = 1 / scaler.scale;
    if (scaler.update(flag)) return this.optimizerStep(schedule, unscale);
    this.optimizer.zeroGrad();
    this.globalStep++;
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

  /** `unscale` divides out the loss scale (clipping then applies to the true gradients). */
  private optimizerStep(schedule: Schedule, unscale = 1): void {
    for (const g of this.optimizer.groups) g.lr = schedule.lr(this.globalStep, g.initialLr);
    if (this.opts.gradClip !== undefined || unscale !== 1) {
      this.optimizer.gradScale?.dispose();
      this.optimizer.gradScale = null;
      this.optimizer.gradScale = gradScale(this.trainedParams(), this.opts.gradClip, unscale);
    }
    this.optimizer.step();
    this.optimizer.zeroGrad();
    this.globalStep++;
  }

  async evaluate(ds: Dataset, opts: { cached?: boolean; topK?: number } = {}): Promise<EvalResult> {
    const wasTraining = this.model.training;
    this.model.eval();
    const cached = opts.cached ?? (!!this.opts.cacheFeatures && this.objective.cacheable && this.backboneFrozen());
    const loader = new DataLoader(ds, { batchSize: Math.max(this.opts.batchSize, 64), shuffle: false });
    const batches = cached ? await this.featureCache.batches(ds, loader, 0) : loader.epoch(0);
    const evaluation = this.objective.evaluation({ topK: opts.topK });
    const ctx = this.context(cached);
    try {
      for await (const batch of batches) {
        try {
          await A.autocast(() => evaluation.add(ctx, batch), { enabled: this.scaler !== null });
        } finally {
          batch.dispose();
        }
      }
      return evaluation.result();
    } finally {
      this.model.train(wasTraining);
    }
  }

  /** Logits (classification) or outputs for every sample, row-major [N, K]. */
  async predict(ds: Dataset): Promise<Prediction> {
    if (this.objective instanceof MultiTaskObjective) throw new TrainingError(`${this.model.constructor.name} has several heads (${this.objective.heads.map((t) => t.name).join(', ')}); use predictHeads`);
    return (await this.predictAll(ds)).get(SINGLE) ?? { outputs: new Float32Array(0), width: 0 };
  }

  /** Every head's outputs for every sample (multi-task models). */
  async predictHeads(ds: Dataset): Promise<Record<string, Prediction>> {
    if (!(this.objective instanceof MultiTaskObjective)) throw new TrainingError(`${this.model.constructor.name} has one output; use predict`);
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
      ...(this.scaler ? { scaler: this.scaler.stateDict() } : {}),
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
    if (state.scaler && this.scaler) this.scaler.loadStateDict(state.scaler);
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
/** What the optimizer multiplies every gradient by: `unscale` (dividing out a loss scale),
 * times the global-norm clipping factor of the unscaled gradients when `maxNorm` is set. */
function gradScale(params: Tensor[], maxNorm: number | undefined, unscale: number): Tensor {
  return A.noGrad(() => A.tidy(() => {
    const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
    if (maxNorm === undefined || grads.length === 0) return keep(A.full([1], unscale));
    const sq = A.cat(grads.map((g) => A.sum(A.square(g)).reshape([1])));
    const total = A.sqrt(A.sum(sq)).reshape([1]);
    if (unscale === 1) return keep(clipFactor(total, maxNorm));
    return keep(A.mul(clipFactor(A.mul(total, unscale), maxNorm), unscale));
  }));
}

/** The key predictAll files a single-output model's outputs under. */
const SINGLE = '';

/** A micro-batch's loss, the rows it averages over, and the objective's sums, read back. */
interface StepFigures {
  loss: number;
  rows: number;
  sums: Record<string, number>;
}

/** Batches of a data set without end: a new shuffled epoch after each. */
function cycle(loader: DataLoader): () => Promise<Batch> {
  let epoch = 0;
  let it = loader.epoch(epoch);
  return async () => {
    for (;;) {
      const next = await it.next();
      if (!next.done) return next.value;
      it = loader.epoch(++epoch);
    }
  };
}

const KNOWN: Readonly<Record<string, keyof HeadLogs>> = { trainAccuracy: 'trainAccuracy', valAccuracy: 'valAccuracy', valMacroF1: 'valMacroF1', valMae: 'valMae' };

/** Log entries `<prefix><Name>` from an objective's figures: the classic ones as fields of the
 * logs, every other in `metrics`. */
function figureLogs(prefix: 'train' | 'val', figures: Readonly<Record<string, number>>): Partial<HeadLogs> {
  const out: Partial<HeadLogs> = {};
  for (const [name, v] of Object.entries(figures)) {
    const key = `${prefix}${name[0]!.toUpperCase()}${name.slice(1)}`;
    const field = KNOWN[key];
    if (field && field !== 'metrics') (out as Record<string, number>)[field] = v;
    else (out.metrics ??= {})[key] = v;
  }
  return out;
}

function mergeLogs(into: HeadLogs, add: Partial<HeadLogs>): void {
  const { metrics, ...rest } = add;
  Object.assign(into, rest);
  if (metrics) into.metrics = { ...into.metrics, ...metrics };
}

/** The validation entries of the epoch logs from an evaluation. */
function valLogs(r: EvalMetrics): Partial<HeadLogs> {
  return { valLoss: r.loss, ...figureLogs('val', r.metrics) };
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
