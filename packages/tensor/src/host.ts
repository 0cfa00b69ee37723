import { contiguousStrides, numel, type Shape } from './shape.js';

/** A float64 host array with a shape: what the CPU references compute on. */
export interface HostTensor {
  shape: number[];
  data: Float64Array;
}

export function host(shape: Shape, data?: ArrayLike<number>): HostTensor {
  const n = numel(shape);
  const d = new Float64Array(n);
  if (data) {
    if (data.length !== n) throw new RangeError(`host tensor ${shape.join('x')} needs ${n} values, got ${data.length}`);
    d.set(data);
  }
  return { shape: [...shape], data: d };
}

/** Offsets into `inShape` (broadcast to `outShape`) for every output element, row-major. */
export function broadcastIndex(inShape: Shape, outShape: Shape): Int32Array {
  const n = numel(outShape);
  const idx = new Int32Array(n);
  const rank = outShape.length;
  const lead = rank - inShape.length;
  const inStrides = contiguousStrides(inShape);
  const st = outShape.map((_, i) => (i < lead || inShape[i - lead] === 1 ? 0 : inStrides[i - lead]!));
  const coord = new Array<number>(rank).fill(0);
  for (let k = 0; k < n; k++) {
    let off = 0;
    for (let d = 0; d < rank; d++) off += coord[d]! * st[d]!;
    idx[k] = off;
    for (let d = rank - 1; d >= 0; d--) {
      if (++coord[d]! < outShape[d]!) break;
      coord[d] = 0;
    }
  }
  return idx;
}

/** Row-major coordinates of flat index `i` in `shape`. */
export function unravel(i: number, shape: Shape): number[] {
  const c = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    c[d] = i % shape[d]!;
    i = Math.floor(i / shape[d]!);
  }
  return c;
}

/** The flat row-major index of coordinates `c` in `shape`. */
export function ravel(c: readonly number[], shape: Shape): number {
  let i = 0;
  for (let d = 0; d < shape.length; d++) i = i * shape[d]! + c[d]!;
  return i;
}
