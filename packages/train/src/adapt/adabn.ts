/**
 * AdaBN (Li et al. 2016): a network trained on one domain meets another whose activations have
 * other means and scales; re-estimating every BatchNorm's running statistics on unlabelled
 * target data, weights untouched, adapts it without a label. As PyTorch users do it: reset the
 * statistics, set `momentum=None` (a cumulative average over the batches), put only the
 * BatchNorms in training mode (dropout and the rest stay in eval) and run the data through
 * without gradients.
 */
import * as A from '@tl/autograd';
import { BatchNorm2d } from '@tl/models';
import type { Callback } from '../callbacks.js';
import { DataLoader } from '../data/loader.js';
import type { Dataset } from '../data/dataset.js';
import { TrainingError } from '../errors.js';
import type { TrainableModel } from '../model.js';
import type { Trainer } from '../trainer.js';

export interface AdaBNOptions {
  /** Samples per forward pass (default 64): each batch's statistics are one term of the average. */
  batchSize?: number;
  /** Use at most this many batches of the data (default all). */
  maxBatches?: number;
  /** Called after each batch (progress display). */
  onBatch?: (done: number, total: number) => void;
}

export interface AdaBNResult {
  /** The BatchNorm layers re-estimated, by name. */
  layers: string[];
  batches: number;
  samples: number;
}

/** The BatchNorm layers of a model by name; refuses a model without any. */
export function batchNormLayers(model: TrainableModel): [string, BatchNorm2d][] {
  const found = [...model.namedModules()].filter((e): e is [string, BatchNorm2d] => e[1] instanceof BatchNorm2d);
  if (found.length === 0) {
    throw new TrainingError(`${model.constructor.name} has no BatchNorm layer: AdaBN re-estimates BatchNorm statistics, so there is nothing to adapt (fine-tune it, or use DANN or CORAL)`);
  }
  return found;
}

/**
 * Re-estimates the running mean and variance of every BatchNorm of `model` on `data` (its
 * labels, if any, are not read) and leaves the model in the mode it was in. The layers' own
 * momentum and whether their affine parameters train are restored afterwards.
 */
export async function adaBN(model: TrainableModel, data: Dataset, opts: AdaBNOptions = {}): Promise<AdaBNResult> {
  const batchSize = opts.batchSize ?? 64;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`adaBN: batchSize must be a positive integer, got ${batchSize}`);
  if (opts.maxBatches !== undefined && !(Number.isInteger(opts.maxBatches) && opts.maxBatches >= 1)) {
    throw new RangeError(`adaBN: maxBatches must be a positive integer, got ${opts.maxBatches}`);
  }
  if (data.length === 0) throw new TrainingError('adaBN: the target data set is empty');
  const layers = batchNormLayers(model);
  const loader = new DataLoader(data, { batchSize, shuffle: false, augment: false });
  const total = Math.min(loader.length, opts.maxBatches ?? Infinity);
  const modes = [...model.namedModules()].map(([, m]) => [m, m.training] as const);
  const saved = layers.map(([, bn]) => ({ bn, momentum: bn.opts.momentum, trains: bn.weight?.requiresGrad ?? false }));
  let batches = 0;
  let samples = 0;
  try {
    model.eval();
    A.noGrad(() => {
      for (const { bn } of saved) {
        A.assign(bn.runningMean, 0);
        A.assign(bn.runningVar, 1);
        A.assign(bn.numBatchesTracked, 0);
        bn.training = true;
        // A BatchNorm with frozen affine parameters keeps its statistics in training mode
        // (BatchNorm2d.usesBatchStats); here the statistics are the point, and no gradient is
        // recorded under noGrad, so the flag is lifted for the pass.
        if (bn.weight) bn.weight.requiresGrad = true;
      }
    });
    for await (const batch of loader.epoch(0)) {
      batches++;
      samples += batch.size;
      // momentum 1/k at the k-th batch makes the running statistics the mean of the k batches'
      // statistics: PyTorch's momentum=None.
      for (const { bn } of saved) bn.opts.momentum = 1 / batches;
      try {
        A.tidy(() => A.noGrad(() => {
          model.forward(batch.x, batch.mask ?? undefined);
        }));
      } finally {
        batch.dispose();
      }
      opts.onBatch?.(batches, total);
      if (batches >= total) break;
    }
  } finally {
    for (const { bn, momentum, trains } of saved) {
      bn.opts.momentum = momentum;
      if (bn.weight) bn.weight.requiresGrad = trains;
    }
    for (const [m, training] of modes) m.training = training;
  }
  return { layers: layers.map(([n]) => n), batches, samples };
}

export interface AdaBNCallbackOptions extends AdaBNOptions {
  /** Re-estimate again after the last epoch too: fine-tuning with trainable BatchNorms moves
   * the statistics back towards the labelled (source) batches. Default false. */
  atEnd?: boolean;
}

/** Runs AdaBN on `target` before the first epoch (and, with `atEnd`, after the last), so
 * fine-tuning starts from statistics of the domain the model will serve. */
export function adaBNCallback(target: Dataset, opts: AdaBNCallbackOptions = {}): Callback {
  const run = async (t: Trainer, when: string): Promise<void> => {
    const r = await adaBN(t.model, target, opts);
    t.log(`AdaBN ${when}: re-estimated ${r.layers.length} BatchNorm layers on ${r.samples} target samples (${r.batches} batches)`);
  };
  return {
    name: 'adaBN',
    // A resumed run (globalStep > 0) adapted before its first epoch already.
    onTrainBegin: (t) => (t.globalStep > 0 ? undefined : run(t, 'before training')),
    ...(opts.atEnd ? { onTrainEnd: (t: Trainer) => run(t, 'after training') } : {}),
  };
}
