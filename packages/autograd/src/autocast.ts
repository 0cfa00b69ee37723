/**
 * Mixed precision as torch.autocast: inside `autocast(fn)`, matmul, linear and convolution
 * take float16 copies of their float32 inputs (the weights stay float32, and their gradients
 * come back through the casts in float32); the ops whose float16 results lose too much
 * (softmax, log-softmax, cross-entropy, layer norm, the losses) or that have no float16
 * kernel (gather, padding) run in float32 on upcast copies; batch norm and pooling run on
 * float16 activations with float32 parameters and statistics, as PyTorch's CUDA kernels do.
 * Elementwise ops follow their inputs, promoting float16 with float32 to float32.
 */
import { engine, type Tensor } from '@tl/tensor';

export interface AutocastOptions {
  /** False runs `fn` unchanged, as `torch.autocast(enabled=False)`. */
  enabled?: boolean;
  dtype?: 'float16';
}

let active = false;

/** Whether the adapter can run autocast's float16 kernels (`shader-f16`). */
export function autocastAvailable(): boolean {
  return engine().hasF16;
}

/** True inside an `autocast` region on an adapter with `shader-f16`. */
export function isAutocastEnabled(): boolean {
  return active;
}

/**
 * Runs `fn` with autocast on. Where the adapter lacks `shader-f16` it runs in float32 (check
 * `autocastAvailable()` to say so); an async `fn` keeps it on until its promise settles.
 */
export function autocast<T>(fn: () => T, opts: AutocastOptions = {}): T {
  if (opts.dtype !== undefined && opts.dtype !== 'float16') {
    throw new RangeError(`autocast: dtype ${JSON.stringify(opts.dtype)} is not supported; expected 'float16'`);
  }
  const prev = active;
  active = (opts.enabled ?? true) && autocastAvailable();
  let result: T;
  try {
    result = fn();
  } catch (e) {
    active = prev;
    throw e;
  }
  if (result instanceof Promise) return result.finally(() => (active = prev)) as T;
  active = prev;
  return result;
}

/** An input of an op autocast runs in float16: a float16 copy of a float32 tensor. */
export function lowerPrecision(x: Tensor): Tensor {
  return active && x.dtype === 'float32' ? x.half() : x;
}

/** An input of an op autocast runs in float32: a float32 copy of a float16 tensor. */
export function fullPrecision(x: Tensor): Tensor;
export function fullPrecision(x: Tensor | null | undefined): Tensor | null | undefined;
export function fullPrecision(x: Tensor | null | undefined): Tensor | null | undefined {
  return active && x && x.dtype === 'float16' ? x.float() : x;
}

/**
 * Frees a cast copy an op made (`used`, of `original`) once the op has recorded what it
 * keeps: backward holds its own handle on what it saved, and a copy outside the graph
 * (a frozen weight's) is otherwise held until the step's scope ends, so a half model or
 * a frozen backbone would hold every layer's float32 or float16 copy at once.
 */
export function dropCast(original: Tensor | null | undefined, used: Tensor | null | undefined): void {
  if (used && used !== original && !used.requiresGrad) used.dispose();
}
