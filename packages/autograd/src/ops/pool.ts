/** Differentiable pooling: max pool routes the gradient through saved argmax indices. */
import * as T from '@tl/tensor';
import type { AvgPool2dOptions, MaxPool2dOptions, Tensor } from '@tl/tensor';
import { needsGrad, record } from '../graph.js';

export function maxPool2d(x: Tensor, opts: MaxPool2dOptions): Tensor {
  if (!needsGrad(x)) return T.maxPool2d(x, opts);
  const { values, indices } = T.maxPool2dWithIndices(x, opts);
  const shape = [...x.shape];
  const out = record('maxPool2d', values, [x], (g, [idx]) => [T.maxPool2dBackward(g, idx!, shape, opts)], [indices]);
  indices.dispose();
  return out;
}

export function avgPool2d(x: Tensor, opts: AvgPool2dOptions): Tensor {
  const y = T.avgPool2d(x, opts);
  const shape = [...x.shape];
  return record('avgPool2d', y, [x], (g) => [T.avgPool2dBackward(g, shape, opts)]);
}

export function adaptiveAvgPool2d(x: Tensor, outputSize: number | readonly [number, number]): Tensor {
  const y = T.adaptiveAvgPool2d(x, outputSize);
  const shape = [...x.shape];
  return record('adaptiveAvgPool2d', y, [x], (g) => [T.adaptiveAvgPool2dBackward(g, shape)]);
}
