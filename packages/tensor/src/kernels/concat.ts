/**
 * Joining, splitting and rearranging: cat/stack (one strided copy per input into its slice
 * of the output), split/chunk (views, no copies), and pad, flip, repeat, tril and triu,
 * which are all one kernel: every output coordinate maps to an input coordinate dim by dim
 * (shifted with a border rule, mirrored, or wrapped), or to a fill value. Inputs are read
 * through their strides.
 */
import { engine } from '../engine.js';
import { host, ravel, unravel, type HostTensor } from '../host.js';
import { Params } from '../params.js';
import { fmt, normDim, numel, shapeEq, type Shape } from '../shape.js';
import { Tensor } from '../tensor.js';
import { assign } from './elementwise.js';
import { linearIndex, MAIN_ARGS, usedDims, WG, wgslType } from './wgsl.js';

// cat / stack ---------------------------------------------------------------------------

/** `torch.cat`: joins tensors of one dtype whose shapes agree except along `dim`. */
export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  const first = tensors[0];
  if (!first) throw new RangeError('cat: needs at least one tensor');
  if (first.rank === 0) throw new RangeError('cat: zero-dimensional tensors cannot be concatenated; use stack()');
  const d = normDim(dim, first.rank);
  let total = 0;
  tensors.forEach((t, k) => {
    t.assertAlive();
    if (t.dtype !== first.dtype) throw new TypeError(`cat: tensor ${k} is ${t.dtype} but tensor 0 is ${first.dtype}`);
    if (t.rank !== first.rank || t.shape.some((s, i) => i !== d && s !== first.shape[i])) {
      throw new RangeError(`cat: tensor ${k} has shape ${fmt(t.shape)} but tensor 0 has ${fmt(first.shape)}; sizes must match except in dim ${d}`);
    }
    total += t.shape[d]!;
  });
  const shape = [...first.shape];
  shape[d] = total;
  const out = Tensor.empty(shape, first.dtype);
  let start = 0;
  for (const t of tensors) {
    const len = t.shape[d]!;
    if (t.size > 0) {
      const slot = out.narrow(d, start, len);
      assign(slot, t);
      slot.dispose();
    }
    start += len;
  }
  return out;
}

export const concat = cat;

/** `torch.stack`: joins same-shaped tensors along a new dim. */
export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  const first = tensors[0];
  if (!first) throw new RangeError('stack: needs at least one tensor');
  tensors.forEach((t, k) => {
    if (!shapeEq(t.shape, first.shape)) throw new RangeError(`stack: tensor ${k} has shape ${fmt(t.shape)} but tensor 0 has ${fmt(first.shape)}; all must match`);
  });
  const d = normDim(dim, first.rank + 1);
  const views = tensors.map((t) => t.unsqueeze(d));
  const out = cat(views, d);
  for (const v of views) v.dispose();
  return out;
}

// split / chunk -------------------------------------------------------------------------

/** `torch.split`: views of `size` along `dim` (the last may be smaller), or of the given section sizes. */
export function split(x: Tensor, sizeOrSections: number | readonly number[], dim = 0): Tensor[] {
  if (x.rank === 0) throw new RangeError('split: x must have at least one dim');
  const d = normDim(dim, x.rank);
  const n = x.shape[d]!;
  let sizes: number[];
  if (typeof sizeOrSections === 'number') {
    const s = sizeOrSections;
    if (!Number.isInteger(s) || s < 0 || (s === 0 && n > 0)) throw new RangeError(`split: size must be a positive integer, got ${s}`);
    sizes = n === 0 ? [0] : Array.from({ length: Math.ceil(n / s) }, (_, i) => Math.min(s, n - i * s));
  } else {
    sizes = [...sizeOrSections];
    if (sizes.some((s) => !Number.isInteger(s) || s < 0)) throw new RangeError(`split: sections [${sizes.join(', ')}] must be non-negative integers`);
    const sum = sizes.reduce((a, b) => a + b, 0);
    if (sum !== n) throw new RangeError(`split: sections [${sizes.join(', ')}] sum to ${sum} but dim ${d} has size ${n}`);
  }
  let start = 0;
  return sizes.map((s) => {
    const v = x.narrow(d, start, s);
    start += s;
    return v;
  });
}

/** `torch.chunk`: at most `chunks` views of ceil(size / chunks) along `dim`. */
export function chunk(x: Tensor, chunks: number, dim = 0): Tensor[] {
  if (!Number.isInteger(chunks) || chunks < 1) throw new RangeError(`chunk: chunks must be a positive integer, got ${chunks}`);
  if (x.rank === 0) throw new RangeError('chunk: x must have at least one dim');
  const n = x.shape[normDim(dim, x.rank)]!;
  return split(x, Math.ceil(n / chunks), dim);
}

// The remap kernel ------------------------------------------------------------------------

export type PadMode = 'constant' | 'reflect' | 'replicate';

/** Consecutive elements of the last dim per invocation, sharing the outer dims' arithmetic
 * (on lavapipe 8 made pad 2.5x faster than one element per invocation). */
const QB = 8;

/** How output coordinate c along one dim maps to an input coordinate s (input size n). */
type Axis =
  | { kind: 'same' }
  | { kind: 'flip' }
  | { kind: 'wrap' }
  | { kind: 'pad'; before: number; mode: PadMode };

interface RemapOptions {
  /** Value written where a constant pad falls outside the input, or where `tri` masks. */
  fill?: number;
  /** Keep elements on and below (tril) or on and above (triu) the `diagonal` of the last two dims. */
  tri?: { lower: boolean; diagonal: number };
  label: string;
}

function remap(x: Tensor, inShapeArg: Shape, inStridesArg: Shape, outShapeArg: Shape, axesArg: readonly Axis[], opts: RemapOptions): Tensor {
  x.assertAlive();
  const out = Tensor.empty(outShapeArg, x.dtype);
  const n = numel(outShapeArg);
  if (n === 0) return out;
  // A scalar is remapped as a one-element vector, so there is always a last dim to block.
  const scalar = outShapeArg.length === 0;
  const inShape = scalar ? [1] : inShapeArg;
  const inStrides = scalar ? [0] : inStridesArg;
  const outShape = scalar ? [1] : outShapeArg;
  const axes: readonly Axis[] = scalar ? [{ kind: 'same' }] : axesArg;
  const e = engine();
  const rank = outShape.length;
  const lastDim = rank - 1;
  const last = outShape[lastDim]!;
  const nq = Math.ceil(last / QB);
  const blocks = (n / last) * nq;
  const T = wgslType(x.dtype);
  const params = new Params().u32('n', blocks).u32('nq', nq).u32('last', last).u32('off', x.offset)
    .u32s('shape', [...outShape.slice(0, -1), nq], rank).u32s('ish', inShape, rank).u32s('ist', inStrides, rank);
  if (T === 'i32') params.i32('fill', opts.fill ?? 0);
  else params.f32('fill', opts.fill ?? 0);
  axes.forEach((a, d) => {
    if (a.kind === 'pad') params.i32(`before${d}`, a.before);
  });
  const coord = (d: number): string => (d === lastDim ? 'cl' : `c${d}`);
  // Lines that fold dim d's source coordinate into `src` and its bounds into `inside`.
  const axisLines = (d: number, inside: string, src: string, indent: string): string[] => {
    const a = axes[d]!;
    const c = coord(d);
    const size = Params.at('p', 'ish', d);
    const lines: string[] = [];
    // Broadcast (stride-0) input dims add nothing to the offset but still bound a constant pad.
    const add = (expr: string): void => {
      if (inStrides[d] !== 0) lines.push(`${src} += ${expr} * ${Params.at('p', 'ist', d)};`);
    };
    if (a.kind === 'same') add(c);
    else if (a.kind === 'flip') add(`(${size} - 1u - ${c})`);
    else if (a.kind === 'wrap') add(`(${c} % ${size})`);
    else {
      const hi = `i32(${size}) - 1`;
      lines.push(`var s${d} = i32(${c}) - p.before${d};`);
      if (a.mode === 'constant') lines.push(`${inside} = ${inside} && s${d} >= 0 && s${d} <= ${hi};`);
      else if (a.mode === 'reflect') lines.push(`s${d} = abs(s${d});`, `s${d} = select(s${d}, 2 * (${hi}) - s${d}, s${d} > ${hi});`);
      add(`u32(clamp(s${d}, 0, ${hi}))`);
    }
    return lines.map((l) => indent + l);
  };
  const head: string[] = ['  var r = i;'];
  for (let d = lastDim; d >= 0; d--) {
    head.push(`  let ${d === lastDim ? 'cb' : `c${d}`} = r % ${Params.at('p', 'shape', d)};`);
    if (d > 0) head.push(`  r = r / ${Params.at('p', 'shape', d)};`);
  }
  head.push('  var inside0 = true;', '  var src0 = p.off;');
  for (let d = 0; d < lastDim; d++) head.push(...axisLines(d, 'inside0', 'src0', '  '));
  const body = axisLines(lastDim, 'inside', 'src', '    ');
  if (opts.tri) {
    params.i32('diag', opts.tri.diagonal);
    body.push(`    inside = inside && i32(cl) - i32(c${rank - 2}) ${opts.tri.lower ? '<=' : '>='} p.diag;`);
  }
  const code = (): string => /* wgsl */ `
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<${T}>;
@group(0) @binding(2) var<storage, read_write> out: array<${T}>;
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let i = ${linearIndex()};
  if (i >= p.n) { return; }
${head.join('\n')}
  let q0 = cb * ${QB}u;
  let obase = (i / p.nq) * p.last + q0;
  for (var t = 0u; t < ${QB}u; t++) {
    let cl = q0 + t;
    if (cl >= p.last) { break; }
    var inside = inside0;
    var src = src0;
${body.join('\n')}
    var v = p.fill;
    if (inside) { v = x[src]; }
    out[obase + t] = v;
  }
}`;
  // The WGSL depends on each axis's kind (and pad mode), which input dims move, and tri.
  const axesKey = axes.map((a) => (a.kind === 'pad' ? `pad-${a.mode}` : a.kind)).join(',');
  const triKey = opts.tri ? (opts.tri.lower ? 'tril' : 'triu') : '';
  e.dispatch({
    key: `remap/${T}/${axesKey}/${usedDims(inStrides)}/${triKey}`, get code() { return code(); },
    params, buffers: [x.buffer, out.buffer], workgroups: e.grid(Math.ceil(blocks / WG)), label: opts.label,
  });
  return out;
}

// pad / flip / repeat / tril / triu -----------------------------------------------------------

export interface PadOptions {
  mode?: PadMode;
  /** Fill for mode 'constant' (default 0). */
  value?: number;
}

/** Checks F.pad arguments and returns the per-dim [before, after] amounts (all dims). */
function padAmounts(shape: Shape, pads: readonly number[], mode: PadMode): [number, number][] {
  const rank = shape.length;
  if (pads.length % 2 !== 0 || pads.length > 2 * rank) {
    throw new RangeError(`pad: expected an even number of pads, at most 2 per dim (${2 * rank} for shape ${fmt(shape)}), got [${pads.join(', ')}]`);
  }
  if (pads.some((p) => !Number.isInteger(p))) throw new RangeError(`pad: pads [${pads.join(', ')}] must be integers`);
  const amounts = shape.map((): [number, number] => [0, 0]);
  for (let k = 0; k < pads.length / 2; k++) {
    const d = rank - 1 - k;
    const before = pads[2 * k]!;
    const after = pads[2 * k + 1]!;
    const n = shape[d]!;
    if (n + before + after < 0) throw new RangeError(`pad: pads (${before}, ${after}) on dim ${d} of size ${n} give a negative size`);
    if (mode === 'reflect' && ((before > 0 && before >= n) || (after > 0 && after >= n))) {
      throw new RangeError(`pad: reflect pads (${before}, ${after}) on dim ${d} must be less than its size ${n}`);
    }
    if (mode === 'replicate' && n === 0 && (before > 0 || after > 0)) {
      throw new RangeError(`pad: replicate cannot pad dim ${d} of size 0`);
    }
    amounts[d] = [before, after];
  }
  return amounts;
}

/**
 * `F.pad`: `pads` lists (before, after) pairs starting from the last dim, as
 * [left, right, top, bottom, ...]. Negative pads crop. 'reflect' mirrors without repeating
 * the edge (pads must be smaller than the dim), 'replicate' repeats the edge element.
 */
export function pad(x: Tensor, pads: readonly number[], opts: PadOptions = {}): Tensor {
  const mode = opts.mode ?? 'constant';
  if (mode !== 'constant' && opts.value !== undefined) throw new RangeError(`pad: mode '${mode}' takes no value`);
  const amounts = padAmounts(x.shape, pads, mode);
  const outShape = x.shape.map((n, d) => n + amounts[d]![0] + amounts[d]![1]);
  const axes = amounts.map(([before, after]): Axis => (before === 0 && after === 0 ? { kind: 'same' } : { kind: 'pad', before, mode }));
  return remap(x, x.shape, x.strides, outShape, axes, { fill: opts.value ?? 0, label: 'pad' });
}

/** `torch.flip`: a copy reversed along `dims`. */
export function flip(x: Tensor, dims: number | readonly number[]): Tensor {
  const list = (typeof dims === 'number' ? [dims] : [...dims]).map((d) => normDim(d, x.rank));
  if (new Set(list).size !== list.length) throw new RangeError(`flip: dims [${list.join(', ')}] name a dim more than once`);
  const axes = x.shape.map((_, d): Axis => (list.includes(d) ? { kind: 'flip' } : { kind: 'same' }));
  return remap(x, x.shape, x.strides, x.shape, axes, { label: 'flip' });
}

/** `Tensor.repeat`: tiles x `repeats[d]` times along each dim; extra leading counts add dims. */
export function repeat(x: Tensor, ...repeats: number[] | [readonly number[]]): Tensor {
  const reps = repeats.length === 1 && Array.isArray(repeats[0]) ? [...(repeats[0] as readonly number[])] : (repeats as number[]);
  if (reps.length < x.rank) throw new RangeError(`repeat: got ${reps.length} counts for a tensor of rank ${x.rank}; need at least ${x.rank}`);
  if (reps.some((r) => !Number.isInteger(r) || r < 0)) throw new RangeError(`repeat: counts [${reps.join(', ')}] must be non-negative integers`);
  const lead = reps.length - x.rank;
  const inShape = [...new Array<number>(lead).fill(1), ...x.shape];
  const inStrides = [...new Array<number>(lead).fill(0), ...x.strides];
  const outShape = inShape.map((n, d) => n * reps[d]!);
  const axes = reps.map((r): Axis => (r === 1 ? { kind: 'same' } : { kind: 'wrap' }));
  return remap(x, inShape, inStrides, outShape, axes, { label: 'repeat' });
}

function triangle(op: string, x: Tensor, diagonal: number, lower: boolean): Tensor {
  if (x.rank < 2) throw new RangeError(`${op}: x must have at least 2 dims, got shape ${fmt(x.shape)}`);
  if (!Number.isInteger(diagonal)) throw new RangeError(`${op}: diagonal must be an integer, got ${diagonal}`);
  const axes = x.shape.map((): Axis => ({ kind: 'same' }));
  return remap(x, x.shape, x.strides, x.shape, axes, { tri: { lower, diagonal }, label: op });
}

/** `torch.tril`: keeps elements with col - row <= diagonal in the last two dims, zeros the rest. */
export function tril(x: Tensor, diagonal = 0): Tensor {
  return triangle('tril', x, diagonal, true);
}

/** `torch.triu`: keeps elements with col - row >= diagonal in the last two dims, zeros the rest. */
export function triu(x: Tensor, diagonal = 0): Tensor {
  return triangle('triu', x, diagonal, false);
}

// CPU references ----------------------------------------------------------------------


/** out[c] = x[source(c)], or `fill` where source returns null. */
function cpuRemap(x: HostTensor, outShape: Shape, source: (c: number[]) => number[] | null, fill = 0): HostTensor {
  const out = host(outShape);
  for (let i = 0; i < out.data.length; i++) {
    const s = source(unravel(i, outShape));
    out.data[i] = s ? x.data[ravel(s, x.shape)]! : fill;
  }
  return out;
}

export function cpuCat(tensors: readonly HostTensor[], dim = 0): HostTensor {
  const d = normDim(dim, tensors[0]!.shape.length);
  const shape = [...tensors[0]!.shape];
  shape[d] = tensors.reduce((a, t) => a + t.shape[d]!, 0);
  const out = host(shape);
  for (let i = 0; i < out.data.length; i++) {
    const c = unravel(i, shape);
    let k = 0;
    while (c[d]! >= tensors[k]!.shape[d]!) c[d] -= tensors[k++]!.shape[d]!;
    out.data[i] = tensors[k]!.data[ravel(c, tensors[k]!.shape)]!;
  }
  return out;
}

export function cpuStack(tensors: readonly HostTensor[], dim = 0): HostTensor {
  const d = normDim(dim, tensors[0]!.shape.length + 1);
  return cpuCat(tensors.map((t) => ({ shape: [...t.shape.slice(0, d), 1, ...t.shape.slice(d)], data: t.data })), d);
}

export function cpuSplit(x: HostTensor, sizeOrSections: number | readonly number[], dim = 0): HostTensor[] {
  const d = normDim(dim, x.shape.length);
  const n = x.shape[d]!;
  const sizes = typeof sizeOrSections === 'number'
    ? Array.from({ length: Math.max(1, Math.ceil(n / sizeOrSections)) }, (_, i) => Math.max(0, Math.min(sizeOrSections, n - i * sizeOrSections)))
    : [...sizeOrSections];
  let start = 0;
  return sizes.map((s) => {
    const shape = [...x.shape];
    shape[d] = s;
    const from = start;
    start += s;
    return cpuRemap(x, shape, (c) => c.map((v, k) => (k === d ? v + from : v)));
  });
}

export function cpuChunk(x: HostTensor, chunks: number, dim = 0): HostTensor[] {
  const n = x.shape[normDim(dim, x.shape.length)]!;
  return cpuSplit(x, Math.max(1, Math.ceil(n / chunks)), dim);
}

export function cpuPad(x: HostTensor, pads: readonly number[], opts: PadOptions = {}): HostTensor {
  const mode = opts.mode ?? 'constant';
  const amounts = padAmounts(x.shape, pads, mode);
  const outShape = x.shape.map((n, d) => n + amounts[d]![0] + amounts[d]![1]);
  return cpuRemap(x, outShape, (c) => {
    const s: number[] = [];
    for (let d = 0; d < c.length; d++) {
      const n = x.shape[d]!;
      let v = c[d]! - amounts[d]![0];
      if (mode === 'constant' && (v < 0 || v >= n)) return null;
      if (mode === 'reflect') v = v < 0 ? -v : v >= n ? 2 * (n - 1) - v : v;
      if (mode === 'replicate') v = Math.min(Math.max(v, 0), n - 1);
      s.push(v);
    }
    return s;
  }, opts.value ?? 0);
}

export function cpuFlip(x: HostTensor, dims: number | readonly number[]): HostTensor {
  const list = (typeof dims === 'number' ? [dims] : [...dims]).map((d) => normDim(d, x.shape.length));
  return cpuRemap(x, x.shape, (c) => c.map((v, d) => (list.includes(d) ? x.shape[d]! - 1 - v : v)));
}

export function cpuRepeat(x: HostTensor, repeats: readonly number[]): HostTensor {
  const lead = repeats.length - x.shape.length;
  const inShape = [...new Array<number>(lead).fill(1), ...x.shape];
  const outShape = inShape.map((n, d) => n * repeats[d]!);
  return cpuRemap(x, outShape, (c) => c.slice(lead).map((v, d) => v % x.shape[d]!));
}

export function cpuTril(x: HostTensor, diagonal = 0): HostTensor {
  const r = x.shape.length;
  return cpuRemap(x, x.shape, (c) => (c[r - 1]! - c[r - 2]! <= diagonal ? c : null));
}

export function cpuTriu(x: HostTensor, diagonal = 0): HostTensor {
  const r = x.shape.length;
  return cpuRemap(x, x.shape, (c) => (c[r - 1]! - c[r - 2]! >= diagonal ? c : null));
}
