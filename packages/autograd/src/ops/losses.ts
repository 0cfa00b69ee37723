/** Regression and multi-label losses, and dropout. */
import * as T from '@tl/tensor';
import type { Tensor } from '@tl/tensor';
import { fullPrecision } from '../autocast.js';
import { record } from '../graph.js';
import { mul } from './elementwise.js';
import { sumToShape } from './reduce.js';

export type Reduction = 'mean' | 'sum' | 'none';

function reduce(elementwise: Tensor, reduction: Reduction): Tensor {
  if (reduction === 'none') return elementwise;
  const r = reduction === 'mean' ? T.mean(elementwise) : T.sum(elementwise);
  elementwise.dispose();
  return r;
}

/** The gradient of the reduction, broadcast back to the elementwise shape. */
function reductionGrad(g: Tensor, shape: readonly number[], reduction: Reduction): Tensor {
  if (reduction === 'none') return g;
  const n = shape.reduce((a, d) => a * d, 1);
  const scale = reduction === 'mean' ? 1 / n : 1;
  const g1 = g.reshape(shape.map(() => 1));
  const r = T.map([g1], ([v]) => `${v} * ${scale}`, { shape, label: 'reductionBackward' });
  g1.dispose();
  return r;
}

/**
 * A loss computed elementwise from (input, target) then reduced, with its derivative
 * with respect to the input `dInput` and to the target `dTarget` as WGSL of (x, t, g).
 */
function pointwiseLoss(
  name: string,
  input: Tensor,
  target: Tensor,
  reduction: Reduction,
  forward: (x: string, t: string) => string,
  dInput: (x: string, t: string, g: string) => string,
  dTarget: (x: string, t: string, g: string) => string,
): Tensor {
  input = fullPrecision(input);
  target = fullPrecision(target);
  if (reduction !== 'mean' && reduction !== 'sum' && reduction !== 'none') {
    throw new RangeError(`${name}: reduction must be 'mean', 'sum' or 'none', got ${JSON.stringify(reduction)}`);
  }
  const el = T.map([input, target], ([x, t]) => forward(x!, t!), { label: name });
  const shape = [...el.shape];
  const y = reduce(el, reduction);
  return record(name, y, [input, target], (g, [xs, ts], needs) => {
    const ge = reductionGrad(g, shape, reduction);
    const gi = needs[0] ? sumToShape(T.map([xs!, ts!, ge], ([x, t, u]) => dInput(x!, t!, u!), { label: `${name}Backward` }), input.shape) : null;
    const gt = needs[1] ? sumToShape(T.map([xs!, ts!, ge], ([x, t, u]) => dTarget(x!, t!, u!), { label: `${name}Backward` }), target.shape) : null;
    if (ge !== g) ge.dispose();
    return [gi, gt];
  }, [input, target]);
}

export function mseLoss(input: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  return pointwiseLoss('mseLoss', input, target, reduction,
    (x, t) => `(${x} - ${t}) * (${x} - ${t})`,
    (x, t, g) => `2.0 * (${x} - ${t}) * ${g}`,
    (x, t, g) => `-2.0 * (${x} - ${t}) * ${g}`);
}

export function l1Loss(input: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  return pointwiseLoss('l1Loss', input, target, reduction,
    (x, t) => `abs(${x} - ${t})`,
    (x, t, g) => `sign(${x} - ${t}) * ${g}`,
    (x, t, g) => `-sign(${x} - ${t}) * ${g}`);
}

export function smoothL1Loss(input: Tensor, target: Tensor, reduction: Reduction = 'mean', beta = 1): Tensor {
  return pointwiseLoss('smoothL1Loss', input, target, reduction,
    (x, t) => `select(abs(${x} - ${t}) - ${0.5 * beta}, 0.5 * (${x} - ${t}) * (${x} - ${t}) / ${beta}, abs(${x} - ${t}) < ${beta})`,
    (x, t, g) => `select(sign(${x} - ${t}), (${x} - ${t}) / ${beta}, abs(${x} - ${t}) < ${beta}) * ${g}`,
    (x, t, g) => `-select(sign(${x} - ${t}), (${x} - ${t}) / ${beta}, abs(${x} - ${t}) < ${beta}) * ${g}`);
}

/** Multi-label loss on logits, numerically stable (as F.binary_cross_entropy_with_logits). */
export function binaryCrossEntropyWithLogits(logits: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  return pointwiseLoss('binaryCrossEntropyWithLogits', logits, target, reduction,
    (x, t) => `max(${x}, 0.0) - ${x} * ${t} + log(1.0 + exp(-abs(${x})))`,
    (x, t, g) => `(sigmoid_(${x}) - ${t}) * ${g}`,
    (x, _t, g) => `-${x} * ${g}`);
}

/** Zeroes each element with probability p and scales the rest by 1/(1-p) in training;
 * the identity otherwise. The mask is seeded from the global generator (`manualSeed`). */
export function dropout(x: Tensor, p = 0.5, training = true): Tensor {
  if (p < 0 || p > 1) throw new RangeError(`dropout: p must be in [0, 1], got ${p}`);
  if (!training || p === 0) return x;
  if (p === 1) return mul(x, 0);
  const r = T.rand(x.shape);
  const scale = 1 / (1 - p);
  const y = T.map([x, r], ([v, u]) => `select(0.0, ${v} * ${scale}, ${u} >= ${p})`, { label: 'dropout' });
  const out = record('dropout', y, [x], (g, [rs]) => [T.map([g, rs!], ([v, u]) => `select(0.0, ${v} * ${scale}, ${u} >= ${p})`, { label: 'dropoutBackward' })], [r]);
  r.dispose();
  return out;
}
