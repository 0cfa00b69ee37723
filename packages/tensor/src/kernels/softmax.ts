/**
 * Softmax, log-softmax and cross-entropy as fused row kernels (see `rowProgram` in
 * reduce.ts), with the backward kernels autograd calls. Every row is reduced with its maximum
 * subtracted first, so logits of 1e4 (or -1e4) neither overflow nor flush to zero.
 *
 * Labels outside [0, C) (other than `ignoreIndex`): a kernel cannot throw, and reading the
 * labels back inside an op would stall the queue. PyTorch raises ("Target 7 is out of
 * bounds"), so labels given as host data (Int32Array or number[]) are checked on the host
 * before upload and raise the same way. Labels already on the GPU make that sample's loss NaN
 * (and its gradient row NaN), which poisons a mean loss visibly instead of training on garbage;
 * `await checkLabels(labels, C)` reads them back and throws the PyTorch-style error.
 */
import { full, tensor } from '../creation.js';
import { engine } from '../engine.js';
import { host, type HostTensor } from '../host.js';
import { Params } from '../params.js';
import { fmt, normDim, numel, shapeEq } from '../shape.js';
import { Tensor } from '../tensor.js';
import { checkFloat } from './check-float.js';
import { reduceGeneric, rowLayout, rowParams, rowProgram, rowWorkgroups, type RowLayout } from './reduce.js';

/** A contiguous tensor seen as [outer, len, inner] rows along `dim`. */
interface RowView {
  rows: number;
  len: number;
  inner: number;
}

function rowView(shape: readonly number[], dim: number): RowView {
  const len = shape[dim] ?? 1;
  const inner = numel(shape.slice(dim + 1));
  return { rows: numel(shape.slice(0, dim)) * inner, len, inner };
}

/** The lowest finite f32 (WGSL rejects an infinite constant); -inf logits still give exp = 0. */
const LOWEST = '-0x1.fffffep+127f';

/** WGSL that leaves `m` (row max) and `s` (sum of exp(x - m)) for input `x` at offset p.offX.
 * WGSL's max may drop a NaN from `m`, but that NaN still enters `s`, so a row holding one
 * comes out all NaN, as in PyTorch (tested on both row modes). */
function maxSumExp(x: string): string {
  return `
  var mv = VT(${LOWEST});
  for (var j = j0; j < p.len; j += js) { mv = max(mv, ${x}[p.offX + base + j * p.inner]); }
  let m = rmax_(hmax_(mv));
  var sv = VT(0.0);
  for (var j = j0; j < p.len; j += js) { sv += exp(${x}[p.offX + base + j * p.inner] - m); }
  let s = rsum_(hsum_(sv));`;
}

function softmaxLike(x: Tensor, dim: number, log: boolean): Tensor {
  const op = log ? 'logSoftmax' : 'softmax';
  checkFloat(op, 'x', x);
  const d = x.rank === 0 ? 0 : normDim(dim, x.rank);
  const out = Tensor.empty(x.shape);
  const v = rowView(x.shape, d);
  if (v.rows === 0 || v.len === 0) return out;
  const c = x.contiguous();
  const l = rowLayout(v.rows, v.len, v.inner, [c.offset]);
  const params = rowParams(l).u32('offX', c.offset / l.vec);
  const write = log ? `xv - m - log(s)` : `exp(xv - m) * inv`;
  const code = (): string => rowProgram(l, `${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<VT>;
@group(0) @binding(2) var<storage, read_write> y: array<VT>;`, `${maxSumExp('x')}
  let inv = 1.0 / s;
  for (var j = j0; j < p.len; j += js) {
    let i = base + j * p.inner;
    let xv = x[p.offX + i];
    y[i] = ${write};
  }`);
  engine().dispatch({ key: `${op}/${l.mode}/${l.vec}`, get code() { return code(); }, params, buffers: [c.buffer, out.buffer], workgroups: rowWorkgroups(l), label: op });
  c.dispose();
  return out;
}

/** softmax along `dim` (default last), as `torch.softmax`. */
export function softmax(x: Tensor, dim = -1): Tensor {
  return softmaxLike(x, dim, false);
}

/** log(softmax(x)) along `dim`, computed as x - max - log(sum(exp(x - max))). */
export function logSoftmax(x: Tensor, dim = -1): Tensor {
  return softmaxLike(x, dim, true);
}

function softmaxBackwardLike(y: Tensor, gy: Tensor, dim: number, log: boolean): Tensor {
  const op = log ? 'logSoftmaxBackward' : 'softmaxBackward';
  checkFloat(op, 'y', y);
  checkFloat(op, 'gy', gy);
  if (!shapeEq(y.shape, gy.shape)) throw new RangeError(`${op}: y ${fmt(y.shape)} and gy ${fmt(gy.shape)} must have one shape`);
  const d = y.rank === 0 ? 0 : normDim(dim, y.rank);
  const out = Tensor.empty(y.shape);
  const v = rowView(y.shape, d);
  if (v.rows === 0 || v.len === 0) return out;
  const cy = y.contiguous();
  const cg = gy.contiguous();
  const l = rowLayout(v.rows, v.len, v.inner, [cy.offset, cg.offset]);
  const params = rowParams(l).u32('offY', cy.offset / l.vec).u32('offG', cg.offset / l.vec);
  // softmax: dx = y * (gy - Σ gy·y); log-softmax: dx = gy - exp(y) · Σ gy.
  const term = log ? 'g[p.offG + i]' : 'g[p.offG + i] * y[p.offY + i]';
  const write = log ? 'g[p.offG + i] - exp(y[p.offY + i]) * t' : 'y[p.offY + i] * (g[p.offG + i] - t)';
  const code = (): string => rowProgram(l, `${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> y: array<VT>;
@group(0) @binding(2) var<storage, read> g: array<VT>;
@group(0) @binding(3) var<storage, read_write> dx: array<VT>;`, `
  var tv = VT(0.0);
  for (var j = j0; j < p.len; j += js) {
    let i = base + j * p.inner;
    tv += ${term};
  }
  let t = rsum_(hsum_(tv));
  for (var j = j0; j < p.len; j += js) {
    let i = base + j * p.inner;
    dx[i] = ${write};
  }`);
  engine().dispatch({ key: `${op}/${l.mode}/${l.vec}`, get code() { return code(); }, params, buffers: [cy.buffer, cg.buffer, out.buffer], workgroups: rowWorkgroups(l), label: op });
  cy.dispose();
  cg.dispose();
  return out;
}

/** Gradient of softmax from its output `y` and the upstream gradient `gy`. */
export function softmaxBackward(y: Tensor, gy: Tensor, dim = -1): Tensor {
  return softmaxBackwardLike(y, gy, dim, false);
}

/** Gradient of log-softmax from its output `y` and the upstream gradient `gy`. */
export function logSoftmaxBackward(y: Tensor, gy: Tensor, dim = -1): Tensor {
  return softmaxBackwardLike(y, gy, dim, true);
}

// Cross-entropy --------------------------------------------------------------------------

export type Reduction = 'mean' | 'sum' | 'none';

export interface CrossEntropyOptions {
  /** Mixes the one-hot target with the uniform distribution, as PyTorch's `label_smoothing`. */
  labelSmoothing?: number;
  /** Samples with this label contribute nothing (default -100, as PyTorch). */
  ignoreIndex?: number;
  reduction?: Reduction;
  /** Per-class weights [C]. */
  weight?: Tensor;
}

export type Labels = Tensor | Int32Array | readonly number[];

/** Labels and weight are contiguous handles owned by the op (`ceRelease` disposes them). */
interface CeSetup {
  labels: Tensor;
  view: RowView;
  C: number;
  smoothing: number;
  ignoreIndex: number;
  reduction: Reduction;
  weight: Tensor | undefined;
  labelShape: number[];
}

function ceSetup(op: string, logits: Tensor, labels: Labels, opts: CrossEntropyOptions): CeSetup {
  checkFloat(op, 'logits', logits);
  if (logits.rank < 1) throw new RangeError(`${op}: logits must be [N, C] or [N, C, d1, ...] (or [C]), got ${fmt(logits.shape)}`);
  // [C] is one unbatched sample, as PyTorch.
  const classDim = logits.rank === 1 ? 0 : 1;
  const C = logits.shape[classDim]!;
  const labelShape = logits.shape.filter((_, i) => i !== classDim);
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const smoothing = opts.labelSmoothing ?? 0;
  const reduction = opts.reduction ?? 'mean';
  if (!(smoothing >= 0 && smoothing <= 1)) throw new RangeError(`${op}: labelSmoothing must be in [0, 1], got ${smoothing}`);
  if (!['mean', 'sum', 'none'].includes(reduction)) throw new RangeError(`${op}: reduction must be 'mean', 'sum' or 'none', got '${reduction}'`);
  const w = opts.weight;
  if (w) {
    checkFloat(op, 'weight', w);
    if (w.rank !== 1 || w.shape[0] !== C) throw new RangeError(`${op}: weight must have shape [${C}] (one per class), got ${fmt(w.shape)}`);
  }
  if (labels instanceof Tensor) {
    labels.assertAlive();
    if (labels.dtype !== 'int32') throw new TypeError(`${op}: labels must be int32, got ${labels.dtype}`);
    if (!shapeEq(labels.shape, labelShape)) {
      throw new RangeError(`${op}: labels have shape ${fmt(labels.shape)}; logits ${fmt(logits.shape)} need ${fmt(labelShape)}`);
    }
  } else {
    if (labels.length !== numel(labelShape)) {
      throw new RangeError(`${op}: ${labels.length} labels given; logits ${fmt(logits.shape)} need ${fmt(labelShape)}`);
    }
    validateLabels(op, labels, C, ignoreIndex);
  }
  const lab = labels instanceof Tensor ? labels.contiguous() : tensor(Int32Array.from(labels), { shape: labelShape, dtype: 'int32' });
  return { labels: lab, view: rowView(logits.shape, classDim), C, smoothing, ignoreIndex, reduction, weight: w?.contiguous(), labelShape };
}

function ceRelease(s: CeSetup): void {
  s.labels.dispose();
  s.weight?.dispose();
}

function validateLabels(op: string, labels: ArrayLike<number>, C: number, ignoreIndex: number): void {
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i]!;
    if (l === ignoreIndex) continue;
    if (!Number.isInteger(l) || l < 0 || l >= C) {
      throw new RangeError(`${op}: target ${l} (at position ${i}) is out of bounds; expected a class index in [0, ${C}) or ignoreIndex ${ignoreIndex}`);
    }
  }
}

/** Reads GPU labels back and throws as PyTorch would for one outside [0, C) that is not
 * `ignoreIndex`; for debugging, since the kernels themselves answer such labels with NaN. */
export async function checkLabels(labels: Tensor, numClasses: number, ignoreIndex = -100): Promise<void> {
  validateLabels('checkLabels', await labels.data(), numClasses, ignoreIndex);
}

/** The uniforms and WGSL shared by the forward and backward kernels: per row, the label,
 * whether it counts, its class weight, `lse` = log Σ exp and (with smoothing) Σ_c w_c·x_c
 * and Σ_c w_c. */
function ceCommon(s: CeSetup, c: Tensor, l: RowLayout): { params: Params; decls: string; body: string } {
  // NaN comes in through the uniforms: WGSL rejects NaN constants.
  const params = rowParams(l).u32('offX', c.offset).u32('offL', s.labels.offset).i32('ignore', s.ignoreIndex).f32('eps', s.smoothing).f32('nan', NaN);
  if (s.weight) params.u32('offW', s.weight.offset);
  const weighted = s.weight !== undefined;
  const decls = `@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
${weighted ? '@group(0) @binding(3) var<storage, read> w: array<f32>;' : ''}`;
  const smoothSums = s.smoothing > 0 ? `
  var sw = vec2<f32>(0.0);
  for (var j = j0; j < p.len; j += js) {
    let wc = ${weighted ? 'w[p.offW + j]' : '1.0'};
    sw += vec2<f32>(wc * x[p.offX + base + j * p.inner], wc);
  }
  sw = rsum2_(sw);` : '';
  const body = `
  let lab = labels[p.offL + row];
  let counted = lab != p.ignore;
  let inRange = lab >= 0 && lab < i32(p.len);
  let labc = u32(clamp(lab, 0, i32(p.len) - 1));
  let wy = select(0.0, ${weighted ? 'w[p.offW + labc]' : '1.0'}, counted);
${maxSumExp('x')}
  let lse = m + log(s);
${smoothSums}`;
  return { params, decls, body };
}

/** What `ceCommon`'s WGSL depends on: class weights given, label smoothing on. */
function ceKey(s: CeSetup): string {
  return `${s.weight ? 'w' : ''}${s.smoothing > 0 ? 's' : ''}`;
}

function ceBuffers(s: CeSetup, c: Tensor): GPUBuffer[] {
  return [c.buffer, s.labels.buffer, ...(s.weight ? [s.weight.buffer] : [])];
}

/** The loss and, for 'mean', the total weight of the counted samples (the denominator, which
 * `crossEntropyBackward` can reuse). */
export interface CrossEntropyResult {
  loss: Tensor;
  totalWeight: Tensor | null;
}

/**
 * As PyTorch's `F.cross_entropy(logits, labels, weight, ignore_index, reduction,
 * label_smoothing)` with class indices: logits [N, C] or [N, C, d1, ...] (classes on dim 1)
 * or [C]; labels int32 of the logits' shape without the class dim. Per sample
 * loss = (1-ε)·w_y·(lse - x_y) + (ε/C)·Σ_c w_c·(lse - x_c); 'mean' divides the sum by
 * Σ w_y over the counted samples (NaN when none count).
 */
export function crossEntropyForward(logits: Tensor, labels: Labels, opts: CrossEntropyOptions = {}): CrossEntropyResult {
  const s = ceSetup('crossEntropy', logits, labels, opts);
  const e = engine();
  const rows = s.view.rows;
  const none = s.reduction === 'none';
  const perRow = Tensor.empty(s.labelShape);
  const perRowW = none ? null : Tensor.empty(s.labelShape);
  if (rows > 0) {
    const c = logits.contiguous();
    // Scalar loads: the label's logit is read on its own.
    const l = rowLayout(rows, s.C, s.view.inner, [], false);
    const { params, decls, body } = ceCommon(s, c, l);
    const nb = s.weight ? 4 : 3;
    const code = (): string => rowProgram(l, `${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
${decls}
@group(0) @binding(${nb}) var<storage, read_write> loss: array<f32>;
${none ? '' : `@group(0) @binding(${nb + 1}) var<storage, read_write> lossW: array<f32>;`}`, `${body}
  let xy = x[p.offX + base + labc * p.inner];
  let l = ${s.smoothing > 0 ? '(1.0 - p.eps) * wy * (lse - xy) + p.eps / p.count * (lse * sw.y - sw.x)' : 'wy * (lse - xy)'};
  if (leader) {
    loss[row] = select(select(0.0, l, counted), p.nan, counted && !inRange);
    ${none ? '' : 'lossW[row] = select(wy, p.nan, counted && !inRange);'}
  }`);
    e.dispatch({
      key: `crossEntropy/${l.mode}/${ceKey(s)}/${none ? 'none' : ''}`,
      get code() { return code(); },
      params, buffers: [...ceBuffers(s, c), perRow.buffer, ...(perRowW ? [perRowW.buffer] : [])],
      workgroups: rowWorkgroups(l), label: 'crossEntropy',
    });
    c.dispose();
  }
  ceRelease(s);
  if (none) return { loss: perRow, totalWeight: null };
  const mean = s.reduction === 'mean';
  let result: Tensor[];
  if (rows === 0) {
    result = [full([], mean ? NaN : 0), full([], 0)];
  } else {
    const flatL = perRow.reshape([rows]);
    const flatW = perRowW!.reshape([rows]);
    result = reduceGeneric({
      kind: 'sum', vec2: true, inputs: [flatL, flatW], dims: [0], label: 'crossEntropy (reduce)',
      elem: ([l, w]) => `vec2<f32>(${l}, ${w})`,
      outputs: [{ dtype: 'float32', expr: (a) => (mean ? `${a}.x / ${a}.y` : `${a}.x`) }, { dtype: 'float32', expr: (a) => `${a}.y` }],
    });
    flatL.dispose();
    flatW.dispose();
  }
  perRow.dispose();
  perRowW!.dispose();
  if (!mean) {
    result[1]!.dispose();
    return { loss: result[0]!, totalWeight: null };
  }
  return { loss: result[0]!, totalWeight: result[1]! };
}

/** The loss alone; see `crossEntropyForward`. */
export function crossEntropy(logits: Tensor, labels: Labels, opts: CrossEntropyOptions = {}): Tensor {
  const { loss, totalWeight } = crossEntropyForward(logits, labels, opts);
  totalWeight?.dispose();
  return loss;
}

export interface CrossEntropyBackwardOptions extends CrossEntropyOptions {
  /** 'mean' only: Σ w_y from `crossEntropyForward`; computed again when omitted. */
  totalWeight?: Tensor | null;
}

/**
 * dLoss/dlogits in one kernel: per row, (1-ε)·w_y·(p_c - [c = y]) + (ε/C)·(Σw·p_c - w_c),
 * scaled by `gradLoss` (a scalar for 'mean'/'sum', divided by Σ w_y for 'mean'; per sample,
 * of the labels' shape, for 'none'). Ignored samples get zero rows.
 */
export function crossEntropyBackward(logits: Tensor, labels: Labels, gradLoss: Tensor, opts: CrossEntropyBackwardOptions = {}): Tensor {
  checkFloat('crossEntropyBackward', 'gradLoss', gradLoss);
  const s = ceSetup('crossEntropyBackward', logits, labels, opts);
  const none = s.reduction === 'none';
  if (none ? !shapeEq(gradLoss.shape, s.labelShape) : gradLoss.size !== 1) {
    ceRelease(s);
    throw new RangeError(`crossEntropyBackward: gradLoss has shape ${fmt(gradLoss.shape)}; expected ${none ? fmt(s.labelShape) : 'one element'} for reduction '${s.reduction}'`);
  }
  const e = engine();
  const dx = Tensor.empty(logits.shape);
  const rows = s.view.rows;
  if (rows === 0 || s.C === 0) {
    ceRelease(s);
    return dx;
  }
  const mean = s.reduction === 'mean';
  let total: Tensor | null = null;
  if (mean) total = opts.totalWeight ?? totalWeight(s);
  const c = logits.contiguous();
  const g = gradLoss.contiguous();
  const l = rowLayout(rows, s.C, s.view.inner, [], false);
  const { params, decls, body } = ceCommon(s, c, l);
  params.u32('offG', g.offset);
  if (total) params.u32('offT', total.offset);
  let b = s.weight ? 4 : 3;
  const gDecl = `@group(0) @binding(${b++}) var<storage, read> gl: array<f32>;`;
  const tDecl = total ? `@group(0) @binding(${b++}) var<storage, read> tw: array<f32>;` : '';
  const code = (): string => rowProgram(l, `${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
${decls}
${gDecl}
${tDecl}
@group(0) @binding(${b}) var<storage, read_write> dx: array<f32>;`, `${body}
  let scale = gl[p.offG + ${none ? 'row' : '0u'}]${total ? ' / tw[p.offT]' : ''};
  let a = (1.0 - p.eps) * wy;
  ${s.smoothing > 0 ? 'let bs = p.eps / p.count;' : ''}
  for (var j = j0; j < p.len; j += js) {
    let i = base + j * p.inner;
    let pc = exp(x[p.offX + i] - lse);
    let d = a * (pc - select(0.0, 1.0, j == labc))${s.smoothing > 0 ? ` + bs * (sw.y * pc - ${s.weight ? 'w[p.offW + j]' : '1.0'})` : ''};
    dx[i] = select(select(0.0, scale * d, counted), p.nan, counted && !inRange);
  }`);
  e.dispatch({
    key: `crossEntropyBackward/${l.mode}/${ceKey(s)}/${none ? 'none' : ''}${total ? 't' : ''}`,
    get code() { return code(); },
    params, buffers: [...ceBuffers(s, c), g.buffer, ...(total ? [total.buffer] : []), dx.buffer],
    workgroups: rowWorkgroups(l), label: 'crossEntropyBackward',
  });
  c.dispose();
  g.dispose();
  if (total && total !== opts.totalWeight) total.dispose();
  ceRelease(s);
  return dx;
}

/** Σ w_y over the counted samples (NaN when a counted label is out of range). */
function totalWeight(s: CeSetup): Tensor {
  const flat = s.labels.reshape([s.view.rows]);
  const out = reduceGeneric({
    kind: 'sum', inputs: [flat], dims: [0], label: 'crossEntropy (total weight)',
    extras: s.weight ? [s.weight] : [],
    ints: { ignore: s.ignoreIndex, classes: s.C },
    scalars: { nan: NaN },
    elem: ([l]) => {
      const w = s.weight ? `ex0[p.exOff0 + u32(clamp(${l}, 0, p.classes - 1))]` : '1.0';
      return `select(select(${w}, p.nan, ${l} < 0 || ${l} >= p.classes), 0.0, ${l} == p.ignore)`;
    },
    outputs: [{ dtype: 'float32', expr: (a) => a }],
  })[0]!;
  flat.dispose();
  return out;
}

// CPU references -----------------------------------------------------------------------

function cpuRows(shape: readonly number[], dim: number, fn: (idx: number[]) => void): void {
  const v = rowView(shape, dim);
  for (let r = 0; r < v.rows; r++) {
    const a = Math.floor(r / v.inner);
    const base = a * v.len * v.inner + (r % v.inner);
    fn(Array.from({ length: v.len }, (_, j) => base + j * v.inner));
  }
}

function cpuSoftmaxLike(x: HostTensor, dim: number, log: boolean): HostTensor {
  const out = host(x.shape);
  const d = x.shape.length === 0 ? 0 : normDim(dim, x.shape.length);
  cpuRows(x.shape, d, (idx) => {
    const m = Math.max(...idx.map((i) => x.data[i]!));
    const lse = m + Math.log(idx.reduce((a, i) => a + Math.exp(x.data[i]! - m), 0));
    for (const i of idx) out.data[i] = log ? x.data[i]! - lse : Math.exp(x.data[i]! - lse);
  });
  return out;
}

export const cpuSoftmax = (x: HostTensor, dim = -1): HostTensor => cpuSoftmaxLike(x, dim, false);
export const cpuLogSoftmax = (x: HostTensor, dim = -1): HostTensor => cpuSoftmaxLike(x, dim, true);

export function cpuSoftmaxBackward(y: HostTensor, gy: HostTensor, dim = -1): HostTensor {
  const out = host(y.shape);
  cpuRows(y.shape, y.shape.length === 0 ? 0 : normDim(dim, y.shape.length), (idx) => {
    const t = idx.reduce((a, i) => a + gy.data[i]! * y.data[i]!, 0);
    for (const i of idx) out.data[i] = y.data[i]! * (gy.data[i]! - t);
  });
  return out;
}

export function cpuLogSoftmaxBackward(y: HostTensor, gy: HostTensor, dim = -1): HostTensor {
  const out = host(y.shape);
  cpuRows(y.shape, y.shape.length === 0 ? 0 : normDim(dim, y.shape.length), (idx) => {
    const t = idx.reduce((a, i) => a + gy.data[i]!, 0);
    for (const i of idx) out.data[i] = gy.data[i]! - Math.exp(y.data[i]!) * t;
  });
  return out;
}

export interface CpuCrossEntropyOptions {
  labelSmoothing?: number;
  ignoreIndex?: number;
  reduction?: Reduction;
  weight?: HostTensor;
}

/** Per-sample terms: the loss (0 when ignored) and w_y (0 when ignored). */
function cpuCePerSample(logits: HostTensor, labels: ArrayLike<number>, opts: CpuCrossEntropyOptions): { loss: number[]; w: number[]; rows: number[][]; lse: number[] } {
  const classDim = logits.shape.length === 1 ? 0 : 1;
  const C = logits.shape[classDim]!;
  const eps = opts.labelSmoothing ?? 0;
  const ignore = opts.ignoreIndex ?? -100;
  const wc = (c: number): number => (opts.weight ? opts.weight.data[c]! : 1);
  const loss: number[] = [];
  const w: number[] = [];
  const rows: number[][] = [];
  const lses: number[] = [];
  let r = 0;
  cpuRows(logits.shape, classDim, (idx) => {
    const y = labels[r++]!;
    const xs = idx.map((i) => logits.data[i]!);
    const m = Math.max(...xs);
    const lse = m + Math.log(xs.reduce((a, v) => a + Math.exp(v - m), 0));
    rows.push(idx);
    lses.push(lse);
    if (y === ignore) {
      loss.push(0);
      w.push(0);
      return;
    }
    if (y < 0 || y >= C) {
      loss.push(NaN);
      w.push(NaN);
      return;
    }
    const smooth = xs.reduce((a, v, c) => a + wc(c) * (lse - v), 0);
    loss.push((1 - eps) * wc(y) * (lse - xs[y]!) + (eps / C) * smooth);
    w.push(wc(y));
  });
  return { loss, w, rows, lse: lses };
}

export function cpuCrossEntropy(logits: HostTensor, labels: ArrayLike<number>, opts: CpuCrossEntropyOptions = {}): HostTensor {
  const { loss, w } = cpuCePerSample(logits, labels, opts);
  const red = opts.reduction ?? 'mean';
  const classDim = logits.shape.length === 1 ? 0 : 1;
  if (red === 'none') return host(logits.shape.filter((_, i) => i !== classDim), loss);
  const total = loss.reduce((a, b) => a + b, 0);
  return host([], [red === 'sum' ? total : total / w.reduce((a, b) => a + b, 0)]);
}

export function cpuCrossEntropyBackward(logits: HostTensor, labels: ArrayLike<number>, gradLoss: HostTensor, opts: CpuCrossEntropyOptions = {}): HostTensor {
  const { w, rows, lse } = cpuCePerSample(logits, labels, opts);
  const classDim = logits.shape.length === 1 ? 0 : 1;
  const C = logits.shape[classDim]!;
  const eps = opts.labelSmoothing ?? 0;
  const ignore = opts.ignoreIndex ?? -100;
  const red = opts.reduction ?? 'mean';
  const wc = (c: number): number => (opts.weight ? opts.weight.data[c]! : 1);
  let W = 0;
  for (let c = 0; c < C; c++) W += wc(c);
  const denom = red === 'mean' ? w.reduce((a, b) => a + b, 0) : 1;
  const out = host(logits.shape);
  rows.forEach((idx, r) => {
    const y = labels[r]!;
    const g = (red === 'none' ? gradLoss.data[r]! : gradLoss.data[0]!) / denom;
    idx.forEach((i, c) => {
      if (y === ignore) out.data[i] = 0;
      else if (y < 0 || y >= C) out.data[i] = NaN;
      else {
        const pc = Math.exp(logits.data[i]! - lse[r]!);
        out.data[i] = g * ((1 - eps) * wc(y) * (pc - (c === y ? 1 : 0)) + (eps / C) * (W * pc - wc(c)));
      }
    });
  });
  return out;
}
