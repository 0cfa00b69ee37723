/**
 * Unsupervised domain adaptation with labelled source batches and unlabelled target batches
 * (the objective's `target` auxiliary data set, drawn beside each training batch):
 * - DANN (Ganin et al. 2016): a domain classifier on the features, trained to tell source from
 *   target, behind a gradient reversal layer whose weight λ follows Ganin's schedule
 *   2 / (1 + exp(−γ p)) − 1 over training progress p, so the features learn to fool it;
 * - Deep CORAL (coral.ts): the covariance distance between the two domains' features.
 * The loss is the source cross-entropy + `adversarial` × the domain loss + `coral` × CORAL. Both
 * domains run through the network as one batch (text: with their attention masks and token types),
 * so BatchNorm sees the mixture.
 */
import * as A from '@tl/autograd';
import { Tensor } from '@tl/autograd';
import { Linear, Module } from '@tl/models';
import { coralLoss } from '../adapt/coral.js';
import type { Batch } from '../data/loader.js';
import type { Dataset } from '../data/dataset.js';
import { TrainingError } from '../errors.js';
import type { TrainableModel } from '../model.js';
import { adam, type Optimizer, type OptimizerSpec } from '../optim.js';
import { correctCount, headLoss, type HeadSpec } from './supervised-head.js';
import { SupervisedObjective } from './supervised.js';
import type { Evaluation, NamedBatches, Objective, ObjectiveContext, ObjectiveStep } from './objective.js';

/** Ganin's weight of the reversed gradient at training progress p in [0, 1]. */
export function dannLambda(p: number, gamma = 10): number {
  return 2 / (1 + Math.exp(-gamma * p)) - 1;
}

/** Features [B, d] to one domain logit [B, 1] (target = 1): Ganin's MLP with one hidden layer. */
export class DomainClassifier extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(readonly inFeatures: number, readonly hidden = 256) {
    super();
    this.fc1 = this.module('fc1', new Linear(inFeatures, hidden));
    this.fc2 = this.module('fc2', new Linear(hidden, 1));
  }
  forward(features: Tensor): Tensor {
    return this.fc2.forward(A.relu(this.fc1.forward(features)));
  }
}

export interface DomainAdaptationOptions {
  /** Unlabelled samples of the target domain (their labels, if any, are never read). */
  target: Dataset;
  /** Weight of the domain-adversarial loss; 0 turns DANN off (default 1). */
  adversarial?: number;
  /** Weight of Deep CORAL's loss between the domains' features (default 0: off). */
  coral?: number;
  /** Steepness γ of the schedule of λ (default 10, Ganin's). */
  gamma?: number;
  /** Units of the domain classifier's hidden layer (default 256), when none is given. */
  hidden?: number;
  /** The domain classifier: features [B, d] to logits [B, 1]. */
  domainClassifier?: Module & { forward(features: Tensor): Tensor };
  /** The domain classifier's optimizer (default Adam, lr 1e-3); it steps with the model's. */
  domainOptimizer?: OptimizerSpec;
  labelSmoothing?: number;
}

function weight(v: number | undefined, fallback: number, name: string): number {
  const w = v ?? fallback;
  if (!(w >= 0) || !Number.isFinite(w)) throw new RangeError(`${name} must be a finite number >= 0, got ${v}`);
  return w;
}

/** A per-token input of both domains as one batch (text: the attention mask, token types). */
function bothDomains(source: Tensor | null, target: Tensor | null, what: string): Tensor | undefined {
  if (!source && !target) return undefined;
  if (!source || !target) throw new TrainingError(`domain adaptation: the ${source ? 'source' : 'target'} batches carry an ${what} and the ${source ? 'target' : 'source'} batches do not; build both data sets the same way`);
  return A.cat([source, target], 0);
}

export class DomainAdaptationObjective implements Objective {
  readonly name: string;
  /** The features of both domains change as the backbone trains. */
  readonly cacheable = false;
  readonly auxiliary: Readonly<Record<string, Dataset>>;
  readonly adversarial: number;
  readonly coral: number;
  readonly gamma: number;
  private domain: (Module & { forward(features: Tensor): Tensor }) | null;
  private domainOptimizer: Optimizer | null = null;
  /** The model's optimizer step at which the domain classifier's gradients began to gather. */
  private gatheredAt: number | null = null;
  private readonly head: HeadSpec;
  private readonly supervised: SupervisedObjective;

  constructor(private readonly opts: DomainAdaptationOptions) {
    this.adversarial = weight(opts.adversarial, 1, 'adversarial');
    this.coral = weight(opts.coral, 0, 'coral');
    this.gamma = weight(opts.gamma, 10, 'gamma');
    if (this.adversarial === 0 && this.coral === 0) throw new RangeError('domain adaptation needs adversarial > 0 (DANN) or coral > 0 (CORAL); both are 0');
    if (opts.hidden !== undefined && !(Number.isInteger(opts.hidden) && opts.hidden >= 1)) throw new RangeError(`hidden must be a positive integer, got ${opts.hidden}`);
    this.name = this.adversarial > 0 ? (this.coral > 0 ? 'dann+coral' : 'dann') : 'coral';
    this.auxiliary = { target: opts.target };
    this.domain = opts.domainClassifier ?? null;
    this.head = { name: '', task: 'classification', weight: 1, regressionLoss: 'mse', labelSmoothing: opts.labelSmoothing };
    this.supervised = new SupervisedObjective({ labelSmoothing: opts.labelSmoothing });
  }

  /** The domain classifier (built at the first step, from the features' width). */
  get domainClassifier(): Module | null {
    return this.domain;
  }

  /** The domain classifier's gradients from the previous step are applied when the model's
   * optimizer has stepped since they began to gather, so it steps as often as the model, with
   * gradient accumulation too. */
  private stepDomain(step: number): void {
    if (this.gatheredAt === null || this.gatheredAt === step || !this.domainOptimizer) return;
    this.domainOptimizer.step();
    this.domainOptimizer.zeroGrad();
    this.gatheredAt = null;
  }

  private classifierFor(width: number): Module & { forward(features: Tensor): Tensor } {
    if (!this.domain) this.domain = new DomainClassifier(width, this.opts.hidden);
    if (!this.domainOptimizer) {
      const params = this.domain.namedParameters().map(([, p]) => p);
      this.domainOptimizer = (this.opts.domainOptimizer ?? adam({ lr: 1e-3 })).create([{ params, name: 'domain' }]);
    }
    return this.domain;
  }

  trainStep(ctx: ObjectiveContext, batch: Batch, extra: NamedBatches, progress: { step: number; totalSteps: number }): ObjectiveStep {
    const m: TrainableModel = ctx.model;
    if (!m.forwardFeatures || !m.forwardHead) {
      throw new TrainingError(`${m.constructor.name} does not split into forwardFeatures and forwardHead; domain adaptation aligns the features, so it needs both`);
    }
    const target = extra.target;
    if (!target) throw new TrainingError('domain adaptation: no target batch was drawn beside the training batch (the objective\'s auxiliary "target" data set)');
    if (!batch.y) throw new TrainingError('domain adaptation: the samples carry one target per head; it takes one class label per source sample');
    this.stepDomain(progress.step);
    const ns = batch.size;
    const nt = target.size;
    if (batch.x.shape.slice(1).join() !== target.x.shape.slice(1).join()) {
      throw new TrainingError(`domain adaptation runs source and target as one batch: source samples are [${batch.x.shape.slice(1).join(', ')}] but target samples [${target.x.shape.slice(1).join(', ')}] (text: tokenize both to the same maxLength)`);
    }
    const features = m.forwardFeatures(A.cat([batch.x, target.x], 0), bothDomains(batch.mask, target.mask, 'attention mask'), bothDomains(batch.tokenTypeIds, target.tokenTypeIds, 'token type ids'));
    if (features.rank !== 2) throw new TrainingError(`domain adaptation takes features [batch, d]; ${m.constructor.name}.forwardFeatures gives [${features.shape.join(', ')}]`);
    const fs = features.slice(0, 0, ns);
    const ft = features.slice(0, ns, ns + nt);
    const logits = m.forwardHead(fs);
    if (!(logits instanceof Tensor)) throw new TrainingError(`${m.constructor.name} returns one output per head; domain adaptation takes a model with one output`);
    let loss = headLoss(this.head, logits, { y: batch.y, present: null, count: ns });
    const sums: Record<string, Tensor> = { correct: A.noGrad(() => correctCount(logits, batch.y!)) };
    if (this.adversarial > 0) {
      const lambda = dannLambda(progress.step / Math.max(progress.totalSteps, 1), this.gamma);
      const domainLogits = this.classifierFor(features.shape[1]!).forward(A.gradReverse(features, lambda));
      const labels = A.tensor(Float32Array.from({ length: ns + nt }, (_, i) => (i < ns ? 0 : 1)), { shape: [ns + nt, 1] });
      const domainLoss = A.binaryCrossEntropyWithLogits(domainLogits, labels);
      loss = A.add(loss, A.mul(domainLoss, this.adversarial));
      this.gatheredAt ??= progress.step;
      A.noGrad(() => {
        sums.domain = A.mul(domainLoss, ns).reshape([1]);
        sums.domainCorrect = A.sum(A.eq(A.gt(domainLogits, 0), labels)).reshape([1]);
        sums.domainRows = A.full([1], ns + nt);
      });
    }
    if (this.coral > 0) {
      const c = coralLoss(fs, ft);
      loss = A.add(loss, A.mul(c, this.coral));
      sums.coral = A.noGrad(() => A.mul(c, ns).reshape([1]));
    }
    return { loss, rows: ns, sums };
  }

  trainLogs(sums: Readonly<Record<string, number>>, rows: number): Record<string, number> {
    const n = Math.max(rows, 1);
    const logs: Record<string, number> = { accuracy: (sums.correct ?? 0) / n };
    if (sums.domain !== undefined) {
      logs.domainLoss = sums.domain / n;
      logs.domainAccuracy = (sums.domainCorrect ?? 0) / Math.max(sums.domainRows ?? 0, 1);
    }
    if (sums.coral !== undefined) logs.coralLoss = sums.coral / n;
    return logs;
  }

  /** The model is scored as a classifier on labelled data (source validation, or target labels
   * held out for measuring only). */
  evaluation(opts: { topK?: number }): Evaluation {
    return this.supervised.evaluation(opts);
  }

  dispose(): void {
    this.domainOptimizer?.zeroGrad();
    if (!this.opts.domainClassifier) this.domain?.dispose();
    this.domain = null;
    this.domainOptimizer = null;
  }
}

/** DANN: labelled source batches, unlabelled target batches, a domain classifier behind a
 * gradient reversal layer; `coral` adds Deep CORAL's loss too. */
export const dann = (opts: DomainAdaptationOptions): DomainAdaptationObjective => new DomainAdaptationObjective(opts);

/** Deep CORAL alone: the source cross-entropy + `weight` × CORAL's loss (default 1). */
export const coral = (opts: Omit<DomainAdaptationOptions, 'adversarial' | 'coral'> & { weight?: number }): DomainAdaptationObjective =>
  new DomainAdaptationObjective({ ...opts, adversarial: 0, coral: opts.weight ?? 1 });
