export { Engine, engine, init, getDevice, setEngine, onEngineInit, type Dispatch, type BoundElements, type StorageBinding } from './engine.js';
export {
  adapterKey, autotuneEnabled, convShapeClass, forceMatmulVariant, matmulShapeClass, registerTuneStore, setAutotune, tuneChoices, tunePending,
  tuneStoreLocation, type ConvProblem, type MatmulProblem, type TuneBench, type TuneEntry, type TuneFamily, type TuneProblem, type TuneResult,
  type TuneStore,
} from './tune.js';
export { registerGpuProvider, type GpuProvider } from './gpu.js';
export { BufferPool, bucketSize, type MemoryInfo } from './pool.js';
export { Params } from './params.js';
export { Rng, mixSeed } from './rng.js';
export { Tensor, Storage, tidy, tidyAsync, keep, registerViewHook, registerCastHook, dtypeBytes, type DType, type NestedArray, type GradNodeLike, type ViewKind } from './tensor.js';
export * from './shape.js';
export { host, broadcastIndex, type HostTensor } from './host.js';
export * from './creation.js';
export * from './kernels/elementwise.js';
export * from './kernels/random.js';
export * from './kernels/optimizer.js';
export * from './kernels/reduce.js';
export * from './kernels/softmax.js';
export * from './kernels/matmul.js';
export * from './kernels/conv2d.js';
export { forceWeightSharing, WEIGHT_SHARING, type WeightSharing } from './kernels/weight-sharing.js';
export * from './kernels/pool.js';
export * from './kernels/gather.js';
export * from './kernels/concat.js';
export * from './kernels/norm.js';
export * from './kernels/ctc.js';
export { WG, MAIN_ARGS, MATH_HELPERS, linearIndex, wgslType, storageType, enableF16 } from './kernels/wgsl.js';
export { halfBits, halfValue, roundHalf, toHalfArray, fromHalfArray } from './half.js';

import { engine } from './engine.js';
import type { MemoryInfo } from './pool.js';

/** Live and pooled GPU buffers and bytes, live tensors, and the peak of live bytes. */
export function memory(): MemoryInfo {
  return engine().memory();
}

/** Restarts `memory().peakBytes` from the bytes live now, to measure the peak of one step or epoch. */
export function resetPeakMemory(): void {
  engine().pool.resetPeak();
}

/** Submits every recorded dispatch without waiting. */
export function flush(): void {
  engine().flush();
}

/** Waits until the GPU has finished all submitted work. */
export function sync(): Promise<void> {
  return engine().sync();
}
