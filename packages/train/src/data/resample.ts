/**
 * Separable resampling as Pillow does it (what torchvision's Resize runs on PIL images, so the
 * evaluation transforms of pretrained weights): each output pixel is a weighted sum of the
 * source pixels under the filter, and when shrinking the filter's support is widened by the
 * shrink factor, so every source pixel contributes (antialiasing) instead of the two or four
 * nearest ones. The horizontal pass runs first, over the rows the vertical pass reads.
 *
 * In `uint8` mode the weights are Pillow's 22-bit fixed-point ones and each pass rounds and
 * clips to bytes, as Pillow's 8-bit path does: on an image decoded from 8-bit data the result is
 * Pillow's to the byte (packages/train/fixtures/make_transform_fixtures.py holds the check). In
 * float mode the weights stay in double precision and nothing is rounded or clipped (Pillow's
 * mode "F"), for images already changed by other transforms.
 */
import type { Image } from './transforms.js';

export type Interpolation = 'bilinear' | 'bicubic';

export const INTERPOLATIONS: readonly Interpolation[] = ['bilinear', 'bicubic'];

interface Filter {
  support: number;
  weight(x: number): number;
}

// Keys's cubic with a = -0.5, Pillow's (and torchvision's antialiased tensor resize's) bicubic.
const CUBIC_A = -0.5;

const FILTERS: Record<Interpolation, Filter> = {
  bilinear: { support: 1, weight: (x) => Math.max(0, 1 - Math.abs(x)) },
  bicubic: {
    support: 2,
    weight: (x) => {
      const t = Math.abs(x);
      if (t < 1) return ((CUBIC_A + 2) * t - (CUBIC_A + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * CUBIC_A;
      return 0;
    },
  },
};

/** Pillow's fixed-point precision for 8-bit images: 32 bits less 8 for the value and 2 for
 * the negative lobes' headroom. */
const PRECISION_BITS = 22;
const ONE = 2 ** PRECISION_BITS;

interface Taps {
  /** First source index of each output pixel. */
  start: Int32Array;
  count: Int32Array;
  /** `size` weights per output pixel, normalised to sum to 1 (or fixed-point). */
  weights: Float64Array;
  size: number;
}

function taps(inSize: number, from: number, to: number, outSize: number, filter: Filter, fixed: boolean): Taps {
  const scale = (to - from) / outSize;
  const stretch = Math.max(scale, 1);
  const support = filter.support * stretch;
  const size = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * size);
  for (let o = 0; o < outSize; o++) {
    const center = from + (o + 0.5) * scale;
    // Pillow rounds the window's ends by truncating x + 0.5 (C's int cast).
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    let sum = 0;
    for (let i = lo; i < hi; i++) {
      const w = filter.weight((i - center + 0.5) / stretch);
      weights[o * size + i - lo] = w;
      sum += w;
    }
    for (let i = 0; i < hi - lo; i++) {
      const k = o * size + i;
      const w = sum !== 0 ? weights[k]! / sum : weights[k]!;
      weights[k] = fixed ? Math.trunc(w < 0 ? w * ONE - 0.5 : w * ONE + 0.5) : w;
    }
    start[o] = lo;
    count[o] = Math.max(hi - lo, 0);
  }
  return { start, count, weights, size };
}

/** Pillow's clip8: a fixed-point sum (with the rounding half already added) to a byte. */
function clip8(v: number): number {
  if (v <= 0) return 0;
  const b = Math.floor(v / ONE);
  return b > 255 ? 255 : b;
}

export interface ResampleOptions {
  interpolation?: Interpolation;
  /** The source region [left, top, right, bottom] in pixels (Pillow's `box`; fractional
   * edges allowed); default the whole image. */
  box?: readonly [number, number, number, number];
  /** Work on bytes as Pillow's 8-bit path does (the input's values are taken as k / 255). */
  uint8?: boolean;
}

/** The image resampled to `height` x `width` by Pillow's separable filters (see the header). */
export function resample(img: Image, height: number, width: number, opts: ResampleOptions = {}): Image {
  const { channels: C, height: H, width: W } = img;
  const interpolation = opts.interpolation ?? 'bilinear';
  const filter = FILTERS[interpolation];
  if (!filter) throw new RangeError(`resample: interpolation "${interpolation}" is not one of ${INTERPOLATIONS.join(', ')}`);
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) {
    throw new RangeError(`resample: the output size must be positive integers, got ${height}x${width}`);
  }
  const [left, top, right, bottom] = opts.box ?? [0, 0, W, H];
  if (!(left >= 0 && top >= 0 && right <= W && bottom <= H && right > left && bottom > top)) {
    throw new RangeError(`resample: box [${left}, ${top}, ${right}, ${bottom}] is not a non-empty region of the ${H}x${W} image`);
  }
  const fixed = opts.uint8 === true;
  const needH = width !== W || left !== 0 || right !== width;
  const needV = height !== H || top !== 0 || bottom !== height;
  const hx = taps(W, left, right, width, filter, fixed);
  const vy = taps(H, top, bottom, height, filter, fixed);
  const src = fixed ? toBytes(img.data) : img.data;
  const rowFirst = vy.start[0]!;
  const rowLast = vy.start[height - 1]! + vy.count[height - 1]!;
  let plane: Float32Array | Uint8Array = src;
  let rows = H;
  let rowOffset = 0;
  let cols = W;
  if (needH) {
    rows = rowLast - rowFirst;
    rowOffset = rowFirst;
    cols = width;
    plane = horizontal(src, C, H, W, rowFirst, rows, hx, width, fixed);
  }
  let out: Float32Array | Uint8Array = plane;
  if (needV) out = vertical(plane, C, rows, cols, rowOffset, vy, height, fixed);
  else if (!needH) out = src.slice();
  return { data: fixed ? fromBytes(out as Uint8Array) : (out as Float32Array), channels: C, height, width };
}

function horizontal(src: Float32Array | Uint8Array, C: number, H: number, W: number, rowFirst: number, rows: number, t: Taps, outW: number, fixed: boolean): Float32Array | Uint8Array {
  const out = fixed ? new Uint8Array(C * rows * outW) : new Float32Array(C * rows * outW);
  const half = fixed ? ONE / 2 : 0;
  for (let c = 0; c < C; c++) {
    for (let y = 0; y < rows; y++) {
      const row = c * H * W + (y + rowFirst) * W;
      const dst = (c * rows + y) * outW;
      for (let x = 0; x < outW; x++) {
        const s = row + t.start[x]!;
        const k = x * t.size;
        let acc = half;
        for (let i = 0, n = t.count[x]!; i < n; i++) acc += src[s + i]! * t.weights[k + i]!;
        out[dst + x] = fixed ? clip8(acc) : acc;
      }
    }
  }
  return out;
}

function vertical(src: Float32Array | Uint8Array, C: number, rows: number, W: number, rowOffset: number, t: Taps, outH: number, fixed: boolean): Float32Array | Uint8Array {
  const out = fixed ? new Uint8Array(C * outH * W) : new Float32Array(C * outH * W);
  const half = fixed ? ONE / 2 : 0;
  for (let c = 0; c < C; c++) {
    for (let y = 0; y < outH; y++) {
      const first = c * rows * W + (t.start[y]! - rowOffset) * W;
      const k = y * t.size;
      const n = t.count[y]!;
      const dst = (c * outH + y) * W;
      for (let x = 0; x < W; x++) {
        let acc = half;
        for (let i = 0; i < n; i++) acc += src[first + i * W + x]! * t.weights[k + i]!;
        out[dst + x] = fixed ? clip8(acc) : acc;
      }
    }
  }
  return out;
}

/** Values k / 255 back to the bytes k (clamped: the clamped array rounds and saturates). */
function toBytes(data: Float32Array): Uint8Array {
  const out = new Uint8ClampedArray(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i]! * 255;
  return new Uint8Array(out.buffer);
}

function fromBytes(data: Uint8Array): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i]! / 255;
  return out;
}

/** torchvision's Resize(int): the shorter side to `size`, the longer scaled and truncated. */
export function shorterSideSize(height: number, width: number, size: number): [number, number] {
  if (height <= width) return [size, Math.trunc((size * width) / height)];
  return [Math.trunc((size * height) / width), size];
}

/** timm's scale size for an evaluation crop: floor(size / cropPct). The tolerance keeps a
 * cropPct written as a ratio (224 / 232) from landing one pixel short on a rounding error. */
export function evalResizeSize(imageSize: number, cropPct: number): number {
  if (!(cropPct > 0 && cropPct <= 1)) throw new RangeError(`cropPct must be in (0, 1], got ${cropPct}`);
  return Math.floor(imageSize / cropPct + 1e-6);
}
