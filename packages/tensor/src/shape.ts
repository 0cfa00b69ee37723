export type Shape = readonly number[];

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}

export function checkShape(shape: Shape, what = 'shape'): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`${what} [${shape.join(', ')}] has a bad size ${d}; expected non-negative integers`);
  }
}

/** PyTorch's broadcasting: align from the right, sizes must match or be 1. */
export function broadcastShapes(...shapes: Shape[]): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = rank - s.length + i;
      const d = s[i]!;
      if (out[o] === 1) out[o] = d;
      else if (d !== 1 && d !== out[o]) {
        throw new RangeError(`shapes ${shapes.map((x) => `[${x.join(', ')}]`).join(' and ')} cannot be broadcast together (dim ${i - s.length}: ${d} vs ${out[o]})`);
      }
    }
  }
  return out;
}

/** Normalises a possibly negative dim index against `rank`. */
export function normDim(dim: number, rank: number, what = 'dim'): number {
  const d = dim < 0 ? dim + rank : dim;
  if (!Number.isInteger(d) || d < 0 || d >= Math.max(rank, 1)) {
    throw new RangeError(`${what} ${dim} is out of range for a tensor of rank ${rank}`);
  }
  return d;
}

/** Normalises an optional dim list (undefined = all dims), sorted and unique. */
export function normDims(dims: number | readonly number[] | undefined, rank: number): number[] {
  if (dims === undefined) return [...Array(rank).keys()];
  const list = typeof dims === 'number' ? [dims] : dims;
  const out = [...new Set(list.map((d) => normDim(d, rank)))].sort((a, b) => a - b);
  return out;
}

export function shapeEq(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function fmt(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

/**
 * `shape` with the dims of size 1 dropped and each run of adjacent dims that every stride set
 * walks as one (the outer stride is the inner stride times the inner size) merged into one
 * dim, with each set's strides for the result. A per-channel operand [N, C, 1, 1] over
 * [N, C, H, W] is walked as [N*C, H*W]: two coordinates per element instead of four, and each
 * coordinate costs an integer division.
 */
export function collapseDims(shape: readonly number[], strideSets: readonly (readonly number[])[]): { shape: number[]; strides: number[][] } {
  const dims: { size: number; st: number[] }[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    const size = shape[d]!;
    if (size === 1) continue;
    const st = strideSets.map((s) => s[d]!);
    const inner = dims[dims.length - 1];
    if (inner && st.every((v, k) => v === inner.st[k]! * inner.size)) inner.size *= size;
    else dims.push({ size, st });
  }
  dims.reverse();
  return { shape: dims.map((d) => d.size), strides: strideSets.map((_, k) => dims.map((d) => d.st[k]!)) };
}
