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
 * stride, and a variant with taps baked in compiled 3-5x slower without running faster.
 * Passes where each output plane reads one source plane (depthwise convolutions, a channel
 * multiplier, one input or output channel per group) get their own kernels, which walk
 * down column strips and reuse every loaded row for each kernel tap (see `rowWindow`).
 * Every pass takes float16 operands too, stored as f16 and computed in f32 (see `widen`).
 * Dense 3x3 stride-1 layers with enough channels and pixels run all three passes by
 * Winograd's algorithm instead (winograd.ts; `convAlgorithm` says which).
 */
import { engine, type BoundElements, type StorageBinding } from '../engine.js';
import { host, type HostTensor } from '../host.js';
import { Params } from '../params.js';
import { fmt, shapeEq, type Shape } from '../shape.js';
import { Tensor, type DType } from '../tensor.js';
import { checkFloat } from './check-float.js';
import { addPart, byImages, imageRuns, imageSlice, needsImageRuns } from './batches.js';
import { cast, mul, UNARY } from './elementwise.js';
import { full } from '../creation.js';
import { convShapeClass, storedChoice, timeRecorded, tunedChoice, type ConvProblem, type TuneBench, type TuneFamily } from '../tune.js';
import { pointwiseConv, pointwiseTakesInputScale } from './conv1x1.js';
import { subgroupWgsl, weightSharing, type WeightSharing } from './weight-sharing.js';
import { forwardWalk, inputGradWalk, winogradApplies, winogradCorrelation, winogradWeightGrad, type WinogradTile } from './winograd.js';
import { enableF16, linearIndex, MAIN_ARGS, MATH_HELPERS, storageArray, stored, WG, widen } from './wgsl.js';

/** A size given once for both spatial dims or as [h, w]. */
export type IntPair = number | readonly [number, number];

/** Activations that `conv2d` can apply in its epilogue, saving a pass over the output. */
export type ConvActivation = 'relu' | 'relu6' | 'gelu' | 'silu' | 'sigmoid' | 'tanh' | 'hardswish' | 'hardsigmoid';

export interface Conv2dGradOptions {
  stride?: IntPair;
  padding?: IntPair;
  dilation?: IntPair;
  groups?: number;
}

export interface Conv2dOptions extends Conv2dGradOptions {
  /** [out] */
  bias?: Tensor;
  /** [out]: each output channel is multiplied by it before the bias is added, so a batch norm
   * in evaluation mode folds into the convolution's epilogue (`activation(conv * scale + bias)`). */
  scale?: Tensor;
  activation?: ConvActivation;
  /** [N, in] (or [N, in, 1, 1]): input channel c of image n is multiplied by it before the
   * convolution, as `conv2d(x * inputScale[:, :, None, None])`; a dense 1x1 convolution
   * applies it as it loads x (squeeze-excitation's gate, without a pass over x). */
  inputScale?: Tensor;
}

export interface CpuConv2dOptions extends Conv2dGradOptions {
  bias?: HostTensor;
  scale?: HostTensor;
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

const range = (n: number): number[] => [...Array(n).keys()];
const lines = (n: number, f: (i: number) => string): string => range(n).map(f).join('\n');
const grid2 = (a: number, b: number, f: (i: number, j: number) => string): string =>
  range(a).flatMap((i) => range(b).map((j) => f(i, j))).join('\n');

/** Invocations per workgroup. Lanes spread over pixels, so the weight loads (indexed by
 * channel and tap only) are uniform across the workgroup. */
const MAIN = '@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32';

/** `t`'s offset within its binding `at` and its strides. */
function strideParams(params: Params, name: string, t: Tensor, at: BoundElements): Params {
  params.i32(`${name}o`, at.offset);
  (['n', 'c', 'h', 'w'] as const).forEach((d, i) => params.i32(`${name}s${d}`, t.strides[i]!));
  return params;
}

// float16 operands are stored as f16 and computed in f32 (PyTorch's half convolutions
// accumulate in float too): every load widens, and the result is rounded once on store.
// With `half` false these give the float32 kernels' text unchanged.

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
  scale: Tensor | undefined;
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
  /** Every operand is float16 (else float32). */
  half: boolean;
}

/** The bindings of a correlation's operands, and the source's offset within its own. */
interface TapBindings {
  buffers: StorageBinding[];
  src: BoundElements;
}

/** Binds the operands of `d`: the source through its view (it may be a run of images of a
 * larger buffer), the weight, bias, scale and output whole (the kernels index them from 0). */
function tapBindings(d: TapConv): TapBindings {
  const src = d.src.binding(d.label, d.half);
  const rest = [d.weight, ...(d.bias ? [d.bias] : []), ...(d.scale ? [d.scale] : []), d.out].map((t) => t.binding(d.label, d.half).resource);
  return { buffers: [src.resource, ...rest], src };
}

/** The WGSL of the bindings after the weight: bias and scale where present, then the output. */
function epilogueBindings(d: TapConv, out: string): string {
  const names = [...(d.bias ? ['bias'] : []), ...(d.scale ? ['scale'] : [])];
  return [
    ...names.map((n, i) => `@group(0) @binding(${3 + i}) var<storage, read> ${n}: ${storageArray(d.half)};`),
    `@group(0) @binding(${3 + names.length}) var<storage, read_write> y: ${out};`,
  ].join('\n');
}

/** What a correlation's WGSL takes from its operands beside the walk: the pipeline key's
 * common part (kernels are cached by spec, so a hit does not regenerate their text). */
function epilogueKey(d: TapConv): string {
  return `${d.half ? 'f16' : 'f32'}/${d.bias ? 'b' : ''}${d.scale ? 's' : ''}/${d.act ?? '-'}`;
}

/** The output value of accumulator `acc` in channel `c` (WGSL expressions), before the
 * activation: times the scale, plus the bias. */
function affine(d: TapConv, acc: string, c: string): string {
  const b = d.bias ? widen(d.half, `bias[${c}]`) : '';
  const v = d.scale ? `${acc} * ${widen(d.half, `scale[${c}]`)}` : acc;
  return b ? `(${v} + ${b})` : v;
}

/** Pixels per invocation; with `channelTile`'s 8 channels an 8 x 8 block, which measured
 * fastest on lavapipe (4 x 8, 8 x 4, 4 x 16, 16 x 4 and 8 x 16 were slower). */
const TAP_TN = 8;
/** Invocations per workgroup of the general kernel, so a workgroup covers 128 pixels. With 64
 * (512 pixels) a 7x7 output at batch 2 left four lanes in five idle: ResNet-18's last stage
 * ran at 2.0-2.3 GFLOP/s against 7.7-8.2 with 16, and the large planes measured within noise
 * (8 and 32 lanes were slower than 16 on most of ResNet-18's shapes). */
const TAP_LANES = 16;

/** With `subgroup` sharing, lane l of each subgroup loads channel l's weight at every tap and
 * reduction channel, and the others take it by broadcast (weight-sharing.ts). */
function tapConvCode(params: Params, d: TapConv, tm: number, tn: number, sharing: WeightSharing): string {
  const { half, act } = d;
  const sg = sharing === 'subgroup';
  const sub = subgroupWgsl(sharing);
  const epilogue = (v: string): string => stored(half, act ? UNARY[act].wgsl(v) : v);
  return /* wgsl */ `${enableF16(half)}
${sub.enable}
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: ${storageArray(half)};
@group(0) @binding(2) var<storage, read> wt: ${storageArray(half)};
${epilogueBindings(d, storageArray(half))}
${act ? MATH_HELPERS : ''}
@compute @workgroup_size(${TAP_LANES})
fn main(${MAIN}${sub.builtin}) {
  let wgi = i32(wid.x + wid.y * nwg.x);
  if (wgi >= p.total) { return; }
  let cb = wgi % p.cblocks;
  let g = cb / p.bpg;
  let cg = (cb % p.bpg) * ${tm};
${sg ? `  let wbl = g * p.wsG + min(cg + i32(sgi % ${tm}u), p.mG - 1) * p.wsM;` : lines(tm, (i) => `  let wb${i} = g * p.wsG + min(cg + ${i}, p.mG - 1) * p.wsM;`)}
  let pix = (wgi / p.cblocks) * ${TAP_LANES * tn} + i32(lid);
  let gridHW = p.gridH * p.gridW;
${lines(tn, (j) => `  let q${j} = pix + ${j * TAP_LANES};
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
${lines(tn, (j) => `        let x${j} = ${widen(half, `src[o${j}]`)} * m${j};`)}
${sg ? `        let wsg = ${widen(half, 'wt[wbl + wo]')};\n` + lines(tm, (i) => `        let w${i} = subgroupBroadcast(wsg, ${i}u);`) : lines(tm, (i) => `        let w${i} = ${widen(half, `wt[wb${i} + wo]`)};`)}
${grid2(tm, tn, (i, j) => `        a${i}_${j} = fma(w${i}, x${j}, a${i}_${j});`)}
${lines(tn, (j) => `        o${j} += p.ssc;`)}
        wo += p.wsR;
      }
    }
  }
${lines(tn, (j) => `  let yb${j} = (n${j} * p.outC + g * p.mG + cg) * p.outHW + (p.rStart + gr${j} * p.rStride) * p.outW + p.cStart + gc${j} * p.cStride;`)}
${lines(tm, (i) => `  if (cg + ${i} < p.mG) {
    let c = g * p.mG + cg + ${i};
${lines(tn, (j) => `    if (ok${j}) { y[yb${j} + ${i} * p.outHW] = ${epilogue(affine(d, `a${i}_${j}`, 'c'))}; }`)}
  }`)}
}`;
}

function axisParams(params: Params, prefix: 'r' | 'c', a: Axis): void {
  params.i32(`${prefix}Step`, a.step).i32(`${prefix}Base`, a.base).i32(`${prefix}Mult`, a.mult).i32(`${prefix}Div`, a.div)
    .i32(`${prefix}Start`, a.start).i32(`${prefix}Stride`, a.stride);
}

// Plane passes -----------------------------------------------------------------------------

/** Output pixels along a row per invocation of the plane kernels: two vec4s (4 and 16
 * measured slower). */
const PLANE_TN = 8;
/** Invocations per workgroup of the plane kernels; 8 to 64 measured within noise, and the
 * last workgroup of a channel leaves fewer lanes idle than with 64. */
const PLANE_LANES = 16;
/** An invocation walks down its whole column strip unless that leaves fewer invocations
 * than this to spread over the cores; then strips are cut into blocks of rows (at least
 * PLANE_MIN_ROWS, as each block reloads the rows its kernel overlaps). */
const PLANE_TARGET_INVOCATIONS = 2048;
const PLANE_MIN_ROWS = 8;
/** Kernels up to this many taps have all of them baked into the code; the compile time
 * grows fast with their count (on lavapipe 0.4 s for 3x3, 1.5 s for 7x7, 3 s for 9x9).
 * Larger kernels loop over their rows at run time with one output channel per group, and
 * otherwise (and for the weight gradient) use the general kernels. */
const PLANE_MAX_TAPS = 49;

const id = (v: number): string => (v < 0 ? `m${-v}` : `${v}`);

/** One load from a source row: the vec4 of columns col..col+3, or the element at col. */
interface Slot {
  col: number;
  vec: boolean;
}

/** The loads that cover `cols` (relative to a multiple of 4 when `vec`): whole vec4s where
 * all four elements are used, single elements at the ragged ends. */
function slotsFor(cols: readonly number[], vec: boolean): Slot[] {
  if (!vec) return cols.map((col) => ({ col, vec: false }));
  const quads = [...new Set(cols.map((u) => Math.floor(u / 4)))].sort((a, b) => a - b);
  return quads.flatMap((k): Slot[] => {
    const used = cols.filter((u) => Math.floor(u / 4) === k);
    return used.length === 4 ? [{ col: 4 * k, vec: true }] : used.map((col) => ({ col, vec: false }));
  });
}

/** Rows of a source plane as a plane kernel reads them: element (row, col0 + u) for u in
 * `cols` at index base + row * rowStride + (col0 + u) * colStride, zero outside
 * height x width. `vec` says the buffer is bound as vec4s and base, rowStride and col0 are
 * multiples of 4 (colStride 1, width a multiple of 4, so no vec4 straddles the edge). */
interface RowSource {
  /** Prefix of its WGSL variables. */
  name: string;
  buf: string;
  vec: boolean;
  /** The buffer holds float16. */
  half: boolean;
  base: string;
  rowStride: string;
  colStride: string;
  height: string;
  width: string;
  col0: string;
  cols: readonly number[];
}

/** WGSL that reads rows of a `RowSource` into variables named after a tag. */
interface RowReader {
  /** Which columns are inside the plane (`okb` is false for idle lanes). */
  checks: string;
  /** Declares the variables of `tag`. */
  vars(tag: string): string;
  /** Reads row `row` into the variables of `tag`, declaring them with `decl`. */
  read(tag: string, row: string, decl: boolean): string;
  move(to: string, from: string): string;
  /** The element at column col0 + u of the row read under `tag`. */
  at(tag: string, u: number): string;
}

function rowReader(s: RowSource): RowReader {
  const slots = slotsFor(s.cols, s.vec);
  const type = (sl: Slot): string => (sl.vec ? 'vec4<f32>' : 'f32');
  const v = (tag: string, sl: Slot): string => `${tag}_${id(sl.col)}`;
  return {
    checks: slots.map((sl) => `let ${s.name}cv${id(sl.col)} = okb && ${s.col0} + ${sl.col} >= 0 && ${s.col0} + ${sl.col} < ${s.width};`).join('\n'),
    vars: (tag: string): string => slots.map((sl) => `var ${v(tag, sl)}: ${type(sl)};`).join('\n'),
    read: (tag: string, row: string, decl: boolean): string => [
      `let ${tag}r = ${row};`,
      `let ${tag}ok = ${tag}r >= 0 && ${tag}r < ${s.height};`,
      `let ${tag}at = ${s.base} + ${tag}r * ${s.rowStride};`,
      ...slots.map((sl) => {
        const ok = `${tag}ok && ${s.name}cv${id(sl.col)}`;
        const q = Math.floor(sl.col / 4);
        const at = s.vec ? `(${tag}at + ${s.col0}) / 4 + ${q}` : `${tag}at + (${s.col0} + ${sl.col}) * ${s.colStride}`;
        const read = `${s.buf}[select(0, ${at}, ${ok})]${s.vec && !sl.vec ? `[${sl.col - 4 * q}]` : ''}`;
        return `${decl ? 'let ' : ''}${v(tag, sl)} = select(${type(sl)}(), ${widen(s.half, read, sl.vec)}, ${ok});`;
      }),
    ].join('\n'),
    move: (to: string, from: string): string => slots.map((sl) => `${v(to, sl)} = ${v(from, sl)};`).join('\n'),
    at: (tag: string, u: number): string => {
      const q = Math.floor(u / 4);
      const whole = slots.find((sl) => sl.vec && sl.col === 4 * q);
      return whole ? `${v(tag, whole)}[${u - 4 * q}]` : `${tag}_${id(u)}`;
    },
  };
}

/**
 * The rows of a `RowSource` under a kernel whose taps read rows i * step + o (o in `taps`)
 * for grid row i, kept in registers while an invocation walks down its grid column: on
 * lavapipe every load is a lane-by-lane loop, so each source row is loaded once. Window row
 * o at grid row i + 1 is window row o + step at grid row i; only the rows entering the
 * window are loaded per grid row. The walk starts `warmup` grid rows early, only loading, to
 * fill the window (a second copy of the loads before the loop doubled the compile time).
 */
interface RowWindow {
  warmup: number;
  /** Column checks and the window's variables. */
  init: string;
  /** Loads the rows entering the window at grid row `gridRow`. */
  load(gridRow: string): string;
  /** Moves the window down one grid row. */
  advance: string;
  /** The element at column col0 + u of window row o. */
  at(o: number, u: number): string;
}

function rowWindow(s: RowSource, taps: readonly number[], step: number): RowWindow {
  const reader = rowReader(s);
  const lo = Math.min(...taps);
  const hi = Math.max(...taps);
  // Window rows that some tap reads, now or after moving up by whole steps.
  const rows = range(hi - lo + 1).map((i) => lo + i).filter((o) => taps.some((t) => t <= o && (o - t) % step === 0));
  const tag = (o: number): string => `${s.name}${id(o)}`;
  return {
    warmup: Math.ceil(Math.max(0, hi - lo + 1 - step) / step),
    init: [reader.checks, ...rows.map((o) => reader.vars(tag(o)))].join('\n'),
    load: (gridRow: string): string => rows.filter((o) => o > hi - step).map((o) => reader.read(tag(o), `${gridRow} * ${step} + ${o}`, false)).join('\n'),
    advance: rows.filter((o) => o + step <= hi).map((o) => reader.move(tag(o), tag(o + step))).join('\n'),
    at: (o: number, u: number): string => reader.at(tag(o), u),
  };
}

/** A kernel tap along one axis that reads source offset `off` (see `Axis`). */
interface PlaneTap {
  k: number;
  off: number;
}

function planeTaps(a: Axis, k: number): PlaneTap[] {
  return range(k)
    .map((i) => ({ k: i, t: a.base + i * a.mult }))
    .filter(({ t }) => t % a.div === 0)
    .map(({ k: i, t }) => ({ k: i, off: t / a.div }));
}

/**
 * The correlation when each output plane reads one source plane (depthwise convolutions and
 * their input gradient, or one output channel per group), where the general kernel would
 * load one value per multiply-add: each invocation walks down a strip of `PLANE_TN` output
 * columns of one plane, so that neighbouring pixels share their loads. With one source
 * plane and at most `PLANE_MAX_TAPS` taps, the source rows under the kernel stay in a
 * register window (`rowWindow`) and every tap is baked in: each source element is loaded once
 * per strip. (An unrolled 8 x 8 block per invocation, each loaded row feeding up to 3 output
 * rows, was 3x slower than this loop: ~100 KB of machine code against ~20 KB.)
 * Otherwise kernel rows and source planes are run-time loops, and only column taps are baked.
 */
function planeConvCode(params: Params, d: TapConv, rowTaps: PlaneTap[], colTaps: PlaneTap[], vecIn: boolean, vecOut: boolean, joint: boolean): string {
  const tn = PLANE_TN;
  const carry = d.rG === 1 && rowTaps.length * colTaps.length <= PLANE_MAX_TAPS;
  const epilogue = (x: string): string => (d.act ? UNARY[d.act].wgsl(x) : x);
  const src: RowSource = {
    name: 'x', buf: 'src', vec: vecIn, half: d.half, base: 'sbr', rowStride: 'p.ssh', colStride: 'p.ssw', height: 'p.srcH', width: 'p.srcW', col0: 'sc0',
    cols: [...new Set(colTaps.flatMap((t) => range(tn).map((j) => j * d.cols.step + t.off)))].sort((a, b) => a - b),
  };
  const fma = (w: string, x: (u: number) => string, off: number): string =>
    range(tn).map((j) => `a${j} = fma(${w}, ${x(j * d.cols.step + off)}, a${j});`).join('\n');
  // The walk: `load` at every grid row, `compute` into a0..a{tn-1} from the first output row on.
  let setup: string;
  let load = '';
  let compute: string;
  let advance = '';
  let warmup = 0;
  if (carry) {
    const win = rowWindow(src, rowTaps.map((t) => t.off), d.rows.step);
    warmup = win.warmup;
    setup = [
      'let sbr = sb;',
      ...rowTaps.flatMap((rt) => colTaps.map((ct) => `let w${rt.k}_${ct.k} = ${widen(d.half, `wt[wb + ${rt.k * d.kw + ct.k}]`)};`)),
      win.init,
    ].join('\n');
    load = win.load('i');
    compute = rowTaps.flatMap((rt) => colTaps.map((ct) => fma(`w${rt.k}_${ct.k}`, (u) => win.at(rt.off, u), ct.off))).join('\n');
    advance = win.advance;
  } else {
    const reader = rowReader(src);
    setup = reader.checks;
    compute = `for (var kh = 0; kh < p.kh; kh++) {
      let th = p.rBase + kh * p.rMult;
      if (th % p.rDiv != 0) { continue; }
      let sr = i * ${d.rows.step} + th / p.rDiv;
      for (var r = 0; r < p.rG; r++) {
        let sbr = sb + r * p.ssc;
        ${reader.read('xk', 'sr', true)}
        let wr = wb + r * p.wsR + kh * ${d.kw};
        ${colTaps.map((ct) => `let w${ct.k} = ${widen(d.half, `wt[wr + ${ct.k}]`)};\n${fma(`w${ct.k}`, (u) => reader.at('xk', u), ct.off)}`).join('\n')}
      }
    }`;
  }
  const store = vecOut
    ? range(tn / 4).map((q) => `if (c0 + ${4 * q} < p.gridW) { y[yr / 4 + ${q}] = ${stored(d.half, `vec4<f32>(${range(4).map((t) => epilogue(affine(d, `a${4 * q + t}`, 'co'))).join(', ')})`, true)}; }`)
    : range(tn).map((j) => `if (c0 + ${j} < p.gridW) { y[yr + ${j} * p.cStride] = ${stored(d.half, epilogue(affine(d, `a${j}`, 'co')))}; }`);
  return /* wgsl */ `${enableF16(d.half)}
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: ${storageArray(d.half, vecIn)};
@group(0) @binding(2) var<storage, read> wt: ${storageArray(d.half)};
${epilogueBindings(d, storageArray(d.half, vecOut))}
${d.act ? MATH_HELPERS : ''}
@compute @workgroup_size(${PLANE_LANES})
fn main(${MAIN}) {
  let wgi = i32(wid.x + wid.y * nwg.x);
  if (wgi >= p.total) { return; }
${joint ? `  let jq = wgi * ${PLANE_LANES} + i32(lid);
  let cb = min(jq / p.nblocks, p.cblocks - 1);
  let q = select(p.nblocks, jq % p.nblocks, jq < p.cblocks * p.nblocks);` : `  let cb = wgi % p.cblocks;
  let q = (wgi / p.cblocks) * ${PLANE_LANES} + i32(lid);`}
  let g = cb / p.mG;
  let co = g * p.mG + cb % p.mG;
  let wb = g * p.wsG + (cb % p.mG) * p.wsM;
  let okb = q < p.nblocks;
  let qc = min(q, p.nblocks - 1);
  let c0 = (qc % p.colBlocks) * ${tn};
  let r0 = ((qc / p.colBlocks) % p.rowBlocks) * p.rowsPer;
  let r1 = select(r0 - ${warmup}, min(r0 + p.rowsPer, p.gridH), okb);
  let n = qc / (p.colBlocks * p.rowBlocks);
  let sb = p.so + n * p.ssn + g * p.rG * p.ssc;
  let sc0 = c0 * ${d.cols.step};
  let yb = (n * p.outC + co) * p.outHW + p.cStart + c0 * p.cStride;
  ${setup}
  for (var i = r0 - ${warmup}; i < r1; i++) {
    ${load}
    if (i >= r0) {
${lines(tn, (j) => `      var a${j} = 0.0;`)}
      ${compute}
      let yr = yb + (p.rStart + i * p.rStride) * p.outW;
${store.map((l) => `      ${l}`).join('\n')}
    }
    ${advance}
  }
}`;
}

/** Whether a 4-D tensor, at `offset` in its binding, can be read as vec4s along its rows
 * (see `RowSource`). */
const vec4Rows = (t: Tensor, offset: number): boolean =>
  t.strides[3] === 1 && t.shape[3]! % 4 === 0 && [offset, ...t.strides.slice(0, 3)].every((v) => v % 4 === 0);

/** Row blocks of `rows` rows: whole columns unless `strips` column strips are too few. */
function rowBlocking(rows: number, strips: number): { rowsPer: number; rowBlocks: number } {
  const wanted = Math.ceil(PLANE_TARGET_INVOCATIONS / strips);
  const rowsPer = Math.ceil(rows / Math.max(1, Math.min(wanted, Math.floor(rows / PLANE_MIN_ROWS))));
  return { rowsPer, rowBlocks: Math.ceil(rows / rowsPer) };
}

function dispatchPlaneConv(d: TapConv, rowTaps: PlaneTap[], colTaps: PlaneTap[]): void {
  const e = engine();
  const [N, outC, outH, outW] = d.out.shape as [number, number, number, number];
  const bound = tapBindings(d);
  const vecIn = d.cols.step === 1 && vec4Rows(d.src, bound.src.offset);
  const vecOut = d.cols.stride === 1 && outW % 4 === 0 && d.cols.start % 4 === 0 && d.gridW % 4 === 0;
  const colBlocks = Math.ceil(d.gridW / PLANE_TN);
  const cblocks = d.mG * d.groups;
  const { rowsPer, rowBlocks } = rowBlocking(d.gridH, N * cblocks * colBlocks);
  const nblocks = N * rowBlocks * colBlocks;
  // A workgroup's lanes take blocks of one channel (its weights uniform) unless a channel has
  // too few blocks to fill them (7x7 and 14x14 planes at small batches), then blocks of
  // consecutive channels: lanes left idle cost as much as busy ones.
  const joint = nblocks < PLANE_LANES;
  const total = joint ? Math.ceil((cblocks * nblocks) / PLANE_LANES) : cblocks * Math.ceil(nblocks / PLANE_LANES);
  const params = strideParams(new Params(), 's', d.src, bound.src)
    .i32('srcH', d.src.shape[2]!).i32('srcW', d.src.shape[3]!)
    .i32('mG', d.mG).i32('rG', d.rG).i32('wsM', d.wsM).i32('wsR', d.wsR).i32('wsG', d.wsG)
    .i32('kh', d.kh).i32('rBase', d.rows.base).i32('rMult', d.rows.mult).i32('rDiv', d.rows.div)
    .i32('gridH', d.gridH).i32('gridW', d.gridW)
    .i32('colBlocks', colBlocks).i32('rowBlocks', rowBlocks).i32('rowsPer', rowsPer).i32('nblocks', nblocks)
    .i32('outC', outC).i32('outHW', outH * outW).i32('outW', outW)
    .i32('rStart', d.rows.start).i32('rStride', d.rows.stride).i32('cStart', d.cols.start).i32('cStride', d.cols.stride)
    .i32('cblocks', cblocks).i32('total', total);
  const taps = (t: PlaneTap[]): string => t.map((x) => `${x.k}:${x.off}`).join(',');
  e.dispatch({
    key: `planeConv/${epilogueKey(d)}/${vecIn ? 1 : 0}${vecOut ? 1 : 0}${joint ? 'j' : ''}/${d.rG === 1 ? 1 : 0}/kw${d.kw}` +
      `/r${d.rows.step}:${taps(rowTaps)}/c${d.cols.step}:${taps(colTaps)}`,
    get code() {
      return planeConvCode(params, d, rowTaps, colTaps, vecIn, vecOut, joint);
    },
    params,
    buffers: bound.buffers,
    workgroups: e.grid(total),
    label: d.label,
  });
}

function dispatchTapConv(d: TapConv): void {
  const rowTaps = planeTaps(d.rows, d.kh);
  const colTaps = planeTaps(d.cols, d.kw);
  // The general kernel writes the zeros of an input-gradient phase that no tap reaches, and
  // serves several output channels of one source plane when the kernel is too large to bake
  // (there each load feeds several channels).
  if (rowTaps.length > 0 && colTaps.length > 0 && (d.mG === 1 || (d.rG === 1 && rowTaps.length * colTaps.length <= PLANE_MAX_TAPS))) {
    dispatchPlaneConv(d, rowTaps, colTaps);
    return;
  }
  const tm = channelTile(d.mG);
  const sharing = weightSharing();
  const e = engine();
  const [N, outC, outH, outW] = d.out.shape as [number, number, number, number];
  const tn = TAP_TN;
  const npix = N * d.gridH * d.gridW;
  const bpg = Math.ceil(d.mG / tm);
  const cblocks = bpg * d.groups;
  const total = cblocks * Math.ceil(npix / (TAP_LANES * tn));
  const bound = tapBindings(d);
  const params = strideParams(new Params(), 's', d.src, bound.src)
    .i32('srcH', d.src.shape[2]!).i32('srcW', d.src.shape[3]!)
    .i32('mG', d.mG).i32('rG', d.rG).i32('wsM', d.wsM).i32('wsR', d.wsR).i32('wsG', d.wsG)
    .i32('kh', d.kh).i32('kw', d.kw).i32('gridH', d.gridH).i32('gridW', d.gridW).i32('npix', npix)
    .i32('outC', outC).i32('outHW', outH * outW).i32('outW', outW)
    .i32('cblocks', cblocks).i32('bpg', bpg).i32('total', total);
  axisParams(params, 'r', d.rows);
  axisParams(params, 'c', d.cols);
  e.dispatch({
    key: `tapConv/${epilogueKey(d)}/${tm}x${tn}/${sharing}`,
    get code() {
      return tapConvCode(params, d, tm, tn, sharing);
    },
    params,
    buffers: bound.buffers,
    workgroups: e.grid(total),
    label: d.label,
  });
}

// Forward ----------------------------------------------------------------------------------

/** How a convolution runs: the direct kernel, or (3x3, stride 1, dense) Winograd's algorithm
 * with 2x2 or 4x4 output tiles (see winograd.ts). */
export type ConvAlgorithm = 'direct' | 'winograd2x2' | 'winograd4x4';

const TILE: Record<Exclude<ConvAlgorithm, 'direct'>, WinogradTile> = { winograd2x2: 2, winograd4x4: 4 };

let forcedAlgorithm: ConvAlgorithm | null = null;

/** Runs every convolution that Winograd's algorithm applies to (and its gradients) with
 * `algorithm` (tests and benchmarks; null restores the choice). Others run direct. */
export function forceConvAlgorithm(algorithm: ConvAlgorithm | null): void {
  if (algorithm !== null && algorithm !== 'direct' && !(algorithm in TILE)) {
    throw new RangeError(`forceConvAlgorithm: unknown algorithm '${String(algorithm)}'; expected direct, winograd2x2 or winograd4x4`);
  }
  forcedAlgorithm = algorithm;
}

/** Winograd pays once its product has this many tiles: below, the weight transform (as much
 * work as the filters have entries times α²) and the matmul's thin operands dominate. On
 * lavapipe, ResNet-18's layers (64 channels at 56 px and batch 8: 392 tiles of 4x4) took 47 ms
 * by F(4x4) against 177 direct; at batch 2, 64 channels at 56 px 12 against 34 ms, 128 at
 * 28 px (98 tiles) 14 against 34, 256 at 14 px by F(2x2) (98 tiles) 24 against 42, and at
 * 7 px (8 or 32 tiles) both algorithms lost to the direct kernel (55 and 83 against 43). */
const WINOGRAD_MIN_TILES = 64;
/** Nor on fewer channels: 16 to 16 channels at 32 px (CIFAR ResNets) ran 13-90 % slower. */
const WINOGRAD_MIN_CHANNELS = 32;

/** The candidates a 3x3 stride-1 pass chooses among. */
export const CONV_ALGORITHMS: readonly ConvAlgorithm[] = ['direct', 'winograd2x2', 'winograd4x4'];

/** What runs without a stored choice: Winograd by channels and tile count. */
function defaultAlgorithm(p: ConvProblem): ConvAlgorithm {
  if (Math.min(p.inChannels, p.outChannels) < WINOGRAD_MIN_CHANNELS) return 'direct';
  const tiles = (m: number): number => p.batch * Math.ceil(p.height / m) * Math.ceil(p.width / m);
  return tiles(4) >= WINOGRAD_MIN_TILES ? 'winograd4x4' : tiles(2) >= WINOGRAD_MIN_TILES ? 'winograd2x2' : 'direct';
}

/** The tuner's bench: operands of the problem filled with 0.5 (the global random stream is
 * the user's), padding 1, and forced runs. */
function convBench(p: ConvProblem): TuneBench<ConvAlgorithm> {
  const e = engine();
  const dtype = p.half ? 'float16' : 'float32';
  const x = e.keep(full([p.batch, p.inChannels, p.height, p.width], 0.5, dtype));
  const gy = e.keep(full([p.batch, p.outChannels, p.height, p.width], 0.5, dtype));
  const weightShape = [p.outChannels, p.inChannels, 3, 3];
  const weight = e.keep(full(weightShape, 0.5, dtype));
  const run = {
    forward: () => conv2d(x, weight, { padding: 1 }),
    inputGrad: () => conv2dBackwardInput(gy, weight, x.shape, { padding: 1 }),
    weightGrad: () => conv2dBackwardWeight(x, gy, weightShape, { padding: 1 }),
  }[p.pass];
  return {
    async time(algorithm, reps) {
      return timeRecorded(e, reps, () => {
        const before = forcedAlgorithm;
        forcedAlgorithm = algorithm;
        try {
          return Array.from({ length: reps }, run);
        } finally {
          forcedAlgorithm = before;
        }
      });
    },
    dispose() {
      for (const t of [x, gy, weight]) t.dispose();
    },
  };
}

const CONV_FAMILY: TuneFamily<ConvAlgorithm, ConvProblem> = {
  variants: CONV_ALGORITHMS,
  shapeClass: convShapeClass,
  fallback: defaultAlgorithm,
  bench: convBench,
};

/** The problem of the correlation `g` describes for `pass`, or null where Winograd does not
 * apply (it runs direct). */
function convProblem(g: Conv2dGeometry, pass: ConvProblem['pass'], half: boolean): ConvProblem | null {
  if (!winogradApplies(g) || (pass === 'inputGrad' && (g.padH > 2 || g.padW > 2))) return null;
  const [height, width] = pass === 'inputGrad' ? [g.height, g.width] : [g.outH, g.outW];
  return { kind: 'conv3x3', pass, batch: g.batch, inChannels: g.inChannels, outChannels: g.outChannels, height, width, half };
}

/** The algorithm that runs the pass: forced, else the tuned choice (see tune.ts). */
function algorithmFor(g: Conv2dGeometry, pass: ConvProblem['pass'], half: boolean): ConvAlgorithm {
  const p = convProblem(g, pass, half);
  if (!p) return 'direct';
  if (forcedAlgorithm !== null) return forcedAlgorithm;
  return tunedChoice(engine(), p, CONV_FAMILY);
}

/** The algorithm `conv2d` runs for these operands (`pass` 'inputGrad' or 'weightGrad' for
 * `conv2dBackwardInput` and `conv2dBackwardWeight`): the forced one, a choice stored by
 * autotuning for this adapter, else the default. 'direct' also runs where a Winograd
 * intermediate would exceed the adapter's storage binding. Queues no measurement. */
export function convAlgorithm(
  inputShape: Shape, weightShape: Shape, opts: Conv2dGradOptions = {}, pass: ConvProblem['pass'] = 'forward', dtype: DType = 'float32',
): ConvAlgorithm {
  const p = convProblem(conv2dGeometry(inputShape, weightShape, opts), pass, dtype === 'float16');
  if (!p) return 'direct';
  return forcedAlgorithm ?? storedChoice(engine(), p, CONV_FAMILY);
}

/** The Winograd result of a correlation, or null where it runs direct. */
function viaWinograd(algorithm: ConvAlgorithm, run: (tile: WinogradTile) => Tensor | null): Tensor | null {
  return algorithm === 'direct' ? null : run(TILE[algorithm]);
}

/** Whether the operands of `op` (named, `undefined` for an absent bias) are float16: they
 * must all be float32 or all float16, as in PyTorch, which refuses mixed convolutions. */
function halfOperands(op: string, operands: readonly (readonly [string, Tensor | undefined])[]): boolean {
  const [firstName, first] = operands[0]! as readonly [string, Tensor];
  for (const [name, t] of operands) {
    if (!t) continue;
    checkFloat(op, name, t, true);
    if (t.dtype !== first.dtype) {
      throw new TypeError(`${op}: ${firstName} is ${first.dtype} but ${name} is ${t.dtype}; expected one dtype (cast with .float() or .half(), or run under autocast())`);
    }
  }
  return first.dtype === 'float16';
}

function checkInputScale(t: Tensor, g: Conv2dGeometry): void {
  if (!shapeEq(t.shape, [g.batch, g.inChannels]) && !shapeEq(t.shape, [g.batch, g.inChannels, 1, 1])) {
    throw new RangeError(`conv2d: inputScale must have shape [${g.batch}, ${g.inChannels}] or [${g.batch}, ${g.inChannels}, 1, 1], got ${fmt(t.shape)}`);
  }
}

/** A dense 1x1 convolution without padding: a product over channels at every (sampled)
 * pixel, which the pointwise kernel runs (conv1x1.ts). */
const pointwise = (g: Conv2dGeometry): boolean =>
  g.kernelH === 1 && g.kernelW === 1 && g.groups === 1 && g.padH === 0 && g.padW === 0;

/** `t` contiguous from element 0 of its buffer, where the kernels index weights and biases:
 * a contiguous view at an offset (a slice of a stacked weight) would be read from the
 * start of the buffer, so only a view at offset 0 is used as it is. */
function packed(t: Tensor): Tensor {
  return t.isContiguous && t.offset === 0 ? t.contiguous() : t.clone();
}

/**
 * `torch.nn.functional.conv2d` with an optional fused activation: x [N, C, H, W], weight
 * [out, C/groups, kh, kw], bias [out]. x may be any strided view.
 */
export function conv2d(x: Tensor, weight: Tensor, opts: Conv2dOptions = {}): Tensor {
  const half = halfOperands('conv2d', [['input', x], ['weight', weight], ['bias', opts.bias], ['scale', opts.scale], ['inputScale', opts.inputScale]]);
  const g = conv2dGeometry(x.shape, weight.shape, opts);
  if (opts.bias && !shapeEq(opts.bias.shape, [g.outChannels])) {
    throw new RangeError(`conv2d: bias must have shape [${g.outChannels}], got ${fmt(opts.bias.shape)}`);
  }
  if (opts.scale && !shapeEq(opts.scale.shape, [g.outChannels])) {
    throw new RangeError(`conv2d: scale must have shape [${g.outChannels}], got ${fmt(opts.scale.shape)}`);
  }
  if (opts.activation !== undefined && !(opts.activation in UNARY)) {
    throw new RangeError(`conv2d: unknown activation '${String(opts.activation)}'; expected relu, relu6, gelu, silu, sigmoid, tanh, hardswish or hardsigmoid`);
  }
  const outShape = [g.batch, g.outChannels, g.outH, g.outW];
  if (opts.inputScale) checkInputScale(opts.inputScale, g);
  const strides = [g.strideH, g.strideW] as const;
  if (opts.inputScale && (!pointwise(g) || needsImageRuns([x], [{ shape: outShape, dtype: x.dtype }]) || !pointwiseTakesInputScale(x, strides, half))) {
    const gate = opts.inputScale.reshape([g.batch, g.inChannels, 1, 1]);
    const scaled = mul(x, gate);
    gate.dispose();
    const y = conv2d(scaled, weight, { ...opts, inputScale: undefined });
    scaled.dispose();
    return y;
  }
  if (needsImageRuns([x], [{ shape: outShape, dtype: x.dtype }])) {
    return byImages('conv2d', [x], [{ shape: outShape, dtype: x.dtype }], ([xc]) => [conv2d(xc!, weight, opts)])[0]!;
  }
  if (outShape.some((d) => d === 0)) return Tensor.empty(outShape, x.dtype);
  const cinG = g.inChannels / g.groups;
  const coutG = g.outChannels / g.groups;
  const khw = g.kernelH * g.kernelW;
  const w = packed(weight);
  const b = opts.bias && packed(opts.bias);
  const s = opts.scale && packed(opts.scale);
  if (pointwise(g)) {
    const gate = opts.inputScale && packed(opts.inputScale);
    const out = pointwiseConv({
      src: x, weight: w, stride: strides, inputScale: gate, bias: b, scale: s, act: opts.activation, outC: g.outChannels, inC: g.inChannels,
      wsM: g.inChannels, wsR: 1, half, label: 'conv2d',
    });
    w.dispose();
    b?.dispose();
    s?.dispose();
    gate?.dispose();
    return out;
  }
  const fast = viaWinograd(algorithmFor(g, 'forward', half), (tile) => winogradCorrelation(
    x, w, forwardWalk(g.inChannels), g.outChannels, g.outH, g.outW, g.padH, g.padW, tile,
    { bias: b, scale: s, act: opts.activation },
  ));
  if (fast) {
    w.dispose();
    b?.dispose();
    s?.dispose();
    return fast;
  }
  const out = Tensor.empty(outShape, x.dtype);
  dispatchTapConv({
    src: x, weight: w, bias: b, scale: s, out, groups: g.groups,
    mG: coutG, rG: cinG, wsM: cinG * khw, wsR: khw, wsG: coutG * cinG * khw,
    kh: g.kernelH, kw: g.kernelW, gridH: g.outH, gridW: g.outW,
    rows: { step: g.strideH, base: -g.padH, mult: g.dilationH, div: 1, start: 0, stride: 1 },
    cols: { step: g.strideW, base: -g.padW, mult: g.dilationW, div: 1, start: 0, stride: 1 },
    act: opts.activation,
    label: 'conv2d',
    half,
  });
  w.dispose();
  b?.dispose();
  s?.dispose();
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
  const half = halfOperands('conv2dBackwardInput', [['gradOut', gradOut], ['weight', weight]]);
  const g = conv2dGeometry(inputShape, weight.shape, opts);
  const outShape = [g.batch, g.outChannels, g.outH, g.outW];
  if (!shapeEq(gradOut.shape, outShape)) {
    throw new RangeError(`conv2dBackwardInput: gradOut has shape ${fmt(gradOut.shape)} but input ${fmt(inputShape)} and weight ${fmt(weight.shape)} give an output of ${fmt(outShape)}`);
  }
  if (needsImageRuns([gradOut], [{ shape: inputShape, dtype: gradOut.dtype }])) {
    return byImages('conv2dBackwardInput', [gradOut], [{ shape: inputShape, dtype: gradOut.dtype }],
      ([gc]) => [conv2dBackwardInput(gc!, weight, [gc!.shape[0]!, ...inputShape.slice(1)], opts)])[0]!;
  }
  if (inputShape.some((d) => d === 0)) return Tensor.empty(inputShape, gradOut.dtype);
  const cinG = g.inChannels / g.groups;
  const coutG = g.outChannels / g.groups;
  const khw = g.kernelH * g.kernelW;
  const w = packed(weight);
  if (pointwise(g) && g.strideH === 1 && g.strideW === 1) {
    const gradIn = pointwiseConv({
      src: gradOut, weight: w, outC: g.inChannels, inC: g.outChannels, wsM: 1, wsR: g.inChannels, half, label: 'conv2dBackwardInput',
    });
    w.dispose();
    return gradIn;
  }
  // With stride 1 the input gradient is the correlation of gradOut, padded by 2 - pad, with
  // the filters transposed and turned by 180 degrees.
  const fast = viaWinograd(algorithmFor(g, 'inputGrad', half), (tile) => winogradCorrelation(
    gradOut, w, inputGradWalk(g.inChannels), g.inChannels, g.height, g.width, 2 - g.padH, 2 - g.padW, tile,
    { bias: undefined, scale: undefined, act: undefined },
  ));
  if (fast) {
    w.dispose();
    return fast;
  }
  const gradIn = Tensor.empty(inputShape, gradOut.dtype);
  for (let rh = 0; rh < Math.min(g.strideH, g.height); rh++) {
    for (let rw = 0; rw < Math.min(g.strideW, g.width); rw++) {
      dispatchTapConv({
        src: gradOut, weight: w, bias: undefined, scale: undefined, out: gradIn, groups: g.groups,
        mG: cinG, rG: coutG, wsM: khw, wsR: cinG * khw, wsG: coutG * cinG * khw,
        kh: g.kernelH, kw: g.kernelW,
        gridH: Math.ceil((g.height - rh) / g.strideH), gridW: Math.ceil((g.width - rw) / g.strideW),
        rows: { step: 1, base: rh + g.padH, mult: -g.dilationH, div: g.strideH, start: rh, stride: g.strideH },
        cols: { step: 1, base: rw + g.padW, mult: -g.dilationW, div: g.strideW, start: rw, stride: g.strideW },
        act: undefined,
        label: 'conv2dBackwardInput',
        half,
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

/** `half`: x and gradOut are float16; `halfOut`: so is y (else it holds float32 partial
 * sums, or the float32 gradient). */
function weightGradCode(params: Params, tm: number, tn: number, half: boolean, halfOut: boolean): string {
  return /* wgsl */ `${enableF16(half)}
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: ${storageArray(half)};
@group(0) @binding(2) var<storage, read> go: ${storageArray(half)};
@group(0) @binding(3) var<storage, read_write> y: ${storageArray(halfOut)};
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
      let x${j} = select(0.0, ${widen(half, `x[select(p.xo, xr${j} + ow * p.sw * p.xsw, v${j})]`)}, v${j});`)}
${lines(tm, (i) => `      let g${i} = ${widen(half, `go[gb${i} + gr + ow * p.gosw]`)};`)}
${grid2(tm, tn, (i, j) => `      a${i}_${j} = fma(g${i}, x${j}, a${i}_${j});`)}
    }
  }
  let yb = split * p.wsize + (g * p.mG + cg) * p.entries;
${lines(tm, (i) => `  if (cg + ${i} < p.mG) {
${lines(tn, (j) => `    if (ev${j}) { y[yb + ${i} * p.entries + e${j}] = ${stored(halfOut, `a${i}_${j}`)}; }`)}
  }`)}
}`;
}

/** Sums float32 partial gradients into y, float16 when `half`. */
const SUM_SPLITS_CODE = (params: Params, half: boolean): string => /* wgsl */ `${enableF16(half)}
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: ${storageArray(half)};
@compute @workgroup_size(64)
fn main(${MAIN_ARGS}) {
  let i = ${linearIndex()};
  if (i >= p.n) { return; }
  var s = 0.0;
  for (var k = 0u; k < p.splits; k++) { s += part[k * p.n + i]; }
  y[i] = ${stored(half, 's')};
}`;

/** Partial weight gradients, `splits` of them stacked in float32 (one: the gradient itself,
 * in its own dtype). */
interface WeightGradParts {
  target: Tensor;
  splits: number;
}

/** Bindings of the weight gradient's operands: x and gradOut through their views, the
 * (fresh) target whole. */
function weightGradBindings(x: Tensor, gradOut: Tensor, target: Tensor): { x: BoundElements; go: BoundElements; buffers: StorageBinding[] } {
  const half = x.dtype === 'float16';
  const xb = x.binding('conv2dBackwardWeight', half);
  const gb = gradOut.binding('conv2dBackwardWeight', half);
  return { x: xb, go: gb, buffers: [xb.resource, gb.resource, target.binding('conv2dBackwardWeight', target.dtype === 'float16').resource] };
}

function dispatchWeightGrad(x: Tensor, gradOut: Tensor, g: Conv2dGeometry, gradW: Tensor): WeightGradParts {
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
  // The partial weights are bound whole, so no more of them than fit one binding.
  const fit = Math.floor((Math.floor(e.bindingLimit / 16) * 16) / (4 * gradW.size));
  const splits = Math.max(1, Math.min(rows, fit, Math.ceil(WGRAD_TARGET_WORKGROUPS / (cblocks * eblocks))));
  const rowsPerSplit = Math.ceil(rows / splits);
  const usedSplits = Math.ceil(rows / rowsPerSplit);
  const total = cblocks * eblocks * usedSplits;
  const target = usedSplits > 1 ? Tensor.empty([usedSplits, gradW.size]) : gradW;
  const bound = weightGradBindings(x, gradOut, target);
  const params = strideParams(strideParams(new Params(), 'x', x, bound.x), 'go', gradOut, bound.go)
    .i32('h', g.height).i32('w', g.width).i32('oh', g.outH).i32('ow', g.outW)
    .i32('kh', g.kernelH).i32('kw', g.kernelW)
    .i32('sh', g.strideH).i32('sw', g.strideW).i32('ph', g.padH).i32('pw', g.padW).i32('dh', g.dilationH).i32('dw', g.dilationW)
    .i32('mG', coutG).i32('rG', cinG).i32('entries', entries).i32('wsize', gradW.size)
    .i32('rows', rows).i32('rowsPerSplit', rowsPerSplit)
    .i32('cblocks', cblocks).i32('bpg', bpg).i32('eblocks', eblocks).i32('total', total);
  const [half, halfOut] = [x.dtype === 'float16', target.dtype === 'float16'];
  e.dispatch({
    key: `convWeightGrad/${tm}x${tn}/${half ? 'f16' : 'f32'}/${halfOut ? 'f16' : 'f32'}`,
    get code() {
      return weightGradCode(params, tm, tn, half, halfOut);
    },
    params,
    buffers: bound.buffers,
    workgroups: e.grid(total),
    label: 'conv2dBackwardWeight',
  });
  return { target, splits: usedSplits };
}

/**
 * The weight gradient when each output channel reads one input channel (depthwise): the
 * general kernel spreads lanes over the kh * kw weight entries (9 of 16 lanes busy for 3x3)
 * and loads one x value per multiply-add. Here each invocation walks down a strip of
 * `PLANE_TN` output columns of one image and channel, like `planeConvCode`, keeping the x rows
 * under the kernel in registers, and sums gradOut * x for every tap into partial gradients,
 * one per strip, that the sum pass adds up.
 */
function planeWeightGradCode(params: Params, g: Conv2dGeometry, vecX: boolean, vecG: boolean, half: boolean, halfOut: boolean): string {
  const tn = PLANE_TN;
  const rowOff = range(g.kernelH).map((kh) => kh * g.dilationH - g.padH);
  const colOff = range(g.kernelW).map((kw) => kw * g.dilationW - g.padW);
  const xw = rowWindow({
    name: 'x', buf: 'x', vec: vecX, half, base: 'xb', rowStride: 'p.xsh', colStride: 'p.xsw', height: 'p.h', width: 'p.w', col0: 'xc0',
    cols: [...new Set(colOff.flatMap((off) => range(tn).map((j) => j * g.strideW + off)))].sort((a, b) => a - b),
  }, rowOff, g.strideH);
  const gy = rowReader({
    name: 'gy', buf: 'go', vec: vecG, half, base: 'gb', rowStride: 'p.gosh', colStride: 'p.gosw', height: 'p.oh', width: 'p.ow', col0: 'c0', cols: range(tn),
  });
  const khw = g.kernelH * g.kernelW;
  const fmas = range(g.kernelH).flatMap((kh) => range(g.kernelW).flatMap((kw) => range(tn).map((j) =>
    `a${kh * g.kernelW + kw} = fma(${gy.at('gy', j)}, ${xw.at(rowOff[kh]!, j * g.strideW + colOff[kw]!)}, a${kh * g.kernelW + kw});`)));
  return /* wgsl */ `${enableF16(half)}
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: ${storageArray(half, vecX)};
@group(0) @binding(2) var<storage, read> go: ${storageArray(half, vecG)};
@group(0) @binding(3) var<storage, read_write> y: ${storageArray(halfOut)};
@compute @workgroup_size(${PLANE_LANES})
fn main(${MAIN}) {
  let q = i32(wid.x + wid.y * nwg.x) * ${PLANE_LANES} + i32(lid);
  let okb = q < p.total;
  let qc = min(q, p.total - 1);
  let strip = qc % p.colBlocks;
  let rb = (qc / p.colBlocks) % p.rowBlocks;
  let n = (qc / (p.colBlocks * p.rowBlocks)) % p.n;
  let o = qc / (p.colBlocks * p.rowBlocks * p.n);
  let c0 = strip * ${tn};
  let r0 = rb * p.rowsPer;
  let r1 = select(r0 - ${xw.warmup}, min(r0 + p.rowsPer, p.oh), okb);
  let xb = p.xo + n * p.xsn + (o / p.mG) * p.xsc;
  let gb = p.goo + n * p.gosn + o * p.gosc;
  let xc0 = c0 * ${g.strideW};
${range(khw).map((k) => `  var a${k} = 0.0;`).join('\n')}
  ${gy.checks}
  ${xw.init}
  for (var i = r0 - ${xw.warmup}; i < r1; i++) {
    ${xw.load('i')}
    if (i >= r0) {
      ${gy.read('gy', 'i', true)}
      ${fmas.join('\n      ')}
    }
    ${xw.advance}
  }
  if (okb) {
    let yb = ((n * p.rowBlocks + rb) * p.colBlocks + strip) * p.wsize + o * ${khw};
${range(khw).map((k) => `    y[yb + ${k}] = ${stored(halfOut, `a${k}`)};`).join('\n')}
  }
}`;
}

function dispatchPlaneWeightGrad(x: Tensor, gradOut: Tensor, g: Conv2dGeometry, gradW: Tensor): WeightGradParts {
  const e = engine();
  const colBlocks = Math.ceil(g.outW / PLANE_TN);
  const { rowsPer, rowBlocks } = rowBlocking(g.outH, g.batch * g.outChannels * colBlocks);
  const splits = g.batch * rowBlocks * colBlocks;
  const total = g.outChannels * splits;
  const target = splits > 1 ? Tensor.empty([splits, gradW.size]) : gradW;
  const bound = weightGradBindings(x, gradOut, target);
  const params = strideParams(strideParams(new Params(), 'x', x, bound.x), 'go', gradOut, bound.go)
    .i32('h', g.height).i32('w', g.width).i32('oh', g.outH).i32('ow', g.outW).i32('n', g.batch)
    .i32('mG', g.outChannels / g.groups).i32('colBlocks', colBlocks).i32('rowBlocks', rowBlocks).i32('rowsPer', rowsPer)
    .i32('wsize', gradW.size).i32('total', total);
  const vecX = g.strideW === 1 && vec4Rows(x, bound.x.offset);
  const vecG = vec4Rows(gradOut, bound.go.offset);
  const half = x.dtype === 'float16';
  const halfOut = target.dtype === 'float16';
  e.dispatch({
    key: `planeWeightGrad/${g.kernelH}x${g.kernelW}/s${g.strideH},${g.strideW}/p${g.padH},${g.padW}/d${g.dilationH},${g.dilationW}/` +
      `${vecX ? 'v' : 's'}${vecG ? 'v' : 's'}/${half ? 'f16' : 'f32'}/${halfOut ? 'f16' : 'f32'}`,
    get code() { return planeWeightGradCode(params, g, vecX, vecG, half, halfOut); },
    params,
    buffers: bound.buffers,
    workgroups: e.grid(Math.ceil(total / PLANE_LANES)),
    label: 'conv2dBackwardWeight',
  });
  return { target, splits };
}

/**
 * The gradient of `conv2d` with respect to its weight: gradOut [N, out, OH, OW] correlated
 * with x, summed over the batch and every output pixel. When the weight is small next to
 * that reduction, the pixel rows are split into chunks reduced into partial weights first.
 */
export function conv2dBackwardWeight(x: Tensor, gradOut: Tensor, weightShape: Shape, opts: Conv2dGradOptions = {}): Tensor {
  halfOperands('conv2dBackwardWeight', [['input', x], ['gradOut', gradOut]]);
  const g = conv2dGeometry(x.shape, weightShape, opts);
  const outShape = [g.batch, g.outChannels, g.outH, g.outW];
  if (!shapeEq(gradOut.shape, outShape)) {
    throw new RangeError(`conv2dBackwardWeight: gradOut has shape ${fmt(gradOut.shape)} but input ${fmt(x.shape)} and weight ${fmt(weightShape)} give an output of ${fmt(outShape)}`);
  }
  if (needsImageRuns([x, gradOut], [])) return weightGradByImages(x, gradOut, g, weightShape, opts);
  return weightGrad(x, gradOut, g, weightShape, x.dtype);
}

/** The weight gradient in `dtype`: x's, or float32 for the partial sums of runs of images. */
function weightGrad(x: Tensor, gradOut: Tensor, g: Conv2dGeometry, weightShape: Shape, dtype: DType): Tensor {
  if (weightShape.some((d) => d === 0)) return Tensor.empty(weightShape, dtype);
  const fast = viaWinograd(algorithmFor(g, 'weightGrad', x.dtype === 'float16'), (tile) => winogradWeightGrad(x, gradOut, g.padH, g.padW, tile, dtype));
  if (fast) return fast;
  const gradW = Tensor.empty(weightShape, dtype);
  const plane = g.inChannels === g.groups && g.kernelH * g.kernelW <= PLANE_MAX_TAPS;
  const { target, splits } = plane ? dispatchPlaneWeightGrad(x, gradOut, g, gradW) : dispatchWeightGrad(x, gradOut, g, gradW);
  if (target !== gradW) {
    const e = engine();
    const half = dtype === 'float16';
    const sum = new Params().u32('n', gradW.size).u32('splits', splits);
    e.dispatch({
      key: `conv2dSumSplits/${half ? 'f16' : 'f32'}`,
      get code() { return SUM_SPLITS_CODE(sum, half); },
      params: sum,
      buffers: [target.buffer, gradW.binding('conv2dBackwardWeight.sum', half).resource],
      workgroups: e.grid(Math.ceil(gradW.size / WG)),
      label: 'conv2dBackwardWeight.sum',
    });
    target.dispose();
  }
  return gradW;
}

/** The weight gradient as the sum of those of runs of images, when x or gradOut is over
 * the binding limit (the weight gradient itself is not split). float16 runs are summed in
 * float32 and rounded once. */
function weightGradByImages(x: Tensor, gradOut: Tensor, g: Conv2dGeometry, weightShape: Shape, opts: Conv2dGradOptions): Tensor {
  let sum: Tensor | null = null;
  for (const { start, count } of imageRuns('conv2dBackwardWeight', g.batch, [x, gradOut])) {
    const xc = imageSlice(x, start, count);
    const gc = imageSlice(gradOut, start, count);
    const part = weightGrad(xc, gc, conv2dGeometry(xc.shape, weightShape, opts), weightShape, 'float32');
    xc.dispose();
    gc.dispose();
    sum = addPart(sum, part);
  }
  if (x.dtype !== 'float16') return sum!;
  const rounded = cast(sum!, 'float16');
  sum!.dispose();
  return rounded;
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
    const c = Math.floor(i / plane) % g.outChannels;
    const v = out.data[i]! * (opts.scale ? opts.scale.data[c]! : 1) + (opts.bias ? opts.bias.data[c]! : 0);
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
