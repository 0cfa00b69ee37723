/**
 * Pointwise (1x1, dense, unpadded, any stride) convolutions, the bulk of MobileNet- and
 * EfficientNet-class networks: out[n, o, p] = sum_c W[o, c] src[n, c, p] over the pixels p of each image plane,
 * with conv2d's scale / bias / activation epilogue. The general correlation kernel walks
 * kernel taps and recovers every pixel's row and column by integer division, which lavapipe
 * runs lane by lane; with 16-32 input channels (MobileNetV2's expansions at 112 px) that
 * indexing outweighs the multiply-adds. Here an invocation owns a tile of output channels
 * times consecutive pixels, read and written as vec4s where the plane allows, and the
 * reduction loop does nothing but loads and fused multiply-adds.
 *
 * The same kernel computes the input gradient of a 1x1 convolution (the weight read through
 * transposed strides), so both passes avoid the general kernel.
 *
 * The weights of an invocation's channels are the same for every invocation of a workgroup:
 * with subgroups, lanes 0-7 load them and broadcast (weight-sharing.ts).
 */
import { engine } from '../engine.js';
import { Params } from '../params.js';
import { Tensor } from '../tensor.js';
import type { ConvActivation } from './conv2d.js';
import { UNARY } from './elementwise.js';
import { subgroupWgsl, weightSharing, type WeightSharing } from './weight-sharing.js';
import { enableF16, MATH_HELPERS, storageArray, stored, widen } from './wgsl.js';

/**
 * How the invocations cover the output. `vec`: contiguous planes of a multiple of 4 pixels,
 * aligned; an invocation's pixels lie in one plane and move as vec4s. `flat` (7x7 planes,
 * strided views): the pixels of all images are numbered together, so small planes still fill
 * the lanes, and each pixel's image, row and column are found once, before the reduction
 * loop. `few` (a handful of pixels, as squeeze-excitation's 1x1 planes): lanes spread over
 * output channels instead, four each, since with lanes over pixels all but one would idle
 * through the whole reduction.
 */
type Walk = 'vec' | 'flat' | 'few';

/** Output channels and pixels per invocation (16 x 8 measured fastest of 8-64 x 4-16 on
 * MobileNetV2's and EfficientNet-B0's shapes), and invocations per workgroup, along pixels
 * except in `few`. */
const TILES: Record<Walk, { tm: number; tn: number }> = { vec: { tm: 16, tn: 8 }, flat: { tm: 16, tn: 8 }, few: { tm: 4, tn: 4 } };
const PW_LANES = 16;
/** Pixels (images x plane) up to which the `few` walk runs. */
const FEW_PIXELS = 16;

export interface Pointwise {
  src: Tensor;
  weight: Tensor;
  bias?: Tensor | undefined;
  scale?: Tensor | undefined;
  act?: ConvActivation | undefined;
  /** Output channels, and the reduction channels summed over. */
  outC: number;
  inC: number;
  /** Weight element (o, c) is at o * wsM + c * wsR. */
  wsM: number;
  wsR: number;
  /** [N, inC], contiguous from offset 0: multiplies input channel c of image n before the
   * product (squeeze-excitation's gate folded into the convolution after it). Only the `vec`
   * walk takes it, loading it once per channel for the whole invocation; where pixels may span
   * images a per-pixel gate load measured slower than a multiply pass of its own. */
  inputScale?: Tensor | undefined;
  /** Reads every stride-th row and column of `src` (a 1x1 convolution with a stride). */
  stride?: readonly [number, number];
  half: boolean;
  label: string;
}

const range = (n: number): number[] => [...Array(n).keys()];

function pointwiseCode(params: Params, d: Pointwise, walk: Walk, variant: WeightSharing): string {
  const { half, act } = d;
  const { tm, tn } = TILES[walk];
  const sg = variant === 'subgroup';
  // The weight offsets an invocation loads from: one per channel, or (subgroup) one per 8.
  const weightRows = sg
    ? range(tm / 8).map((k) => `  let wl${k} = min(c0 + ${8 * k} + i32(sgi % 8u), p.outC - 1) * p.wsM;`)
    : range(tm).map((i) => `  let w${i} = min(c0 + ${i}, p.outC - 1) * p.wsM;`);
  const weights = sg
    ? [
      ...range(tm / 8).map((k) => `let u${k} = ${widen(half, `wt[wl${k} + wc]`)};`),
      ...range(tm).map((i) => `let v${i} = subgroupBroadcast(u${i >> 3}, ${i & 7}u);`),
    ]
    : range(tm).map((i) => `let v${i} = ${widen(half, `wt[w${i} + wc]`)};`);
  const vec = walk === 'vec';
  const tq = tn / 4;
  const epilogue = (v: string): string => (act ? UNARY[act].wgsl(v) : v);
  const names = [...(d.bias ? ['bias'] : []), ...(d.scale ? ['scale'] : []), ...(d.inputScale ? ['gate'] : [])];
  const value = (i: number, q: number): string => {
    const lanes = range(4).map((t) => {
      let v = `a${i}_${q}[${t}]`;
      if (d.scale) v = `${v} * s${i}`;
      if (d.bias) v = `${v} + b${i}`;
      return epilogue(`(${v})`);
    });
    return `vec4<f32>(${lanes.join(', ')})`;
  };
  const pixels = vec
    ? [
      'let n = pb / p.pblocks;',
      `let p0 = ((pb % p.pblocks) * ${PW_LANES} + i32(lid)) * ${tn};`,
      'let xb = p.so + n * p.ssn;',
      // Clamped into the plane for the lanes past its end (their results are not stored).
      ...range(tq).map((q) => `let o${q} = (xb + min(p0 + ${4 * q}, p.hw - 4)) / 4;`),
    ]
    : [
      `let p0 = ${walk === 'few' ? 'pb' : `(pb * ${PW_LANES} + i32(lid))`} * ${tn};`,
      ...range(tn).flatMap((j) => [
        `let q${j} = min(p0 + ${j}, p.npix - 1);`,
        `let n${j} = q${j} / p.hw;`,
        `let r${j} = q${j} - n${j} * p.hw;`,
        `let o${j} = p.so + n${j} * p.ssn + (r${j} / p.w) * p.ssh + (r${j} % p.w) * p.ssw;`,
      ]),
    ];
  const load = (q: number): string => vec
    ? `let x${q} = ${widen(half, `src[o${q} + xo]`, true)}${d.inputScale ? ' * g' : ''};`
    : `let x${q} = vec4<f32>(${range(4).map((t) => widen(half, `src[o${4 * q + t} + xo]`)).join(', ')});`;
  const store = (i: number, q: number): string[] => vec
    ? [`if (p0 + ${4 * q} < p.hw) { y[(yb + ${i} * p.hw + p0) / 4 + ${q}] = ${stored(half, value(i, q), true)}; }`]
    : range(4).map((t) => {
      const j = 4 * q + t;
      return `if (p0 + ${j} < p.npix) { y[(n${j} * p.outC + c0 + ${i}) * p.hw + r${j}] = ${stored(half, `${value(i, q)}[${t}]`)}; }`;
    });
  const sub = subgroupWgsl(variant);
  return /* wgsl */ `${enableF16(half)}
${sub.enable}
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: ${storageArray(half, vec)};
@group(0) @binding(2) var<storage, read> wt: ${storageArray(half)};
${names.map((n, i) => `@group(0) @binding(${3 + i}) var<storage, read> ${n}: ${storageArray(half)};`).join('\n')}
@group(0) @binding(${3 + names.length}) var<storage, read_write> y: ${storageArray(half, vec)};
${act ? MATH_HELPERS : ''}
@compute @workgroup_size(${PW_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32${sub.builtin}) {
  let wgi = i32(wid.x + wid.y * nwg.x);
  if (wgi >= p.total) { return; }
  // Consecutive workgroups take the channel blocks of the same pixels, which stay in cache.
  let cb = wgi % p.cblocks;
  let pb = wgi / p.cblocks;
  let c0 = ${walk === 'few' ? `(cb * ${PW_LANES} + i32(lid))` : 'cb'} * ${tm};
${pixels.map((l) => `  ${l}`).join('\n')}
${weightRows.join('\n')}
${range(tm).flatMap((i) => range(tq).map((q) => `  var a${i}_${q} = vec4<f32>();`)).join('\n')}
  var xo = 0;
  for (var c = 0; c < p.inC; c++) {
${d.inputScale ? `    let g = ${widen(half, 'gate[n * p.inC + c]')};\n` : ''}${range(tq).map((q) => `    ${load(q)}`).join('\n')}
    let wc = c * p.wsR;
${weights.map((l) => `    ${l}`).join('\n')}
${range(tm).flatMap((i) => range(tq).map((q) => `    a${i}_${q} = fma(vec4<f32>(v${i}), x${q}, a${i}_${q});`)).join('\n')}
    xo += ${vec ? 'p.ssc / 4' : 'p.ssc'};
  }
${vec ? '  let yb = (n * p.outC + c0) * p.hw;\n' : ''}${range(tm).map((i) => `  if (c0 + ${i} < p.outC) {
${d.scale ? `    let s${i} = ${widen(half, `scale[c0 + ${i}]`)};\n` : ''}${d.bias ? `    let b${i} = ${widen(half, `bias[c0 + ${i}]`)};\n` : ''}${range(tq).flatMap((q) => store(i, q)).map((l) => `    ${l}`).join('\n')}
  }`).join('\n')}
}`;
}

/** The plane of `src` ([N, C, H, W], its binding starting `offset` elements in) that the
 * kernel reads with `stride`: its output sizes, strides per output step, and walk. */
function planeOf(src: Tensor, offset: number, stride: readonly [number, number]) {
  const [N, , srcH, srcW] = src.shape as [number, number, number, number];
  const [sh, sw] = stride;
  const H = Math.ceil(srcH / sh);
  const W = Math.ceil(srcW / sw);
  const hw = H * W;
  const [ssn, ssc] = src.strides as [number, number];
  const ssh = src.strides[2]! * sh;
  const ssw = src.strides[3]! * sw;
  const planeContiguous = (ssw === 1 || W === 1) && (ssh === W || H === 1);
  const npix = N * hw;
  const walk: Walk = planeContiguous && hw % 4 === 0 && [offset, ssn, ssc].every((v) => v % 4 === 0)
    ? 'vec'
    : npix <= FEW_PIXELS ? 'few' : 'flat';
  return { N, H, W, hw, npix, ssn, ssc, ssh, ssw, walk };
}

/** Whether `pointwiseConv` can apply an input scale to `src` read with `stride` (its vec4
 * walk); elsewhere the caller multiplies first. */
export function pointwiseTakesInputScale(src: Tensor, stride: readonly [number, number], half: boolean): boolean {
  return planeOf(src, src.binding('conv2d', half).offset, stride).walk === 'vec';
}

/** Runs the pointwise product of `d` (its source any strided [N, C, H, W] view) into a new
 * [N, outC, ceil(H / stride), ceil(W / stride)] tensor. The caller packs the weight, bias,
 * scale and input scale from offset 0, and gives an input scale only where
 * `pointwiseTakesInputScale`. */
export function pointwiseConv(d: Pointwise): Tensor {
  const src = d.src.binding(d.label, d.half);
  const { N, H, W, hw, npix, ssn, ssc, ssh, ssw, walk } = planeOf(d.src, src.offset, d.stride ?? [1, 1]);
  const out = Tensor.empty([N, d.outC, H, W], d.src.dtype);
  if (out.size === 0) return out;
  if (d.inputScale && walk !== 'vec') throw new Error(`pointwiseConv: an input scale needs the vec4 walk, not '${walk}'`);
  const e = engine();
  const { tm, tn } = TILES[walk];
  const few = walk === 'few';
  // In the few walk each lane has channels of its own: nothing to share.
  const variant: WeightSharing = few ? 'lanes' : weightSharing();
  const cblocks = Math.ceil(d.outC / (tm * (few ? PW_LANES : 1)));
  const pblocks = Math.ceil((walk === 'vec' ? hw : npix) / (tn * (few ? 1 : PW_LANES)));
  const total = cblocks * pblocks * (walk === 'vec' ? N : 1);
  const params = new Params()
    .i32('so', src.offset).i32('ssn', ssn).i32('ssc', ssc).i32('ssh', ssh).i32('ssw', ssw)
    .i32('w', W).i32('hw', hw).i32('npix', npix)
    .i32('outC', d.outC).i32('inC', d.inC).i32('wsM', d.wsM).i32('wsR', d.wsR)
    .i32('cblocks', cblocks).i32('pblocks', pblocks).i32('total', total);
  const rest = [d.weight, ...[d.bias, d.scale, d.inputScale].filter((t): t is Tensor => t !== undefined), out].map((t) => t.binding(d.label, d.half).resource);
  e.dispatch({
    key: `conv1x1/${walk}/${variant}/${tm}x${tn}/${d.half ? 'f16' : 'f32'}/${d.bias ? 'b' : ''}${d.scale ? 's' : ''}${d.inputScale ? 'g' : ''}/${d.act ?? '-'}`,
    get code() {
      return pointwiseCode(params, d, walk, variant);
    },
    params,
    buffers: [src.resource, ...rest],
    workgroups: e.grid(total),
    label: d.label,
  });
  return out;
}
