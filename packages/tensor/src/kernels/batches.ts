/**
 * Splitting ops on [N, ...] tensors over the storage binding limit into runs of whole
 * images: each image's block is contiguous in storage, so a run of images is one range.
 * Runs are copied into buffers of their own (copies have no binding limit) and the op runs
 * on them unchanged, so its kernels, which bind whole buffers and index their outputs from
 * 0, need no second variant; the copies cost little next to the ops that need them
 * (convolutions and pools over large activations).
 */
import { engine } from '../engine.js';
import { numel, type Shape } from '../shape.js';
import { dtypeBytes, Tensor, type DType } from '../tensor.js';
import { add, assign } from './elementwise.js';

export interface BatchOutput {
  shape: Shape;
  dtype?: DType;
}

/** Whether a fresh tensor fits one binding, as `Engine.dispatch` binds it (whole vec4s). */
function fitsFresh(t: BatchOutput): boolean {
  return Math.ceil((numel(t.shape) * dtypeBytes(t.dtype ?? 'float32')) / 16) * 16 <= engine().bindingLimit;
}

/** Whether an op reading `inputs` and writing fresh `outputs` must run in runs of images. */
export function needsImageRuns(inputs: readonly Tensor[], outputs: readonly BatchOutput[]): boolean {
  return inputs.some((t) => !t.fitsBinding) || outputs.some((o) => !fitsFresh(o));
}

/** Runs of images small enough that every per-run tensor fits a binding; throws, naming
 * `op`, when one image of some tensor is already over the limit. */
export function imageRuns(op: string, batch: number, tensors: readonly BatchOutput[]): { start: number; count: number }[] {
  const e = engine();
  const bytes = (t: BatchOutput): number => numel(t.shape) * dtypeBytes(t.dtype ?? 'float32');
  const largest = tensors.reduce((a, t) => (bytes(t) > bytes(a) ? t : a));
  const perImage = bytes(largest) / Math.max(batch, 1);
  const step = Math.floor((e.maxBindingElements * 4) / Math.max(perImage, 1));
  if (step < 1) {
    throw e.tooLarge(op, bytes(largest), `${op} splits it along the batch dim, and one image of it (${perImage} bytes) is over the limit`);
  }
  const runs: { start: number; count: number }[] = [];
  for (let start = 0; start < batch; start += step) runs.push({ start, count: Math.min(step, batch - start) });
  return runs;
}

/** Images start..start+count of `t` as a tensor a kernel can bind whole: a view where the
 * storage fits a binding, else a copy of the run. */
/** `sum + part` (the sum so far and the part are consumed), or `part` where there is no sum
 * yet: the running total of per-run partial results. */
export function addPart(sum: Tensor | null, part: Tensor): Tensor {
  if (!sum) return part;
  const next = add(sum, part);
  sum.dispose();
  part.dispose();
  return next;
}

export function imageSlice(t: Tensor, start: number, count: number): Tensor {
  const view = t.narrow(0, start, count);
  if (t.storage.buffer.size <= engine().bindingLimit) return view;
  if (!view.isContiguous) return view.contiguous();
  // A run of halves may start mid-word, which a buffer copy cannot: the elementwise copy can.
  if (t.dtype === 'float16') {
    const run = view.clone();
    view.dispose();
    return run;
  }
  const run = Tensor.empty(view.shape, t.dtype);
  engine().copyBuffer(t.buffer, view.offset * 4, run.buffer, 0, view.size * 4);
  return run;
}

/**
 * Runs `op` (through `run`) on runs of images of `inputs` and gathers its results into
 * fresh tensors of `outputs`. Inputs that `run` does not slice (weights) are its own.
 */
export function byImages(op: string, inputs: readonly Tensor[], outputs: readonly BatchOutput[], run: (chunk: readonly Tensor[]) => readonly Tensor[]): Tensor[] {
  const e = engine();
  const batch = outputs[0]!.shape[0]!;
  const outs = outputs.map((o) => Tensor.empty(o.shape, o.dtype));
  for (const { start, count } of imageRuns(op, batch, [...inputs, ...outputs])) {
    const chunk = inputs.map((t) => imageSlice(t, start, count));
    const results = run(chunk);
    results.forEach((r, k) => {
      const out = outs[k]!;
      if (out.dtype === 'float16') {
        const slot = out.narrow(0, start, count);
        assign(slot, r);
        slot.dispose();
      } else {
        e.copyBuffer(r.buffer, r.offset * 4, out.buffer, (start * (out.size / batch)) * 4, r.size * 4);
      }
      r.dispose();
    });
    for (const c of chunk) c.dispose();
  }
  return outs;
}
