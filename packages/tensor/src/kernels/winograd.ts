/**
 * 3x3 stride-1 convolutions by Winograd's minimal filtering (Lavin and Gray, 2015), the
 * algorithm cuDNN and oneDNN pick for such layers. Each output tile of m x m pixels comes
 * from an (m+2) x (m+2) input tile: the input tiles and the weights are transformed
 * (V = Bᵀ d B, U = G g Gᵀ), every one of the (m+2)² transformed positions is a matrix
 * product over the input channels (M = U V, run by the matmul kernels), and the output
 * transform Aᵀ M A gives the tile. F(4x4, 3x3) does 36 multiplies per channel pair where
 * the direct convolution does 144, so the product, which is most of the time, shrinks by 4
 * at the price of three memory-bound passes; F(2x2, 3x3) shrinks it by 2.25 with smaller
 * transforms and rounding closer to the direct sum. The input gradient is the same
 * correlation with the filters transposed and turned; the weight gradient follows from the
 * forward pass being linear in the filters (see `winogradWeightGrad`).
 *
 * The transforms compute in f32 and the intermediate tensors are float32 for float16
 * operands too (F(4x4)'s transformed values grow to ~100x the inputs, past where f16
 * keeps three digits); the result is stored in the operands' dtype.
 */
import { engine, type StorageBinding } from '../engine.js';
import { Params } from '../params.js';
import { Tensor } from '../tensor.js';
import { matmul } from './matmul.js';
import { UNARY } from './elementwise.js';
import { addPart } from './batches.js';
import { enableF16, linearIndex, MAIN_ARGS, MATH_HELPERS, storageArray, stored, WG, widen } from './wgsl.js';
import type { Conv2dGeometry, ConvActivation } from './conv2d.js';

/** Output tile side: F(2x2, 3x3) or F(4x4, 3x3). */
export type WinogradTile = 2 | 4;

interface Transform {
  /** Input transform Bᵀ, α x α. */
  BT: readonly (readonly number[])[];
  /** Weight transform G, α x 3. */
  G: readonly (readonly number[])[];
  /** Output transform Aᵀ, m x α. */
  AT: readonly (readonly number[])[];
}

/** Lavin and Gray's matrices, interpolating at 0, ±1 (and ±2, ±1/2 for m = 4) and infinity. */
const TRANSFORMS: Record<WinogradTile, Transform> = {
  2: {
    BT: [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
    G: [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
    AT: [[1, 1, 1, 0], [0, 1, -1, -1]],
  },
  4: {
    BT: [
      [4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
      [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1],
    ],
    G: [
      [1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
      [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1],
    ],
    AT: [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
  },
};

const range = (n: number): number[] => [...Array(n).keys()];

/** Σ coefs[k] * terms[k] as WGSL, skipping zero coefficients and multiplying by none of ±1. */
function combination(coefs: readonly number[], terms: readonly string[]): string {
  const parts: string[] = [];
  coefs.forEach((c, k) => {
    if (c === 0) return;
    const mag = Math.abs(c);
    const term = mag === 1 ? terms[k]! : `${Number.isInteger(mag) ? `${mag}.0` : String(mag)} * ${terms[k]!}`;
    parts.push(parts.length === 0 ? (c < 0 ? `-${term}` : term) : `${c < 0 ? '-' : '+'} ${term}`);
  });
  return parts.length === 0 ? '0.0' : parts.join(' ');
}

/** WGSL lines computing `out` = L · X · Rᵀ for the named matrix X (rows x cols of `x{i}_{j}`
 * names): L is p x rows, R is q x cols; `out{i}_{j}` are declared as lets. */
function sandwich(L: readonly (readonly number[])[], R: readonly (readonly number[])[], x: string, out: string, rows: number, cols: number): string {
  const code: string[] = [];
  for (let i = 0; i < L.length; i++) {
    for (let j = 0; j < cols; j++) {
      code.push(`  let ${out}h${i}_${j} = ${combination(L[i]!, range(rows).map((k) => `${x}${k}_${j}`))};`);
    }
  }
  for (let i = 0; i < L.length; i++) {
    for (let j = 0; j < R.length; j++) {
      code.push(`  let ${out}${i}_${j} = ${combination(R[j]!, range(cols).map((k) => `${out}h${i}_${k}`))};`);
    }
  }
  return code.join('\n');
}

/** Stores the α x α values `{name}{y}_{x}` of invocation i, one position per slab of
 * p.total values, as the matmul reads them ([α², rows, cols]). */
function scatter(name: string, a: number): string {
  return range(a).flatMap((y) => range(a).map((x) => `  ${name}[${y * a + x} * p.total + i] = ${name}${y}_${x};`)).join('\n');
}

/** Loads the α x α values `{name}{y}_{x}` of invocation i from `src`, as `scatter` stored them. */
function gather(name: string, src: string, a: number): string {
  return range(a).flatMap((y) => range(a).map((x) => `  let ${name}${y}_${x} = ${src}[${y * a + x} * p.total + i];`)).join('\n');
}

/** The image `n` and the top-left output position (y0, x0), shifted by (offY, offX), of tile
 * q = i % p.tiles (a WGSL expression over p.tiles, p.planeTiles and p.tilesW). */
function tileOrigin(m: number, offY = '', offX = ''): string {
  return `  let q = i % p.tiles;
  let n = q / p.planeTiles;
  let r = q % p.planeTiles;
  let y0 = (r / p.tilesW) * ${m}${offY};
  let x0 = (r % p.tilesW) * ${m}${offX};`;
}

/** A storage buffer of a per-item kernel: its WGSL name and array type, and what it binds
 * (the last one is the output, bound read-write). */
interface KernelBuffer {
  name: string;
  type: string;
  resource: StorageBinding;
}

/** One invocation per item i < `total` (`params` holds it as p.total), with `buffers`
 * declared in order after the uniforms; `body` is the WGSL after the bounds check. */
function dispatchPerItem(key: string, params: Params, total: number, half: boolean, buffers: readonly KernelBuffer[], body: () => string, helpers = ''): void {
  const e = engine();
  e.dispatch({
    key,
    get code() {
      return /* wgsl */ `${enableF16(half)}
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
${buffers.map((b, k) => `@group(0) @binding(${k + 1}) var<storage, ${k === buffers.length - 1 ? 'read_write' : 'read'}> ${b.name}: ${b.type};`).join('\n')}
${helpers}
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let i = i32(${linearIndex()});
  if (i >= p.total) { return; }
${body()}
}`;
    },
    params,
    buffers: buffers.map((b) => b.resource),
    workgroups: e.grid(Math.ceil(total / WG)),
    label: 'conv2d',
  });
}

/** Whether the Winograd path computes `g`: a dense 3x3 correlation with stride 1. */
export function winogradApplies(g: Conv2dGeometry): boolean {
  return g.kernelH === 3 && g.kernelW === 3 && g.strideH === 1 && g.strideW === 1 &&
    g.dilationH === 1 && g.dilationW === 1 && g.groups === 1;
}

/** Where a weight [O', I', 3, 3] puts tap (ky, kx) of the filter taken from output channel o
 * to input channel i: `base + o * so + i * si + ky * sy + kx * sx`. The input gradient reads
 * the weight transposed and turned by 180 degrees. */
interface WeightWalk {
  base: number;
  so: number;
  si: number;
  sy: number;
  sx: number;
}

/** U [α², outC, inC], the transformed filters, as float32. */
function transformWeights(weight: Tensor, m: WinogradTile, outC: number, inC: number, walk: WeightWalk): Tensor {
  const { G } = TRANSFORMS[m];
  const a = m + 2;
  const half = weight.dtype === 'float16';
  const w = weight.binding('conv2d', true);
  const U = Tensor.empty([a * a, outC, inC], 'float32');
  const total = outC * inC;
  const params = new Params()
    .i32('total', total).i32('inC', inC).i32('base', w.offset + walk.base)
    .i32('so', walk.so).i32('si', walk.si).i32('sy', walk.sy).i32('sx', walk.sx);
  dispatchPerItem(`winogradWeights:${m}:${half}`, params, total, half, [
    { name: 'wt', type: storageArray(half), resource: w.resource },
    { name: 'u', type: 'array<f32>', resource: U.binding('conv2d').resource },
  ], () => `  let b = p.base + (i / p.inC) * p.so + (i % p.inC) * p.si;
${range(3).flatMap((y) => range(3).map((x) => `  let g${y}_${x} = ${widen(half, `wt[b + ${y} * p.sy + ${x} * p.sx]`)};`)).join('\n')}
${sandwich(G, G, 'g', 'u', 3, 3)}
${scatter('u', a)}`);
  return U;
}

/** The tiling of an output plane: `tilesH` x `tilesW` tiles per image, `tiles` in all. */
interface Tiling {
  tilesH: number;
  tilesW: number;
  tiles: number;
}

/** How a pass transforms the tiles of a source: the side `k` of the tile read at each tile
 * origin and the α x k matrix L of the transform L X Lᵀ. The input is read in α x α tiles
 * through Bᵀ; the output gradient, in the weight gradient, in m x m tiles through A. */
type TileRead = 'input' | 'gradOut';

function tileMatrix(read: TileRead, m: WinogradTile): { k: number; L: readonly (readonly number[])[] } {
  const { BT, AT } = TRANSFORMS[m];
  return read === 'input' ? { k: m + 2, L: BT } : { k: m, L: transpose(AT) };
}

function transpose(a: readonly (readonly number[])[]): number[][] {
  return range(a[0]!.length).map((j) => a.map((row) => row[j]!));
}

/** [α², C, tiles], the transformed tiles of `x` [N, C, H, W] as float32. Tile (th, tw) of
 * image n reads the k x k block at rows th*m - offH and columns tw*m - offW, zero outside. */
function transformTiles(x: Tensor, read: TileRead, m: WinogradTile, t: Tiling, offH: number, offW: number): Tensor {
  const { k, L } = tileMatrix(read, m);
  const a = m + 2;
  const half = x.dtype === 'float16';
  const [, C, H, W] = x.shape as [number, number, number, number];
  const src = x.binding('conv2d', true);
  const V = Tensor.empty([a * a, C, t.tiles], 'float32');
  const total = C * t.tiles;
  const [ssn, ssc, ssh, ssw] = x.strides as [number, number, number, number];
  const params = new Params()
    .i32('total', total).i32('tiles', t.tiles).i32('tilesW', t.tilesW).i32('planeTiles', t.tilesH * t.tilesW)
    .i32('H', H).i32('W', W).i32('offH', offH).i32('offW', offW)
    .i32('so', src.offset).i32('ssn', ssn).i32('ssc', ssc).i32('ssh', ssh).i32('ssw', ssw);
  dispatchPerItem(`winogradTiles:${read}:${m}:${half}`, params, total, half, [
    { name: 'src', type: storageArray(half), resource: src.resource },
    { name: 'v', type: 'array<f32>', resource: V.binding('conv2d').resource },
  ], () => `  let c = i / p.tiles;
${tileOrigin(m, ' - p.offH', ' - p.offW')}
  let b = p.so + n * p.ssn + c * p.ssc;
${range(k).map((y) => `  let ry${y} = y0 + ${y};
  let vy${y} = ry${y} >= 0 && ry${y} < p.H;
  let oy${y} = b + ry${y} * p.ssh;`).join('\n')}
${range(k).map((x) => `  let rx${x} = x0 + ${x};
  let vx${x} = rx${x} >= 0 && rx${x} < p.W;`).join('\n')}
${range(k).flatMap((y) => range(k).map((x) => `  let d${y}_${x} = select(0.0, ${widen(half, `src[select(p.so, oy${y} + rx${x} * p.ssw, vy${y} && vx${x})]`)}, vy${y} && vx${x});`)).join('\n')}
${sandwich(L, L, 'd', 'v', k, k)}
${scatter('v', a)}`);
  return V;
}

interface OutputEpilogue {
  bias: Tensor | undefined;
  scale: Tensor | undefined;
  act: ConvActivation | undefined;
}

/** Writes Aᵀ M A of every tile, scaled, biased and activated, into `out` [N, O, outH, outW],
 * the tiles' images starting at image `firstImage` of `out`. */
function transformOutput(M: Tensor, m: WinogradTile, t: Tiling, out: Tensor, ep: OutputEpilogue, firstImage: number): void {
  const { AT } = TRANSFORMS[m];
  const a = m + 2;
  const half = out.dtype === 'float16';
  const [, O, outH, outW] = out.shape as [number, number, number, number];
  const total = O * t.tiles;
  const params = new Params()
    .i32('total', total).i32('tiles', t.tiles).i32('tilesW', t.tilesW).i32('planeTiles', t.tilesH * t.tilesW)
    .i32('O', O).i32('outH', outH).i32('outW', outW).i32('n0', firstImage);
  const extras = [...(ep.bias ? [['bias', ep.bias] as const] : []), ...(ep.scale ? [['scale', ep.scale] as const] : [])];
  const value = (acc: string): string => {
    const scaled = ep.scale ? `${acc} * ${widen(half, 'scale[o]')}` : acc;
    const biased = ep.bias ? `(${scaled} + ${widen(half, 'bias[o]')})` : scaled;
    return stored(half, ep.act ? UNARY[ep.act].wgsl(biased) : biased);
  };
  dispatchPerItem(`winogradOutput:${m}:${half}:${ep.bias ? 'b' : ''}${ep.scale ? 's' : ''}:${ep.act ?? ''}`, params, total, half, [
    { name: 'mt', type: 'array<f32>', resource: M.binding('conv2d').resource },
    ...extras.map(([name, x]) => ({ name, type: storageArray(half), resource: x.binding('conv2d', true).resource })),
    { name: 'y', type: storageArray(half), resource: out.binding('conv2d', true).resource },
  ], () => `  let o = i / p.tiles;
${tileOrigin(m)}
${gather('t', 'mt', a)}
${sandwich(AT, AT, 't', 'r', a, a)}
  let b = ((p.n0 + n) * p.O + o) * p.outH * p.outW;
${range(m).map((y) => `  if (y0 + ${y} < p.outH) {
${range(m).map((x) => `    if (x0 + ${x} < p.outW) { y[b + (y0 + ${y}) * p.outW + x0 + ${x}] = ${value(`r${y}_${x}`)}; }`).join('\n')}
  }`).join('\n')}`, ep.act ? MATH_HELPERS : '');
}

function tiling(batch: number, outH: number, outW: number, m: WinogradTile): Tiling {
  const tilesH = Math.ceil(outH / m);
  const tilesW = Math.ceil(outW / m);
  return { tilesH, tilesW, tiles: batch * tilesH * tilesW };
}

/** Runs of images whose intermediates from `inC` to `outC` channels over an outH x outW
 * output fit one storage binding each, or null where one image's do not. A batch too large
 * for one binding (e.g. ResNet's 56 px stage at batch 128) runs as several products. */
function imageRunsFor(N: number, outH: number, outW: number, m: WinogradTile, inC: number, outC: number): { start: number; count: number }[] | null {
  const perImage = (m + 2) ** 2 * Math.max(inC, outC) * tiling(1, outH, outW, m).tiles * 4;
  const per = Math.min(N, Math.floor(engine().bindingLimit / perImage));
  if (per < 1) return null;
  const runs = [];
  for (let start = 0; start < N; start += per) runs.push({ start, count: Math.min(per, N - start) });
  return runs;
}

/** Images start .. start + count of `t`, `t` itself when that is all of it. */
function images(t: Tensor, start: number, count: number): Tensor {
  return count === t.shape[0] ? t : t.narrow(0, start, count);
}

/** One correlation of `src` [N, I, H, W] with 3x3 filters read through `walk`, padded by
 * padH/padW, into a new [N, O, outH, outW] tensor; null where one image's intermediates
 * would exceed a storage binding (the caller runs the direct kernel). `weight` and the
 * epilogue operands are contiguous from element 0 of their buffers. */
export function winogradCorrelation(
  src: Tensor, weight: Tensor, walk: WeightWalk, outC: number, outH: number, outW: number,
  padH: number, padW: number, m: WinogradTile, ep: OutputEpilogue,
): Tensor | null {
  const [N, inC] = src.shape as [number, number];
  const runs = imageRunsFor(N, outH, outW, m, inC, outC);
  if (!runs || !src.fitsBinding) return null;
  const U = transformWeights(weight, m, outC, inC, walk);
  const out = Tensor.empty([N, outC, outH, outW], src.dtype);
  for (const { start, count } of runs) {
    const part = images(src, start, count);
    const t = tiling(count, outH, outW, m);
    const V = transformTiles(part, 'input', m, t, padH, padW);
    const M = matmul(U, V);
    V.dispose();
    if (part !== src) part.dispose();
    transformOutput(M, m, t, out, ep, start);
    M.dispose();
  }
  U.dispose();
  return out;
}

/** Writes Gᵀ M G of every channel pair (M [α², O, I]) into `gradW` [O, I, 3, 3]. */
function untransformWeightGrad(M: Tensor, m: WinogradTile, gradW: Tensor): void {
  const { G } = TRANSFORMS[m];
  const a = m + 2;
  const half = gradW.dtype === 'float16';
  const total = gradW.size / 9;
  const params = new Params().i32('total', total);
  const GT = transpose(G);
  dispatchPerItem(`winogradWeightGrad:${m}:${half}`, params, total, half, [
    { name: 'mt', type: 'array<f32>', resource: M.binding('conv2d').resource },
    { name: 'gw', type: storageArray(half), resource: gradW.binding('conv2d', true).resource },
  ], () => `${gather('t', 'mt', a)}
${sandwich(GT, GT, 't', 'r', a, a)}
${range(3).flatMap((y) => range(3).map((x) => `  gw[i * 9 + ${y * 3 + x}] = ${stored(half, `r${y}_${x}`)};`)).join('\n')}`);
}

/** The gradient of a 3x3 stride-1 convolution's weight [O, I, 3, 3] in `dtype`, from x
 * [N, I, H, W] padded by padH/padW and gradOut [N, O, outH, outW]; null where one image's
 * intermediates would exceed a storage binding (a larger batch runs as several products,
 * their sums added). The forward pass is linear in the filter g,
 * y = Aᵀ[(G g) ⊙ (Bᵀ d)] per tile, so its gradient is Gᵀ[(A dy) ⊙ (Bᵀ d)]: the input tiles
 * are transformed as in the forward pass, the output gradient's m x m tiles by A, their
 * products summed over tiles by one matmul per transformed position, and Gᵀ · G gives the
 * 3x3 gradient. */
export function winogradWeightGrad(x: Tensor, gradOut: Tensor, padH: number, padW: number, m: WinogradTile, dtype: Tensor['dtype']): Tensor | null {
  const [N, inC] = x.shape as [number, number];
  const [, outC, outH, outW] = gradOut.shape as [number, number, number, number];
  const runs = imageRunsFor(N, outH, outW, m, inC, outC);
  if (!runs || !x.fitsBinding || !gradOut.fitsBinding) return null;
  let sum: Tensor | null = null;
  for (const { start, count } of runs) {
    const [xs, gs] = [images(x, start, count), images(gradOut, start, count)];
    const t = tiling(count, outH, outW, m);
    const V = transformTiles(xs, 'input', m, t, padH, padW);
    const D = transformTiles(gs, 'gradOut', m, t, 0, 0);
    const Vt = V.transpose(-2, -1);
    const M = matmul(D, Vt);
    for (const u of [V, Vt, D]) u.dispose();
    if (xs !== x) xs.dispose();
    if (gs !== gradOut) gs.dispose();
    sum = addPart(sum, M);
  }
  const gradW = Tensor.empty([outC, inC, 3, 3], dtype);
  untransformWeightGrad(sum!, m, gradW);
  sum!.dispose();
  return gradW;
}

/** The filter walk of the forward pass: filter (o, i) is weight[o, i]. */
export function forwardWalk(inC: number): WeightWalk {
  return { base: 0, so: inC * 9, si: 9, sy: 3, sx: 1 };
}

/** The filter walk of the input gradient: filter (i, o) is weight[o, i] turned by 180 degrees. */
export function inputGradWalk(inC: number): WeightWalk {
  return { base: 8, so: 9, si: inC * 9, sy: -3, sx: -1 };
}
