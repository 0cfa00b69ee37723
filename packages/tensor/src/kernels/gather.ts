/**
 * Indexing by int32 tensors: embedding, indexSelect, gather and oneHot, and the scatter-add
 * backward kernels autograd needs (embeddingBackward, indexSelectBackward, gatherBackward).
 *
 * Out-of-range indices (negative ones included; nothing wraps) cannot throw inside a kernel:
 * the forward kernels write 0 for them and the backward kernels drop their gradient. Callers
 * that want an error await `checkIndices(index, bound)`, which reads the indices back.
 *
 * The backward kernels are deterministic and race-free without float atomics: the
 * destination of every source element becomes a u32 key, a bitonic sort orders the
 * (key, position) pairs, a binary search finds where each destination's run of keys starts,
 * and each invocation sums the runs of QB consecutive destination elements in position order
 * (so results are identical from run to run). For M index entries and an output of V rows of
 * D elements that is about M·log²M/4 compare-swaps in log²M/2 dispatches, V binary searches
 * of log M steps, and V·D writes + M·D reads for the sums. A row hit by many indices (a
 * padding or [CLS] token) is summed serially by D/QB invocations. Measured on lavapipe:
 * V=30522, D=768, M=4096 about 0.1 s (dominated by writing the dense [V, D] gradient);
 * M=65536 sorts in about 0.1 s, M=2^20 in about 1.4 s.
 */
import { engine, type BoundElements } from '../engine.js';
import { host, ravel, unravel, type HostTensor } from '../host.js';
import { Params } from '../params.js';
import { contiguousStrides, fmt, normDim, numel, shapeEq, type Shape } from '../shape.js';
import { Tensor } from '../tensor.js';
import { linearIndex, MAIN_ARGS, usedDims, WG, wgslType } from './wgsl.js';

/** Consecutive innermost elements per invocation: on lavapipe 8 made embedding 5x faster
 * than 1 and was the best overall of 4, 8 and 16. */
const QB = 8;

/** WGSL lines that split linear index `i` into coordinates c0..c{rank-1} over `p.<field>`. */
function coordsWgsl(rank: number, field: string, i = 'i'): string {
  if (rank === 0) return '';
  const lines = [`  var r = ${i};`];
  for (let d = rank - 1; d >= 0; d--) {
    const s = Params.at('p', field, d);
    lines.push(`  let c${d} = r % ${s};`);
    if (d > 0) lines.push(`  r = r / ${s};`);
  }
  return lines.join('\n');
}

/** `p.<off> + c0 * p.<field>[0] + ...`, skipping zero strides. */
function offsetWgsl(off: string, field: string, strides: readonly number[]): string {
  return `p.${off}${strides.map((s, d) => (s === 0 ? '' : ` + c${d} * ${Params.at('p', field, d)}`)).join('')}`;
}

function checkIndexTensor(op: string, index: Tensor): void {
  index.assertAlive();
  if (index.dtype !== 'int32') throw new TypeError(`${op}: indices must be an int32 tensor, got ${index.dtype}`);
}

// Forward -------------------------------------------------------------------------------

/**
 * out[c] = x[xoff + Σ c_d·xSt_d + k·kStride] with k = index[ioff + Σ c_d·iSt_d], or 0 when
 * k is outside [0, bound). Strides are given per output coordinate, so embedding,
 * indexSelect and gather are all this kernel, reading every operand through its strides.
 * Each invocation writes QB consecutive elements of the last output dim, so the coordinate
 * arithmetic (and for embedding the index load) is shared by the block.
 */
function takeKernel(x: Tensor, index: Tensor, outShape: Shape, xSt: readonly number[], iSt: readonly number[], kStride: number, bound: number, label: string): Tensor {
  const out = Tensor.empty(outShape, x.dtype);
  const n = numel(outShape);
  if (n === 0) return out;
  const e = engine();
  if (x.fitsBinding) {
    takeWindow(x, { resource: x.buffer, offset: x.offset }, index, out, xSt, iSt, kStride, bound, 0, bound, label);
    return out;
  }
  // A table over the binding limit (GPT-2's or Llama's token embeddings on a 128 MiB adapter),
  // taken along its first dim with rows whole: each window of rows that fits one binding is a
  // dispatch, writing the entries whose index falls in it; the first also writes the zeros of
  // indices outside the table.
  const rowElems = kStride;
  if (!(x.isContiguous && rowElems * bound === x.size)) {
    throw e.tooLarge(label, x.size * 4, `${label} splits a table over it only along its first dim, contiguous`);
  }
  const perWindow = Math.floor(e.maxBindingElements / rowElems);
  if (perWindow < 1) throw e.tooLarge(label, rowElems * 4, `one row of ${label}'s table is over it`);
  for (let lo = 0; lo < bound; lo += perWindow) {
    const rows = Math.min(perWindow, bound - lo);
    const window = e.bindElements(x.buffer, x.offset + lo * rowElems, rows * rowElems, label);
    takeWindow(x, window, index, out, xSt, iSt, kStride, bound, lo, rows, label);
  }
  return out;
}

/** One dispatch of take over rows [lo, lo + rows) of x along the taken dim, x bound as `xb`. */
function takeWindow(
  x: Tensor, xb: BoundElements, index: Tensor, out: Tensor, xSt: readonly number[], iSt: readonly number[],
  kStride: number, bound: number, lo: number, rows: number, label: string,
): void {
  const e = engine();
  const outShape = out.shape;
  const n = out.size;
  const rank = outShape.length;
  const last = outShape[rank - 1]!;
  const nq = Math.ceil(last / QB);
  const blocks = (n / last) * nq;
  const T = wgslType(x.dtype);
  const params = new Params()
    .u32('n', blocks).u32('nq', nq).u32('last', last).u32('xoff', xb.offset).u32('ioff', index.offset)
    .u32('kst', kStride).u32('bound', bound).u32('lo', lo).u32('rows', rows).u32('xlast', xSt[rank - 1]!).u32('ilast', iSt[rank - 1]!)
    .u32s('shape', [...outShape.slice(0, -1), nq], rank).u32s('xst', xSt, rank).u32s('ist', iSt, rank);
  const lead = (st: readonly number[]): number[] => [...st.slice(0, -1), 0];
  const code = (): string => /* wgsl */ `
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<${T}>;
@group(0) @binding(2) var<storage, read> idx: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<${T}>;
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let i = ${linearIndex()};
  if (i >= p.n) { return; }
${coordsWgsl(rank, 'shape')}
  let q0 = c${rank - 1} * ${QB}u;
  let xbase = ${offsetWgsl('xoff', 'xst', lead(xSt))} + q0 * p.xlast;
  let ibase = ${offsetWgsl('ioff', 'ist', lead(iSt))} + q0 * p.ilast;
  let obase = (i / p.nq) * p.last + q0;
  for (var t = 0u; t < ${QB}u; t++) {
    if (q0 + t < p.last) {
      let k = idx[ibase + t * p.ilast];
      if (k >= 0 && u32(k) < p.bound) {
        let r = u32(k) - p.lo;
        if (u32(k) >= p.lo && r < p.rows) {
          out[obase + t] = x[xbase + t * p.xlast + r * p.kst];
        }
      } else if (p.lo == 0u) {
        out[obase + t] = ${T}(0);
      }
    }
  }
}`;
  e.dispatch({
    key: `take/${T}/r${rank}/${usedDims(lead(xSt))}/${usedDims(lead(iSt))}`, get code() { return code(); },
    params, buffers: [xb.resource, index.buffer, out.buffer], workgroups: e.grid(Math.ceil(blocks / WG)), label,
  });
}

/** out[..., index-dims..., ...] = x[..., index[...], ...] along `dim` (numpy's `take` with an axis). */
function take(op: string, x: Tensor, dim: number, index: Tensor): Tensor {
  x.assertAlive();
  checkIndexTensor(op, index);
  const ir = index.rank;
  const outShape = [...x.shape.slice(0, dim), ...index.shape, ...x.shape.slice(dim + 1)];
  const xSt = [...x.strides.slice(0, dim), ...new Array<number>(ir).fill(0), ...x.strides.slice(dim + 1)];
  const iSt = [...new Array<number>(dim).fill(0), ...index.strides, ...new Array<number>(x.rank - dim - 1).fill(0)];
  return takeKernel(x, index, outShape, xSt, iSt, x.strides[dim]!, x.shape[dim]!, op);
}

/** Rows of `weight` [numEmbeddings, dim] picked by int32 `indices` of any shape: [...indices.shape, dim]. */
export function embedding(indices: Tensor, weight: Tensor): Tensor {
  if (weight.rank !== 2) throw new RangeError(`embedding: weight must be 2-D [numEmbeddings, dim], got shape ${fmt(weight.shape)}`);
  return take('embedding', weight, 0, indices);
}

/** `torch.index_select`: entries `index` (1-D int32) of `x` along `dim`. */
export function indexSelect(x: Tensor, dim: number, index: Tensor): Tensor {
  if (x.rank === 0) throw new RangeError('indexSelect: x must have at least one dim');
  if (index.rank > 1) throw new RangeError(`indexSelect: index must be 1-D, got shape ${fmt(index.shape)}`);
  const d = normDim(dim, x.rank);
  if (index.rank === 1) return take('indexSelect', x, d, index);
  const i1 = index.reshape([1]);
  const out = take('indexSelect', x, d, i1);
  i1.dispose();
  return out;
}

/** `torch.gather`: out[c] = x[c with c[dim] = index[c]]; `index` has x's rank, its shape is the output's. */
export function gather(x: Tensor, dim: number, index: Tensor): Tensor {
  checkGatherShapes('gather', x.shape, dim, index);
  const d = normDim(dim, x.rank);
  const xSt = x.strides.map((s, k) => (k === d ? 0 : s));
  return takeKernel(x, index, index.shape, xSt, index.strides, x.strides[d]!, x.shape[d]!, 'gather');
}

function checkGatherShapes(op: string, xShape: Shape, dim: number, index: Tensor): void {
  checkIndexTensor(op, index);
  if (xShape.length === 0) throw new RangeError(`${op}: x must have at least one dim`);
  if (index.rank !== xShape.length) {
    throw new RangeError(`${op}: index has shape ${fmt(index.shape)} but x has ${fmt(xShape)}; they need the same number of dims`);
  }
  const d = normDim(dim, xShape.length);
  index.shape.forEach((s, k) => {
    if (k !== d && s > xShape[k]!) {
      throw new RangeError(`${op}: index shape ${fmt(index.shape)} exceeds x shape ${fmt(xShape)} in dim ${k} (only dim ${d} may be larger)`);
    }
  });
}

/** float32 [..., numClasses] with a 1 at each label; rows of out-of-range labels are all 0. */
export function oneHot(labels: Tensor, numClasses: number): Tensor {
  checkIndexTensor('oneHot', labels);
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new RangeError(`oneHot: numClasses must be a positive integer, got ${numClasses}`);
  const outShape = [...labels.shape, numClasses];
  const out = Tensor.empty(outShape, 'float32');
  const n = numel(outShape);
  if (n === 0) return out;
  const e = engine();
  const rank = labels.rank;
  const params = new Params().u32('n', n).u32('classes', numClasses).u32('off', labels.offset);
  if (rank > 0) params.u32s('shape', labels.shape, rank).u32s('st', labels.strides, rank);
  const code = (): string => /* wgsl */ `
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let i = ${linearIndex()};
  if (i >= p.n) { return; }
  let row = i / p.classes;
${coordsWgsl(rank, 'shape', 'row')}
  let label = labels[${offsetWgsl('off', 'st', labels.strides)}];
  out[i] = select(0.0, 1.0, label == i32(i % p.classes));
}`;
  e.dispatch({
    key: `oneHot/r${rank}/${usedDims(labels.strides)}`, get code() { return code(); },
    params, buffers: [labels.buffer, out.buffer], workgroups: e.grid(Math.ceil(n / WG)), label: 'oneHot',
  });
  return out;
}

/** Reads `index` back and throws a RangeError naming the first entry outside [0, bound). */
export async function checkIndices(index: Tensor, bound: number): Promise<void> {
  checkIndexTensor('checkIndices', index);
  const values = await index.data();
  const strides = contiguousStrides(index.shape);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v < 0 || v >= bound) {
      const at = strides.map((s, d) => Math.floor(i / s) % index.shape[d]!);
      throw new RangeError(`index ${v} at [${at.join(', ')}] is out of range [0, ${bound})`);
    }
  }
}

// Backward: sort by destination, then one invocation per destination element -------------

const SENTINEL = 0xffffffff;

/**
 * Keys for every entry of `index` (positions 0..m-1 in row-major order), padded with
 * sentinels to a power of two and sorted by (key, position). key = k·kmul + Σ c_d·dst_d for
 * valid k, the sentinel otherwise, so out-of-range entries sort last and match nothing.
 */
function sortedKeys(index: Tensor, bound: number, kmul: number, dst: readonly number[]): { keys: Tensor; perm: Tensor; size: number } {
  const e = engine();
  const m = index.size;
  const size = 2 ** Math.ceil(Math.log2(Math.max(m, 1)));
  const keys = Tensor.empty([size], 'int32');
  const perm = Tensor.empty([size], 'int32');
  const rank = index.rank;
  const params = new Params().u32('n', size).u32('m', m).u32('off', index.offset).u32('bound', bound).u32('kmul', kmul);
  if (rank > 0) params.u32s('shape', index.shape, rank).u32s('st', index.strides, rank).u32s('dst', dst, rank);
  const init = (): string => /* wgsl */ `
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> keys: array<u32>;
@group(0) @binding(3) var<storage, read_write> perm: array<u32>;
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let i = ${linearIndex()};
  if (i >= p.n) { return; }
  perm[i] = i;
  var key = ${SENTINEL}u;
  if (i < p.m) {
${coordsWgsl(rank, 'shape')}
    let k = idx[${offsetWgsl('off', 'st', index.strides)}];
    if (k >= 0 && u32(k) < p.bound) {
      key = u32(k) * p.kmul${dst.map((s, d) => (s === 0 ? '' : ` + c${d} * ${Params.at('p', 'dst', d)}`)).join('')};
    }
  }
  keys[i] = key;
}`;
  e.dispatch({
    key: `sortKeys/r${rank}/${usedDims(index.strides)}/${usedDims(dst)}`, get code() { return init(); },
    params, buffers: [index.buffer, keys.buffer, perm.buffer], workgroups: e.grid(Math.ceil(size / WG)), label: 'sortKeys',
  });
  bitonicSort(keys, perm, size);
  return { keys, perm, size };
}

/** Sorts (keys, perm) pairs of length `size` (a power of two) ascending, in place: one
 * dispatch per bitonic step, each invocation compare-swapping one disjoint pair. */
function bitonicSort(keys: Tensor, perm: Tensor, size: number): void {
  const e = engine();
  const half = size / 2;
  const code = /* wgsl */ `
struct P { n: u32, j: u32, k: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> keys: array<u32>;
@group(0) @binding(2) var<storage, read_write> perm: array<u32>;
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let t = ${linearIndex()};
  if (t >= p.n) { return; }
  let a = (t / p.j) * 2u * p.j + t % p.j;
  let b = a + p.j;
  let ka = keys[a];
  let kb = keys[b];
  let pa = perm[a];
  let pb = perm[b];
  let aAfterB = ka > kb || (ka == kb && pa > pb);
  let ascending = (a & p.k) == 0u;
  if (aAfterB == ascending) {
    keys[a] = kb;
    keys[b] = ka;
    perm[a] = pb;
    perm[b] = pa;
  }
}`;
  for (let k = 2; k <= size; k *= 2) {
    for (let j = k / 2; j >= 1; j /= 2) {
      const params = new Params().u32('n', half).u32('j', j).u32('k', k);
      e.dispatch({ key: 'bitonicSort', code, params, buffers: [keys.buffer, perm.buffer], workgroups: e.grid(Math.ceil(half / WG)), label: 'bitonicSort' });
    }
  }
}

/**
 * out [outer, rows, inner] (contiguous): out[o, v, q] = Σ g[o, perm[s], q] over the run of
 * sorted keys equal to v; row `skipRow` gets 0. `g` is read through the three strides given.
 */
function segmentSum(
  keys: Tensor, perm: Tensor, size: number,
  g: { buffer: GPUBuffer; offset: number; strides: readonly [number, number, number] },
  outer: number, rows: number, inner: number, skipRow: number, label: string,
): Tensor {
  const e = engine();
  const out = Tensor.empty([outer, rows, inner], 'float32');
  const n = outer * rows * inner;
  if (n === 0) return out;
  const starts = Tensor.empty([rows + 1], 'int32');
  const sp = new Params().u32('n', rows + 1).u32('size', size);
  const search = /* wgsl */ `
${sp.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> keys: array<u32>;
@group(0) @binding(2) var<storage, read_write> starts: array<u32>;
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let v = ${linearIndex()};
  if (v >= p.n) { return; }
  var lo = 0u;
  var hi = p.size;
  while (lo < hi) {
    let mid = (lo + hi) / 2u;
    if (keys[mid] < v) { lo = mid + 1u; } else { hi = mid; }
  }
  starts[v] = lo;
}`;
  e.dispatch({ key: 'segmentStarts', code: search, params: sp, buffers: [keys.buffer, starts.buffer], workgroups: e.grid(Math.ceil((rows + 1) / WG)), label: `${label}:starts` });
  // Each invocation sums QB consecutive inner elements, sharing the run bounds and perm reads.
  const nq = Math.ceil(inner / QB);
  // An output over the binding limit (the gradient of a large embedding table) is written in
  // windows of whole rows, each bound by range; with several outer slices it is not split.
  const whole = e.fitsBinding(out.buffer, 0, n);
  if (!whole && outer !== 1) throw e.tooLarge(label, n * 4, `${label} splits its output over it only along the first dim`);
  const perWindow = whole ? rows : Math.floor(e.maxBindingElements / inner);
  if (perWindow < 1) throw e.tooLarge(label, inner * 4, `one row of ${label}'s output is over it`);
  for (let r0 = 0; r0 < rows; r0 += perWindow) {
    const wrows = Math.min(perWindow, rows - r0);
    const ob = whole ? { resource: out.buffer, offset: 0 } : e.bindElements(out.buffer, r0 * inner, wrows * inner, label);
    segmentSumWindow(perm, starts, g, ob, outer, rows, inner, nq, r0, wrows, skipRow, label);
  }
  starts.dispose();
  return out;
}

/** The sums of rows [r0, r0 + wrows) of every outer slice, the output bound as `ob`. */
function segmentSumWindow(
  perm: Tensor, starts: Tensor, g: { buffer: GPUBuffer; offset: number; strides: readonly [number, number, number] }, ob: BoundElements,
  outer: number, rows: number, inner: number, nq: number, r0: number, wrows: number, skipRow: number, label: string,
): void {
  const e = engine();
  const blocks = outer * wrows * nq;
  const params = new Params()
    .u32('n', blocks).u32('rows', rows).u32('inner', inner).u32('nq', nq).i32('skip', skipRow)
    .u32('goff', g.offset).u32('gs0', g.strides[0]).u32('gs1', g.strides[1]).u32('gs2', g.strides[2])
    .u32('r0', r0).u32('wrows', wrows).u32('ooff', ob.offset);
  const code = (): string => /* wgsl */ `
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> perm: array<u32>;
@group(0) @binding(2) var<storage, read> starts: array<u32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let i = ${linearIndex()};
  if (i >= p.n) { return; }
  let q0 = (i % p.nq) * ${QB}u;
  let v = p.r0 + (i / p.nq) % p.wrows;
  let o = i / (p.nq * p.wrows);
  // A constant trip count lets the compiler unroll the loops and keep acc in registers.
  let cnt = min(${QB}u, p.inner - q0);
  var acc: array<f32, ${QB}>;
  if (i32(v) != p.skip) {
    let base = p.goff + o * p.gs0 + q0 * p.gs2;
    for (var s = starts[v]; s < starts[v + 1u]; s++) {
      let row = base + perm[s] * p.gs1;
      for (var t = 0u; t < ${QB}u; t++) {
        if (t < cnt) { acc[t] += g[row + t * p.gs2]; }
      }
    }
  }
  let dst = p.ooff + (o * p.rows + v - p.r0) * p.inner + q0;
  for (var t = 0u; t < ${QB}u; t++) {
    if (t < cnt) { out[dst + t] = acc[t]; }
  }
}`;
  e.dispatch({ key: 'segmentSum', get code() { return code(); }, params, buffers: [perm.buffer, starts.buffer, g.buffer, ob.resource], workgroups: e.grid(Math.ceil(blocks / WG)), label });
}

/** Gradient of `take` along `dim`: scatter-adds gradOut [...x[:dim], ...index, ...x[dim+1:]] into x's shape. */
function takeBackward(op: string, gradOut: Tensor, xShape: Shape, dim: number, index: Tensor, skipRow: number): Tensor {
  gradOut.assertAlive();
  checkIndexTensor(op, index);
  if (gradOut.dtype !== 'float32') throw new TypeError(`${op}: gradOut must be float32, got ${gradOut.dtype}`);
  const want = [...xShape.slice(0, dim), ...index.shape, ...xShape.slice(dim + 1)];
  if (!shapeEq(gradOut.shape, want)) throw new RangeError(`${op}: gradOut has shape ${fmt(gradOut.shape)}, expected ${fmt(want)}`);
  const outer = numel(xShape.slice(0, dim));
  const inner = numel(xShape.slice(dim + 1));
  const rows = xShape[dim]!;
  if (outer * rows * inner === 0) return Tensor.empty(xShape, 'float32');
  const { keys, perm, size } = sortedKeys(index, rows, 1, new Array<number>(index.rank).fill(0));
  const g = gradOut.reshape([outer, index.size, inner]);
  const out = segmentSum(keys, perm, size, { buffer: g.buffer, offset: g.offset, strides: [g.strides[0]!, g.strides[1]!, g.strides[2]!] }, outer, rows, inner, skipRow, op);
  for (const t of [keys, perm, g]) t.dispose();
  const r = out.reshape(xShape);
  out.dispose();
  return r;
}

export interface EmbeddingBackwardOptions {
  /** This row gets no gradient (negative counts from the end), as PyTorch's padding_idx. */
  paddingIdx?: number;
}

/** Gradient of `embedding` for the weight: [numEmbeddings, dim], rows scatter-added from `gradOut` [...indices.shape, dim]. */
export function embeddingBackward(indices: Tensor, gradOut: Tensor, numEmbeddings: number, opts: EmbeddingBackwardOptions = {}): Tensor {
  if (!Number.isInteger(numEmbeddings) || numEmbeddings < 1) throw new RangeError(`embeddingBackward: numEmbeddings must be a positive integer, got ${numEmbeddings}`);
  if (gradOut.rank !== indices.rank + 1) {
    throw new RangeError(`embeddingBackward: gradOut has shape ${fmt(gradOut.shape)}, expected [...indices.shape ${fmt(indices.shape)}, dim]`);
  }
  let skip = -1;
  if (opts.paddingIdx !== undefined) {
    const pi = opts.paddingIdx;
    if (!Number.isInteger(pi) || pi < -numEmbeddings || pi >= numEmbeddings) {
      throw new RangeError(`embeddingBackward: paddingIdx ${pi} is out of range for ${numEmbeddings} embeddings`);
    }
    skip = pi < 0 ? pi + numEmbeddings : pi;
  }
  return takeBackward('embeddingBackward', gradOut, [numEmbeddings, gradOut.shape[gradOut.rank - 1]!], 0, indices, skip);
}

/** Gradient of `indexSelect(x, dim, index)` for x: zeros of `inputShape` with gradOut's slices added at `index`. */
export function indexSelectBackward(gradOut: Tensor, inputShape: Shape, dim: number, index: Tensor): Tensor {
  if (index.rank > 1) throw new RangeError(`indexSelectBackward: index must be 1-D, got shape ${fmt(index.shape)}`);
  if (inputShape.length === 0) throw new RangeError('indexSelectBackward: inputShape must have at least one dim');
  const d = normDim(dim, inputShape.length);
  if (index.rank === 1) return takeBackward('indexSelectBackward', gradOut, inputShape, d, index, -1);
  const i1 = index.reshape([1]);
  const out = takeBackward('indexSelectBackward', gradOut, inputShape, d, i1, -1);
  i1.dispose();
  return out;
}

/** Gradient of `gather(x, dim, index)` for x: a scatter-add of `gradOut` (index's shape) into zeros of `inputShape`. */
export function gatherBackward(gradOut: Tensor, inputShape: Shape, dim: number, index: Tensor): Tensor {
  checkGatherShapes('gatherBackward', inputShape, dim, index);
  gradOut.assertAlive();
  if (gradOut.dtype !== 'float32') throw new TypeError(`gatherBackward: gradOut must be float32, got ${gradOut.dtype}`);
  if (!shapeEq(gradOut.shape, index.shape)) {
    throw new RangeError(`gatherBackward: gradOut has shape ${fmt(gradOut.shape)} but index has ${fmt(index.shape)}`);
  }
  const n = numel(inputShape);
  if (n === 0) return Tensor.empty(inputShape, 'float32');
  if (n >= SENTINEL) throw new RangeError(`gatherBackward: input of ${n} elements is too large for 32-bit keys`);
  const d = normDim(dim, inputShape.length);
  const xcs = contiguousStrides(inputShape);
  const { keys, perm, size } = sortedKeys(index, inputShape[d]!, xcs[d]!, xcs.map((s, k) => (k === d ? 0 : s)));
  // Runs are found by position in row-major order, so gradOut is read contiguously.
  const g = gradOut.contiguous();
  const out = segmentSum(keys, perm, size, { buffer: g.buffer, offset: g.offset, strides: [0, 1, 0] }, 1, n, 1, -1, 'gatherBackward');
  for (const t of [keys, perm, g]) t.dispose();
  const r = out.reshape(inputShape);
  out.dispose();
  return r;
}

// CPU references ----------------------------------------------------------------------


function cpuTake(x: HostTensor, dim: number, index: HostTensor): HostTensor {
  const ir = index.shape.length;
  const out = host([...x.shape.slice(0, dim), ...index.shape, ...x.shape.slice(dim + 1)]);
  for (let i = 0; i < out.data.length; i++) {
    const c = unravel(i, out.shape);
    const k = index.data[ravel(c.slice(dim, dim + ir), index.shape)]!;
    if (k < 0 || k >= x.shape[dim]!) continue;
    out.data[i] = x.data[ravel([...c.slice(0, dim), k, ...c.slice(dim + ir)], x.shape)]!;
  }
  return out;
}

export function cpuEmbedding(indices: HostTensor, weight: HostTensor): HostTensor {
  return cpuTake(weight, 0, indices);
}

export function cpuIndexSelect(x: HostTensor, dim: number, index: HostTensor): HostTensor {
  return cpuTake(x, normDim(dim, x.shape.length), { shape: [index.data.length], data: index.data });
}

export function cpuGather(x: HostTensor, dim: number, index: HostTensor): HostTensor {
  const d = normDim(dim, x.shape.length);
  const out = host(index.shape);
  for (let i = 0; i < out.data.length; i++) {
    const c = unravel(i, index.shape);
    const k = index.data[i]!;
    if (k < 0 || k >= x.shape[d]!) continue;
    c[d] = k;
    out.data[i] = x.data[ravel(c, x.shape)]!;
  }
  return out;
}

export function cpuOneHot(labels: HostTensor, numClasses: number): HostTensor {
  const out = host([...labels.shape, numClasses]);
  labels.data.forEach((l, i) => {
    if (l >= 0 && l < numClasses) out.data[i * numClasses + l] = 1;
  });
  return out;
}

function cpuTakeBackward(gradOut: HostTensor, xShape: Shape, dim: number, index: HostTensor, skipRow: number): HostTensor {
  const ir = index.shape.length;
  const out = host(xShape);
  for (let i = 0; i < gradOut.data.length; i++) {
    const c = unravel(i, gradOut.shape);
    const k = index.data[ravel(c.slice(dim, dim + ir), index.shape)]!;
    if (k < 0 || k >= xShape[dim]! || k === skipRow) continue;
    out.data[ravel([...c.slice(0, dim), k, ...c.slice(dim + ir)], xShape)] += gradOut.data[i]!;
  }
  return out;
}

export function cpuEmbeddingBackward(indices: HostTensor, gradOut: HostTensor, numEmbeddings: number, opts: EmbeddingBackwardOptions = {}): HostTensor {
  const pi = opts.paddingIdx;
  const skip = pi === undefined ? -1 : pi < 0 ? pi + numEmbeddings : pi;
  return cpuTakeBackward(gradOut, [numEmbeddings, gradOut.shape[gradOut.shape.length - 1]!], 0, indices, skip);
}

export function cpuIndexSelectBackward(gradOut: HostTensor, inputShape: Shape, dim: number, index: HostTensor): HostTensor {
  return cpuTakeBackward(gradOut, inputShape, normDim(dim, inputShape.length), { shape: [index.data.length], data: index.data }, -1);
}

export function cpuGatherBackward(gradOut: HostTensor, inputShape: Shape, dim: number, index: HostTensor): HostTensor {
  const d = normDim(dim, inputShape.length);
  const out = host(inputShape);
  for (let i = 0; i < gradOut.data.length; i++) {
    const c = unravel(i, index.shape);
    const k = index.data[i]!;
    if (k < 0 || k >= inputShape[d]!) continue;
    c[d] = k;
    out.data[ravel(c, inputShape)] += gradOut.data[i]!;
  }
  return out;
}
