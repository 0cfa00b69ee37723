/**
 * Reductions over any set of dims: sum, mean, max, min (values only, as `torch.amax`/`amin`),
 * argmax, argmin, variance and std, plus the machinery the softmax and norm families reuse.
 *
 * The reduced dims are moved to the end logically (nothing is copied): each output element
 * is a "row" of `len` elements, read through the input's strides. Size-1 dims are dropped and
 * neighbouring dims that are contiguous with each other are merged, so the common cases
 * (last dim, leading dims, everything) index with one multiply per element.
 *
 * A row is cut into `splits` interleaved chunks (invocation s of a row reads elements s,
 * s + splits, ...): neighbouring invocations read neighbouring addresses, every invocation
 * reduces a bounded number of elements serially (at most about MAX_CHUNK, which keeps float32
 * sums accurate and a 1e6-element sum from being one thread's loop), and the per-chunk
 * states are reduced again by the same kernel until one state per row is left. No workgroup
 * memory or barriers, which lavapipe runs slowly (see `rowLayout`). Variance keeps
 * (count, mean, M2) states: Welford within a chunk, Chan's pairwise merge between chunks.
 *
 * Row kernels that must see a whole row at once (softmax, layer norm) use `rowProgram`: one
 * row per invocation, or on a GPU with few long rows one workgroup per row with a two-level
 * workgroup-memory reduction; vec4 loads where rows allow.
 */
import { full } from '../creation.js';
import { engine } from '../engine.js';
import { host, type HostTensor } from '../host.js';
import { Params } from '../params.js';
import { fmt, normDim, numel, type Shape } from '../shape.js';
import { Tensor, type DType } from '../tensor.js';
import { assign } from './elementwise.js';
import { enableF16, linearIndex, MAIN_ARGS, storageType, WG, wgslType } from './wgsl.js';

export type Dims = number | readonly number[];

export interface ReduceOptions {
  keepdim?: boolean;
}

export interface VarianceOptions extends ReduceOptions {
  /** Subtracted from the element count in the divisor (1 = unbiased, as `torch.var`'s default). */
  correction?: number;
}

export type ReduceKind = 'sum' | 'max' | 'min' | 'argmax' | 'argmin' | 'moments';

/** One output of a generic reduction: a WGSL expression of the final state `s` (and `p.count`,
 * the number of reduced elements as f32). */
export interface ReduceOutput {
  dtype: DType;
  expr: (s: string) => string;
}

/** A reduction over `dims` of one or more same-shaped tensors, for this family and others. */
export interface ReduceSpec {
  kind: ReduceKind;
  /** Tensors of one shape, each read through its own strides. */
  inputs: readonly Tensor[];
  /** Normalised, sorted, unique dims of the inputs to reduce. */
  dims: readonly number[];
  keepdim?: boolean;
  /** 'sum' only: accumulate a vec2<f32> (two sums in one pass). */
  vec2?: boolean;
  /** The WGSL value accumulated per element, from the loaded inputs v[k] (in their own
   * type), the output row `row` and the index `j` of the element within its row (u32).
   * Default: v[0]. */
  elem?: (v: string[]) => string;
  /** Buffers the `elem` expression reads as `ex0[p.exOff0 + ...]` (contiguous tensors). */
  extras?: readonly Tensor[];
  /** f32 uniforms visible as `p.<name>` in `elem` and the outputs. */
  scalars?: Readonly<Record<string, number>>;
  /** i32 uniforms visible as `p.<name>`. */
  ints?: Readonly<Record<string, number>>;
  outputs: readonly ReduceOutput[];
  label: string;
}

/** Largest number of elements one invocation reduces serially, and the fewest worth a split. */
const MAX_CHUNK = 512;
const MIN_CHUNK = 32;
/** Invocations a pass aims for when rows alone would give fewer: plenty for lavapipe's
 * cores, a few waves on a discrete GPU (a guess, not tuned). */
const TARGET_INVOCATIONS = 8192;

function chooseSplits(rows: number, len: number): number {
  let s = Math.ceil(len / MAX_CHUNK);
  if (rows * s < TARGET_INVOCATIONS) s = Math.max(s, Math.min(Math.ceil(TARGET_INVOCATIONS / rows), Math.floor(len / MIN_CHUNK)));
  return Math.max(1, Math.min(s, len));
}

/** Dims in logical order with size-1 dims dropped and mergeable neighbours merged (for every
 * input's strides at once). */
function coalesce(dims: readonly number[], shape: Shape, strides: readonly (readonly number[])[]): { sizes: number[]; strides: number[][] } {
  const sizes: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (const d of dims) {
    const n = shape[d]!;
    if (n === 1) continue;
    const last = sizes.length - 1;
    if (last >= 0 && strides.every((s, k) => st[k]![last] === s[d]! * n)) {
      sizes[last] *= n;
      strides.forEach((s, k) => (st[k]![last] = s[d]!));
    } else {
      sizes.push(n);
      strides.forEach((s, k) => st[k]!.push(s[d]!));
    }
  }
  return { sizes, strides: st };
}

interface StateDef {
  /** WGSL: `S`, `first_(v, j) -> S`, `acc_(a, v, j) -> S`, `comb_(a, b) -> S`. */
  code: string;
  /** Size of S in 4-byte words. */
  words: number;
}

function stateDef(kind: ReduceKind, V: string): StateDef {
  // By the bits: compilers may fold x != x to false.
  const isNan = V === 'i32' ? 'false' : '(bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u';
  const nan = `fn nan_(x: ${V}) -> bool { return ${isNan}; }`;
  switch (kind) {
    case 'sum':
      return {
        words: V === 'vec2<f32>' ? 2 : 1,
        code: `alias S = ${V};
fn first_(v: ${V}, j: u32) -> S { return v; }
fn acc_(a: S, v: ${V}, j: u32) -> S { return a + v; }
fn comb_(a: S, b: S) -> S { return a + b; }`,
      };
    case 'max':
    case 'min': {
      // NaN wins, as in PyTorch.
      const cmp = kind === 'max' ? '>' : '<';
      return {
        words: 1,
        code: `alias S = ${V};
${nan}
fn first_(v: ${V}, j: u32) -> S { return v; }
fn acc_(a: S, v: ${V}, j: u32) -> S { return select(a, v, v ${cmp} a || nan_(v)); }
fn comb_(a: S, b: S) -> S { return select(a, b, b ${cmp} a || nan_(b)); }`,
      };
    }
    case 'argmax':
    case 'argmin': {
      // The first index wins ties, and NaN counts as the extreme, as in PyTorch. Within a
      // chunk indices increase, so a strict comparison keeps the first; between chunks the
      // index decides.
      const cmp = kind === 'argmax' ? '>' : '<';
      return {
        words: 2,
        code: `struct S { v: ${V}, i: u32 }
${nan}
fn first_(v: ${V}, j: u32) -> S { return S(v, j); }
fn acc_(a: S, v: ${V}, j: u32) -> S {
  if (!nan_(a.v) && (v ${cmp} a.v || nan_(v))) { return S(v, j); }
  return a;
}
fn comb_(a: S, b: S) -> S {
  let an = nan_(a.v);
  let bn = nan_(b.v);
  let better = !an && (b.v ${cmp} a.v || bn);
  let tie = (b.v == a.v) || (an && bn);
  if (better || (tie && b.i < a.i)) { return b; }
  return a;
}`,
      };
    }
    case 'moments':
      return {
        words: 3,
        code: `struct S { n: f32, mean: f32, m2: f32 }
fn first_(v: f32, j: u32) -> S { return S(1.0, v, 0.0); }
fn acc_(a: S, v: f32, j: u32) -> S {
  let n = a.n + 1.0;
  let d = v - a.mean;
  let mean = a.mean + d / n;
  return S(n, mean, a.m2 + d * (v - mean));
}
fn comb_(a: S, b: S) -> S {
  let n = a.n + b.n;
  let d = b.mean - a.mean;
  let f = b.n / n;
  return S(n, a.mean + d * f, a.m2 + b.m2 + d * d * a.n * f);
}`,
      };
  }
}

/** WGSL lines that split `r` into coordinates over p.<field> and add them, times each input's
 * strides, to the offsets b0, b1, ... (declared by the caller as vars). */
function offsetLines(rank: number, field: string, inputs: number, r: string, stField: (k: number) => string, target: (k: number) => string): string {
  if (rank === 0) return '';
  if (rank === 1) {
    return Array.from({ length: inputs }, (_, k) => `  ${target(k)} += ${r} * ${Params.at('p', stField(k), 0)};`).join('\n');
  }
  const lines = [`  var q_${field} = ${r};`];
  for (let d = rank - 1; d >= 0; d--) {
    lines.push(`  let c_${field}${d} = q_${field} % ${Params.at('p', field, d)};`);
    if (d > 0) lines.push(`  q_${field} = q_${field} / ${Params.at('p', field, d)};`);
    for (let k = 0; k < inputs; k++) lines.push(`  ${target(k)} += c_${field}${d} * ${Params.at('p', stField(k), d)};`);
  }
  return lines.join('\n');
}

/**
 * Runs a reduction: one pass over the inputs into per-chunk states, then passes over the
 * states until one per row is left, the last of which writes the outputs. Returns the
 * outputs, contiguous, in the order of `spec.outputs`.
 */
export function reduceGeneric(spec: ReduceSpec): Tensor[] {
  const x = spec.inputs[0]!;
  for (const t of spec.inputs) {
    t.assertAlive();
    if (t.shape.length !== x.shape.length || t.shape.some((d, i) => d !== x.shape[i])) {
      throw new RangeError(`${spec.label}: inputs have shapes ${fmt(x.shape)} and ${fmt(t.shape)}; expected one shape`);
    }
  }
  const dimSet = new Set(spec.dims);
  const keptDims = x.shape.map((_, i) => i).filter((i) => !dimSet.has(i));
  const outShape = spec.keepdim
    ? x.shape.map((d, i) => (dimSet.has(i) ? 1 : d))
    : keptDims.map((i) => x.shape[i]!);
  const outputs = spec.outputs.map((o) => Tensor.empty(outShape, o.dtype));
  const rows = numel(outShape);
  const len = numel(spec.dims.map((d) => x.shape[d]!));
  if (rows === 0) return outputs;
  if (len === 0) throw new RangeError(`${spec.label}: cannot reduce over zero elements`);
  const e = engine();
  const strides = spec.inputs.map((t) => t.strides);
  const kept = coalesce(keptDims, x.shape, strides);
  const inner = coalesce(spec.dims, x.shape, strides);
  const V = spec.vec2 ? 'vec2<f32>' : spec.kind === 'moments' || spec.elem ? 'f32' : wgslType(x.dtype);
  const state = stateDef(spec.kind, V);

  const userParams = (params: Params): void => {
    for (const [k, v] of Object.entries(spec.scalars ?? {})) params.f32(k, v);
    for (const [k, v] of Object.entries(spec.ints ?? {})) params.i32(k, v);
    params.f32('count', len);
  };
  // float16 inputs and outputs are loaded into f32 and stored once, as PyTorch accumulates
  // half-precision sums in float.
  const half = [...spec.inputs, ...outputs].some((t) => t.dtype === 'float16');
  const outDecls = (first: number): string =>
    spec.outputs.map((o, k) => `@group(0) @binding(${first + k}) var<storage, read_write> out${k}: array<${storageType(o.dtype)}>;`).join('\n');
  const outWrites = spec.outputs.map((o, k) => `  out${k}[row] = ${storageType(o.dtype)}(${o.expr('acc')});`).join('\n');
  const partialOut = (b: number): string => `@group(0) @binding(${b}) var<storage, read_write> part: array<S>;`;

  // Pass 1: the inputs through their strides. With several reduced dims left after merging
  // (e.g. batch norm's [N, H·W]), only the last is split between invocations and the
  // others are looped over, so offsets need divisions once per outer step, not per element.
  const splits = chooseSplits(rows, len);
  const final = splits === 1;
  const r = inner.sizes.length;
  const nested = r >= 2 && splits <= inner.sizes[r - 1]!;
  const K = spec.inputs.length;
  const bound = spec.inputs.map((t) => t.binding(spec.label, true));
  const extras = (spec.extras ?? []).map((t) => t.binding(spec.label));
  const params = new Params().u32('n', rows * splits).u32('len', len).u32('splits', splits);
  if (kept.sizes.length > 0) params.u32s('ks', kept.sizes);
  const outerRank = nested ? r - 1 : r;
  if (outerRank > 0) params.u32s('rs', inner.sizes.slice(0, outerRank));
  if (nested) params.u32('lk', inner.sizes[r - 1]!).u32('lo', len / inner.sizes[r - 1]!);
  bound.forEach((b, k) => {
    params.u32(`off${k}`, b.offset);
    if (kept.sizes.length > 0) params.u32s(`kst${k}`, kept.strides[k]!);
    if (outerRank > 0) params.u32s(`rst${k}`, inner.strides[k]!.slice(0, outerRank));
    if (nested) params.u32(`lst${k}`, inner.strides[k]![r - 1]!);
  });
  extras.forEach((x, k) => params.u32(`exOff${k}`, x.offset));
  userParams(params);
  let b = 1;
  const decls = spec.inputs.map((t, k) => `@group(0) @binding(${b++}) var<storage, read> in${k}: array<${storageType(t.dtype)}>;`);
  (spec.extras ?? []).forEach((t, k) => decls.push(`@group(0) @binding(${b++}) var<storage, read> ex${k}: array<${wgslType(t.dtype)}>;`));
  const ks = [...Array(K).keys()];
  const vals = ks.map((k) => `v${k}`);
  /** WGSL: acc from the element at index `j` whose offsets are `offs`. */
  const take = (first: boolean, j: string, offs: (k: number) => string): string =>
    `acc = ${first ? 'first_(' : 'acc_(acc, '}elem_(row, ${j}, ${ks.map(offs).join(', ')}), ${j});`;
  const offsetsOf = (idx: string, target: (k: number) => string): string =>
    `${ks.map((k) => `  ${target(k)} = b${k};`).join('\n')}\n${offsetLines(outerRank, 'rs', K, idx, (k) => `rst${k}`, target)}`;
  const loop = nested
    ? `  var acc = S();
  ${take(true, 's0', (k) => `b${k} + s0 * p.lst${k}`)}
${ks.map((k) => `  var ob${k} = b${k};`).join('\n')}
  var t = s0 + p.splits;
  for (var o = 0u; o < p.lo; o++) {
    if (o > 0u) {
${offsetsOf('o', (k) => `ob${k}`)}
    }
    for (; t < p.lk; t += p.splits) {
      let j = o * p.lk + t;
      ${take(false, 'j', (k) => `ob${k} + t * p.lst${k}`)}
    }
    t = s0;
  }`
    : `  var acc = S();
${ks.map((k) => `  var o${k} = 0u;`).join('\n')}
  {
${offsetsOf('s0', (k) => `o${k}`)}
    ${take(true, 's0', (k) => `o${k}`)}
  }
  for (var j = s0 + p.splits; j < p.len; j += p.splits) {
${offsetsOf('j', (k) => `o${k}`)}
    ${take(false, 'j', (k) => `o${k}`)}
  }`;
  // What the kernels' WGSL depends on besides the uniform values; the partial passes share it.
  const specKey = `${spec.kind}/${V}/${half ? 'h' : ''}/${spec.inputs.map((t) => t.dtype).join(',')}/${(spec.extras ?? []).map((t) => t.dtype).join(',')}/` +
    `${Object.keys(spec.scalars ?? {}).join(',')}/${Object.keys(spec.ints ?? {}).join(',')}/${spec.outputs.map((o) => `${o.dtype}:${o.expr('acc')}`).join(',')}/` +
    `${spec.elem ? spec.elem(vals) : 'v0'}`;
  const code = (): string => /* wgsl */ `
${enableF16(half)}
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
${decls.join('\n')}
${state.code}
${final ? outDecls(b) : partialOut(b)}
fn elem_(row: u32, j: u32, ${ks.map((k) => `o${k}: u32`).join(', ')}) -> ${V} {
${ks.map((k) => `  let v${k} = ${spec.inputs[k]!.dtype === 'float16' ? `f32(in${k}[o${k}])` : `in${k}[o${k}]`};`).join('\n')}
  return ${spec.elem ? spec.elem(vals) : 'v0'};
}
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let g = ${linearIndex()};
  if (g >= p.n) { return; }
  let row = g / p.splits;
  let s0 = g - row * p.splits;
${ks.map((k) => `  var b${k} = p.off${k};`).join('\n')}
${offsetLines(kept.sizes.length, 'ks', K, 'row', (k) => `kst${k}`, (k) => `b${k}`)}
${loop}
${final ? outWrites : '  part[g] = acc;'}
}`;
  const part = final ? null : Tensor.empty([rows * splits * state.words]);
  e.dispatch({
    key: `reduce/${final ? 'final' : 'part'}/k${kept.sizes.length}/r${outerRank}${nested ? 'n' : ''}/${specKey}`,
    get code() { return code(); },
    params,
    buffers: [...bound.map((x) => x.resource), ...extras.map((x) => x.resource), ...(part ? [part.buffer] : outputs.map((o) => o.storage.buffer))],
    workgroups: e.grid(Math.ceil((rows * splits) / WG)),
    label: spec.label,
  });
  if (part) reducePartials(spec.label, specKey, part, rows, splits, state, outputs, userParams, outDecls, outWrites, half);
  return outputs;
}

/** Passes over per-chunk states ([rows, prevLen] S) until one state per row remains. */
function reducePartials(
  label: string, specKey: string, part: Tensor, rows: number, prevLen: number, state: StateDef, outputs: Tensor[],
  userParams: (p: Params) => void, outDecls: (first: number) => string, outWrites: string, half: boolean,
): void {
  const e = engine();
  let prev = part;
  let len = prevLen;
  for (;;) {
    const splits = chooseSplits(rows, len);
    const final = splits === 1;
    const params = new Params().u32('n', rows * splits).u32('len', len).u32('splits', splits);
    userParams(params);
    const code = (): string => /* wgsl */ `
${enableF16(half)}
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
${state.code}
@group(0) @binding(1) var<storage, read> prev: array<S>;
${final ? outDecls(2) : '@group(0) @binding(2) var<storage, read_write> part: array<S>;'}
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let g = ${linearIndex()};
  if (g >= p.n) { return; }
  let row = g / p.splits;
  let s0 = g - row * p.splits;
  let base = row * p.len;
  var acc = prev[base + s0];
  for (var j = s0 + p.splits; j < p.len; j += p.splits) {
    acc = comb_(acc, prev[base + j]);
  }
${final ? outWrites : '  part[g] = acc;'}
}`;
    const next = final ? null : Tensor.empty([rows * splits * state.words]);
    e.dispatch({
      key: `reducePartials/${final ? 'final' : 'part'}/${specKey}`,
      get code() { return code(); },
      params,
      buffers: [prev.buffer, ...(next ? [next.buffer] : outputs.map((o) => o.storage.buffer))],
      workgroups: e.grid(Math.ceil((rows * splits) / WG)),
      label: `${label} (partials)`,
    });
    prev.dispose();
    if (!next) return;
    prev = next;
    len = splits;
  }
}

// Public reductions ----------------------------------------------------------------------

/** Dims as PyTorch: undefined (or an empty list) means all; negatives count from the end;
 * a dim listed twice is an error. A 0-d tensor accepts dim 0 or -1. */
export function resolveDims(x: Tensor | HostTensor, dims: Dims | undefined, op: string): number[] {
  const rank = x.shape.length;
  const list = dims === undefined ? [] : typeof dims === 'number' ? [dims] : [...dims];
  const norm = list.map((d) => normDim(d, rank));
  if (new Set(norm).size !== norm.length) throw new RangeError(`${op}: dim list [${list.join(', ')}] names a dim more than once`);
  if (rank === 0) return [];
  if (norm.length === 0) return [...Array(rank).keys()];
  return norm.sort((a, b) => a - b);
}

function reducedShape(shape: Shape, dims: readonly number[], keepdim: boolean): number[] {
  const set = new Set(dims);
  return keepdim ? shape.map((d, i) => (set.has(i) ? 1 : d)) : shape.filter((_, i) => !set.has(i));
}

function emptyReduction(x: Tensor, dims: number[], keepdim: boolean, value: number | null, op: string, dtype: DType): Tensor | null {
  if (numel(dims.map((d) => x.shape[d]!)) !== 0) return null;
  if (value === null) throw new RangeError(`${op}: cannot reduce a tensor of shape ${fmt(x.shape)} over zero elements (dims [${dims.join(', ')}])`);
  return full(reducedShape(x.shape, dims, keepdim), value, dtype);
}

function simple(kind: 'sum' | 'max' | 'min', x: Tensor, dims: Dims | undefined, opts: ReduceOptions, op: string, mean = false): Tensor {
  x.assertAlive();
  if (mean && x.dtype === 'int32') throw new TypeError(`${op}: needs a float32 or float16 tensor, got ${x.dtype}`);
  const d = resolveDims(x, dims, op);
  const keepdim = opts.keepdim ?? false;
  const empty = emptyReduction(x, d, keepdim, kind === 'sum' ? (mean ? NaN : 0) : null, op, x.dtype);
  if (empty) return empty;
  if (d.length === x.rank && x.isContiguous && !x.fitsBinding) return reduceInRuns(kind, x, keepdim, op, mean);
  return reduceGeneric({
    kind, inputs: [x], dims: d, keepdim, label: op,
    outputs: [{ dtype: x.dtype, expr: (s) => (mean ? `${s} / p.count` : s) }],
  })[0]!;
}

/** A whole contiguous tensor over the binding limit: each run of elements (a view bound as a
 * range) reduces to one value, then the per-run values reduce to the result. */
function reduceInRuns(kind: 'sum' | 'max' | 'min', x: Tensor, keepdim: boolean, op: string, mean: boolean): Tensor {
  const e = engine();
  const runs = e.elementRuns(x.size, false);
  const partials = Tensor.empty([runs.length], x.dtype);
  runs.forEach(({ start, count }, i) => {
    // A bare view: through x's own view methods autograd would record it.
    const run = new Tensor(x.storage.retain(), [count], x.dtype, [1], x.offset + start);
    const [value] = reduceGeneric({ kind, inputs: [run], dims: [0], keepdim: true, label: op, outputs: [{ dtype: x.dtype, expr: (s) => s }] });
    const slot = partials.narrow(0, i, 1);
    assign(slot, value!);
    for (const t of [run, value!, slot]) t.dispose();
  });
  const [total] = reduceGeneric({
    kind, inputs: [partials], dims: [0], keepdim: false, label: op, scalars: { total: x.size },
    outputs: [{ dtype: x.dtype, expr: (s) => (mean ? `${s} / p.total` : s) }],
  });
  partials.dispose();
  const out = total!.reshape(keepdim ? x.shape.map(() => 1) : []);
  total!.dispose();
  return out;
}

/** Sum over `dims` (all when omitted), as `torch.sum`. int32 sums stay int32 (and wrap). */
export function sum(x: Tensor, dims?: Dims, opts: ReduceOptions = {}): Tensor {
  return simple('sum', x, dims, opts, 'sum');
}

/** Mean over `dims`, as `torch.mean` (float32 only; NaN over zero elements). */
export function mean(x: Tensor, dims?: Dims, opts: ReduceOptions = {}): Tensor {
  return simple('sum', x, dims, opts, 'mean', true);
}

/** Largest value over `dims`, as `torch.amax` (NaN propagates). For indices use `argmax`. */
export function max(x: Tensor, dims?: Dims, opts: ReduceOptions = {}): Tensor {
  return simple('max', x, dims, opts, 'max');
}

/** Smallest value over `dims`, as `torch.amin` (NaN propagates). */
export function min(x: Tensor, dims?: Dims, opts: ReduceOptions = {}): Tensor {
  return simple('min', x, dims, opts, 'min');
}

function arg(kind: 'argmax' | 'argmin', x: Tensor, dim: number | undefined, opts: ReduceOptions): Tensor {
  x.assertAlive();
  const keepdim = opts.keepdim ?? false;
  const d = dim === undefined ? resolveDims(x, undefined, kind) : resolveDims(x, dim, kind);
  emptyReduction(x, d, keepdim, null, kind, 'int32');
  // With no dim PyTorch indexes the flattened tensor; `keepdim` then keeps every dim as 1.
  return reduceGeneric({ kind, inputs: [x], dims: d, keepdim, label: kind, outputs: [{ dtype: 'int32', expr: (s) => `${s}.i` }] })[0]!;
}

/** Index of the largest value along `dim` (of the flattened tensor when omitted), int32; the
 * first one on ties, and NaN counts as largest, as `torch.argmax`. */
export function argmax(x: Tensor, dim?: number, opts: ReduceOptions = {}): Tensor {
  return arg('argmax', x, dim, opts);
}

/** Index of the smallest value along `dim` (of the flattened tensor when omitted), int32. */
export function argmin(x: Tensor, dim?: number, opts: ReduceOptions = {}): Tensor {
  return arg('argmin', x, dim, opts);
}

/** What `moments` computes: the mean, the variance (or its square root) with a given
 * correction, or 1/sqrt(biased variance + eps) (batch norm's invstd). */
export type Moment = { kind: 'mean' } | { kind: 'var' | 'std'; correction: number } | { kind: 'invstd'; eps: number };

/** Several moments of `x` over `dims` from one Welford pass (batch norm wants the mean, the
 * biased and the unbiased variance together), in float32 also for float16 x: batch norm on
 * half activations keeps float32 statistics, as PyTorch's CUDA kernels do. */
export function moments(x: Tensor, dims: Dims | undefined, want: readonly Moment[], opts: ReduceOptions = {}, op = 'moments'): Tensor[] {
  x.assertAlive();
  if (x.dtype === 'int32') throw new TypeError(`${op}: needs a float32 or float16 tensor, got ${x.dtype}`);
  const d = resolveDims(x, dims, op);
  const keepdim = opts.keepdim ?? false;
  if (numel(d.map((i) => x.shape[i]!)) === 0) return want.map(() => full(reducedShape(x.shape, d, keepdim), NaN));
  const scalars: Record<string, number> = {};
  const outputs = want.map((m, k): ReduceOutput => {
    if (m.kind === 'mean') return { dtype: 'float32', expr: (s) => `${s}.mean` };
    if (m.kind === 'invstd') {
      scalars[`eps${k}`] = m.eps;
      return { dtype: 'float32', expr: (s) => `1.0 / sqrt(${s}.m2 / ${s}.n + p.eps${k})` };
    }
    scalars[`corr${k}`] = m.correction;
    // PyTorch divides by max(0, N - correction): 0/0 = NaN, M2/0 = inf.
    const v = (s: string): string => `${s}.m2 / max(0.0, ${s}.n - p.corr${k})`;
    return { dtype: 'float32', expr: m.kind === 'std' ? (s) => `sqrt(${v(s)})` : v };
  });
  return reduceGeneric({ kind: 'moments', inputs: [x], dims: d, keepdim, scalars, outputs, label: op });
}

/** Variance over `dims`, as `torch.var` (correction 1 by default). */
export function variance(x: Tensor, dims?: Dims, opts: VarianceOptions = {}): Tensor {
  return moments(x, dims, [{ kind: 'var', correction: opts.correction ?? 1 }], opts, 'variance')[0]!;
}

/** Standard deviation over `dims`, as `torch.std` (correction 1 by default). */
export function std(x: Tensor, dims?: Dims, opts: VarianceOptions = {}): Tensor {
  return moments(x, dims, [{ kind: 'std', correction: opts.correction ?? 1 }], opts, 'std')[0]!;
}

/** Both from one pass, as `torch.var_mean`. */
export function varMean(x: Tensor, dims?: Dims, opts: VarianceOptions = {}): { var: Tensor; mean: Tensor } {
  const [v, m] = moments(x, dims, [{ kind: 'var', correction: opts.correction ?? 1 }, { kind: 'mean' }], opts, 'varMean');
  return { var: v!, mean: m! };
}

// Row kernels (softmax, layer norm) --------------------------------------------------------

/** Workgroup size of the workgroup-per-row mode. */
const ROW_GROUP = 64;

export type RowMode = 'thread' | 'group';

/**
 * How a row kernel covers a contiguous [outer, len, inner] layout (row r = (a, b) starts at
 * a·len·inner + b and steps by `inner`). `mode`: one row per invocation, or one workgroup
 * per row when a GPU would otherwise have too few rows to fill it. CPU adapters (lavapipe)
 * always get one row per invocation: there a workgroup runs as one SIMD thread and its
 * barriers cost more than the rows gain (measured 1.1-2.7x slower at 8 to 1024 rows of 1000,
 * 8 rows of 50000 included). `vec`: 4 when rows are contiguous and 16-byte aligned, so each
 * invocation loads vec4s (measured ~1.5x on softmax [4096, 1000], where neighbouring lanes
 * read different rows).
 */
export interface RowLayout {
  rows: number;
  len: number;
  inner: number;
  mode: RowMode;
  vec: 1 | 4;
}

export function rowLayout(rows: number, len: number, inner: number, offsets: readonly number[], allowVec = true): RowLayout {
  const mode: RowMode = forcedMode ?? (softwareAdapter() || rows >= 2048 || len < 128 ? 'thread' : 'group');
  const vec = allowVec && inner === 1 && len % 4 === 0 && offsets.every((o) => o % 4 === 0) ? 4 : 1;
  return { rows, len, inner, mode, vec };
}

function softwareAdapter(): boolean {
  const info = engine().adapter.info;
  return info.isFallbackAdapter || info.architecture === 'software';
}

let forcedMode: RowMode | null = null;

/** Makes every row kernel use `mode` (null: choose per shape and adapter again), so tests
 * and benchmarks reach the mode this adapter would not pick. */
export function forceRowMode(mode: RowMode | null): void {
  forcedMode = mode;
}

/** The uniforms every row kernel declares: `rows`, `len` (in VT units), `inner`, and `count`
 * (the row length in elements, f32). Offsets the caller adds go in VT units too (`offset / vec`). */
export function rowParams(l: RowLayout): Params {
  return new Params().u32('rows', l.rows).u32('len', l.len / l.vec).u32('inner', l.inner).f32('count', l.len);
}

/**
 * A row kernel. `body` sees `row`, `base`, `j0`/`js` (loop with `for (var j = j0; j < p.len;
 * j += js)` and index `base + j * p.inner`, all in units of `VT`, which is f32 or vec4<f32>
 * as `l.vec` says), `leader` (true for one invocation per row), `hsum_(VT)`/`hmax_(VT)`
 * (horizontal sum and max to f32) and the all-reduce helpers `rsum_(f32)`,
 * `rsum2_(vec2<f32>)`, `rmax_(f32)`, which return the row's total to every invocation of
 * the row. In group mode the body must not return before its last reduction (barriers need
 * uniform control flow).
 */
export function rowProgram(l: RowLayout, header: string, body: string): string {
  const group = l.mode === 'group';
  const v4 = l.vec === 4;
  const G = ROW_GROUP;
  const defs: [string, string][] = [
    ['rsum_', group ? groupReduce('rsum_', 'f32', (a, b) => `${a} + ${b}`) : 'fn rsum_(v: f32) -> f32 { return v; }'],
    ['rsum2_', group ? groupReduce('rsum2_', 'vec2<f32>', (a, b) => `${a} + ${b}`) : 'fn rsum2_(v: vec2<f32>) -> vec2<f32> { return v; }'],
    ['rmax_', group ? groupReduce('rmax_', 'f32', (a, b) => `max(${a}, ${b})`) : 'fn rmax_(v: f32) -> f32 { return v; }'],
    ['hsum_', `fn hsum_(v: VT) -> f32 { return ${v4 ? '(v.x + v.y) + (v.z + v.w)' : 'v'}; }`],
    ['hmax_', `fn hmax_(v: VT) -> f32 { return ${v4 ? 'max(max(v.x, v.y), max(v.z, v.w))' : 'v'}; }`],
  ];
  // Only the helpers the body calls, so no unused workgroup memory is declared.
  const helpers = defs.filter(([name]) => body.includes(`${name}(`)).map(([, code]) => code).join('\n');
  return /* wgsl */ `
${header}
alias VT = ${v4 ? 'vec4<f32>' : 'f32'};
${group ? 'var<private> lid_: u32;' : ''}
${helpers}
@compute @workgroup_size(${group ? G : WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = ${group ? 'wid.x + wid.y * nwg.x' : linearIndex()};
  if (row >= p.rows) { return; }
  let a_ = row / p.inner;
  let base = a_ * p.len * p.inner + (row - a_ * p.inner);
  let j0 = ${group ? 'lid' : '0u'};
  let js = ${group ? `${G}u` : '1u'};
  let leader = ${group ? 'lid == 0u' : 'true'};
  ${group ? 'lid_ = lid;' : ''}
${body}
}`;
}

/** Workgroups to dispatch for a row kernel. */
export function rowWorkgroups(l: RowLayout): readonly [number, number] {
  return engine().grid(l.mode === 'group' ? l.rows : Math.ceil(l.rows / WG));
}

/** A two-level (8 x 8) all-reduce through workgroup memory: two barriers instead of a
 * six-level tree's six. Every invocation combines the same values in the same order, so all
 * of them get the identical total. */
function groupReduce(name: string, T: string, op: (a: string, b: string) => string): string {
  const G = ROW_GROUP;
  const mem = `${name}mem`;
  const R = 8;
  return `
var<workgroup> ${mem}: array<${T}, ${G}>;
var<workgroup> ${mem}b: array<${T}, ${R}>;
fn ${name}(v: ${T}) -> ${T} {
  ${mem}[lid_] = v;
  workgroupBarrier();
  if (lid_ < ${R}u) {
    var a = ${mem}[lid_ * ${G / R}u];
    for (var k = 1u; k < ${G / R}u; k++) { a = ${op('a', `${mem}[lid_ * ${G / R}u + k]`)}; }
    ${mem}b[lid_] = a;
  }
  workgroupBarrier();
  var t = ${mem}b[0];
  for (var k = 1u; k < ${R}u; k++) { t = ${op('t', `${mem}b[k]`)}; }
  return t;
}`;
}

// CPU references -----------------------------------------------------------------------

/** The values of each output row of a reduction over `dims`, in logical order. */
function cpuRows(x: HostTensor, dims: readonly number[]): { rows: number[][]; kept: number[] } {
  const set = new Set(dims);
  const rank = x.shape.length;
  const keptDims = [...Array(rank).keys()].filter((i) => !set.has(i));
  const kept = keptDims.map((i) => x.shape[i]!);
  const rows: number[][] = Array.from({ length: numel(kept) }, () => []);
  const coord = new Array<number>(rank).fill(0);
  for (let k = 0; k < x.data.length; k++) {
    let r = 0;
    for (const d of keptDims) r = r * x.shape[d]! + coord[d]!;
    rows[r]!.push(x.data[k]!);
    for (let d = rank - 1; d >= 0; d--) {
      if (++coord[d]! < x.shape[d]!) break;
      coord[d] = 0;
    }
  }
  return { rows, kept };
}

export function cpuReduce(x: HostTensor, dims: Dims | undefined, keepdim: boolean, fn: (v: number[]) => number, op = 'reduce'): HostTensor {
  const d = resolveDims(x, dims, op);
  const { rows } = cpuRows(x, d);
  return host(reducedShape(x.shape, d, keepdim), rows.map(fn));
}

const fsum = (v: number[]): number => v.reduce((a, b) => a + b, 0);
const fvar = (v: number[], correction: number): number => {
  const m = fsum(v) / v.length;
  return v.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(0, v.length - correction);
};
const extreme = (v: number[], sign: 1 | -1): number => (v.some(Number.isNaN) ? NaN : v.reduce((a, b) => (sign * b > sign * a ? b : a)));
const argExtreme = (v: number[], sign: 1 | -1): number => {
  const nan = v.findIndex(Number.isNaN);
  if (nan >= 0) return nan;
  let best = 0;
  for (let i = 1; i < v.length; i++) if (sign * v[i]! > sign * v[best]!) best = i;
  return best;
};

export const cpuSum = (x: HostTensor, dims?: Dims, opts: ReduceOptions = {}): HostTensor => cpuReduce(x, dims, opts.keepdim ?? false, fsum);
export const cpuMean = (x: HostTensor, dims?: Dims, opts: ReduceOptions = {}): HostTensor => cpuReduce(x, dims, opts.keepdim ?? false, (v) => fsum(v) / v.length);
export const cpuMax = (x: HostTensor, dims?: Dims, opts: ReduceOptions = {}): HostTensor => cpuReduce(x, dims, opts.keepdim ?? false, (v) => extreme(v, 1));
export const cpuMin = (x: HostTensor, dims?: Dims, opts: ReduceOptions = {}): HostTensor => cpuReduce(x, dims, opts.keepdim ?? false, (v) => extreme(v, -1));
export const cpuArgmax = (x: HostTensor, dim?: number, opts: ReduceOptions = {}): HostTensor => cpuReduce(x, dim, opts.keepdim ?? false, (v) => argExtreme(v, 1));
export const cpuArgmin = (x: HostTensor, dim?: number, opts: ReduceOptions = {}): HostTensor => cpuReduce(x, dim, opts.keepdim ?? false, (v) => argExtreme(v, -1));
export const cpuVariance = (x: HostTensor, dims?: Dims, opts: VarianceOptions = {}): HostTensor =>
  cpuReduce(x, dims, opts.keepdim ?? false, (v) => fvar(v, opts.correction ?? 1));
export const cpuStd = (x: HostTensor, dims?: Dims, opts: VarianceOptions = {}): HostTensor =>
  cpuReduce(x, dims, opts.keepdim ?? false, (v) => Math.sqrt(fvar(v, opts.correction ?? 1)));
