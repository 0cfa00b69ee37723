/**
 * The training loop: feature extraction (frozen backbone, cached features), fine-tuning of all
 * or chosen blocks, gradual unfreezing, per-parameter learning rates, schedules, clipping,
 * accumulation, early stopping, checkpoints that resume bit for bit, and a clear stop on a
 * NaN loss. Each step runs inside a scope, so GPU memory stays flat across steps.
 */
import * as A from '@tl/autograd';
import { keep, type Tensor } from '@tl/autograd';
import { nameMatcher, parseSafetensors, serializeSafetensors, type Module } from '@tl/models';
import type { Callback } from './callbacks.js';
import type { Dataset } from './data/dataset.js';
import { DataLoader, collate, type Batch } from './data/loader.js';
import { argmaxRows, classificationReport, meanAbsoluteError, topKAccuracy, type ClassificationReport } from './metrics.js';
import { adamw, type Optimizer, type OptimizerSpec, type OptimizerState, type ParamGroup } from './optim.js';
import { constant, ReduceOnPlateau, type Schedule } from './schedule.js';
import type { BlobStore } from './store.js';

/** What the trainer needs of a model: a Module with a forward, and optionally the split into
 * features and head that feature caching uses. */
export interface TrainableModel extends Module {
  forward(x: Tensor, mask?: Tensor): Tensor;
  forwardFeatures?(x: Tensor, mask?: Tensor): Tensor;
  forwardHead?(features: Tensor): Tensor;
  blockOrder?(): string[];
  readonly classifierPath?: string;
}

export type Task = 'classification' | 'multilabel' | 'regression';

export interface TrainerOptions {
  optimizer?: OptimizerSpec;
  schedule?: Schedule;
  epochs?: number;
  batchSize?: number;
  callbacks?: Callback[];
  task?: Task;
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
  /** Write a checkpoint here at the end of every epoch. */
  checkpointStore?: BlobStore;
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

export interface EpochLogs {
  epoch: number;
  trainLoss: number;
  trainAccuracy?: number;
  valLoss?: number;
  valAccuracy?: number;
  valMacroF1?: number;
  valMae?: number;
  lr: number;
  seconds: number;
  samplesPerSec: number;
  cachedFeatures: boolean;
}

export interface EvalResult {
  loss: number;
  total: number;
  accuracy?: number;
  correct?: number;
  report?: ClassificationReport;
  topK?: number;
  mae?: number;
}

export class TrainingError extends Error {
  override name = 'TrainingError';
}

const CKPT = { model: 'checkpoint/model.safetensors', optim: 'checkpoint/optimizer.safetensors', state: 'checkpoint/trainer.json' };

export class Trainer {
  readonly opts: Required<Pick<TrainerOptions, 'epochs' | 'batchSize' | 'task' | 'accumulate' | 'seed'>> & TrainerOptions;
  readonly optimizer: Optimizer;
  readonly schedule: Schedule;
  stopTraining = false;
  hasValidation = false;
  history: EpochLogs[] = [];
  globalStep = 0;
  private startEpoch = 0;
  private paramNames = new Map<Tensor, string>();
  private featureMemo = new Map<string, { feats: Float32Array[]; shape: number[] }>();

  constructor(readonly model: TrainableModel, opts: TrainerOptions = {}) {
    this.opts = { epochs: 10, batchSize: 32, task: 'classification', accumulate: 1, seed: 0, ...opts };
    if (!Number.isInteger(this.opts.epochs) || this.opts.epochs < 1) throw new RangeError(`epochs must be a positive integer, got ${this.opts.epochs}`);
    if (!Number.isInteger(this.opts.accumulate) || this.opts.accumulate < 1) throw new RangeError(`accumulate must be a positive integer, got ${this.opts.accumulate}`);
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

  private lossFn(out: Tensor, batch: Batch): Tensor {
    switch (this.opts.task) {
      case 'classification':
        return A.crossEntropy(out, batch.y, { labelSmoothing: this.opts.labelSmoothing });
      case 'multilabel':
        return A.binaryCrossEntropyWithLogits(out, batch.y);
      case 'regression': {
        const pred = out.rank === 2 && out.shape[1] === 1 && batch.y.rank === 1 ? out.reshape([out.shape[0]!]) : out;
        return this.opts.regressionLoss === 'l1' ? A.l1Loss(pred, batch.y) : A.mseLoss(pred, batch.y);
      }
    }
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
      const batches = cached ? await this.featureBatches(train, loader, epoch) : loader.epoch(epoch);
      this.opts.onEvent?.({ type: 'epochBegin', epoch, epochs: this.opts.epochs, steps: loader.length, cached });
      let micro = 0;
      let step = 0;
      for await (const batch of batches) {
        const { loss, hits } = await this.trainStep(batch, cached, schedule, micro);
        micro = (micro + 1) % this.opts.accumulate;
        lossSum += loss * batch.size;
        correct += hits ?? 0;
        seen += batch.size;
        batch.dispose();
        step++;
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
        ...(this.opts.task === 'classification' ? { trainAccuracy: correct / Math.max(seen, 1) } : {}),
      };
      if (val && val.length > 0) {
        const r = await this.evaluate(val, { cached });
        logs.valLoss = r.loss;
        if (r.accuracy !== undefined) logs.valAccuracy = r.accuracy;
        if (r.report) logs.valMacroF1 = r.report.macroF1;
        if (r.mae !== undefined) logs.valMae = r.mae;
      }
      if (schedule instanceof ReduceOnPlateau) schedule.observe(logs.valLoss ?? logs.trainLoss);
      this.history.push(logs);
      for (const cb of this.opts.callbacks ?? []) await cb.onEpochEnd?.(this, epoch, logs);
      this.opts.onEvent?.({ type: 'epochEnd', epoch, logs });
      if (this.opts.checkpointStore) await this.saveCheckpoint(this.opts.checkpointStore, epoch + 1);
    }
    for (const cb of this.opts.callbacks ?? []) await cb.onTrainEnd?.(this);
    return this.history;
  }

  private async trainStep(batch: Batch, cached: boolean, schedule: Schedule, micro: number): Promise<{ loss: number; hits: number | null }> {
    const stats = A.tidy(() => {
      const out = cached ? this.model.forwardHead!(batch.x) : this.model.forward(batch.x, batch.mask ?? undefined);
      const loss = this.lossFn(out, batch);
      const scaled = this.opts.accumulate > 1 ? A.mul(loss, 1 / this.opts.accumulate) : loss;
      A.backward(scaled);
      const parts = [A.noGrad(() => loss.reshape([1]))];
      if (this.opts.task === 'classification') {
        parts.push(A.sum(A.eq(A.argmax(out, 1), batch.y)).reshape([1]));
      }
      return A.noGrad(() => A.cat(parts));
    });
    if (micro === this.opts.accumulate - 1) this.optimizerStep(schedule);
    const values = await stats.data();
    stats.dispose();
    const loss = values[0]!;
    if (!Number.isFinite(loss)) {
      throw new TrainingError(
        `the loss became ${loss} at epoch ${this.history.length + 1}, step ${this.globalStep}` +
          (this.opts.checkpointStore ? `; the last good checkpoint is in ${this.opts.checkpointStore.description}` : '') +
          '. Lower the learning rate, clip gradients (gradClip) or check the data for NaNs.',
      );
    }
    return { loss, hits: this.opts.task === 'classification' ? values[1]! : null };
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
      const f = A.tidy(() => A.noGrad(() => this.model.forwardFeatures!(batch.x, batch.mask ?? undefined)));
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
    let lossSum = 0;
    let n = 0;
    const outs: Float32Array[] = [];
    const targets: number[] = [];
    const regTargets: number[] = [];
    let width = 0;
    for await (const batch of batches) {
      const [out, loss] = A.tidy(() => A.noGrad(() => {
        const o = cached ? this.model.forwardHead!(batch.x) : this.model.forward(batch.x, batch.mask ?? undefined);
        return [o, this.lossFn(o, batch)] as const;
      }));
      lossSum += (await loss.item()) * batch.size;
      const data = (await out.data()) as Float32Array;
      width = data.length / batch.size;
      outs.push(data);
      const y = await batch.y.data();
      if (this.opts.task === 'classification') targets.push(...y);
      else regTargets.push(...y);
      n += batch.size;
      out.dispose();
      loss.dispose();
      batch.dispose();
    }
    this.model.train(wasTraining);
    const all = concatRows(outs);
    const result: EvalResult = { loss: n ? lossSum / n : NaN, total: n };
    if (this.opts.task === 'classification' && n > 0) {
      const pred = argmaxRows(all, width);
      const report = classificationReport(pred, targets, width);
      Object.assign(result, { accuracy: report.accuracy, correct: report.correct, report });
      if (opts.topK) result.topK = topKAccuracy(all, targets, width, opts.topK);
    }
    if (this.opts.task === 'regression') result.mae = meanAbsoluteError(all, regTargets);
    return result;
  }

  /** Logits (classification) or outputs for every sample, row-major [N, K]. */
  async predict(ds: Dataset): Promise<{ outputs: Float32Array; width: number }> {
    const wasTraining = this.model.training;
    this.model.eval();
    const loader = new DataLoader(ds, { batchSize: Math.max(this.opts.batchSize, 64), shuffle: false });
    const outs: Float32Array[] = [];
    let width = 0;
    for await (const batch of loader.epoch(0)) {
      const out = A.tidy(() => A.noGrad(() => this.model.forward(batch.x, batch.mask ?? undefined)));
      const data = (await out.data()) as Float32Array;
      width = data.length / batch.size;
      outs.push(data);
      out.dispose();
      batch.dispose();
    }
    this.model.train(wasTraining);
    return { outputs: concatRows(outs), width };
  }

  // Checkpoints ----------------------------------------------------------------------------

  async saveCheckpoint(store: BlobStore, nextEpoch: number): Promise<void> {
    const weights = new Map<string, { dtype: 'F32' | 'I64'; shape: number[]; data: Float32Array | Int32Array }>();
    for (const [k, t] of this.model.stateDict()) {
      const d = await t.data();
      weights.set(k, { dtype: t.dtype === 'int32' ? 'I64' : 'F32', shape: [...t.shape], data: d });
    }
    const opt: OptimizerState = await this.optimizer.stateDict();
    const optTensors = Object.fromEntries(Object.entries(opt.tensors).map(([k, v]) => [k, { dtype: 'F32' as const, shape: [v.length], data: v }]));
    const state = {
      version: 1,
      nextEpoch,
      globalStep: this.globalStep,
      rng: A.getRngState(),
      optimizer: { ...opt, tensors: undefined },
      schedule: this.schedule instanceof ReduceOnPlateau ? this.schedule.state() : null,
      callbacks: Object.fromEntries((this.opts.callbacks ?? []).map((c) => [c.name, c.state?.() ?? null])),
      trainable: this.model.namedParameters().filter(([, p]) => p.requiresGrad).map(([n]) => n),
      history: this.history,
    };
    await store.write(CKPT.model, serializeSafetensors(weights, { format: 'pt' }));
    await store.write(CKPT.optim, serializeSafetensors(optTensors));
    await store.write(CKPT.state, new TextEncoder().encode(JSON.stringify(state)));
  }

  /** Restores weights, optimizer, schedule, RNG, callbacks and history; `fit` then continues
   * from the next epoch. Returns false when the store has no checkpoint. */
  async resume(store: BlobStore): Promise<boolean> {
    const stateBytes = await store.read(CKPT.state);
    if (!stateBytes) return false;
    const state = JSON.parse(new TextDecoder().decode(stateBytes));
    const modelBytes = await store.read(CKPT.model);
    const optBytes = await store.read(CKPT.optim);
    if (!modelBytes || !optBytes) throw new TrainingError(`the checkpoint in ${store.description} is incomplete`);
    const trainable = new Set<string>(state.trainable);
    for (const [n, p] of this.model.namedParameters()) p.requiresGrad = trainable.has(n);
    this.model.loadStateDict(parseSafetensors(modelBytes, CKPT.model).all(), { strict: true });
    const optFile = parseSafetensors(optBytes, CKPT.optim);
    const tensors = Object.fromEntries(optFile.keys().map((k) => [k, optFile.get(k).data as Float32Array]));
    this.optimizer.loadStateDict({ ...state.optimizer, tensors });
    if (state.schedule && this.schedule instanceof ReduceOnPlateau) this.schedule.setState(state.schedule);
    for (const c of this.opts.callbacks ?? []) {
      const s = state.callbacks?.[c.name];
      if (s !== undefined && s !== null) c.setState?.(s);
    }
    A.setRngState(state.rng);
    this.globalStep = state.globalStep;
    this.history = state.history;
    this.startEpoch = state.nextEpoch;
    return true;
  }
}

/** The factor min(1, maxNorm / ||g||) that the optimizer kernels apply to every gradient. */
function clipScale(params: Tensor[], maxNorm: number): Tensor {
  return A.noGrad(() => A.tidy(() => {
    const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
    if (grads.length === 0) return keep(A.ones([1]));
    const sq = A.cat(grads.map((g) => A.sum(A.square(g)).reshape([1])));
    const total = A.sqrt(A.sum(sq)).reshape([1]);
    return keep(A.map([total], ([n]) => `min(1.0, ${maxNorm} / (${n} + 1e-6))`, { label: 'clipScale' }));
  }));
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
