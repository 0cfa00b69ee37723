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
import { Tensor, type DType } from '../tensor.js';

export interface BatchOutput {
  shape: Shape;
  dtype?: DType;
}

/** Whether a fresh tensor of `shape` fits one binding, as `Engine.dispatch` binds it. */
function fitsFresh(shape: Shape): boolean {
  return Math.ceil(numel(shape) / 4) * 16 <= engine().bindingLimit;
}

/** Whether an op reading `inputs` and writing fresh `outputs` must run in runs of images. */
export function needsImageRuns(inputs: readonly Tensor[], outputs: readonly Shape[]): boolean {
  return inputs.some((t) => !t.fitsBinding) || outputs.some((s) => !fitsFresh(s));
}

/** Runs of images small enough that every per-run tensor fits a binding; throws, naming
 * `op`, when one image of some tensor is already over the limit. */
export function imageRuns(op: string, batch: number, shapes: readonly Shape[]): { start: number; count: number }[] {
  const e = engine();
  const largest = shapes.reduce((a, s) => (numel(s) > numel(a) ? s : a));
  const perImage = numel(largest) / Math.max(batch, 1);
  const step = Math.floor(e.maxBindingElements / Math.max(perImage, 1));
  if (step < 1) {
    throw e.tooLarge(op, numel(largest) * 4, `${op} splits it along the batch dim, and one image of it (${perImage * 4} bytes) is over the limit`);
  }
  const runs: { start: number; count: number }[] = [];
  for (let start = 0; start < batch; start += step) runs.push({ start, count: Math.min(step, batch - start) });
  return runs;
}

/** Images start..start+count of `t` as a tensor a kernel can bind whole: a view where the
 * storage fits a binding, else a copy of the run. */
export function imageSlice(t: Tensor, start: number, count: number): Tensor {
  const view = t.narrow(0, start, count);
  if (t.buffer.size <= engine().bindingLimit) return view;
  if (!view.isContiguous) return view.contiguous();
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
  for (const { start, count } of imageRuns(op, batch, [...inputs.map((t) => t.shape), ...outputs.map((o) => o.shape)])) {
    const chunk = inputs.map((t) => imageSlice(t, start, count));
    const results = run(chunk);
    results.forEach((r, k) => {
      e.copyBuffer(r.buffer, r.offset * 4, outs[k]!.buffer, (start * (outs[k]!.size / batch)) * 4, r.size * 4);
      r.dispose();
    });
    for (const c of chunk) c.dispose();
  }
  return outs;
}
