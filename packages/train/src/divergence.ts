/**
 * When a run has diverged: a training or validation loss that is not finite, a weight that
 * is not finite, or a loss that explodes. The trainer then stops with a TrainingError that
 * names the epoch and step, before the next checkpoint, so the last checkpoint stays the last
 * finite one and no NaN model is ever the result.
 *
 * What is read, and what it costs:
 * - every step's training loss: free, the trainer reads it back for the progress display anyway;
 * - every weight (parameters and buffers) at the end of each epoch, before the checkpoint, and
 *   once when `fit` starts (NaN in a pretrained file or a checkpoint): one sum per tensor on the
 *   GPU and a single readback of those sums, not a readback of the weights.
 * A step that makes a weight NaN or infinite shows in the next step's loss, since every kernel
 * keeps NaN (tensor/test/nan.test.ts); the epoch's last step is caught by the epoch's check. A
 * check of all weights after every step would cost a pass over every parameter and a dispatch
 * per tensor each step, to learn the same one step earlier.
 *
 * Explosion: a step's training loss or an epoch's validation loss above `factor` × the first
 * epoch's mean training loss (default 1e4). Minibatch losses of a healthy run spread over one
 * or two orders of magnitude around the mean, and a run whose loss has grown ten-thousandfold
 * after a full epoch of training is lost; catching it there stops it while the weights are
 * finite but useless, before they overflow. The reference is a training mean because it
 * averages a whole epoch: the validation loss of a small validation set swings from 1e-5 to 30
 * between healthy epochs, so the first one is no scale. Before the first epoch ends there is
 * no reference, and only non-finite values count.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import type { EpochLogs, EvalResult } from './trainer.js';

export const DEFAULT_DIVERGENCE_FACTOR = 1e4;

export function checkDivergenceFactor(factor: number): number {
  if (!(factor > 1)) throw new RangeError(`divergenceFactor must be a number > 1 (Infinity turns the explosion rule off), got ${factor}`);
  return factor;
}

const fmt = (v: number): string => (Number.isFinite(v) ? v.toPrecision(4) : String(v));

/** What is wrong with a step's training loss, or null. */
export function stepLossProblem(loss: number, history: readonly EpochLogs[], factor: number): string | null {
  if (!Number.isFinite(loss)) return `the training loss became ${loss}`;
  const ref = history[0]?.trainLoss;
  if (ref !== undefined && ref > 0 && loss > factor * ref) {
    return `the training loss exploded to ${fmt(loss)}, over ${factor} times the first epoch's mean ${fmt(ref)}`;
  }
  return null;
}

/** What is wrong with an epoch's mean training loss and its validation result, or null. A head
 * of a multi-task model without validation targets has a NaN loss that is no divergence. */
export function epochProblem(trainLoss: number, val: EvalResult | null, history: readonly EpochLogs[], factor: number): string | null {
  if (!Number.isFinite(trainLoss)) return `the epoch's mean training loss is ${trainLoss}`;
  if (!val) return null;
  const heads = val.heads ? Object.entries(val.heads) : [['', val] as const];
  for (const [name, r] of heads) {
    if (r.total > 0 && !Number.isFinite(r.loss)) return `the validation loss${name ? ` of head "${name}"` : ''} became ${r.loss}`;
  }
  const ref = history[0]?.trainLoss;
  if (ref !== undefined && ref > 0 && val.loss > factor * ref) {
    return `the validation loss exploded to ${fmt(val.loss)}, over ${factor} times the first epoch's mean training loss ${fmt(ref)}`;
  }
  return null;
}

export interface NonFinite {
  name: string;
  count: number;
  size: number;
}

/** The first tensor holding NaN or ±Infinity, with how many of its values do. */
export function firstNonFinite(tensors: Iterable<readonly [string, Float32Array | Int32Array]>): NonFinite | null {
  for (const [name, data] of tensors) {
    if (data instanceof Int32Array) continue;
    let count = 0;
    for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) count++;
    if (count > 0) return { name, count, size: data.length };
  }
  return null;
}

export function describeNonFinite(b: NonFinite): string {
  return `${b.name} holds ${b.count} NaN or infinite value${b.count === 1 ? '' : 's'} of ${b.size}`;
}

/**
 * The first float tensor holding NaN or ±Infinity, found on the GPU: a tensor's sum is finite
 * exactly when all its values are (reductions keep NaN, +Inf and -Inf sum to NaN; a finite sum
 * overflowing float32 would need weights near 1e38, broken anyway). Only that tensor is then
 * read back, to count its bad values.
 */
export async function firstNonFiniteOnDevice(tensors: ReadonlyMap<string, Tensor>): Promise<NonFinite | null> {
  const floats = [...tensors].filter(([, t]) => t.dtype === 'float32' && t.size > 0);
  if (floats.length === 0) return null;
  const sums = A.noGrad(() => A.tidy(() => A.stack(floats.map(([, t]) => A.sum(t)))));
  const values = await sums.data();
  sums.dispose();
  const i = values.findIndex((v) => !Number.isFinite(v));
  if (i < 0) return null;
  const [name, t] = floats[i]!;
  return firstNonFinite([[name, await t.data()]]);
}
