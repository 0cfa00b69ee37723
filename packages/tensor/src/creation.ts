import { engine } from './engine.js';
import { Params } from './params.js';
import { checkShape, numel, type Shape } from './shape.js';
import { Tensor, type DType, type NestedArray } from './tensor.js';
import { enableF16, linearIndex, MAIN_ARGS, storageType, WG } from './kernels/wgsl.js';
import { toHalfArray } from './half.js';

export interface TensorOptions {
  dtype?: DType;
  shape?: Shape;
}

/** A tensor from nested arrays or a flat typed array (with `shape`). Int32Array gives int32. */
export function tensor(data: NestedArray | Float32Array | Int32Array | Float64Array | readonly number[], opts: TensorOptions = {}): Tensor {
  let flat: ArrayLike<number>;
  let shape: number[];
  if (ArrayBuffer.isView(data)) {
    flat = data;
    shape = opts.shape ? [...opts.shape] : [data.length];
  } else {
    const inferred = inferNestedShape(data);
    flat = (Array.isArray(data) ? (data as unknown[]).flat(Infinity) : [data]) as number[];
    shape = opts.shape ? [...opts.shape] : inferred;
  }
  checkShape(shape);
  if (numel(shape) !== flat.length) {
    throw new RangeError(`tensor(): ${flat.length} values do not fill shape [${shape.join(', ')}] (${numel(shape)} elements)`);
  }
  const dtype = opts.dtype ?? (data instanceof Int32Array ? 'int32' : 'float32');
  const t = Tensor.empty(shape, dtype);
  if (flat.length > 0) {
    if (dtype === 'float16') t.engine.write(t.storage.buffer, toHalfArray(flat));
    else t.engine.write(t.buffer, dtype === 'int32' ? Int32Array.from(flat) : flat instanceof Float32Array ? flat : Float32Array.from(flat));
  }
  return t;
}

function inferNestedShape(data: NestedArray | readonly number[]): number[] {
  const shape: number[] = [];
  let cur: unknown = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0];
  }
  const check = (v: unknown, d: number): void => {
    if (d === shape.length) {
      if (typeof v !== 'number') throw new TypeError(`tensor(): expected a number at depth ${d}, got ${typeof v}`);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[d]) throw new RangeError(`tensor(): ragged nested array at depth ${d}; expected length ${shape[d]}`);
    for (const x of v) check(x, d + 1);
  };
  check(data, 0);
  return shape;
}

/** A constant fill on the GPU (no host upload, so no flush of recorded work). */
export function full(shape: Shape, value: number, dtype: DType = 'float32'): Tensor {
  const t = Tensor.empty(shape, dtype);
  fillKernel(t, `${storageType(dtype)}(p.value)`, value, 0);
  return t;
}

export const zeros = (shape: Shape, dtype: DType = 'float32'): Tensor => full(shape, 0, dtype);
export const ones = (shape: Shape, dtype: DType = 'float32'): Tensor => full(shape, 1, dtype);
export const zerosLike = (t: Tensor): Tensor => full(t.shape, 0, t.dtype);
export const onesLike = (t: Tensor): Tensor => full(t.shape, 1, t.dtype);
export const fullLike = (t: Tensor, value: number): Tensor => full(t.shape, value, t.dtype);

/** Values start, start+step, ... below end, as `torch.arange`. Integer arguments give int32. */
export function arange(start: number, end?: number, step = 1, dtype?: DType): Tensor {
  if (end === undefined) {
    end = start;
    start = 0;
  }
  if (step === 0) throw new RangeError('arange(): step must be nonzero');
  const n = Math.max(0, Math.ceil((end - start) / step));
  const dt = dtype ?? ([start, end, step].every(Number.isInteger) ? 'int32' : 'float32');
  const t = Tensor.empty([n], dt);
  fillKernel(t, `${storageType(dt)}(p.value + p.step * f32(i))`, start, step);
  return t;
}

function fillKernel(t: Tensor, expr: string, value: number, step: number): void {
  const n = t.size;
  if (n === 0) return;
  const e = engine();
  for (const { start, count } of e.elementRuns(n, t.fitsBinding)) {
    const out = e.bindElements(t.storage.buffer, t.offset + start, count, 'fill', t.elementBytes);
    const params = new Params().u32('n', count).u32('start', start).u32('off', out.offset).f32('value', value).f32('step', step);
    const code = (): string => /* wgsl */ `
${enableF16(t.dtype === 'float16')}
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<${storageType(t.dtype)}>;
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let j = ${linearIndex()};
  if (j >= p.n) { return; }
  let i = p.start + j;
  out[p.off + j] = ${expr};
}`;
    e.dispatch({ key: `fill/${t.dtype}/${expr}`, get code() { return code(); }, params, buffers: [out.resource], workgroups: e.grid(Math.ceil(count / WG)), label: 'fill' });
  }
}
