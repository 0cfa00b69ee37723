/**
 * 2-D pooling on NCHW tensors as PyTorch: max (with int32 argmax indices into each H*W
 * plane), average and adaptive average, with their backward passes. Backward passes are
 * gathers (each input element sums the outputs whose window covers it), so they need no
 * atomics and no zero-filled buffer.
 *
 * Inputs and gradients may be float16 (activations under mixed precision): halves are
 * loaded into f32, windows are summed there, and each output is rounded once to the
 * input's dtype, as PyTorch's half pooling accumulates in float.
 */
import { engine } from '../engine.js';
import { host, type HostTensor } from '../host.js';
import { Params } from '../params.js';
import { fmt, shapeEq, type Shape } from '../shape.js';
import { Tensor } from '../tensor.js';
import { byImages, needsImageRuns } from './batches.js';
import { checkFloat } from './check-float.js';
import type { IntPair } from './conv2d.js';
import { enableF16, storageType, stored, widen } from './wgsl.js';

export interface MaxPool2dOptions {
  kernelSize: IntPair;
  /** Defaults to kernelSize. */
  stride?: IntPair;
  padding?: IntPair;
  dilation?: IntPair;
  /** Round the output size up, as PyTorch's `ceil_mode`. */
  ceilMode?: boolean;
}

export interface AvgPool2dOptions {
  kernelSize: IntPair;
  /** Defaults to kernelSize. */
  stride?: IntPair;
  padding?: IntPair;
  ceilMode?: boolean;
  /** Count padded zeros in the divisor (PyTorch's default, true). */
  countIncludePad?: boolean;
  /** Divide every window by this instead. */
  divisorOverride?: number;
}

interface PoolGeometry {
  batch: number;
  channels: number;
  height: number;
  width: number;
  kernelH: number;
  kernelW: number;
  strideH: number;
  strideW: number;
  padH: number;
  padW: number;
  dilationH: number;
  dilationW: number;
  outH: number;
  outW: number;
}

function pair(op: string, v: IntPair | undefined, dflt: readonly [number, number], name: string, min: number): [number, number] {
  const [a, b] = v === undefined ? dflt : typeof v === 'number' ? [v, v] : v;
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < min || b < min) {
    throw new RangeError(`${op}: ${name} ${JSON.stringify(v)} must be an integer >= ${min} or a pair of them`);
  }
  return [a, b];
}

/** PyTorch's pooling_output_shape: with ceilMode the last window must start inside the
 * input or its left padding. */
function poolOutputSize(size: number, k: number, s: number, p: number, d: number, ceil: boolean): number {
  const span = size + 2 * p - d * (k - 1) - 1;
  let out = Math.floor((span + (ceil ? s - 1 : 0)) / s) + 1;
  if (ceil && (out - 1) * s >= size + p) out--;
  return out;
}

function poolGeometry(op: string, shape: Shape, o: MaxPool2dOptions): PoolGeometry {
  if (shape.length !== 4) throw new RangeError(`${op}: input must be 4-D [N, C, H, W], got ${fmt(shape)}`);
  const [batch, channels, height, width] = shape as [number, number, number, number];
  const [kernelH, kernelW] = pair(op, o.kernelSize, [0, 0], 'kernelSize', 1);
  const [strideH, strideW] = pair(op, o.stride, [kernelH, kernelW], 'stride', 1);
  const [padH, padW] = pair(op, o.padding, [0, 0], 'padding', 0);
  const [dilationH, dilationW] = pair(op, o.dilation, [1, 1], 'dilation', 1);
  const effH = dilationH * (kernelH - 1) + 1;
  const effW = dilationW * (kernelW - 1) + 1;
  if (2 * padH > effH || 2 * padW > effW) {
    throw new RangeError(`${op}: padding ${padH}x${padW} must be at most half of the (dilated) kernel ${effH}x${effW}`);
  }
  const outH = poolOutputSize(height, kernelH, strideH, padH, dilationH, o.ceilMode === true);
  const outW = poolOutputSize(width, kernelW, strideW, padW, dilationW, o.ceilMode === true);
  if (outH < 1 || outW < 1) throw new RangeError(`${op}: input ${fmt(shape)} is smaller than the kernel ${effH}x${effW} with padding ${padH}x${padW}`);
  return { batch, channels, height, width, kernelH, kernelW, strideH, strideW, padH, padW, dilationH, dilationW, outH, outW };
}

function avgGeometry(op: string, shape: Shape, o: AvgPool2dOptions): PoolGeometry {
  if (o.divisorOverride !== undefined && !(o.divisorOverride !== 0 && Number.isFinite(o.divisorOverride))) {
    throw new RangeError(`${op}: divisorOverride ${o.divisorOverride} must be a nonzero number`);
  }
  return poolGeometry(op, shape, { kernelSize: o.kernelSize, stride: o.stride, padding: o.padding, ceilMode: o.ceilMode });
}

export function maxPool2dOutputShape(inputShape: Shape, opts: MaxPool2dOptions): number[] {
  const g = poolGeometry('maxPool2d', inputShape, opts);
  return [g.batch, g.channels, g.outH, g.outW];
}

export function avgPool2dOutputShape(inputShape: Shape, opts: AvgPool2dOptions): number[] {
  const g = avgGeometry('avgPool2d', inputShape, opts);
  return [g.batch, g.channels, g.outH, g.outW];
}

function checkIndices(op: string, t: Tensor): void {
  t.assertAlive();
  if (t.dtype !== 'int32') throw new TypeError(`${op}: indices must be int32, got ${t.dtype}`);
}

function checkShape(op: string, t: Tensor, what: string, want: Shape): void {
  if (!shapeEq(t.shape, want)) throw new RangeError(`${op}: ${what} must have shape ${fmt(want)}, got ${fmt(t.shape)}`);
}

function geometryParams(g: PoolGeometry): Params {
  return new Params()
    .i32('c', g.channels).i32('h', g.height).i32('w', g.width).i32('oh', g.outH).i32('ow', g.outW)
    .i32('kh', g.kernelH).i32('kw', g.kernelW).i32('sh', g.strideH).i32('sw', g.strideW)
    .i32('ph', g.padH).i32('pw', g.padW).i32('dh', g.dilationH).i32('dw', g.dilationW);
}

/** Reads tensor `t` (any strides) in WGSL as `name[base + h * p.<name>sh + w * p.<name>sw]`. */
function strided(params: Params, name: string, t: Tensor): Params {
  params.i32(`${name}o`, t.offset);
  (['n', 'c', 'h', 'w'] as const).forEach((d, i) => params.i32(`${name}s${d}`, t.strides[i]!));
  return params;
}

/**
 * Dispatches one invocation per element of a [planes, rows, cols] grid and opens `main`
 * with its coordinates: q (column), r (row), plane nc = (n, c), flat index i, and `<t>b`,
 * the offset of plane (n, c) in each strided tensor t. The grid supplies the coordinates
 * because integer division is slow on CPU adapters (lavapipe divides lane by lane); what
 * division remains uses `divFloor`. Workgroups are 8 x 8 pixels, or 64 planes when planes
 * are smaller than that (global pooling). Planes beyond the per-dimension workgroup limit
 * go in further dispatches (`plane0`).
 */
function run(label: string, key: string, params: (plane0: number) => Params, code: (p: Params, head: (names: readonly string[]) => string) => string,
  buffers: GPUBuffer[], planes: number, rows: number, cols: number): void {
  if (planes * rows * cols === 0) return;
  const e = engine();
  const max = e.maxWorkgroupsPerDim;
  const small = rows * cols < 64;
  const perDispatch = small ? max * 64 : max;
  for (let plane0 = 0; plane0 < planes; plane0 += perDispatch) {
    const prm = params(plane0).i32('plane0', plane0).i32('planes', planes).i32('rows', rows).i32('cols', cols);
    const z = Math.min(perDispatch, planes - plane0);
    const workgroups: [number, number, number] = small ? [cols, rows, Math.ceil(z / 64)] : [Math.ceil(cols / 8), Math.ceil(rows / 8), z];
    e.dispatch({ key: `${key}/${small ? 'small' : 'tiles'}`, get code() { return code(prm, (names) => mainHead(small, names)); }, params: prm, buffers, workgroups, label });
  }
}

function mainHead(small: boolean, names: readonly string[]): string {
  return `@compute @workgroup_size(${small ? '1, 1, 64' : '8, 8, 1'})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let q = i32(gid.x);
  let r = i32(gid.y);
  let nc = i32(gid.z) + p.plane0;
  if (q >= p.cols || r >= p.rows || nc >= p.planes) { return; }
  let n = nc / p.c;
  let c = nc % p.c;
  let i = (nc * p.rows + r) * p.cols + q;
${names.map((t) => `  let ${t}b = p.${t}o + n * p.${t}sn + c * p.${t}sc;`).join('\n')}`;
}

/** Declarations of the uniforms and of the named input and output tensors, each an array of
 * its dtype's storage type. */
const header = (params: Params, inputs: readonly [string, Tensor][], outputs: readonly [string, Tensor][]): string => {
  const half = [...inputs, ...outputs].some(([, t]) => t.dtype === 'float16');
  return `${enableF16(half)}
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
${inputs.map(([name, t], k) => `@group(0) @binding(${k + 1}) var<storage, read> ${name}: array<${storageType(t.dtype)}>;`).join('\n')}
${outputs.map(([name, t], k) => `@group(0) @binding(${inputs.length + k + 1}) var<storage, read_write> ${name}: array<${storageType(t.dtype)}>;`).join('\n')}`;
};

/** floor(t / d) for 0 <= t < 2^24 by a multiply with inv = 1 / d and a correction, and the
 * first output whose window reaches an input element: the smallest o >= 0 with
 * o * stride >= t (t = element + pad - window extent + 1). */
const DIV_HELPERS = /* wgsl */ `
fn divFloor(t: i32, d: i32, inv: f32) -> i32 {
  var q = i32(f32(t) * inv);
  q += select(0, 1, (q + 1) * d <= t);
  q -= select(0, 1, q * d > t);
  return q;
}
fn firstCell(t: i32, stride: i32, inv: f32) -> i32 {
  return select(0, divFloor(t + stride - 1, stride, inv), t > 0);
}`;

/** Reciprocal strides for `divFloor`. */
function inverseStrides(params: Params, g: PoolGeometry): Params {
  return params.f32('ish', 1 / g.strideH).f32('isw', 1 / g.strideW);
}

// Max pooling ------------------------------------------------------------------------

function maxPoolForward(op: string, x: Tensor, opts: MaxPool2dOptions, withIndices: boolean): { values: Tensor; indices: Tensor | null } {
  checkFloat(op, 'input', x, true);
  const g = poolGeometry(op, x.shape, opts);
  const shape = [g.batch, g.channels, g.outH, g.outW];
  const outputs = withIndices ? [{ shape, dtype: x.dtype }, { shape, dtype: 'int32' as const }] : [{ shape, dtype: x.dtype }];
  if (needsImageRuns([x], outputs)) {
    const [values, indices] = byImages(op, [x], outputs, ([xc]) => {
      const r = maxPoolForward(op, xc!, opts, withIndices);
      return r.indices ? [r.values, r.indices] : [r.values];
    });
    return { values: values!, indices: indices ?? null };
  }
  const values = Tensor.empty(shape, x.dtype);
  const indices = withIndices ? Tensor.empty(shape, 'int32') : null;
  // Strict > keeps the first maximum in window order and NaN wins, as PyTorch.
  const code = (params: Params, head: (names: readonly string[]) => string): string => /* wgsl */ `${header(params, [['x', x]], indices ? [['y', values], ['idx', indices]] : [['y', values]])}
${head(['x'])}
  let hs = r * p.sh - p.ph;
  let ws = q * p.sw - p.pw;
  var best = 0.0;
  var at = -1;
  for (var kh = 0; kh < p.kh; kh++) {
    let ih = hs + kh * p.dh;
    if (ih < 0 || ih >= p.h) { continue; }
    for (var kw = 0; kw < p.kw; kw++) {
      let iw = ws + kw * p.dw;
      if (iw < 0 || iw >= p.w) { continue; }
      let v = ${widen(x.dtype === 'float16', 'x[xb + ih * p.xsh + iw * p.xsw]')};
      let isNan = (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
      if (at < 0 || v > best || isNan) {
        best = v;
        at = ih * p.w + iw;
      }
    }
  }
  y[i] = ${stored(values.dtype === 'float16', 'best')};
${indices ? '  idx[i] = at;' : ''}
}`;
  run(op, `maxPool/${x.dtype}/${indices ? 'indices' : ''}`, () => strided(geometryParams(g), 'x', x), code,
    indices ? [x.storage.buffer, values.storage.buffer, indices.buffer] : [x.storage.buffer, values.storage.buffer], g.batch * g.channels, g.outH, g.outW);
  return { values, indices };
}

/** `F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)`. */
export function maxPool2d(x: Tensor, opts: MaxPool2dOptions): Tensor {
  return maxPoolForward('maxPool2d', x, opts, false).values;
}

/** Max pooling that also returns, for each output, the flat index (ih * W + iw) of the
 * chosen element in its H*W input plane, as `return_indices=True`; the backward needs it. */
export function maxPool2dWithIndices(x: Tensor, opts: MaxPool2dOptions): { values: Tensor; indices: Tensor } {
  const { values, indices } = maxPoolForward('maxPool2dWithIndices', x, opts, true);
  return { values, indices: indices! };
}

/** The gradient of `maxPool2d` with respect to its input: each input element sums the
 * gradients of the outputs whose window covers it and that chose it. */
export function maxPool2dBackward(gradOut: Tensor, indices: Tensor, inputShape: Shape, opts: MaxPool2dOptions): Tensor {
  const op = 'maxPool2dBackward';
  checkFloat(op, 'gradOut', gradOut, true);
  checkIndices(op, indices);
  const g = poolGeometry(op, inputShape, opts);
  const outShape = [g.batch, g.channels, g.outH, g.outW];
  checkShape(op, gradOut, 'gradOut', outShape);
  checkShape(op, indices, 'indices', outShape);
  const outputs = [{ shape: inputShape, dtype: gradOut.dtype }];
  if (needsImageRuns([gradOut, indices], outputs)) {
    return byImages(op, [gradOut, indices], outputs,
      ([gc, ic]) => [maxPool2dBackward(gc!, ic!, [gc!.shape[0]!, ...inputShape.slice(1)], opts)])[0]!;
  }
  const gradIn = Tensor.empty(inputShape, gradOut.dtype);
  // Only a dilated window skips positions, so only then is membership checked.
  const dilated = g.dilationH > 1 || g.dilationW > 1;
  const code = (params: Params, head: (names: readonly string[]) => string): string => /* wgsl */ `${header(params, [['go', gradOut], ['idx', indices]], [['y', gradIn]])}
${DIV_HELPERS}
${head(['g', 'k'])}
  let me = r * p.w + q;
  let oh1 = min(p.oh - 1, divFloor(r + p.ph, p.sh, p.ish));
  let ow0 = firstCell(q + p.pw - (p.kw - 1) * p.dw, p.sw, p.isw);
  let ow1 = min(p.ow - 1, divFloor(q + p.pw, p.sw, p.isw));
  var s = 0.0;
  for (var oh = firstCell(r + p.ph - (p.kh - 1) * p.dh, p.sh, p.ish); oh <= oh1; oh++) {
${dilated ? '    if ((r + p.ph - oh * p.sh) % p.dh != 0) { continue; }' : ''}
    for (var ow = ow0; ow <= ow1; ow++) {
${dilated ? '      if ((q + p.pw - ow * p.sw) % p.dw != 0) { continue; }' : ''}
      if (idx[kb + oh * p.ksh + ow * p.ksw] == me) { s += ${widen(gradOut.dtype === 'float16', 'go[gb + oh * p.gsh + ow * p.gsw]')}; }
    }
  }
  y[i] = ${stored(gradIn.dtype === 'float16', 's')};
}`;
  run(op, `maxPoolBackward/${gradOut.dtype}/${dilated ? 'dilated' : ''}`, () => inverseStrides(strided(strided(geometryParams(g), 'g', gradOut), 'k', indices), g), code,
    [gradOut.storage.buffer, indices.buffer, gradIn.storage.buffer], g.batch * g.channels, g.height, g.width);
  return gradIn;
}

// Average pooling --------------------------------------------------------------------

/** WGSL for output window (oh, ow) and its divisor, PyTorch's rule: the window clipped to
 * the padded input, then to the input unless padding counts. */
function avgWindow(o: AvgPool2dOptions): string {
  const includePad = o.countIncludePad ?? true;
  return /* wgsl */ `
fn window(oh: i32, ow: i32) -> vec4<i32> {
  let hs = oh * p.sh - p.ph;
  let ws = ow * p.sw - p.pw;
  return vec4<i32>(hs, ws, min(hs + p.kh, p.h + p.ph), min(ws + p.kw, p.w + p.pw));
}
fn divisor(win: vec4<i32>) -> f32 {
  ${o.divisorOverride !== undefined ? 'return p.divisor;' : includePad ? 'return f32((win.z - win.x) * (win.w - win.y));'
    : 'return f32((min(win.z, p.h) - max(win.x, 0)) * (min(win.w, p.w) - max(win.y, 0)));'}
}`;
}

/** Which divisor `avgWindow` computes. */
function avgKey(o: AvgPool2dOptions): string {
  return o.divisorOverride !== undefined ? 'override' : (o.countIncludePad ?? true) ? 'pad' : 'clipped';
}

function avgParams(g: PoolGeometry, o: AvgPool2dOptions, name: string, t: Tensor): Params {
  return inverseStrides(strided(geometryParams(g), name, t), g).f32('divisor', o.divisorOverride ?? 0);
}

/** `F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)`. */
export function avgPool2d(x: Tensor, opts: AvgPool2dOptions): Tensor {
  const op = 'avgPool2d';
  checkFloat(op, 'input', x, true);
  const g = avgGeometry(op, x.shape, opts);
  const outShape = [g.batch, g.channels, g.outH, g.outW];
  const outputs = [{ shape: outShape, dtype: x.dtype }];
  if (needsImageRuns([x], outputs)) return byImages(op, [x], outputs, ([xc]) => [avgPool2d(xc!, opts)])[0]!;
  const out = Tensor.empty(outShape, x.dtype);
  const code = (params: Params, head: (names: readonly string[]) => string): string => /* wgsl */ `${header(params, [['x', x]], [['y', out]])}
${avgWindow(opts)}
${head(['x'])}
  let win = window(r, q);
  var s = 0.0;
  for (var ih = max(win.x, 0); ih < min(win.z, p.h); ih++) {
    for (var iw = max(win.y, 0); iw < min(win.w, p.w); iw++) {
      s += ${widen(x.dtype === 'float16', 'x[xb + ih * p.xsh + iw * p.xsw]')};
    }
  }
  y[i] = ${stored(out.dtype === 'float16', 's / divisor(win)')};
}`;
  run(op, `avgPool/${x.dtype}/${avgKey(opts)}`, () => avgParams(g, opts, 'x', x), code, [x.storage.buffer, out.storage.buffer], g.batch * g.channels, g.outH, g.outW);
  return out;
}

/** The gradient of `avgPool2d` with respect to its input. */
export function avgPool2dBackward(gradOut: Tensor, inputShape: Shape, opts: AvgPool2dOptions): Tensor {
  const op = 'avgPool2dBackward';
  checkFloat(op, 'gradOut', gradOut, true);
  const g = avgGeometry(op, inputShape, opts);
  checkShape(op, gradOut, 'gradOut', [g.batch, g.channels, g.outH, g.outW]);
  const outputs = [{ shape: inputShape, dtype: gradOut.dtype }];
  if (needsImageRuns([gradOut], outputs)) {
    return byImages(op, [gradOut], outputs, ([gc]) => [avgPool2dBackward(gc!, [gc!.shape[0]!, ...inputShape.slice(1)], opts)])[0]!;
  }
  const gradIn = Tensor.empty(inputShape, gradOut.dtype);
  const code = (params: Params, head: (names: readonly string[]) => string): string => /* wgsl */ `${header(params, [['go', gradOut]], [['y', gradIn]])}
${avgWindow(opts)}
${DIV_HELPERS}
${head(['g'])}
  let oh1 = min(p.oh - 1, divFloor(r + p.ph, p.sh, p.ish));
  let ow0 = firstCell(q + p.pw - p.kw + 1, p.sw, p.isw);
  let ow1 = min(p.ow - 1, divFloor(q + p.pw, p.sw, p.isw));
  var s = 0.0;
  for (var oh = firstCell(r + p.ph - p.kh + 1, p.sh, p.ish); oh <= oh1; oh++) {
    for (var ow = ow0; ow <= ow1; ow++) {
      s += ${widen(gradOut.dtype === 'float16', 'go[gb + oh * p.gsh + ow * p.gsw]')} / divisor(window(oh, ow));
    }
  }
  y[i] = ${stored(gradIn.dtype === 'float16', 's')};
}`;
  run(op, `avgPoolBackward/${gradOut.dtype}/${avgKey(opts)}`, () => avgParams(g, opts, 'g', gradOut), code, [gradOut.storage.buffer, gradIn.storage.buffer], g.batch * g.channels, g.height, g.width);
  return gradIn;
}

// Adaptive average pooling -----------------------------------------------------------

function adaptiveShape(op: string, shape: Shape, outputSize: IntPair): [number, number, number, number, number, number] {
  if (shape.length !== 4) throw new RangeError(`${op}: input must be 4-D [N, C, H, W], got ${fmt(shape)}`);
  const [oh, ow] = pair(op, outputSize, [0, 0], 'outputSize', 1);
  const [n, c, h, w] = shape as [number, number, number, number];
  if (h < 1 || w < 1) throw new RangeError(`${op}: input ${fmt(shape)} has an empty spatial dim`);
  return [n, c, h, w, oh, ow];
}

/** Output cell o of `out` covers input [floor(o * in / out), ceil((o + 1) * in / out)). */
const ADAPTIVE_HELPERS = /* wgsl */ `
fn cellStart(o: i32, size: i32, out: i32, inv: f32) -> i32 { return divFloor(o * size, out, inv); }
fn cellEnd(o: i32, size: i32, out: i32, inv: f32) -> i32 { return divFloor((o + 1) * size + out - 1, out, inv); }`;

function adaptiveParams(c: number, h: number, w: number, oh: number, ow: number): Params {
  return new Params().i32('c', c).i32('h', h).i32('w', w).i32('oh', oh).i32('ow', ow)
    .f32('ih', 1 / h).f32('iw', 1 / w).f32('ioh', 1 / oh).f32('iow', 1 / ow);
}

/** `F.adaptive_avg_pool2d(x, output_size)`. */
export function adaptiveAvgPool2d(x: Tensor, outputSize: IntPair): Tensor {
  const op = 'adaptiveAvgPool2d';
  checkFloat(op, 'input', x, true);
  const [N, C, H, W, OH, OW] = adaptiveShape(op, x.shape, outputSize);
  const outputs = [{ shape: [N, C, OH, OW], dtype: x.dtype }];
  if (needsImageRuns([x], outputs)) return byImages(op, [x], outputs, ([xc]) => [adaptiveAvgPool2d(xc!, outputSize)])[0]!;
  const out = Tensor.empty([N, C, OH, OW], x.dtype);
  const code = (params: Params, head: (names: readonly string[]) => string): string => /* wgsl */ `${header(params, [['x', x]], [['y', out]])}
${DIV_HELPERS}
${ADAPTIVE_HELPERS}
${head(['x'])}
  let h0 = cellStart(r, p.h, p.oh, p.ioh);
  let h1 = cellEnd(r, p.h, p.oh, p.ioh);
  let w0 = cellStart(q, p.w, p.ow, p.iow);
  let w1 = cellEnd(q, p.w, p.ow, p.iow);
  var s = 0.0;
  for (var ih = h0; ih < h1; ih++) {
    for (var iw = w0; iw < w1; iw++) { s += ${widen(x.dtype === 'float16', 'x[xb + ih * p.xsh + iw * p.xsw]')}; }
  }
  y[i] = ${stored(out.dtype === 'float16', 's / f32((h1 - h0) * (w1 - w0))')};
}`;
  run(op, `adaptiveAvgPool/${x.dtype}`, () => strided(adaptiveParams(C, H, W, OH, OW), 'x', x), code, [x.storage.buffer, out.storage.buffer], N * C, OH, OW);
  return out;
}

/** The gradient of `adaptiveAvgPool2d` with respect to its input. */
export function adaptiveAvgPool2dBackward(gradOut: Tensor, inputShape: Shape): Tensor {
  const op = 'adaptiveAvgPool2dBackward';
  checkFloat(op, 'gradOut', gradOut, true);
  if (gradOut.rank !== 4) throw new RangeError(`${op}: gradOut must be 4-D, got ${fmt(gradOut.shape)}`);
  const [N, C, H, W, OH, OW] = adaptiveShape(op, inputShape, [gradOut.shape[2]!, gradOut.shape[3]!]);
  checkShape(op, gradOut, 'gradOut', [N, C, OH, OW]);
  const outputs = [{ shape: inputShape, dtype: gradOut.dtype }];
  if (needsImageRuns([gradOut], outputs)) {
    return byImages(op, [gradOut], outputs, ([gc]) => [adaptiveAvgPool2dBackward(gc!, [gc!.shape[0]!, C, H, W])])[0]!;
  }
  const gradIn = Tensor.empty(inputShape, gradOut.dtype);
  // Cells covering input row r are oh in [floor(r * OH / H), ceil((r + 1) * OH / H)); the
  // loop re-checks each against its own bounds.
  const code = (params: Params, head: (names: readonly string[]) => string): string => /* wgsl */ `${header(params, [['go', gradOut]], [['y', gradIn]])}
${DIV_HELPERS}
${ADAPTIVE_HELPERS}
${head(['g'])}
  let oh1 = min(p.oh, divFloor((r + 1) * p.oh + p.h - 1, p.h, p.ih));
  let ow0 = divFloor(q * p.ow, p.w, p.iw);
  let ow1 = min(p.ow, divFloor((q + 1) * p.ow + p.w - 1, p.w, p.iw));
  var s = 0.0;
  for (var oh = divFloor(r * p.oh, p.h, p.ih); oh < oh1; oh++) {
    let h0 = cellStart(oh, p.h, p.oh, p.ioh);
    let h1 = cellEnd(oh, p.h, p.oh, p.ioh);
    if (r < h0 || r >= h1) { continue; }
    for (var ow = ow0; ow < ow1; ow++) {
      let w0 = cellStart(ow, p.w, p.ow, p.iow);
      let w1 = cellEnd(ow, p.w, p.ow, p.iow);
      if (q < w0 || q >= w1) { continue; }
      s += ${widen(gradOut.dtype === 'float16', 'go[gb + oh * p.gsh + ow * p.gsw]')} / f32((h1 - h0) * (w1 - w0));
    }
  }
  y[i] = ${stored(gradIn.dtype === 'float16', 's')};
}`;
  run(op, `adaptiveAvgPoolBackward/${gradOut.dtype}`, () => strided(adaptiveParams(C, H, W, OH, OW), 'g', gradOut), code, [gradOut.storage.buffer, gradIn.storage.buffer], N * C, H, W);
  return gradIn;
}

// CPU references ------------------------------------------------------------------------

/** Calls `f` for each output with its (n, c) plane number, position and flat index. */
function forEachOutput(N: number, C: number, OH: number, OW: number, f: (nc: number, oh: number, ow: number, oi: number) => void): void {
  for (let nc = 0; nc < N * C; nc++) {
    for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) f(nc, oh, ow, (nc * OH + oh) * OW + ow);
  }
}

export function cpuMaxPool2d(x: HostTensor, opts: MaxPool2dOptions): { values: HostTensor; indices: HostTensor } {
  const g = poolGeometry('cpuMaxPool2d', x.shape, opts);
  const shape = [g.batch, g.channels, g.outH, g.outW];
  const values = host(shape);
  const indices = host(shape);
  const plane = g.height * g.width;
  forEachOutput(g.batch, g.channels, g.outH, g.outW, (nc, oh, ow, oi) => {
    let best = -Infinity;
    let at = -1;
    for (let kh = 0; kh < g.kernelH; kh++) {
      const ih = oh * g.strideH - g.padH + kh * g.dilationH;
      if (ih < 0 || ih >= g.height) continue;
      for (let kw = 0; kw < g.kernelW; kw++) {
        const iw = ow * g.strideW - g.padW + kw * g.dilationW;
        if (iw < 0 || iw >= g.width) continue;
        const v = x.data[nc * plane + ih * g.width + iw]!;
        if (at < 0 || v > best || Number.isNaN(v)) {
          best = v;
          at = ih * g.width + iw;
        }
      }
    }
    values.data[oi] = best;
    indices.data[oi] = at;
  });
  return { values, indices };
}

export function cpuMaxPool2dBackward(gradOut: HostTensor, indices: HostTensor, inputShape: Shape): HostTensor {
  const out = host(inputShape);
  const plane = inputShape[2]! * inputShape[3]!;
  const outPlane = gradOut.shape[2]! * gradOut.shape[3]!;
  for (let i = 0; i < gradOut.data.length; i++) {
    out.data[Math.floor(i / outPlane) * plane + indices.data[i]!] += gradOut.data[i]!;
  }
  return out;
}

/** Calls `f(inputIndex, outIndex, divisor)` for every (input, window) pair of average pooling. */
function forEachAvgTap(g: PoolGeometry, o: AvgPool2dOptions, f: (xi: number, oi: number, div: number) => void): void {
  const plane = g.height * g.width;
  forEachOutput(g.batch, g.channels, g.outH, g.outW, (nc, oh, ow, oi) => {
    const hs = oh * g.strideH - g.padH;
    const ws = ow * g.strideW - g.padW;
    const he = Math.min(hs + g.kernelH, g.height + g.padH);
    const we = Math.min(ws + g.kernelW, g.width + g.padW);
    const h0 = Math.max(hs, 0);
    const w0 = Math.max(ws, 0);
    const h1 = Math.min(he, g.height);
    const w1 = Math.min(we, g.width);
    const div = o.divisorOverride ?? ((o.countIncludePad ?? true) ? (he - hs) * (we - ws) : (h1 - h0) * (w1 - w0));
    for (let ih = h0; ih < h1; ih++) for (let iw = w0; iw < w1; iw++) f(nc * plane + ih * g.width + iw, oi, div);
  });
}

export function cpuAvgPool2d(x: HostTensor, opts: AvgPool2dOptions): HostTensor {
  const g = avgGeometry('cpuAvgPool2d', x.shape, opts);
  const out = host([g.batch, g.channels, g.outH, g.outW]);
  forEachAvgTap(g, opts, (xi, oi, div) => (out.data[oi] += x.data[xi]! / div));
  return out;
}

export function cpuAvgPool2dBackward(gradOut: HostTensor, inputShape: Shape, opts: AvgPool2dOptions): HostTensor {
  const g = avgGeometry('cpuAvgPool2dBackward', inputShape, opts);
  const out = host(inputShape);
  forEachAvgTap(g, opts, (xi, oi, div) => (out.data[xi] += gradOut.data[oi]! / div));
  return out;
}

function forEachAdaptiveTap(shape: Shape, outputSize: IntPair, f: (xi: number, oi: number, area: number) => void): void {
  const [N, C, H, W, OH, OW] = adaptiveShape('cpuAdaptiveAvgPool2d', shape, outputSize);
  forEachOutput(N, C, OH, OW, (nc, oh, ow, oi) => {
    const h0 = Math.floor((oh * H) / OH);
    const h1 = Math.ceil(((oh + 1) * H) / OH);
    const w0 = Math.floor((ow * W) / OW);
    const w1 = Math.ceil(((ow + 1) * W) / OW);
    for (let ih = h0; ih < h1; ih++) for (let iw = w0; iw < w1; iw++) f((nc * H + ih) * W + iw, oi, (h1 - h0) * (w1 - w0));
  });
}

export function cpuAdaptiveAvgPool2d(x: HostTensor, outputSize: IntPair): HostTensor {
  const [N, C, , , OH, OW] = adaptiveShape('cpuAdaptiveAvgPool2d', x.shape, outputSize);
  const out = host([N, C, OH, OW]);
  forEachAdaptiveTap(x.shape, outputSize, (xi, oi, area) => (out.data[oi] += x.data[xi]! / area));
  return out;
}

export function cpuAdaptiveAvgPool2dBackward(gradOut: HostTensor, inputShape: Shape): HostTensor {
  const out = host(inputShape);
  forEachAdaptiveTap(inputShape, [gradOut.shape[2]!, gradOut.shape[3]!], (xi, oi, area) => (out.data[xi] += gradOut.data[oi]! / area));
  return out;
}
