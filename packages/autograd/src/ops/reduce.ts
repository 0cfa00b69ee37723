/** Differentiable reductions, and `sumToShape`, which undoes broadcasting in backward rules. */
import * as T from '@tl/tensor';
import { normDims, type Shape, type Tensor } from '@tl/tensor';
import { fullPrecision } from '../autocast.js';
import { record } from '../graph.js';

export interface ReduceOptions {
  keepdim?: boolean;
}

/** Sums `g` over the dims that broadcasting expanded, so it has `shape` again. */
export function sumToShape(g: Tensor, shape: Shape): Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.rank - shape.length;
  const dims: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) dims.push(i);
  }
  const s = T.sum(g, dims, { keepdim: true });
  g.dispose();
  const r = s.reshape(shape);
  s.dispose();
  return r;
}

/** The reduced result's shape with the reduced dims kept as 1, to broadcast the gradient back. */
function keptShape(x: Tensor, dims: number[]): number[] {
  return x.shape.map((d, i) => (dims.includes(i) ? 1 : d));
}

export function sum(x: Tensor, dims?: number | number[], opts: ReduceOptions = {}): Tensor {
  const y = T.sum(x, dims, opts);
  const d = normDims(dims, x.rank);
  return record('sum', y, [x], (g) => {
    const gk = g.reshape(keptShape(x, d));
    const r = T.map([gk], ([v]) => v!, { shape: x.shape, label: 'sumBackward' });
    gk.dispose();
    return [r];
  });
}

export function mean(x: Tensor, dims?: number | number[], opts: ReduceOptions = {}): Tensor {
  const y = T.mean(x, dims, opts);
  const d = normDims(dims, x.rank);
  const n = d.reduce((a, i) => a * x.shape[i]!, 1);
  return record('mean', y, [x], (g) => {
    const gk = g.reshape(keptShape(x, d));
    const r = T.map([gk], ([v]) => `${v} / f32(${n})`, { shape: x.shape, label: 'meanBackward' });
    gk.dispose();
    return [r];
  });
}

function extremum(kind: 'max' | 'min', x: Tensor, dims: number | number[] | undefined, opts: ReduceOptions): Tensor {
  const y = kind === 'max' ? T.max(x, dims, opts) : T.min(x, dims, opts);
  const d = normDims(dims, x.rank);
  // Ties share the gradient equally, as torch.amax / amin.
  return record(kind, y, [x], (g, [xs, ys]) => {
    const yk = ys!.reshape(keptShape(x, d));
    const mask = T.eq(xs!, yk);
    const count = T.sum(mask, d, { keepdim: true });
    const gk = g.reshape(keptShape(x, d));
    const r = T.map([mask, gk, count], ([m, v, c]) => `${m} * ${v} / ${c}`, { shape: x.shape, label: `${kind}Backward` });
    for (const t of [yk, mask, count, gk]) t.dispose();
    return [r];
  }, [x, y]);
}

export const max = (x: Tensor, dims?: number | number[], opts: ReduceOptions = {}): Tensor => extremum('max', x, dims, opts);
export const min = (x: Tensor, dims?: number | number[], opts: ReduceOptions = {}): Tensor => extremum('min', x, dims, opts);

export interface VarianceOptions extends ReduceOptions {
  correction?: number;
}

export function variance(x: Tensor, dims?: number | number[], opts: VarianceOptions = {}): Tensor {
  x = fullPrecision(x);
  const y = T.variance(x, dims, opts);
  const d = normDims(dims, x.rank);
  const n = d.reduce((a, i) => a * x.shape[i]!, 1);
  const denom = Math.max(n - (opts.correction ?? 1), 0);
  return record('variance', y, [x], (g, [xs]) => {
    const m = T.mean(xs!, d, { keepdim: true });
    const gk = g.reshape(keptShape(x, d));
    const r = T.map([xs!, m, gk], ([v, mu, u]) => `${u} * 2.0 * (${v} - ${mu}) / f32(${denom})`, { shape: x.shape, label: 'varianceBackward' });
    m.dispose();
    gk.dispose();
    return [r];
  }, [x]);
}

export function std(x: Tensor, dims?: number | number[], opts: VarianceOptions = {}): Tensor {
  const v = variance(x, dims, opts);
  const s = T.sqrt(v);
  return record('std', s, [v], (g, [ss]) => [T.map([g, ss!], ([u, q]) => `${u} * 0.5 / ${q}`, { label: 'sqrtBackward' })], [s]);
}
