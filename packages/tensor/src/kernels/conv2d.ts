/**
 * 2-D convolution (NCHW, weight [out, in/groups, kh, kw] as PyTorch) and its two backward
 * passes, each an implicit GEMM: every invocation accumulates a register block of outputs
 * and reads the input, weight and gradient tensors in place, with no im2col buffer and no
 * workgroup memory.
 *
 * On lavapipe a storage load costs far more than a multiply-add (a scalar load behind a
 * bounds check when the address is uniform, a lane-by-lane loop when it is not), so the
 * blocks are shaped to maximise multiply-adds per load and to keep weight loads uniform.
 * (Staging each workgroup's weights in workgroup memory, behind barriers, was 1.3-1.8x
 * slower.) Kernel taps are runtime loops: one pipeline serves every kernel size and
 * stride, and a variant with taps baked in compiled 3-5x slower without running faster,
 * except for single-channel (depthwise) passes, which get their own kernel.
 */
import { engine } from '../engine.js';
import { host, type HostTensor } from '../host.js';
import { Params } from '../params.js';
import { fmt, shapeEq, type Shape } from '../shape.js';
import { Tensor } from '../tensor.js';
import { UNARY } from './elementwise.js';
import { linearIndex, MAIN_ARGS, MATH_HELPERS, WG } from './wgsl.js';

/** A size given once for both spatial dims or as [h, w]. */
export type IntPair = number | readonly [number, number];

/** Activations that `conv2d` can apply in its epilogue, saving a pass over the output. */
export type ConvActivation = 'relu' | 'relu6' | 'gelu' | 'silu' | 'sigmoid' | 'tanh';

export interface Conv2dGradOptions {
  stride?: IntPair;
  padding?: IntPair;
  dilation?: IntPair;
  groups?: number;
}

export interface Conv2dOptions extends Conv2dGradOptions {
  /** [out] */
  bias?: Tensor;
  activation?: ConvActivation;
}

export interface CpuConv2dOptions extends Conv2dGradOptions {
  bias?: HostTensor;
  activation?: ConvActivation;
}

/** Every size a convolution needs, checked against each other. */
export interface Conv2dGeometry {
  batch: number;
  inChannels: number;
  height: number;
  width: number;
  outChannels: number;
  groups: number;
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

function pair(v: IntPair | undefined, dflt: number, name: string, min: number): [number, number] {
  const [a, b] = v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : v;
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < min || b < min) {
    throw new RangeError(`conv2d: ${name} ${JSON.stringify(v)} must be an integer >= ${min} or a pair of them`);
  }
  return [a, b];
}

/** Sizes of the convolution of an input of `inputShape` with a weight of `weightShape`. */
export function conv2dGeometry(inputShape: Shape, weightShape: Shape, opts: Conv2dGradOptions = {}): Conv2dGeometry {
  if (inputShape.length !== 4) throw new RangeError(`conv2d: input must be 4-D [N, C, H, W], got ${fmt(inputShape)}`);
  if (weightShape.length !== 4) throw new RangeError(`conv2d: weight must be 4-D [out, in/groups, kh, kw], got ${fmt(weightShape)}`);
  const groups = opts.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1) throw new RangeError(`conv2d: groups ${groups} must be a positive integer`);
  const [batch, inChannels, height, width] = inputShape as [number, number, number, number];
  const [outChannels, inPerGroup, kernelH, kernelW] = weightShape as [number, number, number, number];
  if (inChannels !== inPerGroup * groups) {
    throw new RangeError(`conv2d: input has ${inChannels} channels but weight ${fmt(weightShape)} with groups=${groups} expects ${inPerGroup * groups}`);
  }
  if (outChannels % groups !== 0) throw new RangeError(`conv2d: ${outChannels} output channels are not divisible by groups=${groups}`);
  if (kernelH < 1 || kernelW < 1 || inPerGroup < 1) throw new RangeError(`conv2d: weight ${fmt(weightShape)} has an empty dim`);
  const [strideH, strideW] = pair(opts.stride, 1, 'stride', 1);
  const [padH, padW] = pair(opts.padding, 0, 'padding', 0);
  const [dilationH, dilationW] = pair(opts.dilation, 1, 'dilation', 1);
  const outH = Math.floor((height + 2 * padH - dilationH * (kernelH - 1) - 1) / strideH) + 1;
  const outW = Math.floor((width + 2 * padW - dilationW * (kernelW - 1) - 1) / strideW) + 1;
  if (outH < 1 || outW < 1) {
    throw new RangeError(`conv2d: input ${fmt(inputShape)} is smaller than the dilated kernel ${kernelH}x${kernelW} (padding ${padH}x${padW}, dilation ${dilationH}x${dilationW})`);
  }
  return {
    batch, inChannels, height, width, outChannels, groups, kernelH, kernelW,
    strideH, strideW, padH, padW, dilationH, dilationW, outH, outW,
  };
}

export function conv2dOutputShape(inputShape: Shape, weightShape: Shape, opts: Conv2dGradOptions = {}): number[] {
  const g = conv2dGeometry(inputShape, weightShape, opts);
  return [g.batch, g.outChannels, g.outH, g.outW];
}

function checkFloat(t: Tensor, what: string): void {
  t.assertAlive();
  if (t.dtype !== 'float32') throw new TypeError(`conv2d: ${what} must be float32, got ${t.dtype}`);
}

const range = (n: number): number[] => [...Array(n).keys()];
const lines = (n: number, f: (i: number) => string): string => range(n).map(f).join('\n');
const grid2 = (a: number, b: number, f: (i: number, j: number) => string): string =>
  range(a).flatMap((i) => range(b).map((j) => f(i, j))).join('\n');

/** Invocations per workgroup. Lanes spread over pixels, so the weight loads (indexed by
 * channel and tap only) are uniform across the workgroup. */
const LANES = 64;
const MAIN = '@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32';

function strideParams(params: Params, name: string, t: Tensor): Params {
  params.i32(`${name}o`, t.offset);
  (['n', 'c', 'h', 'w'] as const).forEach((d, i) => params.i32(`${name}s${d}`, t.strides[i]!));
  return params;
}

/** Output channels per invocation: at most 8, and no more than a group has. */
function channelTile(perGroup: number): number {
  return perGroup >= 8 ? 8 : perGroup >= 4 ? 4 : perGroup >= 2 ? 2 : 1;
}

/**
 * The kernel shared by the forward pass and the input gradient, both correlations of a
 * source (x, or gradOut) with the weight: each invocation accumulates `tm` output channels
 * times `tn` pixels of a pixel grid, looping over kernel taps and reduction channels.
 *
 * Along each axis, grid position r and kernel index k read source position
 * r * step + (base + k * mult) / div, and the tap exists only where div divides
 * (base + k * mult); the result lands at start + r * stride of the output. The forward
 * pass has div 1; the input gradient splits input pixels by phase modulo the stride, so
 * that within a phase the valid taps are the same for every pixel (skipped uniformly).
 */
interface Axis {
  step: number;
  base: number;
  mult: number;
  div: number;
  start: number;
  stride: number;
}

interface TapConv {
  src: Tensor;
  weight: Tensor;
  bias: Tensor | undefined;
  out: Tensor;
  groups: number;
  /** Output and reduction channels per group. */
  mG: number;
  rG: number;
  /** Weight strides between output channels, reduction channels and groups. */
  wsM: number;
  wsR: number;
  wsG: number;
  kh: number;
  kw: number;
  gridH: number;
  gridW: number;
  rows: Axis;
  cols: Axis;
  act: ConvActivation | undefined;
  label: string;
}

/** Pixels per invocation; with `channelTile`'s 8 channels an 8 x 8 block, which measured
 * fastest on lavapipe (4 x 8, 8 x 4, 4 x 16, 16 x 4 and 8 x 16 were slower). */
const TAP_TN = 8;

function tapConvCode(params: Params, tm: number, tn: number, bias: boolean, act: ConvActivation | undefined): string {
  const epilogue = (v: string): string => (act ? UNARY[act].wgsl(v) : v);
  return /* wgsl */ `
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
${bias ? '@group(0) @binding(3) var<storage, read> bias: array<f32>;' : ''}
@group(0) @binding(${bias ? 4 : 3}) var<storage, read_write> y: array<f32>;
${act ? MATH_HELPERS : ''}
@compute @workgroup_size(${LANES})
fn main(${MAIN}) {
  let wgi = i32(wid.x + wid.y * nwg.x);
  if (wgi >= p.total) { return; }
  let cb = wgi % p.cblocks;
  let g = cb / p.bpg;
  let cg = (cb % p.bpg) * ${tm};
${lines(tm, (i) => `  let wb${i} = g * p.wsG + min(cg + ${i}, p.mG - 1) * p.wsM;`)}
  let pix = (wgi / p.cblocks) * ${LANES * tn} + i32(lid);
  let gridHW = p.gridH * p.gridW;
${lines(tn, (j) => `  let q${j} = pix + ${j * LANES};
  let ok${j} = q${j} < p.npix;
  let n${j} = min(q${j}, p.npix - 1) / gridHW;
  let gr${j} = (min(q${j}, p.npix - 1) % gridHW) / p.gridW;
  let gc${j} = min(q${j}, p.npix - 1) % p.gridW;
  let sb${j} = p.so + n${j} * p.ssn + g * p.rG * p.ssc;`)}
${grid2(tm, tn, (i, j) => `  var a${i}_${j} = 0.0;`)}
  for (var kh = 0; kh < p.kh; kh++) {
    let th = p.rBase + kh * p.rMult;
    if (th % p.rDiv != 0) { continue; }
${lines(tn, (j) => `    let sr${j} = gr${j} * p.rStep + th / p.rDiv;
    let rv${j} = ok${j} && sr${j} >= 0 && sr${j} < p.srcH;
    let row${j} = sb${j} + sr${j} * p.ssh;`)}
    for (var kw = 0; kw < p.kw; kw++) {
      let tw = p.cBase + kw * p.cMult;
      if (tw % p.cDiv != 0) { continue; }
${lines(tn, (j) => `      let sc${j} = gc${j} * p.cStep + tw / p.cDiv;
      let v${j} = rv${j} && sc${j} >= 0 && sc${j} < p.srcW;
      var o${j} = select(p.so, row${j} + sc${j} * p.ssw, v${j});
      let m${j} = select(0.0, 1.0, v${j});`)}
      var wo = kh * p.kw + kw;
      for (var r = 0; r < p.rG; r++) {
${lines(tn, (j) => `        let x${j} = src[o${j}] * m${j};`)}
${lines(tm, (i) => `        let w${i} = wt[wb${i} + wo];`)}
${grid2(tm, tn, (i, j) => `        a${i}_${j} = fma(w${i}, x${j}, a${i}_${j});`)}
${lines(tn, (j) => `        o${j} += p.ssc;`)}
        wo += p.wsR;
      }
    }
  }
${lines(tn, (j) => `  let yb${j} = (n${j} * p.outC + g * p.mG + cg) * p.outHW + (p.rStart + gr${j} * p.rStride) * p.outW + p.cStart + gc${j} * p.cStride;`)}
${lines(tm, (i) => `  if (cg + ${i} < p.mG) {
    let b = ${bias ? `bias[g * p.mG + cg + ${i}]` : '0.0'};
${lines(tn, (j) => `    if (ok${j}) { y[yb${j} + ${i} * p.outHW] = ${epilogue(`(a${i}_${j} + b)`)}; }`)}
  }`)}
}`;
}

function axisParams(params: Params, prefix: 'r' | 'c', a: Axis): void {
  params.i32(`${prefix}Step`, a.step).i32(`${prefix}Base`, a.base).i32(`${prefix}Mult`, a.mult).i32(`${prefix}Div`, a.div)
    .i32(`${prefix}Start`, a.start).i32(`${prefix}Stride`, a.stride);
}

/** Pixels per invocation of the single-channel row kernel. */
const ROW_TN = 16;

/**
 * The single-channel variant (depthwise convolutions and their input gradient), where the
 * general kernel loads one value per multiply-add: each invocation computes `tn`
 * neighbouring pixels of one grid row, whose column taps overlap, so each distinct source
 * column is loaded once per kernel row and reused by every tap that hits it (about 3x
 * faster for 3x3). Column taps are baked into the code: tap `kw` reads source column
 * (c0 + j) * step + offset + colOff for pixel j, offsets shifted so the smallest is 0.
 */
function rowConvCode(params: Params, tn: number, step: number, taps: readonly { kw: number; offset: number }[], bias: boolean, act: ConvActivation | undefined): string {
  const cols = [...new Set(taps.flatMap((t) => range(tn).map((j) => j * step + t.offset)))].sort((a, b) => a - b);
  const col = (j: number, offset: number): number => cols.indexOf(j * step + offset);
  const U = cols.length;
  const epilogue = (v: string): string => (act ? UNARY[act].wgsl(v) : v);
  return /* wgsl */ `
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
${bias ? '@group(0) @binding(3) var<storage, read> bias: array<f32>;' : ''}
@group(0) @binding(${bias ? 4 : 3}) var<storage, read_write> y: array<f32>;
${act ? MATH_HELPERS : ''}
@compute @workgroup_size(${LANES})
fn main(${MAIN}) {
  let wgi = i32(wid.x + wid.y * nwg.x);
  if (wgi >= p.total) { return; }
  ${taps.length === 0 ? '_ = src[0]; _ = wt[0]; // no tap reaches these pixels; they are zero' : ''}
  let cb = wgi % p.cblocks;
  let g = cb / p.mG;
  let co = g * p.mG + cb % p.mG;
  let wb = g * p.wsG + (cb % p.mG) * p.wsM;
  let q = (wgi / p.cblocks) * ${LANES} + i32(lid);
  let okb = q < p.nblocks;
  let c0 = (min(q, p.nblocks - 1) % p.colBlocks) * ${tn};
  let gr = (min(q, p.nblocks - 1) / p.colBlocks) % p.gridH;
  let n = min(q, p.nblocks - 1) / (p.colBlocks * p.gridH);
  let sb = p.so + n * p.ssn + g * p.rG * p.ssc;
  let cbase = c0 * ${step} + p.colOff;
${lines(U, (u) => `  let cv${u} = okb && cbase + ${cols[u]} >= 0 && cbase + ${cols[u]} < p.srcW;`)}
${lines(tn, (j) => `  var a${j} = 0.0;`)}
  for (var kh = 0; kh < p.kh; kh++) {
    let th = p.rBase + kh * p.rMult;
    if (th % p.rDiv != 0) { continue; }
    let sr = gr * p.rStep + th / p.rDiv;
    let rv = sr >= 0 && sr < p.srcH;
    let row = sb + sr * p.ssh;
${lines(U, (u) => `    var o${u} = select(p.so, row + (cbase + ${cols[u]}) * p.ssw, rv && cv${u});
    let m${u} = select(0.0, 1.0, rv && cv${u});`)}
    var wo = kh * p.kw;
    for (var r = 0; r < p.rG; r++) {
${lines(U, (u) => `      let x${u} = src[o${u}] * m${u};`)}
${taps.map((t) => `      let w${t.kw} = wt[wb + wo + ${t.kw}];
${lines(tn, (j) => `      a${j} = fma(w${t.kw}, x${col(j, t.offset)}, a${j});`)}`).join('\n')}
${lines(U, (u) => `      o${u} += p.ssc;`)}
      wo += p.wsR;
    }
  }
  let yb = (n * p.outC + co) * p.outHW + (p.rStart + gr * p.rStride) * p.outW + p.cStart;
  let b = ${bias ? 'bias[co]' : '0.0'};
${lines(tn, (j) => `  if (okb && c0 + ${j} < p.gridW) { y[yb + (c0 + ${j}) * p.cStride] = ${epilogue(`(a${j} + b)`)}; }`)}
}`;
}

function dispatchRowConv(d: TapConv): void {
  const e = engine();
  const [N, outC, outH, outW] = d.out.shape as [number, number, number, number];
  const taps = range(d.kw)
    .map((kw) => ({ kw, t: d.cols.base + kw * d.cols.mult }))
    .filter(({ t }) => t % d.cols.div === 0)
    .map(({ kw, t }) => ({ kw, offset: t / d.cols.div }));
  const colOff = taps.length > 0 ? Math.min(...taps.map((t) => t.offset)) : 0;
  const colBlocks = Math.ceil(d.gridW / ROW_TN);
  const nblocks = N * d.gridH * colBlocks;
  const cblocks = d.mG * d.groups;
  const total = cblocks * Math.ceil(nblocks / LANES);
  const params = strideParams(new Params(), 's', d.src)
    .i32('srcH', d.src.shape[2]!).i32('srcW', d.src.shape[3]!)
    .i32('mG', d.mG).i32('rG', d.rG).i32('wsM', d.wsM).i32('wsR', d.wsR).i32('wsG', d.wsG)
    .i32('kh', d.kh).i32('kw', d.kw).i32('gridH', d.gridH).i32('gridW', d.gridW)
    .i32('colBlocks', colBlocks).i32('nblocks', nblocks).i32('colOff', colOff)
    .i32('outC', outC).i32('outHW', outH * outW).i32('outW', outW)
    .i32('cblocks', cblocks).i32('total', total);
  axisParams(params, 'r', d.rows);
  axisParams(params, 'c', d.cols);
  e.dispatch({
    code: rowConvCode(params, ROW_TN, d.cols.step, taps.map((t) => ({ kw: t.kw, offset: t.offset - colOff })), d.bias !== undefined, d.act),
    params,
    buffers: d.bias ? [d.src.buffer, d.weight.buffer, d.bias.buffer, d.out.buffer] : [d.src.buffer, d.weight.buffer, d.out.buffer],
    workgroups: e.grid(total),
    label: d.label,
  });
}

function dispatchTapConv(d: TapConv): void {
  const tm = channelTile(d.mG);
  if (tm === 1) {
    dispatchRowConv(d);
    return;
  }
  const e = engine();
  const [N, outC, outH, outW] = d.out.shape as [number, number, number, number];
  const tn = TAP_TN;
  const npix = N * d.gridH * d.gridW;
  const bpg = Math.ceil(d.mG / tm);
  const cblocks = bpg * d.groups;
  const total = cblocks * Math.ceil(npix / (LANES * tn));
  const params = strideParams(new Params(), 's', d.src)
    .i32('srcH', d.src.shape[2]!).i32('srcW', d.src.shape[3]!)
    .i32('mG', d.mG).i32('rG', d.rG).i32('wsM', d.wsM).i32('wsR', d.wsR).i32('wsG', d.wsG)
    .i32('kh', d.kh).i32('kw', d.kw).i32('gridH', d.gridH).i32('gridW', d.gridW).i32('npix', npix)
    .i32('outC', outC).i32('outHW', outH * outW).i32('outW', outW)
    .i32('cblocks', cblocks).i32('bpg', bpg).i32('total', total);
  axisParams(params, 'r', d.rows);
  axisParams(params, 'c', d.cols);
  e.dispatch({
    code: tapConvCode(params, tm, tn, d.bias !== undefined, d.act),
    params,
    buffers: d.bias ? [d.src.buffer, d.weight.buffer, d.bias.buffer, d.out.buffer] : [d.src.buffer, d.weight.buffer, d.out.buffer],
    workgroups: e.grid(total),
    label: d.label,
  });
}

// Forward ----------------------------------------------------------------------------------

/**
 * `torch.nn.functional.conv2d` with an optional fused activation: x [N, C, H, W], weight
 * [out, C/groups, kh, kw], bias [out]. x may be any strided view.
 */
export function conv2d(x: Tensor, weight: Tensor, opts: Conv2dOptions = {}): Tensor {
  checkFloat(x, 'input');
  checkFloat(weight, 'weight');
  const g = conv2dGeometry(x.shape, weight.shape, opts);
  if (opts.bias) {
    checkFloat(opts.bias, 'bias');
    if (!shapeEq(opts.bias.shape, [g.outChannels])) throw new RangeError(`conv2d: bias must have shape [${g.outChannels}], got ${fmt(opts.bias.shape)}`);
  }
  if (opts.activation !== undefined && !(opts.activation in UNARY)) {
    throw new RangeError(`conv2d: unknown activation '${String(opts.activation)}'; expected relu, relu6, gelu, silu, sigmoid or tanh`);
  }
  const out = Tensor.empty([g.batch, g.outChannels, g.outH, g.outW]);
  if (out.size === 0) return out;
  const cinG = g.inChannels / g.groups;
  const coutG = g.outChannels / g.groups;
  const khw = g.kernelH * g.kernelW;
  const w = weight.contiguous();
  const b = opts.bias?.contiguous();
  dispatchTapConv({
    src: x, weight: w, bias: b, out, groups: g.groups,
    mG: coutG, rG: cinG, wsM: cinG * khw, wsR: khw, wsG: coutG * cinG * khw,
    kh: g.kernelH, kw: g.kernelW, gridH: g.outH, gridW: g.outW,
    rows: { step: g.strideH, base: -g.padH, mult: g.dilationH, div: 1, start: 0, stride: 1 },
    cols: { step: g.strideW, base: -g.padW, mult: g.dilationW, div: 1, start: 0, stride: 1 },
    act: opts.activation,
    label: 'conv2d',
  });
  w.dispose();
  b?.dispose();
  return out;
}

// Input gradient -----------------------------------------------------------------------

/**
 * The gradient of `conv2d` with respect to its input (a transposed convolution). The input
 * shape is given because several input sizes give the same output size when stride > 1.
 *
 * Input row ih = phase + stride * t receives kernel row kh from output row
 * t + (phase + pad - kh * dilation) / stride when that division is exact; so the input is
 * split by phase (one dispatch each) and every phase is a dense correlation that skips the
 * kernel taps it does not use, with no multiplies by structural zeros.
 */
export function conv2dBackwardInput(gradOut: Tensor, weight: Tensor, inputShape: Shape, opts: Conv2dGradOptions = {}): Tensor {
  checkFloat(gradOut, 'gradOut');
  checkFloat(weight, 'weight');
  const g = conv2dGeometry(inputShape, weight.shape, opts);
  const outShape = [g.batch, g.outChannels, g.outH, g.outW];
  if (!shapeEq(gradOut.shape, outShape)) {
    throw new RangeError(`conv2dBackwardInput: gradOut has shape ${fmt(gradOut.shape)} but input ${fmt(inputShape)} and weight ${fmt(weight.shape)} give an output of ${fmt(outShape)}`);
  }
  const gradIn = Tensor.empty(inputShape);
  if (gradIn.size === 0) return gradIn;
  const cinG = g.inChannels / g.groups;
  const coutG = g.outChannels / g.groups;
  const khw = g.kernelH * g.kernelW;
  const w = weight.contiguous();
  for (let rh = 0; rh < Math.min(g.strideH, g.height); rh++) {
    for (let rw = 0; rw < Math.min(g.strideW, g.width); rw++) {
      dispatchTapConv({
        src: gradOut, weight: w, bias: undefined, out: gradIn, groups: g.groups,
        mG: cinG, rG: coutG, wsM: khw, wsR: cinG * khw, wsG: coutG * cinG * khw,
        kh: g.kernelH, kw: g.kernelW,
        gridH: Math.ceil((g.height - rh) / g.strideH), gridW: Math.ceil((g.width - rw) / g.strideW),
        rows: { step: 1, base: rh + g.padH, mult: -g.dilationH, div: g.strideH, start: rh, stride: g.strideH },
        cols: { step: 1, base: rw + g.padW, mult: -g.dilationW, div: g.strideW, start: rw, stride: g.strideW },
        act: undefined,
        label: 'conv2dBackwardInput',
      });
    }
  }
  w.dispose();
  return gradIn;
}

// Weight gradient ----------------------------------------------------------------------

/** At most this many weight entries (in-channel, kh, kw) per invocation, beside
 * `channelTile` output channels; lanes spread over entries, so the gradOut loads (indexed
 * by output channel and pixel) are uniform. Workgroups are small so that the last one of
 * a weight's entries leaves few lanes idle. */
const WGRAD_TN = 8;
const WGRAD_LANES = 16;
/** Workgroups to aim for by splitting the pixel reduction: enough to keep every core (or
 * GPU unit) busy when the weight itself is small. */
const WGRAD_TARGET_WORKGROUPS = 128;

function weightGradCode(params: Params, tm: number, tn: number): string {
  return /* wgsl */ `
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> go: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(${WGRAD_LANES})
fn main(${MAIN}) {
  let wgi = i32(wid.x + wid.y * nwg.x);
  if (wgi >= p.total) { return; }
  let cb = wgi % p.cblocks;
  let rest = wgi / p.cblocks;
  let eb = rest % p.eblocks;
  let split = rest / p.eblocks;
  let g = cb / p.bpg;
  let cg = (cb % p.bpg) * ${tm};
${lines(tm, (i) => `  let gb${i} = p.goo + (g * p.mG + min(cg + ${i}, p.mG - 1)) * p.gosc;`)}
  let khw = p.kh * p.kw;
  let eBase = eb * ${WGRAD_LANES * tn} + i32(lid);
${lines(tn, (j) => `  let e${j} = eBase + ${j * WGRAD_LANES};
  let ev${j} = e${j} < p.entries;
  let kw${j} = (e${j} % khw) % p.kw;
  let ihOff${j} = ((e${j} % khw) / p.kw) * p.dh - p.ph;
  let iwOff${j} = kw${j} * p.dw - p.pw;
  let xe${j} = p.xo + (g * p.rG + min(e${j}, p.entries - 1) / khw) * p.xsc + iwOff${j} * p.xsw;`)}
${grid2(tm, tn, (i, j) => `  var a${i}_${j} = 0.0;`)}
  let rowEnd = min(p.rows, (split + 1) * p.rowsPerSplit);
  for (var row = split * p.rowsPerSplit; row < rowEnd; row++) {
    let n = row / p.oh;
    let oh = row % p.oh;
    let gr = n * p.gosn + oh * p.gosh;
${lines(tn, (j) => `    let ih${j} = oh * p.sh + ihOff${j};
    let rv${j} = ev${j} && ih${j} >= 0 && ih${j} < p.h;
    let xr${j} = xe${j} + n * p.xsn + ih${j} * p.xsh;`)}
    for (var ow = 0; ow < p.ow; ow++) {
${lines(tn, (j) => `      let iw${j} = ow * p.sw + iwOff${j};
      let v${j} = rv${j} && iw${j} >= 0 && iw${j} < p.w;
      let x${j} = select(0.0, x[select(p.xo, xr${j} + ow * p.sw * p.xsw, v${j})], v${j});`)}
${lines(tm, (i) => `      let g${i} = go[gb${i} + gr + ow * p.gosw];`)}
${grid2(tm, tn, (i, j) => `      a${i}_${j} = fma(g${i}, x${j}, a${i}_${j});`)}
    }
  }
  let yb = split * p.wsize + (g * p.mG + cg) * p.entries;
${lines(tm, (i) => `  if (cg + ${i} < p.mG) {
${lines(tn, (j) => `    if (ev${j}) { y[yb + ${i} * p.entries + e${j}] = a${i}_${j}; }`)}
  }`)}
}`;
}

const SUM_SPLITS_CODE = (params: Params): string => /* wgsl */ `
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(${MAIN_ARGS}) {
  let i = ${linearIndex()};
  if (i >= p.n) { return; }
  var s = 0.0;
  for (var k = 0u; k < p.splits; k++) { s += part[k * p.n + i]; }
  y[i] = s;
}`;

/**
 * The gradient of `conv2d` with respect to its weight: gradOut [N, out, OH, OW] correlated
 * with x, summed over the batch and every output pixel. When the weight is small next to
 * that reduction, the pixel rows are split into chunks reduced into partial weights first.
 */
export function conv2dBackwardWeight(x: Tensor, gradOut: Tensor, weightShape: Shape, opts: Conv2dGradOptions = {}): Tensor {
  checkFloat(x, 'input');
  checkFloat(gradOut, 'gradOut');
  const g = conv2dGeometry(x.shape, weightShape, opts);
  const outShape = [g.batch, g.outChannels, g.outH, g.outW];
  if (!shapeEq(gradOut.shape, outShape)) {
    throw new RangeError(`conv2dBackwardWeight: gradOut has shape ${fmt(gradOut.shape)} but input ${fmt(x.shape)} and weight ${fmt(weightShape)} give an output of ${fmt(outShape)}`);
  }
  const gradW = Tensor.empty(weightShape);
  if (gradW.size === 0) return gradW;
  const e = engine();
  const cinG = g.inChannels / g.groups;
  const coutG = g.outChannels / g.groups;
  const entries = cinG * g.kernelH * g.kernelW;
  const tm = channelTile(coutG);
  // As few entry blocks as WGRAD_TN allows, then as few entries per invocation as fill them.
  const eblocks = Math.ceil(entries / (WGRAD_LANES * WGRAD_TN));
  const tn = Math.ceil(entries / (WGRAD_LANES * eblocks));
  const bpg = Math.ceil(coutG / tm);
  const cblocks = bpg * g.groups;
  const rows = g.batch * g.outH;
  const splits = Math.max(1, Math.min(rows, Math.ceil(WGRAD_TARGET_WORKGROUPS / (cblocks * eblocks))));
  const rowsPerSplit = Math.ceil(rows / splits);
  const usedSplits = Math.ceil(rows / rowsPerSplit);
  const total = cblocks * eblocks * usedSplits;
  const target = usedSplits > 1 ? Tensor.empty([usedSplits, gradW.size]) : gradW;
  const params = strideParams(strideParams(new Params(), 'x', x), 'go', gradOut)
    .i32('h', g.height).i32('w', g.width).i32('oh', g.outH).i32('ow', g.outW)
    .i32('kh', g.kernelH).i32('kw', g.kernelW)
    .i32('sh', g.strideH).i32('sw', g.strideW).i32('ph', g.padH).i32('pw', g.padW).i32('dh', g.dilationH).i32('dw', g.dilationW)
    .i32('mG', coutG).i32('rG', cinG).i32('entries', entries).i32('wsize', gradW.size)
    .i32('rows', rows).i32('rowsPerSplit', rowsPerSplit)
    .i32('cblocks', cblocks).i32('bpg', bpg).i32('eblocks', eblocks).i32('total', total);
  e.dispatch({
    code: weightGradCode(params, tm, tn),
    params,
    buffers: [x.buffer, gradOut.buffer, target.buffer],
    workgroups: e.grid(total),
    label: 'conv2dBackwardWeight',
  });
  if (target !== gradW) {
    const sum = new Params().u32('n', gradW.size).u32('splits', usedSplits);
    e.dispatch({
      code: SUM_SPLITS_CODE(sum),
      params: sum,
      buffers: [target.buffer, gradW.buffer],
      workgroups: e.grid(Math.ceil(gradW.size / WG)),
      label: 'conv2dBackwardWeight.sum',
    });
    target.dispose();
  }
  return gradW;
}

// CPU references ------------------------------------------------------------------------

/** Calls `f(xIndex, weightIndex, outIndex)` for every multiply of the convolution. */
function forEachTap(g: Conv2dGeometry, f: (xi: number, wi: number, oi: number) => void): void {
  const { batch: N, inChannels: C, height: H, width: W, outChannels: O, kernelH: KH, kernelW: KW, outH: OH, outW: OW } = g;
  const cinG = C / g.groups;
  const coutG = O / g.groups;
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const c0 = Math.floor(o / coutG) * cinG;
      for (let oh = 0; oh < OH; oh++) {
        for (let ow = 0; ow < OW; ow++) {
          const oi = ((n * O + o) * OH + oh) * OW + ow;
          for (let c = 0; c < cinG; c++) {
            for (let kh = 0; kh < KH; kh++) {
              const ih = oh * g.strideH - g.padH + kh * g.dilationH;
              if (ih < 0 || ih >= H) continue;
              for (let kw = 0; kw < KW; kw++) {
                const iw = ow * g.strideW - g.padW + kw * g.dilationW;
                if (iw < 0 || iw >= W) continue;
                f(((n * C + c0 + c) * H + ih) * W + iw, ((o * cinG + c) * KH + kh) * KW + kw, oi);
              }
            }
          }
        }
      }
    }
  }
}

export function cpuConv2d(x: HostTensor, weight: HostTensor, opts: CpuConv2dOptions = {}): HostTensor {
  const g = conv2dGeometry(x.shape, weight.shape, opts);
  const out = host([g.batch, g.outChannels, g.outH, g.outW]);
  forEachTap(g, (xi, wi, oi) => (out.data[oi] += x.data[xi]! * weight.data[wi]!));
  const plane = g.outH * g.outW;
  const act = opts.activation ? (UNARY[opts.activation].cpu as (v: number) => number) : null;
  for (let i = 0; i < out.data.length; i++) {
    const v = out.data[i]! + (opts.bias ? opts.bias.data[Math.floor(i / plane) % g.outChannels]! : 0);
    out.data[i] = act ? act(v) : v;
  }
  return out;
}

export function cpuConv2dBackwardInput(gradOut: HostTensor, weight: HostTensor, inputShape: Shape, opts: Conv2dGradOptions = {}): HostTensor {
  const g = conv2dGeometry(inputShape, weight.shape, opts);
  const out = host(inputShape);
  forEachTap(g, (xi, wi, oi) => (out.data[xi] += gradOut.data[oi]! * weight.data[wi]!));
  return out;
}

export function cpuConv2dBackwardWeight(x: HostTensor, gradOut: HostTensor, weightShape: Shape, opts: Conv2dGradOptions = {}): HostTensor {
  const g = conv2dGeometry(x.shape, weightShape, opts);
  const out = host(weightShape);
  forEachTap(g, (xi, wi, oi) => (out.data[wi] += gradOut.data[oi]! * x.data[xi]!));
  return out;
}
