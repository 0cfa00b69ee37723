/**
 * @tl/autograd: reverse-mode differentiation over @tl/tensor's ops. Each op here has the same
 * name and arguments as its @tl/tensor kernel and records a tape node when an input requires
 * a gradient; everything else of @tl/tensor is re-exported unchanged.
 */
import './ops/views.js';

export * from '@tl/tensor';
export { backward, noGrad, enableGrad, isGradEnabled, zeroGrad, detach, record, needsGrad, Node, type BackwardRule, type BackwardOptions } from './graph.js';
// Named, so they take precedence over @tl/tensor's non-differentiable ops of the same names.
export { unary, binary, neg, abs, exp, log, sqrt, rsqrt, square, reciprocal, sin, cos, relu, relu6, hardsigmoid, hardswish, leakyRelu, gelu, silu, sigmoid, tanh, softplus, clamp, add, sub, mul, div, maximum, minimum, pow, where } from './ops/elementwise.js';
export { sumToShape, sum, mean, max, min, variance, std, type ReduceOptions, type VarianceOptions } from './ops/reduce.js';
export { matmul, linear } from './ops/linalg.js';
export { conv2d, type Conv2dOptions } from './ops/conv.js';
export { cat, concat, stack, pad, embedding, indexSelect, gather, flip, repeat, tril, triu } from './ops/shape.js';
export { CPU_REFERENCE, NON_DIFFERENTIABLE } from './non-differentiable.js';
export { mseLoss, l1Loss, smoothL1Loss, binaryCrossEntropyWithLogits, dropout, type Reduction } from './ops/losses.js';
export { softmax, logSoftmax, crossEntropy } from './ops/softmax.js';
export { ctcLoss } from './ops/ctc.js';
export { layerNorm, batchNorm, type BatchNormOptions } from './ops/norm.js';
export { maxPool2d, avgPool2d, adaptiveAvgPool2d } from './ops/pool.js';
export { gradReverse } from './ops/grad-reverse.js';
export { checkpoint, isRecomputing } from './checkpoint.js';
export { autocast, autocastAvailable, isAutocastEnabled, lowerPrecision, fullPrecision, type AutocastOptions } from './autocast.js';
