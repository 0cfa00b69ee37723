import { engine, type BoundElements, type Engine } from './engine.js';
import { checkShape, contiguousStrides, fmt, normDim, numel, shapeEq, type Shape } from './shape.js';
import { fromHalfArray } from './half.js';

/** float16 needs the adapter's `shader-f16`; kernels that do not take it refuse it by name. */
export type DType = 'float32' | 'float16' | 'int32';

/** Bytes per element of `dtype` in a GPU buffer. */
export function dtypeBytes(dtype: DType): 2 | 4 {
  return dtype === 'float16' ? 2 : 4;
}
export type NestedArray = number | NestedArray[];

/** A GPU buffer shared by a tensor and its views; returned to the pool when the last goes. */
export class Storage {
  private refs = 1;
  constructor(readonly engine: Engine, readonly buffer: GPUBuffer, readonly bytes: number) {}

  retain(): this {
    this.refs++;
    return this;
  }

  release(): void {
    if (--this.refs === 0) this.engine.pool.release(this.buffer);
  }

  /** Room for `elements` of `elementBytes` each, in whole 4-byte words (copies and
   * writeBuffer move whole words). */
  static allocate(e: Engine, elements: number, elementBytes: 2 | 4 = 4): Storage {
    const bytes = Math.max(Math.ceil((elements * elementBytes) / 4), 1) * 4;
    return new Storage(e, e.pool.acquire(bytes), bytes);
  }
}

/**
 * An n-dimensional float32, float16 or int32 array on the GPU. Views (reshape of contiguous data,
 * transpose, permute, slice, expand, squeeze, unsqueeze) share storage and carry their own
 * strides and offset; kernels read strided inputs directly, and `contiguous()` copies only
 * when it must.
 */
export class Tensor {
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
  readonly dtype: DType;
  readonly storage: Storage;
  private _disposed = false;

  /** Autograd's fields: set by @tl/autograd, ignored by the kernels. */
  requiresGrad = false;
  grad: Tensor | null = null;
  gradNode: GradNodeLike | null = null;

  constructor(storage: Storage, shape: Shape, dtype: DType, strides?: Shape, offset = 0) {
    checkShape(shape);
    this.storage = storage;
    this.shape = Object.freeze([...shape]);
    this.strides = Object.freeze(strides ? [...strides] : contiguousStrides(shape));
    this.offset = offset;
    this.dtype = dtype;
    storage.engine.liveTensors++;
    storage.engine.track(this);
  }

  /** A fresh contiguous tensor with uninitialised contents. */
  static empty(shape: Shape, dtype: DType = 'float32'): Tensor {
    checkShape(shape);
    const e = engine();
    if (dtype === 'float16' && !e.hasF16) {
      throw new Error(
        `float16 tensors need the adapter's shader-f16 feature, which ${e.adapterDescription} lacks; keep float32 (autocast falls back to it by itself)`,
      );
    }
    return new Tensor(Storage.allocate(e, numel(shape), dtypeBytes(dtype)), shape, dtype);
  }

  get engine(): Engine {
    return this.storage.engine;
  }

  /** The GPU buffer, for kernels that read 4-byte elements: a float16 tensor is refused
   * here, so an op not written for half precision fails by name instead of misreading it. */
  get buffer(): GPUBuffer {
    this.assertAlive();
    if (this.dtype === 'float16') throw halfRefused(this);
    return this.storage.buffer;
  }

  /** Bytes per element in the buffer. */
  get elementBytes(): 2 | 4 {
    return dtypeBytes(this.dtype);
  }

  get size(): number {
    return numel(this.shape);
  }

  /** Elements from `offset` to the last one this view reaches through its strides. */
  get span(): number {
    if (this.size === 0) return 0;
    return 1 + this.shape.reduce((s, d, i) => s + (d - 1) * this.strides[i]!, 0);
  }

  /** Whether `binding` succeeds: false only for a view spanning more than the binding limit. */
  get fitsBinding(): boolean {
    this.assertAlive();
    return this.engine.fitsBinding(this.storage.buffer, this.offset, this.span, this.elementBytes);
  }

  /** How a kernel binds this tensor: its storage, or where that exceeds the binding limit
   * the range this view spans, with the view's offset within the binding. Kernels written
   * for float16 pass `half`; the others refuse a float16 tensor, naming `label`. */
  binding(label: string, half = false): BoundElements {
    this.assertAlive();
    if (this.dtype === 'float16' && !half) throw halfRefused(this, label);
    return this.engine.bindElements(this.storage.buffer, this.offset, this.span, label, this.elementBytes);
  }

  /** Grows whenever this tensor's storage is written (by a kernel, a copy or an upload) or
   * replaced (`setData`), as PyTorch's `_version`: for caches derived from the tensor. */
  get version(): number {
    this.assertAlive();
    return this.engine.writeStamp(this.storage.buffer);
  }

  get rank(): number {
    return this.shape.length;
  }

  get disposed(): boolean {
    return this._disposed;
  }

  /** Row-major with no gaps, starting anywhere. */
  get isContiguous(): boolean {
    let s = 1;
    for (let i = this.shape.length - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.strides[i] !== s) return false;
      s *= this.shape[i]!;
    }
    return true;
  }

  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    this.storage.engine.liveTensors--;
    this.storage.release();
    if (this.gradNode) {
      this.gradNode.release();
      this.gradNode = null;
    }
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
  }

  assertAlive(): void {
    if (this._disposed) throw new Error(`tensor ${fmt(this.shape)} was used after dispose()`);
  }

  /** Copies the values to the host in row-major order. */
  async data(): Promise<Float32Array | Int32Array> {
    this.assertAlive();
    const src = this.isContiguous ? this : contiguousCopy(this);
    if (this.dtype === 'float16') {
      // Copies move whole words: read the words that hold the halves, then drop the one
      // before the first when the view starts mid-word.
      const skip = src.offset & 1;
      const first = (src.offset - skip) * 2;
      const bytes = await this.engine.read(src.storage.buffer, first, Math.ceil((this.size + skip) / 2) * 4);
      if (src !== this) src.dispose();
      return fromHalfArray(new Uint16Array(bytes, skip * 2, this.size));
    }
    const bytes = await this.engine.read(src.buffer, src.offset * 4, this.size * 4);
    if (src !== this) src.dispose();
    return this.dtype === 'int32' ? new Int32Array(bytes) : new Float32Array(bytes);
  }

  /** A copy in `dtype` (this tensor when it already is), as PyTorch's `to(dtype)`:
   * float to int truncates, float32 to float16 rounds to nearest even. Differentiable
   * between float types once @tl/autograd is loaded. */
  to(dtype: DType): Tensor {
    this.assertAlive();
    if (dtype === this.dtype) return this;
    if (!castImpl) throw new Error('internal: cast kernel not registered');
    const out = castImpl(this, dtype);
    if (castHook && this.requiresGrad) castHook(this, out);
    return out;
  }

  /**
   * Makes this tensor hold `src`'s values, shape and dtype, as PyTorch's `param.data = src`:
   * whoever holds this tensor (a module, an optimizer) sees the new data. `src` is consumed.
   * Its gradient, of the old dtype, is dropped.
   */
  setData(src: Tensor): void {
    this.assertAlive();
    src.assertAlive();
    if (src === this) return;
    const self = this as unknown as { storage: Storage; shape: readonly number[]; strides: readonly number[]; offset: number; dtype: DType };
    const storage = src.storage.retain();
    this.storage.release();
    self.storage = storage;
    self.shape = src.shape;
    self.strides = src.strides;
    self.offset = src.offset;
    self.dtype = src.dtype;
    this.engine.noteWrite(storage.buffer);
    this.grad?.dispose();
    this.grad = null;
    src.dispose();
  }

  /** `to('float16')`. */
  half(): Tensor {
    return this.to('float16');
  }

  /** `to('float32')`. */
  float(): Tensor {
    return this.to('float32');
  }

  /** The values as nested arrays, as PyTorch's `tolist()`. */
  async toArray(): Promise<NestedArray> {
    const flat = await this.data();
    const build = (dim: number, off: number): NestedArray => {
      if (dim === this.rank) return flat[off]!;
      const n = this.shape[dim]!;
      const inner = numel(this.shape.slice(dim + 1));
      return Array.from({ length: n }, (_, i) => build(dim + 1, off + i * inner));
    };
    return build(0, 0);
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new RangeError(`item() needs a tensor with one element, got shape ${fmt(this.shape)}`);
    return (await this.data())[0]!;
  }

  // Views -------------------------------------------------------------------------------

  private view_(shape: Shape, strides: Shape, offset: number, kind?: ViewKind): Tensor {
    this.assertAlive();
    const out = new Tensor(this.storage.retain(), shape, this.dtype, strides, offset);
    if (kind && viewHook && this.requiresGrad) viewHook(this, out, kind);
    return out;
  }

  /** A new handle on the same storage, shape and strides, outside every scope and graph
   * (autograd keeps saved activations this way). */
  alias(): Tensor {
    this.assertAlive();
    return this.engine.keep(new Tensor(this.storage.retain(), this.shape, this.dtype, this.strides, this.offset));
  }

  /** Same data, new shape (one dim may be -1). Copies only when the strides do not allow a view. */
  reshape(...shapeArg: number[] | [readonly number[]]): Tensor {
    const shape = inferShape(flatArgs(shapeArg), this.size, this.shape);
    const strides = viewStrides(this.shape, this.strides, shape);
    if (strides) return this.view_(shape, strides, this.offset, { kind: 'reshape' });
    const c = contiguousCopy(this);
    const r = c.view_(shape, contiguousStrides(shape), c.offset);
    c.dispose();
    return this.recordCopy(r);
  }

  /** Like `reshape` but never copies: throws when the strides do not allow it. */
  view(...shapeArg: number[] | [readonly number[]]): Tensor {
    const shape = inferShape(flatArgs(shapeArg), this.size, this.shape);
    const strides = viewStrides(this.shape, this.strides, shape);
    if (!strides) throw new Error(`view(${fmt(shape)}) is not possible on a non-contiguous tensor of shape ${fmt(this.shape)}; use reshape() or contiguous() first`);
    return this.view_(shape, strides, this.offset, { kind: 'reshape' });
  }

  flatten(startDim = 0, endDim = -1): Tensor {
    if (this.rank === 0) return this.reshape([1]);
    const s = normDim(startDim, this.rank);
    const e = normDim(endDim, this.rank);
    const shape = [...this.shape.slice(0, s), numel(this.shape.slice(s, e + 1)), ...this.shape.slice(e + 1)];
    return this.reshape(shape);
  }

  permute(...dimsArg: number[] | [readonly number[]]): Tensor {
    const dims = flatArgs(dimsArg).map((d) => normDim(d, this.rank));
    if (dims.length !== this.rank || new Set(dims).size !== this.rank) {
      throw new RangeError(`permute(${dims.join(', ')}) is not a permutation of ${this.rank} dims`);
    }
    return this.view_(dims.map((d) => this.shape[d]!), dims.map((d) => this.strides[d]!), this.offset, { kind: 'permute', dims });
  }

  transpose(dim0 = -2, dim1 = -1): Tensor {
    const a = normDim(dim0, this.rank);
    const b = normDim(dim1, this.rank);
    const dims = [...Array(this.rank).keys()];
    dims[a] = b;
    dims[b] = a;
    return this.permute(dims);
  }

  /** The 2-D transpose (`t.T` in PyTorch for matrices). */
  get T(): Tensor {
    if (this.rank !== 2) throw new RangeError(`.T needs a 2-D tensor, got shape ${fmt(this.shape)}`);
    return this.transpose(0, 1);
  }

  /** Elements start..end (exclusive) with `step` along `dim`, as `t[..., start:end:step]`. */
  slice(dim: number, start = 0, end?: number, step = 1): Tensor {
    const d = normDim(dim, this.rank);
    const n = this.shape[d]!;
    const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + n : v, 0), n);
    const s = clamp(start);
    const e = clamp(end ?? n);
    if (!Number.isInteger(step) || step < 1) throw new RangeError(`slice step must be a positive integer, got ${step}`);
    const len = Math.max(0, Math.ceil((e - s) / step));
    const shape = [...this.shape];
    shape[d] = len;
    const strides = [...this.strides];
    strides[d] = this.strides[d]! * step;
    return this.view_(shape, strides, this.offset + s * this.strides[d]!, { kind: 'index', reapply: (t) => t.slice(dim, start, end, step) });
  }

  /** `narrow(dim, start, length)` as PyTorch. */
  narrow(dim: number, start: number, length: number): Tensor {
    return this.slice(dim, start, start + length);
  }

  /** Index `i` along `dim`, removing the dim (`t[i]` for dim 0). */
  select(dim: number, index: number): Tensor {
    const d = normDim(dim, this.rank);
    const n = this.shape[d]!;
    const i = index < 0 ? index + n : index;
    if (i < 0 || i >= n) throw new RangeError(`index ${index} is out of range for dim ${dim} of size ${n}`);
    return this.view_(
      this.shape.filter((_, k) => k !== d),
      this.strides.filter((_, k) => k !== d),
      this.offset + i * this.strides[d]!,
      { kind: 'index', reapply: (t) => t.select(dim, index) },
    );
  }

  /** Broadcasts size-1 dims (and new leading dims) to `shape` without copying; -1 keeps a size. */
  expand(...shapeArg: number[] | [readonly number[]]): Tensor {
    const shape = flatArgs(shapeArg);
    const lead = shape.length - this.rank;
    if (lead < 0) throw new RangeError(`expand to ${fmt(shape)} has fewer dims than ${fmt(this.shape)}`);
    const outShape: number[] = [];
    const strides: number[] = [];
    shape.forEach((s, i) => {
      const j = i - lead;
      const cur = j >= 0 ? this.shape[j]! : 1;
      const target = s === -1 ? cur : s;
      if (j >= 0 && cur !== target && cur !== 1) {
        throw new RangeError(`cannot expand ${fmt(this.shape)} to ${fmt(shape)}: dim ${i} has size ${cur}`);
      }
      outShape.push(target);
      strides.push(j < 0 || (cur === 1 && target !== 1) ? 0 : this.strides[j]!);
    });
    return this.view_(outShape, strides, this.offset, { kind: 'expand' });
  }

  unsqueeze(dim: number): Tensor {
    const d = normDim(dim, this.rank + 1);
    const shape = [...this.shape];
    const strides = [...this.strides];
    shape.splice(d, 0, 1);
    strides.splice(d, 0, d < this.rank ? this.strides[d]! * this.shape[d]! : 1);
    return this.view_(shape, strides, this.offset, { kind: 'reshape' });
  }

  squeeze(dim?: number): Tensor {
    if (dim === undefined) {
      const keep = this.shape.map((s, i) => (s !== 1 ? i : -1)).filter((i) => i >= 0);
      return this.view_(keep.map((i) => this.shape[i]!), keep.map((i) => this.strides[i]!), this.offset, { kind: 'reshape' });
    }
    const d = normDim(dim, this.rank);
    if (this.shape[d] !== 1) return this.view_(this.shape, this.strides, this.offset, { kind: 'reshape' });
    return this.view_(this.shape.filter((_, i) => i !== d), this.strides.filter((_, i) => i !== d), this.offset, { kind: 'reshape' });
  }

  /** This tensor if it is contiguous (a new handle on the same storage), else a copy. */
  contiguous(): Tensor {
    if (this.isContiguous) return this.view_(this.shape, contiguousStrides(this.shape), this.offset, { kind: 'reshape' });
    return this.recordCopy(contiguousCopy(this));
  }

  /** A copy with its own storage. */
  clone(): Tensor {
    return this.recordCopy(contiguousCopy(this));
  }

  /** A copy's gradient is the upstream gradient reshaped to this tensor's shape. */
  private recordCopy(out: Tensor): Tensor {
    if (viewHook && this.requiresGrad) viewHook(this, out, { kind: 'reshape' });
    return out;
  }

  toString(): string {
    return `Tensor(${fmt(this.shape)}, ${this.dtype}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}

function flatArgs(args: number[] | [readonly number[]]): number[] {
  return args.length === 1 && Array.isArray(args[0]) ? [...(args[0] as readonly number[])] : (args as number[]);
}

function inferShape(shape: number[], size: number, from: Shape): number[] {
  const neg = shape.filter((d) => d === -1).length;
  if (neg > 1) throw new RangeError(`reshape ${fmt(shape)}: only one dim may be -1`);
  const known = shape.reduce((a, d) => (d === -1 ? a : a * d), 1);
  const out = shape.map((d) => (d === -1 ? (known === 0 ? 0 : size / known) : d));
  if (numel(out) !== size || out.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new RangeError(`cannot reshape a tensor of shape ${fmt(from)} (${size} elements) to ${fmt(shape)}`);
  }
  return out;
}

/** Strides for viewing (shape, strides) as `newShape` without a copy, or null (PyTorch's
 * computeStride: split the old dims into runs that are contiguous among themselves). */
function viewStrides(shape: Shape, strides: Shape, newShape: Shape): number[] | null {
  if (shapeEq(shape, newShape)) return [...strides];
  const size = numel(shape);
  if (size === 0) return contiguousStrides(newShape);
  const out = new Array<number>(newShape.length);
  let viewD = newShape.length - 1;
  let chunkBase = strides[strides.length - 1] ?? 1;
  let tensorNumel = 1;
  let viewNumel = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    tensorNumel *= shape[d]!;
    if (d === 0 || (shape[d - 1] !== 1 && strides[d - 1] !== tensorNumel * chunkBase)) {
      while (viewD >= 0 && (viewNumel < tensorNumel || newShape[viewD] === 1)) {
        out[viewD] = viewNumel * chunkBase;
        viewNumel *= newShape[viewD]!;
        viewD--;
      }
      if (viewNumel !== tensorNumel) return null;
      if (d > 0) {
        chunkBase = strides[d - 1]!;
        tensorNumel = 1;
        viewNumel = 1;
      }
    }
  }
  if (viewD !== -1) return null;
  return out;
}

/** What autograd's graph node looks like from here: disposing a tensor releases the
 * activations its node saved. */
export interface GradNodeLike {
  release(): void;
}

/** How a view was made, so autograd can route its gradient back: reshape-like views take
 * the gradient reshaped, permutes the inverse permute, index views scatter it into zeros
 * through `reapply`, and expands sum it over the broadcast dims. */
export type ViewKind =
  | { kind: 'reshape' }
  | { kind: 'permute'; dims: number[] }
  | { kind: 'index'; reapply: (t: Tensor) => Tensor }
  | { kind: 'expand' };

let viewHook: ((src: Tensor, out: Tensor, kind: ViewKind) => void) | null = null;

/** Autograd registers itself here to record views of tensors that require gradients. */
export function registerViewHook(fn: typeof viewHook): void {
  viewHook = fn;
}

let castImpl: ((t: Tensor, dtype: DType) => Tensor) | null = null;
let castHook: ((src: Tensor, out: Tensor) => void) | null = null;

/** The cast kernel lives with the elementwise family; it registers itself here. */
export function registerCast(fn: (t: Tensor, dtype: DType) => Tensor): void {
  castImpl = fn;
}

/** Autograd registers itself here to record dtype conversions of tensors that require gradients. */
export function registerCastHook(fn: typeof castHook): void {
  castHook = fn;
}

function halfRefused(t: Tensor, label?: string): Error {
  return new TypeError(
    `${label ?? 'this op'} does not take float16 tensors (got ${fmt(t.shape)} float16); ` +
      'convert with .float() first, or run the model under autocast(), which keeps such ops in float32',
  );
}

let copyImpl: ((t: Tensor) => Tensor) | null = null;

/** The strided-copy kernel lives with the elementwise family; it registers itself here. */
export function registerContiguousCopy(fn: (t: Tensor) => Tensor): void {
  copyImpl = fn;
}

function contiguousCopy(t: Tensor): Tensor {
  if (!copyImpl) throw new Error('internal: contiguous copy kernel not registered');
  return copyImpl(t);
}

/** Runs `fn` and disposes every tensor it created except those it returns. */
export function tidy<T>(fn: () => T): T {
  const e = engine();
  e.beginScope();
  let result: T;
  try {
    result = fn();
  } catch (err) {
    e.endScope();
    throw err;
  }
  if (result instanceof Promise) {
    e.endScope();
    throw new Error('tidy() got an async function; use tidyAsync()');
  }
  e.endScope(collectTensors(result));
  return result;
}

/** As `tidy` for async functions. Other work interleaved on the same engine while it awaits
 * is scoped too, so keep one async scope per training step. */
export async function tidyAsync<T>(fn: () => Promise<T>): Promise<T> {
  const e = engine();
  e.beginScope();
  let result: T;
  try {
    result = await fn();
  } catch (err) {
    e.endScope();
    throw err;
  }
  e.endScope(collectTensors(result));
  return result;
}

/** Excludes `t` from the enclosing scopes so it survives them. */
export function keep<T extends Tensor>(t: T): T {
  return t.engine.keep(t);
}

function collectTensors(v: unknown, out: Tensor[] = [], seen = new Set<unknown>()): Tensor[] {
  if (v === null || typeof v !== 'object' || seen.has(v)) return out;
  seen.add(v);
  if (v instanceof Tensor) {
    out.push(v);
    if (v.grad) out.push(v.grad);
    return out;
  }
  if (Array.isArray(v)) for (const x of v) collectTensors(x, out, seen);
  else if (v instanceof Map) for (const x of v.values()) collectTensors(x, out, seen);
  else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) collectTensors(x, out, seen);
  return out;
}
