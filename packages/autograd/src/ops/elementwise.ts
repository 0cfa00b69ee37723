/** Differentiable elementwise ops: forward and backward both come from @tl/tensor's table. */
import * as T from '@tl/tensor';
import { BINARY, UNARY, type BinaryName, type Tensor, type UnaryName } from '@tl/tensor';
import { record } from '../graph.js';
import { sumToShape } from './reduce.js';

export function unary(op: UnaryName, x: Tensor, alpha = 0, beta = 0): Tensor {
  const y = T.unary(op, x, alpha, beta);
  const grad = (UNARY[op] as T.UnaryOp).grad;
  return record(op, y, [x], (g, [xs, ys]) => [
    grad ? T.map([xs!, ys!, g], ([a, b, c]) => grad(a!, b!, c!), { alpha, beta, label: `${op}Backward` }) : T.zerosLike(xs!),
  ], [x, y]);
}

export function binary(op: BinaryName, a: Tensor | number, b: Tensor | number): Tensor {
  const y = T.binary(op, a, b);
  const def = BINARY[op] as T.BinaryOp;
  const saved = [a, b].filter((v): v is Tensor => typeof v !== 'number');
  return record(op, y, [a, b], (g, s, needs) => {
    let k = 0;
    const av = typeof a === 'number' ? a : s[k++]!;
    const bv = typeof b === 'number' ? b : s[k++]!;
    const ys = s[k]!;
    const one = (rule: BinaryOp['gradA'], shapeOf: Tensor | number): Tensor | null => {
      if (typeof shapeOf === 'number') return null;
      if (!rule) return T.zeros(shapeOf.shape);
      const full = T.map([av, bv, ys, g], ([p, q, r, u]) => rule(p!, q!, r!, u!), { shape: g.shape, label: `${op}Backward` });
      return sumToShape(full, shapeOf.shape);
    };
    return [needs[0] ? one(def.gradA, av) : null, needs[1] ? one(def.gradB, bv) : null];
  }, [...saved, y]);
}

type BinaryOp = T.BinaryOp;

export const neg = (x: Tensor): Tensor => unary('neg', x);
export const abs = (x: Tensor): Tensor => unary('abs', x);
export const exp = (x: Tensor): Tensor => unary('exp', x);
export const log = (x: Tensor): Tensor => unary('log', x);
export const sqrt = (x: Tensor): Tensor => unary('sqrt', x);
export const rsqrt = (x: Tensor): Tensor => unary('rsqrt', x);
export const square = (x: Tensor): Tensor => unary('square', x);
export const reciprocal = (x: Tensor): Tensor => unary('reciprocal', x);
export const sin = (x: Tensor): Tensor => unary('sin', x);
export const cos = (x: Tensor): Tensor => unary('cos', x);
export const relu = (x: Tensor): Tensor => unary('relu', x);
export const relu6 = (x: Tensor): Tensor => unary('relu6', x);
export const hardsigmoid = (x: Tensor): Tensor => unary('hardsigmoid', x);
export const hardswish = (x: Tensor): Tensor => unary('hardswish', x);
export const leakyRelu = (x: Tensor, negativeSlope = 0.01): Tensor => unary('leakyRelu', x, negativeSlope);
export const gelu = (x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor => unary(approximate === 'tanh' ? 'geluTanh' : 'gelu', x);
export const silu = (x: Tensor): Tensor => unary('silu', x);
export const sigmoid = (x: Tensor): Tensor => unary('sigmoid', x);
export const tanh = (x: Tensor): Tensor => unary('tanh', x);
export const softplus = (x: Tensor): Tensor => unary('softplus', x);
export const clamp = (x: Tensor, min = -Infinity, max = Infinity): Tensor => unary('clamp', x, min, max);

export const add = (a: Tensor | number, b: Tensor | number): Tensor => binary('add', a, b);
export const sub = (a: Tensor | number, b: Tensor | number): Tensor => binary('sub', a, b);
export const mul = (a: Tensor | number, b: Tensor | number): Tensor => binary('mul', a, b);
export const div = (a: Tensor | number, b: Tensor | number): Tensor => binary('div', a, b);
export const maximum = (a: Tensor | number, b: Tensor | number): Tensor => binary('maximum', a, b);
export const minimum = (a: Tensor | number, b: Tensor | number): Tensor => binary('minimum', a, b);
export function pow(a: Tensor | number, b: Tensor | number): Tensor {
  if (typeof a !== 'number' && typeof b === 'number') return unary('powScalar', a, b);
  return binary('pow', a, b);
}

/** `cond ? a : b`; the condition gets no gradient. */
export function where(cond: Tensor, a: Tensor | number, b: Tensor | number): Tensor {
  const y = T.where(cond, a, b);
  return record('where', y, [a, b], (g, [c], needs) => [
    needs[0] && typeof a !== 'number' ? sumToShape(T.where(c!, g, 0), a.shape) : null,
    needs[1] && typeof b !== 'number' ? sumToShape(T.where(c!, 0, g), b.shape) : null,
  ], [cond]);
}
