/**
 * The contiguous copy of a view whose two innermost dims are a transposed row-major block
 * (`w.t()`, `k.transpose(-2, -1)`, optionally batched): each invocation moves a 4x4 block with
 * four vec4 loads along the source's rows and four vec4 stores along the output's rows. The
 * generic strided copy (`map`) loads one element at a time through its coordinates, which on
 * lavapipe is a lane-by-lane gather per element: a 768x3072 weight took 12-14 ms that way.
 */
import { engine } from '../engine.js';
import { Params } from '../params.js';
import { collapseDims } from '../shape.js';
import { Tensor } from '../tensor.js';
import { enableF16, linearIndex, MAIN_ARGS, storageType, WG } from './wgsl.js';

/** How the copy walks `x`: `batch` blocks of `rows` x `cols` output elements, the source
 * holding block b's column j at offset + b * batchStride + j * ld, its rows contiguous. */
interface TransposeWalk {
  batch: number;
  batchStride: number;
  rows: number;
  cols: number;
  ld: number;
}

/** The walk of `x` when its copy is a (batched) transpose that the vec4 kernel can move. */
function transposeWalk(x: Tensor): TransposeWalk | null {
  const { shape, strides } = collapseDims(x.shape, [x.strides]);
  const st = strides[0]!;
  const r = shape.length;
  if (r < 2 || r > 3 || st[r - 2] !== 1) return null;
  const walk = { batch: r === 3 ? shape[0]! : 1, batchStride: r === 3 ? st[0]! : 0, rows: shape[r - 2]!, cols: shape[r - 1]!, ld: st[r - 1]! };
  const fours = [walk.rows, walk.cols, walk.ld, walk.batchStride, x.offset];
  return fours.every((v) => v % 4 === 0) ? walk : null;
}

/** `x` copied to row-major order by the block kernel, or null where it does not apply (the
 * caller copies element by element). */
export function transposedCopy(x: Tensor): Tensor | null {
  const walk = transposeWalk(x);
  if (!walk || !x.fitsBinding) return null;
  const e = engine();
  const out = Tensor.empty(x.shape, x.dtype);
  const src = x.binding('transpose', true);
  const dst = out.binding('transpose', true);
  if (src.offset % 4 !== 0 || dst.offset % 4 !== 0) {
    out.dispose();
    return null;
  }
  const { batch, batchStride, rows, cols, ld } = walk;
  const blocks = batch * (rows / 4) * (cols / 4);
  const params = new Params()
    .u32('blocks', blocks).u32('rowBlocks', rows / 4).u32('colBlocks', cols / 4)
    .u32('ld4', ld / 4).u32('cols4', cols / 4).u32('batchStride4', batchStride / 4)
    .u32('src4', src.offset / 4).u32('dst4', dst.offset / 4);
  const T = storageType(x.dtype);
  e.dispatch({
    key: `transpose:${T}`,
    get code() {
      return /* wgsl */ `${enableF16(T === 'f16')}
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<vec4<${T}>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<${T}>>;
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let i = ${linearIndex()};
  if (i >= p.blocks) { return; }
  // Adjacent invocations take adjacent row blocks: their loads share source rows.
  let rb = i % p.rowBlocks;
  let cb = (i / p.rowBlocks) % p.colBlocks;
  let b = i / (p.rowBlocks * p.colBlocks);
  let s = p.src4 + b * p.batchStride4 + cb * 4u * p.ld4 + rb;
  let c0 = src[s];
  let c1 = src[s + p.ld4];
  let c2 = src[s + 2u * p.ld4];
  let c3 = src[s + 3u * p.ld4];
  let d = p.dst4 + (b * p.rowBlocks + rb) * 4u * p.cols4 + cb;
  dst[d] = vec4<${T}>(c0.x, c1.x, c2.x, c3.x);
  dst[d + p.cols4] = vec4<${T}>(c0.y, c1.y, c2.y, c3.y);
  dst[d + 2u * p.cols4] = vec4<${T}>(c0.z, c1.z, c2.z, c3.z);
  dst[d + 3u * p.cols4] = vec4<${T}>(c0.w, c1.w, c2.w, c3.w);
}`;
    },
    params,
    buffers: [src.resource, dst.resource],
    workgroups: e.grid(Math.ceil(blocks / WG)),
    label: 'transpose',
  });
  return out;
}
