/**
 * Colour ops on float CHW images in [0, 1], with torchvision's tensor semantics
 * (torchvision.transforms.functional on float tensors): each blends the image with a
 * "degenerate" one (black, its mean grey, its greyscale, its blur) and clamps to [0, 1]; hue
 * rotates H in HSV. ColorJitter applies brightness, contrast, saturation and hue in a random
 * order, as torchvision's does.
 */
import type { Rng } from '@tl/tensor';
import type { Image } from '../transforms.js';

/** ITU-R 601-2 luma weights as torchvision's rgb_to_grayscale uses them. */
const LUMA = [0.2989, 0.587, 0.114] as const;

function gray(img: Image): Float32Array {
  const n = img.height * img.width;
  if (img.channels === 1) return img.data.slice(0, n);
  const d = img.data;
  const out = new Float32Array(n);
  for (let k = 0; k < n; k++) out[k] = LUMA[0] * d[k]! + LUMA[1] * d[n + k]! + LUMA[2] * d[2 * n + k]!;
  return out;
}

/** ratio * img + (1 - ratio) * other, clamped; `other(i)` gives the degenerate value at i. */
function blend(img: Image, ratio: number, other: (i: number) => number): Image {
  const out = new Float32Array(img.data.length);
  for (let i = 0; i < out.length; i++) out[i] = Math.min(Math.max(ratio * img.data[i]! + (1 - ratio) * other(i), 0), 1);
  return { ...img, data: out };
}

function checkFactor(name: string, f: number): void {
  if (!(f >= 0) || !Number.isFinite(f)) throw new RangeError(`${name}: the factor must be a finite number >= 0, got ${f}`);
}

export function adjustBrightness(img: Image, factor: number): Image {
  checkFactor('adjustBrightness', factor);
  return blend(img, factor, () => 0);
}

/** Blends with the mean of the greyscale image. */
export function adjustContrast(img: Image, factor: number): Image {
  checkFactor('adjustContrast', factor);
  const g = gray(img);
  let sum = 0;
  for (const v of g) sum += v;
  const mean = sum / g.length;
  return blend(img, factor, () => mean);
}

/** Blends with the greyscale image (an image of one channel is returned as it is). */
export function adjustSaturation(img: Image, factor: number): Image {
  checkFactor('adjustSaturation', factor);
  if (img.channels === 1) return img;
  const g = gray(img);
  const n = g.length;
  return blend(img, factor, (i) => g[i % n]!);
}

/** Blends with the image smoothed by torchvision's 3x3 kernel (1s around a 5, over 13); the
 * one-pixel border keeps its values, as in torchvision. */
export function adjustSharpness(img: Image, factor: number): Image {
  checkFactor('adjustSharpness', factor);
  const { channels: C, height: H, width: W, data } = img;
  if (H <= 2 || W <= 2) return img;
  const smooth = data.slice();
  for (let c = 0; c < C; c++) {
    const p = c * H * W;
    for (let y = 1; y < H - 1; y++) for (let x = 1; x < W - 1; x++) {
      let s = 4 * data[p + y * W + x]!;
      for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) s += data[p + (y + dy) * W + x + dx]!;
      smooth[p + y * W + x] = s / 13;
    }
  }
  return blend(img, factor, (i) => smooth[i]!);
}

/** Shifts the hue by `factor` turns (in [-0.5, 0.5]) through HSV. */
export function adjustHue(img: Image, factor: number): Image {
  if (!(factor >= -0.5 && factor <= 0.5)) throw new RangeError(`adjustHue: the factor must be in [-0.5, 0.5], got ${factor}`);
  if (img.channels === 1) return img;
  const n = img.height * img.width;
  const d = img.data;
  const out = new Float32Array(3 * n);
  for (let k = 0; k < n; k++) {
    const [h, s, v] = rgbToHsv(d[k]!, d[n + k]!, d[2 * n + k]!);
    const [r, g, b] = hsvToRgb((((h + factor) % 1) + 1) % 1, s, v);
    out[k] = r;
    out[n + k] = g;
    out[2 * n + k] = b;
  }
  return { ...img, data: out };
}

/** Hue in [0, 1), saturation and value, as torchvision's _rgb2hsv. */
export function rgbToHsv(r: number, g: number, b: number): [number, number, number] {
  const max = Math.max(r, g, b);
  const min = Math.min(r, g, b);
  const range = max - min;
  if (range === 0) return [0, 0, max];
  const s = range / max;
  const rc = (max - r) / range;
  const gc = (max - g) / range;
  const bc = (max - b) / range;
  const h = max === r ? bc - gc : max === g ? 2 + rc - bc : 4 + gc - rc;
  return [(((h / 6 + 1) % 1) + 1) % 1, s, max];
}

export function hsvToRgb(h: number, s: number, v: number): [number, number, number] {
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const clamp = (x: number): number => Math.min(Math.max(x, 0), 1);
  const p = clamp(v * (1 - s));
  const q = clamp(v * (1 - s * f));
  const t = clamp(v * (1 - s * (1 - f)));
  switch (((i % 6) + 6) % 6) {
    case 0: return [v, t, p];
    case 1: return [q, v, p];
    case 2: return [p, v, t];
    case 3: return [p, q, v];
    case 4: return [t, p, v];
    default: return [v, p, q];
  }
}

export interface ColorJitterOptions {
  /** Factor drawn from [max(0, 1 - b), 1 + b]. */
  brightness?: number;
  contrast?: number;
  saturation?: number;
  /** Shift drawn from [-hue, hue], at most 0.5. */
  hue?: number;
}

/** Checks the ranges once, for the options of a transform pipeline. */
export function checkColorJitter(o: ColorJitterOptions): void {
  for (const k of ['brightness', 'contrast', 'saturation'] as const) {
    const v = o[k];
    if (v !== undefined && !(v >= 0 && Number.isFinite(v))) throw new RangeError(`colorJitter: ${k} must be a finite number >= 0, got ${v}`);
  }
  if (o.hue !== undefined && !(o.hue >= 0 && o.hue <= 0.5)) throw new RangeError(`colorJitter: hue must be in [0, 0.5], got ${o.hue}`);
}

/** torchvision's ColorJitter: the four adjustments in a random order, each with a random factor. */
export function colorJitter(img: Image, rng: Rng, o: ColorJitterOptions = {}): Image {
  checkColorJitter(o);
  const order = rng.shuffle([0, 1, 2, 3]);
  const factor = (s: number | undefined): number | null => (s ? rng.uniform(Math.max(0, 1 - s), 1 + s) : null);
  const b = factor(o.brightness);
  const c = factor(o.contrast);
  const s = factor(o.saturation);
  const h = o.hue ? rng.uniform(-o.hue, o.hue) : null;
  let x = img;
  for (const op of order) {
    if (op === 0 && b !== null) x = adjustBrightness(x, b);
    else if (op === 1 && c !== null) x = adjustContrast(x, c);
    else if (op === 2 && s !== null) x = adjustSaturation(x, s);
    else if (op === 3 && h !== null) x = adjustHue(x, h);
  }
  return x;
}
