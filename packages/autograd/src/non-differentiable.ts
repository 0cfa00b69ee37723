/**
 * The functions of @tl/tensor that @tl/autograd re-exports unchanged, by why they need no
 * gradient rule. Every other function of @tl/tensor must have a differentiable counterpart here
 * of the same name; test/exports.test.ts holds the two lists against each other, so a new
 * tensor op cannot silently lose its gradient under the autograd import (DESIGN's weak spot).
 */
/** Float64 references of the kernels on host arrays (`cpuMatmul`, …). */
export const CPU_REFERENCE = /^cpu[A-Z]/;

export const NON_DIFFERENTIABLE: Readonly<Record<string, readonly string[]>> = {
  /** New tensors with no inputs. */
  creation: ['arange', 'full', 'fullLike', 'ones', 'onesLike', 'rand', 'randn', 'tensor', 'zeros', 'zerosLike'],
  /** Outputs are booleans, indices or integers: no gradient flows through them. */
  discrete: ['argmax', 'argmin', 'eq', 'ge', 'gt', 'le', 'lt', 'ne', 'oneHot', 'bucketSize'],
  /** Zero gradient almost everywhere, as in PyTorch (the graph stops here instead). */
  piecewiseConstant: ['ceil', 'floor', 'round', 'sign'],
  /** In-place writes and dtype changes; used under noGrad by optimizers and loaders. */
  inPlace: ['assign', 'cast', 'scaleInPlace', 'adamStep', 'sgdStep', 'updateRunningStats'],
  /** Kernels the differentiable ops are built from (forward halves and backward rules). */
  kernels: [
    'adaptiveAvgPool2dBackward', 'avgPool2dBackward', 'batchNormBackward', 'batchNormStats', 'batchNormTrain', 'conv2dBackwardInput',
    'conv2dBackwardWeight', 'crossEntropyBackward', 'ctcLossBackward', 'ctcLossForward', 'crossEntropyForward', 'embeddingBackward', 'gatherBackward', 'indexSelectBackward',
    'layerNormBackward', 'layerNormWithStats', 'logSoftmaxBackward', 'map', 'matmulWgsl', 'maxPool2dBackward', 'maxPool2dWithIndices',
    'moments', 'reduceGeneric', 'softmaxBackward', 'varMean',
  ],
  /** Kernel choices: autotuning's stored choices and store, the convolution algorithm, and
   * the hooks that force a matmul variant, a convolution algorithm or a way of sharing weights. */
  autotune: [
    'adapterKey', 'autotuneEnabled', 'autotuneFilePath', 'convAlgorithm', 'convShapeClass', 'forceConvAlgorithm', 'forceMatmulVariant', 'forceWeightSharing', 'matmulShapeClass', 'matmulSpecKey', 'onEngineInit', 'registerTuneStore',
    'setAutotune', 'tuneChoices', 'tunePending', 'tuneStoreLocation',
  ],
  /** Views: split and chunk return narrow() views, whose gradients the view hook records. */
  views: ['chunk', 'split'],
  /** Shapes, indices, checks and formatting on the host. */
  host: [
    'avgPool2dOutputShape', 'broadcastIndex', 'broadcastShapes', 'checkIndices', 'checkLabels', 'checkShape', 'collapseDims', 'contiguousStrides', 'conv2dGeometry',
    'conv2dOutputShape', 'fmt', 'host', 'linearIndex', 'maxPool2dOutputShape', 'normDim', 'normDims', 'numel', 'resolveDims', 'rowLayout',
    'rowParams', 'rowProgram', 'rowWorkgroups', 'shapeEq', 'wgslType', 'storageType', 'enableF16', 'dtypeBytes',
    'halfBits', 'halfValue', 'roundHalf', 'toHalfArray', 'fromHalfArray',
  ],
  /** The engine, memory scopes and random state. */
  engine: [
    'engine', 'flush', 'forceRowMode', 'getDevice', 'getRngState', 'init', 'keep', 'manualSeed', 'memory', 'mixSeed', 'nextRandomKey', 'pcg',
    'randValue', 'registerGpuProvider', 'registerViewHook', 'registerCastHook', 'resetPeakMemory', 'setEngine', 'setRngState', 'sync', 'tidy', 'tidyAsync',
  ],
};
