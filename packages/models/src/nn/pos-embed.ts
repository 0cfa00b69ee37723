/**
 * Resampling of absolute position embeddings to another patch grid, as timm's
 * `resample_abs_pos_embed`: a ViT trained at 224 (a 14x14 grid) fine-tuned at 384 (24x24).
 * Bicubic interpolation is separable and linear, so it is two matmuls with interpolation
 * matrices built on the host: the same code runs on checkpoint arrays and on live
 * parameters, and is differentiable.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';

/** A grid of patches: a side, or [rows, cols]. */
export type GridSize = number | readonly [number, number];

export interface ResampleAbsPosEmbedOptions {
  /** The grid of `posEmbed` (timm's old_size); default the square root of its patch rows. */
  oldSize?: GridSize;
  /** Leading rows that are not grid positions (the class token), kept as they are. Default 1. */
  numPrefixTokens?: number;
  /**
   * PyTorch's `antialias=True` (default, as timm's `resample_abs_pos_embed` since 0.9 and its
   * ViT checkpoint loader). It changes upsampling too: its cubic filter has A = -0.5 and
   * renormalises at the borders. False gives plain bicubic (A = -0.75, edge indices clamped),
   * as timm's older `resize_pos_embed`.
   */
  antialias?: boolean;
}

/** `posEmbed` [1, numPrefixTokens + oldRows * oldCols, C] resampled to
 * [1, numPrefixTokens + newRows * newCols, C] with F.interpolate(mode='bicubic',
 * align_corners=False) over the grid; the prefix rows are copied. */
export function resampleAbsPosEmbed(posEmbed: Tensor, newSize: GridSize, opts: ResampleAbsPosEmbedOptions = {}): Tensor {
  const where = 'resampleAbsPosEmbed';
  if (posEmbed.rank !== 3 || posEmbed.shape[0] !== 1) {
    throw new RangeError(`${where}: posEmbed must be [1, tokens, dim], got [${posEmbed.shape.join(', ')}]`);
  }
  const [, tokens, dim] = posEmbed.shape as [number, number, number];
  const prefix = opts.numPrefixTokens ?? 1;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix >= tokens) {
    throw new RangeError(`${where}: numPrefixTokens must be an integer in [0, ${tokens - 1}] for ${tokens} rows, got ${prefix}`);
  }
  const positions = tokens - prefix;
  const [gh, gw] = opts.oldSize !== undefined ? gridOf(opts.oldSize, 'oldSize') : squareGrid(positions, prefix);
  if (gh * gw !== positions) {
    throw new RangeError(`${where}: oldSize ${gh}x${gw} has ${gh * gw} positions, but posEmbed has ${positions} (${tokens} rows less ${prefix} prefix)`);
  }
  const [nh, nw] = gridOf(newSize, 'newSize');
  return A.tidy(() => {
    const wh = A.tensor(interpolationMatrix(gh, nh, opts.antialias ?? true), { shape: [nh, gh] });
    const ww = A.tensor(interpolationMatrix(gw, nw, opts.antialias ?? true), { shape: [nw, gw] });
    // Rows first over [gh, gw * C], then columns as a matmul broadcast over the new rows.
    const grid = posEmbed.narrow(1, prefix, positions).reshape(gh, gw * dim);
    const rows = A.matmul(wh, grid).reshape(nh, gw, dim);
    const out = A.matmul(ww, rows).reshape(1, nh * nw, dim);
    return prefix ? A.cat([posEmbed.narrow(1, 0, prefix), out], 1) : out;
  });
}

function gridOf(size: GridSize, what: string): [number, number] {
  const [h, w] = typeof size === 'number' ? [size, size] : size;
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) {
    throw new RangeError(`resampleAbsPosEmbed: ${what} must be a positive integer or [rows, cols] of them, got ${JSON.stringify(size)}`);
  }
  return [h, w];
}

function squareGrid(positions: number, prefix: number): [number, number] {
  const side = Math.round(Math.sqrt(positions));
  if (side * side !== positions) {
    throw new RangeError(`resampleAbsPosEmbed: ${positions} grid positions (after ${prefix} prefix rows) are not a square; pass oldSize [rows, cols]`);
  }
  return [side, side];
}

/**
 * The [outSize, inSize] matrix of PyTorch's 1-D bicubic resampling with align_corners=False
 * (upsample_bicubic2d, and its antialiased variant), row o holding the weight of each input
 * sample in output o.
 */
function interpolationMatrix(inSize: number, outSize: number, antialias: boolean): Float32Array {
  const m = new Float32Array(outSize * inSize);
  const scale = inSize / outSize;
  if (!antialias) {
    const a = -0.75;
    const near = (x: number): number => ((a + 2) * x - (a + 3)) * x * x + 1;
    const far = (x: number): number => ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    for (let o = 0; o < outSize; o++) {
      // Unlike the linear modes, the cubic source coordinate is not clamped at 0.
      const src = scale * (o + 0.5) - 0.5;
      const i0 = Math.floor(src);
      const t = src - i0;
      const w = [far(t + 1), near(t), near(1 - t), far(2 - t)];
      for (let k = 0; k < 4; k++) m[o * inSize + Math.min(Math.max(i0 - 1 + k, 0), inSize - 1)] += w[k]!;
    }
    return m;
  }
  const a = -0.5;
  const filter = (v: number): number => {
    const x = Math.abs(v);
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
  };
  // Downsampling widens the filter by the scale so that every input sample contributes.
  const stretch = Math.max(scale, 1);
  const support = 2 * stretch;
  for (let o = 0; o < outSize; o++) {
    const center = scale * (o + 0.5);
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    let total = 0;
    for (let i = lo; i < hi; i++) total += filter((i - center + 0.5) / stretch);
    for (let i = lo; i < hi; i++) m[o * inSize + i] = filter((i - center + 0.5) / stretch) / total;
  }
  return m;
}
