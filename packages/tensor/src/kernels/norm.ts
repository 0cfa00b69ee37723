/**
 * Layer norm and batch norm, forward and backward, with the statistics autograd saves.
 *
 * Layer norm normalises each row of the trailing `normalizedShape` dims in one fused row
 * kernel (`rowProgram`): mean, then variance around it (two passes over the row, which
 * stays in cache, so no cancellation), then the output. Its backward is one row kernel for
 * dx and one column reduction (`reduceGeneric`) for dweight and dbias.
 *
 * Batch norm reduces over every dim but the channel dim 1: few long rows, which is what
 * `reduceGeneric`'s split passes are for (Welford states merged pairwise); the elementwise
 * parts are `channelMap` kernels reading the per-channel values by channel index.
 */
import { zeros } from '../creation.js';
import { engine } from '../engine.js';
import { host, type HostTensor } from '../host.js';
import { Params } from '../params.js';
import { fmt, numel, shapeEq } from '../shape.js';
import { Tensor, type DType } from '../tensor.js';
import { enableF16, linearIndex, MAIN_ARGS, WG } from './wgsl.js';
import { byImages, needsImageRuns } from './batches.js';
import { checkFloat } from './check-float.js';
import { moments, reduceGeneric, rowLayout, rowParams, rowProgram, rowWorkgroups, type RowLayout } from './reduce.js';

function checkParam(op: string, what: string, t: Tensor | undefined | null, shape: readonly number[]): void {
  if (!t) return;
  checkFloat(op, what, t);
  if (t.size !== numel(shape) || (t.rank !== shape.length && t.rank !== 1)) {
    throw new RangeError(`${op}: ${what} has shape ${fmt(t.shape)}; expected ${fmt(shape)}`);
  }
}

// float16 activations ----------------------------------------------------------------------
//
// As PyTorch's mixed-precision kernels: x and gy may be float16 while the parameters and
// statistics stay float32; halves are loaded into f32, everything is computed there, and y
// and dx are rounded to x's dtype once on store.

/** The `enable f16;` line a shader with f16 buffers starts with; nothing otherwise, so
 * float32 kernels keep their WGSL (and cached pipelines). */
function f16Line(half: boolean): string {
  return half ? `${enableF16(true)}\n` : '';
}

/** How a row or channel kernel computing in `VT` (f32 or vec4<f32>) declares, loads and
 * stores a tensor of `dtype`: float32 as VT itself, float16 as f16 elements of the same
 * width converted on load and on store. */
interface Access {
  type: string;
  load: (element: string) => string;
  store: (value: string) => string;
}

function access(dtype: DType, vec: number, VT: string): Access {
  if (dtype !== 'float16') return { type: VT, load: (e) => e, store: (v) => v };
  const type = vec === 4 ? 'vec4<f16>' : 'f16';
  return { type, load: (e) => `${VT}(${e})`, store: (v) => `${type}(${v})` };
}

const rowAccess = (l: RowLayout, t: Tensor): Access => access(t.dtype, l.vec, 'VT');

// Layer norm ------------------------------------------------------------------------------

export interface LayerNormStats {
  y: Tensor;
  /** Per-row mean and 1/sqrt(var + eps), shaped as x with the normalized dims set to 1. */
  mean: Tensor;
  rstd: Tensor;
}

function lnShapes(op: string, x: Tensor, normalizedShape: number | readonly number[]): { rows: number; len: number; statShape: number[]; ns: number[] } {
  const ns = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
  const lead = x.rank - ns.length;
  if (lead < 0 || ns.some((d, i) => x.shape[lead + i] !== d)) {
    throw new RangeError(`${op}: normalizedShape ${fmt(ns)} does not match the trailing dims of input ${fmt(x.shape)}`);
  }
  const statShape = x.shape.map((d, i) => (i < lead ? d : 1));
  return { rows: numel(x.shape.slice(0, lead)), len: numel(ns), statShape, ns };
}

function layerNormKernel(x: Tensor, normalizedShape: number | readonly number[], weight: Tensor | undefined, bias: Tensor | undefined, eps: number, stats: boolean): LayerNormStats | Tensor {
  const op = stats ? 'layerNormWithStats' : 'layerNorm';
  checkFloat(op, 'input', x, true);
  const { rows, len, statShape, ns } = lnShapes(op, x, normalizedShape);
  checkParam(op, 'weight', weight, ns);
  checkParam(op, 'bias', bias, ns);
  const y = Tensor.empty(x.shape, x.dtype);
  const mean = stats ? Tensor.empty(statShape) : null;
  const rstd = stats ? Tensor.empty(statShape) : null;
  if (rows > 0 && len > 0) {
    const c = x.contiguous();
    const w = weight?.contiguous();
    const b = bias?.contiguous();
    const l = rowLayout(rows, len, 1, [c, w, b].flatMap((t) => (t ? [t.offset] : [])));
    const params = rowParams(l).u32('offX', c.offset / l.vec).f32('eps', eps);
    const X = rowAccess(l, c);
    let bi = 1;
    const decls = [`@group(0) @binding(${bi++}) var<storage, read> x: array<${X.type}>;`];
    if (w) {
      params.u32('offW', w.offset / l.vec);
      decls.push(`@group(0) @binding(${bi++}) var<storage, read> w: array<VT>;`);
    }
    if (b) {
      params.u32('offB', b.offset / l.vec);
      decls.push(`@group(0) @binding(${bi++}) var<storage, read> bb: array<VT>;`);
    }
    decls.push(`@group(0) @binding(${bi++}) var<storage, read_write> y: array<${X.type}>;`);
    if (stats) decls.push(`@group(0) @binding(${bi++}) var<storage, read_write> mo: array<f32>;`, `@group(0) @binding(${bi++}) var<storage, read_write> ro: array<f32>;`);
    const code = (): string => rowProgram(l, `${f16Line(x.dtype === 'float16')}${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
${decls.join('\n')}`, `
  var sv = VT(0.0);
  for (var j = j0; j < p.len; j += js) { sv += ${X.load('x[p.offX + base + j]')}; }
  let mean = rsum_(hsum_(sv)) / p.count;
  var qv = VT(0.0);
  for (var j = j0; j < p.len; j += js) {
    let d = ${X.load('x[p.offX + base + j]')} - mean;
    qv += d * d;
  }
  let rstd = 1.0 / sqrt(rsum_(hsum_(qv)) / p.count + p.eps);
  for (var j = j0; j < p.len; j += js) {
    y[base + j] = ${X.store(`(${X.load('x[p.offX + base + j]')} - mean) * rstd${w ? ' * w[p.offW + j]' : ''}${b ? ' + bb[p.offB + j]' : ''}`)};
  }
  ${stats ? 'if (leader) { mo[row] = mean; ro[row] = rstd; }' : ''}`);
    engine().dispatch({
      key: `layerNorm/${l.mode}/${l.vec}/${x.dtype}/${w ? 'w' : ''}${b ? 'b' : ''}${stats ? 's' : ''}`,
      get code() { return code(); },
      params, workgroups: rowWorkgroups(l), label: op,
      buffers: [c.storage.buffer, ...(w ? [w.buffer] : []), ...(b ? [b.buffer] : []), y.storage.buffer, ...(stats ? [mean!.buffer, rstd!.buffer] : [])],
    });
    c.dispose();
    w?.dispose();
    b?.dispose();
  }
  return stats ? { y, mean: mean!, rstd: rstd! } : y;
}

/** As `F.layer_norm(x, normalizedShape, weight, bias, eps)`: normalises over the trailing
 * dims named by `normalizedShape` with the biased variance. */
export function layerNorm(x: Tensor, normalizedShape: number | readonly number[], weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  return layerNormKernel(x, normalizedShape, weight, bias, eps, false) as Tensor;
}

/** `layerNorm` that also returns the per-row mean and rstd that the backward pass needs. */
export function layerNormWithStats(x: Tensor, normalizedShape: number | readonly number[], weight?: Tensor, bias?: Tensor, eps = 1e-5): LayerNormStats {
  return layerNormKernel(x, normalizedShape, weight, bias, eps, true) as LayerNormStats;
}

export interface NormGrads {
  dx: Tensor;
  /** Gradients of the affine parameters, shaped as the normalized dims (or [C]); null when
   * not asked for. */
  dweight: Tensor | null;
  dbias: Tensor | null;
}

export interface NormBackwardOptions {
  /** Compute dweight and dbias (default true; frozen layers skip the column reduction). */
  paramGrads?: boolean;
}

/**
 * Gradients of layer norm from `layerNormWithStats`'s mean and rstd. With x̂ = (x - mean)·rstd
 * and g = gy·w: dx = rstd·(g - mean(g) - x̂·mean(g·x̂)) per row; dweight = Σ_rows gy·x̂,
 * dbias = Σ_rows gy.
 */
export function layerNormBackward(gy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight?: Tensor, opts: NormBackwardOptions = {}): NormGrads {
  const op = 'layerNormBackward';
  checkFloat(op, 'gy', gy, true);
  checkFloat(op, 'x', x, true);
  checkFloat(op, 'mean', mean);
  checkFloat(op, 'rstd', rstd);
  if (!shapeEq(gy.shape, x.shape)) throw new RangeError(`${op}: gy ${fmt(gy.shape)} and x ${fmt(x.shape)} must have one shape`);
  const rows = mean.size;
  if (rstd.size !== rows || (rows > 0 && x.size % rows !== 0)) {
    throw new RangeError(`${op}: mean ${fmt(mean.shape)} and rstd ${fmt(rstd.shape)} do not match x ${fmt(x.shape)}`);
  }
  const len = rows === 0 ? 0 : x.size / rows;
  const ns = weight ? [...weight.shape] : normalizedDims(x.shape, len);
  if (weight) {
    checkFloat(op, 'weight', weight);
    if (weight.size !== len) throw new RangeError(`${op}: weight has shape ${fmt(weight.shape)}; expected ${len} elements (the normalized dims)`);
  }
  const dx = Tensor.empty(x.shape, x.dtype);
  const want = opts.paramGrads ?? true;
  if (rows === 0 || len === 0) {
    return { dx, dweight: want ? zeros(ns) : null, dbias: want ? zeros(ns) : null };
  }
  const e = engine();
  const cx = x.contiguous();
  const cg = gy.contiguous();
  const cm = mean.contiguous();
  const cr = rstd.contiguous();
  const w = weight?.contiguous();
  const l = rowLayout(rows, len, 1, [cx, cg, w].flatMap((t) => (t ? [t.offset] : [])));
  const params = rowParams(l).u32('offX', cx.offset / l.vec).u32('offG', cg.offset / l.vec).u32('offM', cm.offset).u32('offR', cr.offset);
  if (w) params.u32('offW', w.offset / l.vec);
  const X = rowAccess(l, cx);
  const G = rowAccess(l, cg);
  const code = (): string => rowProgram(l, `${f16Line(x.dtype === 'float16' || gy.dtype === 'float16')}${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<${X.type}>;
@group(0) @binding(2) var<storage, read> gy: array<${G.type}>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
${w ? '@group(0) @binding(5) var<storage, read> w: array<VT>;' : ''}
@group(0) @binding(${w ? 6 : 5}) var<storage, read_write> dx: array<${X.type}>;`, `
  let mu = mean[p.offM + row];
  let rs = rstd[p.offR + row];
  var av = VT(0.0);
  var bv = VT(0.0);
  for (var j = j0; j < p.len; j += js) {
    let xh = (${X.load('x[p.offX + base + j]')} - mu) * rs;
    let g = ${G.load('gy[p.offG + base + j]')}${w ? ' * w[p.offW + j]' : ''};
    av += g;
    bv += g * xh;
  }
  let a = rsum2_(vec2<f32>(hsum_(av), hsum_(bv))) / p.count;
  for (var j = j0; j < p.len; j += js) {
    let xh = (${X.load('x[p.offX + base + j]')} - mu) * rs;
    let g = ${G.load('gy[p.offG + base + j]')}${w ? ' * w[p.offW + j]' : ''};
    dx[base + j] = ${X.store('rs * (g - a.x - xh * a.y)')};
  }`);
  e.dispatch({
    key: `layerNormBackward/${l.mode}/${l.vec}/${x.dtype}/${gy.dtype}/${w ? 'w' : ''}`,
    get code() { return code(); },
    params, workgroups: rowWorkgroups(l), label: op,
    buffers: [cx.storage.buffer, cg.storage.buffer, cm.buffer, cr.buffer, ...(w ? [w.buffer] : []), dx.storage.buffer],
  });
  let dweight: Tensor | null = null;
  let dbias: Tensor | null = null;
  if (want) {
    const x2 = cx.view([rows, len]);
    const g2 = cg.view([rows, len]);
    // Reducing dim 0 of [rows, len]: `j` is the row, so mean and rstd are read by it.
    const [dw, db] = reduceGeneric({
      kind: 'sum', vec2: true, inputs: [g2, x2], dims: [0], extras: [cm, cr], label: `${op} (params)`,
      elem: ([g, xv]) => `vec2<f32>(${g} * (${xv} - ex0[p.exOff0 + j]) * ex1[p.exOff1 + j], ${g})`,
      outputs: [{ dtype: 'float32', expr: (s) => `${s}.x` }, { dtype: 'float32', expr: (s) => `${s}.y` }],
    });
    dweight = dw!.reshape(ns);
    dbias = db!.reshape(ns);
    dw!.dispose();
    db!.dispose();
    x2.dispose();
    g2.dispose();
  }
  cx.dispose();
  cg.dispose();
  cm.dispose();
  cr.dispose();
  w?.dispose();
  return { dx, dweight, dbias };
}

/** The trailing dims of `shape` whose product is `len` (the normalized shape, up to
 * leading 1s; the gradients take the weight's own shape when there is one). */
function normalizedDims(shape: readonly number[], len: number): number[] {
  let n = 1;
  for (let i = shape.length; i > 0; i--) {
    if (n === len) return shape.slice(i);
    n *= shape[i - 1]!;
  }
  return [...shape];
}

// Batch norm ------------------------------------------------------------------------------

function bnSetup(op: string, x: Tensor): { C: number; dims: number[]; inner: number; n: number } {
  checkFloat(op, 'input', x, true);
  if (x.rank < 2) throw new RangeError(`${op}: input must be [N, C, ...], got ${fmt(x.shape)}`);
  const C = x.shape[1]!;
  const dims = x.shape.map((_, i) => i).filter((i) => i !== 1);
  return { C, dims, inner: numel(x.shape.slice(2)), n: x.size / Math.max(C, 1) };
}

/**
 * Elementwise over [N, C, ...] tensors `fulls` (read as f0, f1, ...) with per-channel
 * operands `chans` (c0, c1, ...: [C] tensors, or numbers for absent affine parameters),
 * vec4 where the spatial size allows, into a tensor of `dtype`. One index division per
 * vector instead of `map`'s broadcast index per operand per element (measured ~3x on
 * [32, 64, 56, 56]).
 */
function channelMap(label: string, dtype: DType, fulls: readonly Tensor[], chans: readonly (Tensor | number)[], C: number, inner: number, expr: string, scalars: Readonly<Record<string, number>> = {}): Tensor {
  const e = engine();
  const out = Tensor.empty(fulls[0]!.shape, dtype);
  const size = out.size;
  if (size === 0) return out;
  const fc = fulls.map((t) => t.contiguous());
  const cc = chans.map((t) => (t instanceof Tensor ? t.contiguous() : t));
  const vec = inner % 4 === 0 && fc.every((t) => t.offset % 4 === 0) ? 4 : 1;
  const VT = vec === 4 ? 'vec4<f32>' : 'f32';
  const params = new Params().u32('n', size / vec).u32('inner', inner / vec).u32('C', C);
  for (const [k, v] of Object.entries(scalars)) params.f32(k, v);
  let b = 1;
  const decls: string[] = [];
  const loads: string[] = [];
  fc.forEach((t, k) => {
    const F = access(t.dtype, vec, VT);
    params.u32(`offF${k}`, t.offset / vec);
    decls.push(`@group(0) @binding(${b++}) var<storage, read> full${k}: array<${F.type}>;`);
    loads.push(`  let f${k} = ${F.load(`full${k}[p.offF${k} + i]`)};`);
  });
  cc.forEach((t, k) => {
    if (t instanceof Tensor) {
      params.u32(`offC${k}`, t.offset);
      decls.push(`@group(0) @binding(${b++}) var<storage, read> chan${k}: array<f32>;`);
      loads.push(`  let c${k} = chan${k}[p.offC${k} + c];`);
    } else {
      params.f32(`k${k}`, t);
      loads.push(`  let c${k} = p.k${k};`);
    }
  });
  const O = access(dtype, vec, VT);
  const code = (): string => /* wgsl */ `${f16Line([out, ...fc].some((t) => t.dtype === 'float16'))}
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
${decls.join('\n')}
@group(0) @binding(${b}) var<storage, read_write> out: array<${O.type}>;
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let i = ${linearIndex()};
  if (i >= p.n) { return; }
  let c = (i / p.inner) % p.C;
${loads.join('\n')}
  out[i] = ${O.store(expr)};
}`;
  e.dispatch({
    key: `channelMap/${vec}/${fc.map((t) => t.dtype).join(',')}/${cc.map((t) => (t instanceof Tensor ? 't' : 'k')).join('')}/${dtype}/${Object.keys(scalars).join(',')}/${expr}`,
    get code() { return code(); },
    params, label, workgroups: e.grid(Math.ceil(size / vec / WG)),
    buffers: [...fc.map((t) => t.storage.buffer), ...cc.flatMap((t) => (t instanceof Tensor ? [t.buffer] : [])), out.storage.buffer],
  });
  for (const t of [...fc, ...cc]) if (t instanceof Tensor) t.dispose();
  return out;
}

/** Inference-form batch norm, as `F.batch_norm(x, runningMean, runningVar, weight, bias,
 * training=False, eps=eps)`: x [N, C, ...], per-channel statistics [C]. */
export function batchNorm(x: Tensor, runningMean: Tensor, runningVar: Tensor, weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  const op = 'batchNorm';
  const { C, inner } = bnSetup(op, x);
  checkParam(op, 'runningMean', runningMean, [C]);
  checkParam(op, 'runningVar', runningVar, [C]);
  checkParam(op, 'weight', weight, [C]);
  checkParam(op, 'bias', bias, [C]);
  const outputs = [{ shape: x.shape, dtype: x.dtype }];
  if (needsImageRuns([x], outputs)) {
    return byImages(op, [x], outputs, ([xc]) => [batchNorm(xc!, runningMean, runningVar, weight, bias, eps)])[0]!;
  }
  return channelMap(op, x.dtype, [x], [runningMean, runningVar, weight ?? 1, bias ?? 0], C, inner, '(f0 - c0) / sqrt(c1 + p.eps) * c2 + c3', { eps });
}

export interface BatchNormStats {
  mean: Tensor;
  /** Biased (what normalises the batch) and unbiased (what the running estimate tracks). */
  var: Tensor;
  varUnbiased: Tensor;
}

/** Per-channel mean and variances of x [N, C, ...] over every dim but 1, in one pass. */
export function batchNormStats(x: Tensor): BatchNormStats {
  const { dims } = bnSetup('batchNormStats', x);
  const [mean, v, vu] = moments(x, dims, [{ kind: 'mean' }, { kind: 'var', correction: 0 }, { kind: 'var', correction: 1 }], {}, 'batchNormStats');
  return { mean: mean!, var: v!, varUnbiased: vu! };
}

export interface BatchNormTrainResult {
  y: Tensor;
  mean: Tensor;
  /** 1/sqrt(biased var + eps), what the backward pass needs. */
  invstd: Tensor;
  /** For `updateRunningStats`, from the same pass. */
  varUnbiased: Tensor;
}

/** Training-form batch norm: normalises with the batch's own statistics. */
export function batchNormTrain(x: Tensor, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): BatchNormTrainResult {
  const op = 'batchNormTrain';
  const { C, dims, inner } = bnSetup(op, x);
  checkParam(op, 'weight', weight, [C]);
  checkParam(op, 'bias', bias, [C]);
  const [mean, invstd, vu] = moments(x, dims, [{ kind: 'mean' }, { kind: 'invstd', eps }, { kind: 'var', correction: 1 }], {}, op);
  const y = channelMap(op, x.dtype, [x], [mean!, invstd!, weight ?? 1, bias ?? 0], C, inner, '(f0 - c0) * c1 * c2 + c3');
  return { y, mean: mean!, invstd: invstd!, varUnbiased: vu! };
}

/**
 * Gradients of training-form batch norm. Per channel, with x̂ = (x - mean)·invstd and n the
 * elements per channel: dbias = Σ gy, dweight = Σ gy·x̂ (one reduction pass for both), then
 * dx = w·invstd·(gy - dbias/n - x̂·dweight/n).
 */
export function batchNormBackward(gy: Tensor, x: Tensor, mean: Tensor, invstd: Tensor, weight?: Tensor | null): NormGrads {
  const op = 'batchNormBackward';
  const { C, dims, inner, n } = bnSetup(op, x);
  checkFloat(op, 'gy', gy, true);
  if (!shapeEq(gy.shape, x.shape)) throw new RangeError(`${op}: gy ${fmt(gy.shape)} and x ${fmt(x.shape)} must have one shape`);
  checkParam(op, 'mean', mean, [C]);
  checkParam(op, 'invstd', invstd, [C]);
  checkParam(op, 'weight', weight, [C]);
  if (n === 0) return { dx: Tensor.empty(x.shape, x.dtype), dweight: zeros([C]), dbias: zeros([C]) };
  const cm = mean.contiguous();
  const ci = invstd.contiguous();
  const [dbias, dweight] = reduceGeneric({
    kind: 'sum', vec2: true, inputs: [gy, x], dims, extras: [cm, ci], label: `${op} (params)`,
    elem: ([g, xv]) => `vec2<f32>(${g}, ${g} * (${xv} - ex0[p.exOff0 + row]) * ex1[p.exOff1 + row])`,
    outputs: [{ dtype: 'float32', expr: (s) => `${s}.x` }, { dtype: 'float32', expr: (s) => `${s}.y` }],
  });
  const dx = channelMap(op, x.dtype, [gy, x], [cm, ci, weight ?? 1, dbias!, dweight!], C, inner,
    'c2 * c1 * (f0 - c3 * p.invN - (f1 - c0) * c1 * c4 * p.invN)', { invN: 1 / n });
  cm.dispose();
  ci.dispose();
  return { dx, dweight: dweight!, dbias: dbias! };
}

/**
 * running = (1 - momentum)·running + momentum·batch, for mean and variance, written into the
 * existing running tensors (they are module buffers that must keep their identity).
 */
export function updateRunningStats(runningMean: Tensor, runningVar: Tensor, mean: Tensor, varUnbiased: Tensor, momentum: number): void {
  const op = 'updateRunningStats';
  const C = runningMean.size;
  for (const [what, t] of [['runningMean', runningMean], ['runningVar', runningVar], ['mean', mean], ['varUnbiased', varUnbiased]] as const) {
    checkFloat(op, what, t);
    if (t.size !== C) throw new RangeError(`${op}: ${what} has ${t.size} elements; runningMean has ${C}`);
  }
  for (const [what, t] of [['runningMean', runningMean], ['runningVar', runningVar]] as const) {
    if (!t.isContiguous) throw new RangeError(`${op}: ${what} must be contiguous to be updated in place`);
  }
  if (runningMean.storage === runningVar.storage) throw new RangeError(`${op}: runningMean and runningVar share storage; they must be separate tensors`);
  if (C === 0) return;
  const e = engine();
  const cm = mean.contiguous();
  const cv = varUnbiased.contiguous();
  const params = new Params().u32('n', C).f32('momentum', momentum)
    .u32('offRM', runningMean.offset).u32('offRV', runningVar.offset).u32('offM', cm.offset).u32('offV', cv.offset);
  e.dispatch({
    key: 'updateRunningStats',
    get code() {
      return /* wgsl */ `
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> rm: array<f32>;
@group(0) @binding(2) var<storage, read_write> rv: array<f32>;
@group(0) @binding(3) var<storage, read> m: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * (nwg.x * 64u);
  if (i >= p.n) { return; }
  rm[p.offRM + i] = mix(rm[p.offRM + i], m[p.offM + i], p.momentum);
  rv[p.offRV + i] = mix(rv[p.offRV + i], v[p.offV + i], p.momentum);
}`;
    },
    params,
    buffers: [runningMean.buffer, runningVar.buffer, cm.buffer, cv.buffer],
    workgroups: e.grid(Math.ceil(C / 64)),
    label: op,
  });
  cm.dispose();
  cv.dispose();
}

// CPU references -----------------------------------------------------------------------

const hv = (t: HostTensor | undefined | null, i: number, dflt: number): number => (t ? t.data[i]! : dflt);

export function cpuLayerNorm(x: HostTensor, normalizedShape: number | readonly number[], weight?: HostTensor, bias?: HostTensor, eps = 1e-5): { y: HostTensor; mean: HostTensor; rstd: HostTensor } {
  const ns = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
  const len = numel(ns);
  const lead = x.shape.length - ns.length;
  const rows = numel(x.shape.slice(0, lead));
  const statShape = x.shape.map((d, i) => (i < lead ? d : 1));
  const y = host(x.shape);
  const mean = host(statShape);
  const rstd = host(statShape);
  for (let r = 0; r < rows; r++) {
    const o = r * len;
    let s = 0;
    for (let j = 0; j < len; j++) s += x.data[o + j]!;
    const m = s / len;
    let q = 0;
    for (let j = 0; j < len; j++) q += (x.data[o + j]! - m) ** 2;
    const rs = 1 / Math.sqrt(q / len + eps);
    for (let j = 0; j < len; j++) y.data[o + j] = (x.data[o + j]! - m) * rs * hv(weight, j, 1) + hv(bias, j, 0);
    mean.data[r] = m;
    rstd.data[r] = rs;
  }
  return { y, mean, rstd };
}

export function cpuLayerNormBackward(gy: HostTensor, x: HostTensor, mean: HostTensor, rstd: HostTensor, weight?: HostTensor): { dx: HostTensor; dweight: HostTensor; dbias: HostTensor } {
  const rows = mean.data.length;
  const len = x.data.length / rows;
  const ns = normalizedDims(x.shape, len);
  const dx = host(x.shape);
  const dweight = host(ns);
  const dbias = host(ns);
  for (let r = 0; r < rows; r++) {
    const o = r * len;
    const m = mean.data[r]!;
    const rs = rstd.data[r]!;
    let a = 0;
    let b = 0;
    for (let j = 0; j < len; j++) {
      const xh = (x.data[o + j]! - m) * rs;
      const g = gy.data[o + j]! * hv(weight, j, 1);
      a += g;
      b += g * xh;
      dweight.data[j] += gy.data[o + j]! * xh;
      dbias.data[j] += gy.data[o + j]!;
    }
    for (let j = 0; j < len; j++) {
      const xh = (x.data[o + j]! - m) * rs;
      const g = gy.data[o + j]! * hv(weight, j, 1);
      dx.data[o + j] = rs * (g - a / len - (xh * b) / len);
    }
  }
  return { dx, dweight, dbias };
}

/** Calls fn(flatIndex, channel) for every element of an [N, C, ...] host tensor. */
function forChannels(shape: readonly number[], fn: (i: number, c: number) => void): void {
  const C = shape[1]!;
  const inner = numel(shape.slice(2));
  const total = numel(shape);
  for (let i = 0; i < total; i++) fn(i, Math.floor(i / inner) % C);
}

export function cpuBatchNormStats(x: HostTensor): { mean: HostTensor; var: HostTensor; varUnbiased: HostTensor } {
  const C = x.shape[1]!;
  const n = x.data.length / C;
  const mean = host([C]);
  const v = host([C]);
  const vu = host([C]);
  forChannels(x.shape, (i, c) => (mean.data[c] += x.data[i]! / n));
  forChannels(x.shape, (i, c) => (v.data[c] += (x.data[i]! - mean.data[c]!) ** 2));
  for (let c = 0; c < C; c++) {
    vu.data[c] = v.data[c]! / (n - 1);
    v.data[c] = v.data[c]! / n;
  }
  return { mean, var: v, varUnbiased: vu };
}

export function cpuBatchNorm(x: HostTensor, runningMean: HostTensor, runningVar: HostTensor, weight?: HostTensor, bias?: HostTensor, eps = 1e-5): HostTensor {
  const y = host(x.shape);
  forChannels(x.shape, (i, c) => {
    y.data[i] = ((x.data[i]! - runningMean.data[c]!) / Math.sqrt(runningVar.data[c]! + eps)) * hv(weight, c, 1) + hv(bias, c, 0);
  });
  return y;
}

export function cpuBatchNormTrain(x: HostTensor, weight?: HostTensor, bias?: HostTensor, eps = 1e-5): { y: HostTensor; mean: HostTensor; invstd: HostTensor; varUnbiased: HostTensor } {
  const s = cpuBatchNormStats(x);
  const invstd = host([s.var.data.length], [...s.var.data].map((v) => 1 / Math.sqrt(v + eps)));
  const y = host(x.shape);
  forChannels(x.shape, (i, c) => (y.data[i] = (x.data[i]! - s.mean.data[c]!) * invstd.data[c]! * hv(weight, c, 1) + hv(bias, c, 0)));
  return { y, mean: s.mean, invstd, varUnbiased: s.varUnbiased };
}

export function cpuBatchNormBackward(gy: HostTensor, x: HostTensor, mean: HostTensor, invstd: HostTensor, weight?: HostTensor): { dx: HostTensor; dweight: HostTensor; dbias: HostTensor } {
  const C = x.shape[1]!;
  const n = x.data.length / C;
  const dweight = host([C]);
  const dbias = host([C]);
  const xh = (i: number, c: number): number => (x.data[i]! - mean.data[c]!) * invstd.data[c]!;
  forChannels(x.shape, (i, c) => {
    dbias.data[c] += gy.data[i]!;
    dweight.data[c] += gy.data[i]! * xh(i, c);
  });
  const dx = host(x.shape);
  forChannels(x.shape, (i, c) => {
    dx.data[i] = hv(weight, c, 1) * invstd.data[c]! * (gy.data[i]! - dbias.data[c]! / n - (xh(i, c) * dweight.data[c]!) / n);
  });
  return { dx, dweight, dbias };
}

export function cpuUpdateRunningStats(runningMean: HostTensor, runningVar: HostTensor, mean: HostTensor, varUnbiased: HostTensor, momentum: number): { runningMean: HostTensor; runningVar: HostTensor } {
  const mix = (a: HostTensor, b: HostTensor): HostTensor => host(a.shape, [...a.data].map((v, i) => (1 - momentum) * v + momentum * b.data[i]!));
  return { runningMean: mix(runningMean, mean), runningVar: mix(runningVar, varUnbiased) };
}
