/**
 * Image transforms on float32 CHW arrays in [0, 1] (before normalisation), seeded: the
 * evaluation transform of pretrained weights (torchvision's resize, centre crop and
 * normalisation) and the training pipeline built from the augmentations in ./augment/.
 */
import type { Rng } from '@tl/tensor';
import { evalResizeSize, INTERPOLATIONS, resample, shorterSideSize, type Interpolation } from './resample.js';
import { checkColorJitter, colorJitter, type ColorJitterOptions } from './augment/color.js';
import { crop, horizontalFlip, randomResizedCrop, roundHalfEven, verticalFlip } from './augment/geometry.js';
import { trivialAugmentWide } from './augment/trivial.js';
import { checkRandomErasing, randomErasing, type RandomErasingOptions } from './augment/erasing.js';

export interface Image {
  data: Float32Array;
  channels: number;
  height: number;
  width: number;
}

/** The image resampled to height x width as Pillow resamples (antialiased when shrinking). */
export function resize(img: Image, height: number, width: number, interpolation: Interpolation = 'bilinear'): Image {
  if (img.height === height && img.width === width) return img;
  return resample(img, height, width, { interpolation });
}

/** torchvision's CenterCrop: offsets rounded half to even, zero padding where the image is
 * smaller than the crop. */
export function centerCrop(img: Image, height: number, width = height): Image {
  if (img.height < height || img.width < width) {
    const padded = padTo(img, Math.max(height, img.height), Math.max(width, img.width));
    if (padded.height === height && padded.width === width) return padded;
    return centerCrop(padded, height, width);
  }
  return crop(img, roundHalfEven((img.height - height) / 2), roundHalfEven((img.width - width) / 2), height, width);
}

/** (x - mean) / std per channel, as a new array; grayscale inputs are repeated to `channels`. */
export function normalize(img: Image, mean: readonly number[], std: readonly number[], channels = mean.length): Float32Array {
  const n = img.height * img.width;
  const out = new Float32Array(channels * n);
  for (let c = 0; c < channels; c++) {
    const src = img.channels === 1 ? 0 : c;
    const m = mean[c] ?? mean[0]!;
    const s = std[c] ?? std[0]!;
    for (let k = 0; k < n; k++) out[c * n + k] = (img.data[src * n + k]! - m) / s;
  }
  return out;
}

/** Zero padding (in [0, 1] space, before normalisation) to `height` x `width` (default a
 * square), centred as torchvision's CenterCrop pads. */
export function padTo(img: Image, height: number, width = height): Image {
  if (img.height === height && img.width === width) return img;
  const top = Math.floor((height - img.height) / 2);
  const left = Math.floor((width - img.width) / 2);
  const out = new Float32Array(img.channels * height * width);
  for (let c = 0; c < img.channels; c++) for (let y = 0; y < img.height; y++) {
    out.set(img.data.subarray(c * img.height * img.width + y * img.width, c * img.height * img.width + (y + 1) * img.width), c * height * width + (y + top) * width + left);
  }
  return { data: out, channels: img.channels, height, width };
}

/** Random augmentation of training images, in torchvision's order: RandomResizedCrop, flips,
 * ColorJitter, TrivialAugmentWide, normalisation, RandomErasing. */
export interface AugmentOptions {
  /** RandomResizedCrop to the input size (default on); false: the evaluation resize and crop. */
  crop?: boolean;
  /** Area fraction range of the crop (torchvision's default [0.08, 1]). */
  scale?: [number, number];
  /** Aspect ratio range of the crop (default [3/4, 4/3]). */
  ratio?: [number, number];
  /** Horizontal flip with probability 0.5 (default on). */
  flip?: boolean;
  /** Vertical flip with probability 0.5 (default off). */
  verticalFlip?: boolean;
  /** ColorJitter: one strength for brightness, contrast and saturation, or each (and hue). */
  jitter?: number | ColorJitterOptions;
  /** 'trivial': TrivialAugmentWide. */
  autoAugment?: 'trivial';
  /** RandomErasing after normalisation: its probability, or its options. */
  erasing?: number | RandomErasingOptions;
}

/** What `augment: true` means: a gentle crop (60-100 % of the area) and horizontal flips, for
 * the small data sets transfer learning starts from. */
export const LIGHT_AUGMENT: Readonly<AugmentOptions> = { scale: [0.6, 1] };

export interface Preprocess {
  imageSize: number;
  mean: readonly number[];
  std: readonly number[];
  /** Channels the model takes (grayscale data is repeated). */
  channels: number;
  /** Evaluation: the shorter side is resized to floor(imageSize / cropPct) before the centre
   * crop (timm's crop_pct, the model spec's `cropPct`); default 1. */
  cropPct?: number;
  /** Resampling of the resizes (the model spec's `interpolation`); default bilinear. */
  interpolation?: Interpolation;
  /** Random augmentation of the training split: true for LIGHT_AUGMENT, or the options. */
  augment: boolean | AugmentOptions;
}

export function describePreprocess(p: Preprocess): string {
  return JSON.stringify({ s: p.imageSize, m: p.mean, d: p.std, c: p.channels, p: p.cropPct ?? 1, i: p.interpolation ?? 'bilinear', a: p.augment });
}

/** Checks what a Preprocess holds once, before any image is read. */
export function checkPreprocess(p: Preprocess): void {
  if (!Number.isInteger(p.imageSize) || p.imageSize < 1) throw new RangeError(`imageSize must be a positive integer, got ${p.imageSize}`);
  evalResizeSize(p.imageSize, p.cropPct ?? 1);
  if (p.interpolation !== undefined && !INTERPOLATIONS.includes(p.interpolation)) throw new RangeError(`interpolation must be one of ${INTERPOLATIONS.join(', ')}, got "${p.interpolation}"`);
  const a = typeof p.augment === 'object' ? p.augment : {};
  if (typeof a.jitter === 'object') checkColorJitter(a.jitter);
  else if (a.jitter !== undefined) checkColorJitter({ brightness: a.jitter });
  if (a.autoAugment !== undefined && a.autoAugment !== 'trivial') throw new RangeError(`autoAugment must be 'trivial', got "${a.autoAugment}"`);
  if (a.erasing !== undefined) checkRandomErasing(typeof a.erasing === 'number' ? { p: a.erasing } : a.erasing);
}

/** torchvision's evaluation geometry: Resize(floor(imageSize / cropPct)) on the shorter side,
 * then CenterCrop(imageSize). The input is taken as decoded 8-bit data (values k / 255), which
 * is resampled as Pillow resamples 8-bit images, so the result is torchvision's to the byte. */
export function evalResize(img: Image, p: Pick<Preprocess, 'imageSize' | 'cropPct' | 'interpolation'>): Image {
  const [h, w] = shorterSideSize(img.height, img.width, evalResizeSize(p.imageSize, p.cropPct ?? 1));
  const resized = h === img.height && w === img.width ? img : resample(img, h, w, { interpolation: p.interpolation, uint8: true });
  return centerCrop(resized, p.imageSize);
}

/** Evaluation: evalResize, then normalisation. */
export function evalTransform(img: Image, p: Preprocess): Float32Array {
  return normalize(evalResize(img, p), p.mean, p.std, p.channels);
}

export function trainTransform(img: Image, p: Preprocess, rng: Rng): Float32Array {
  const a: AugmentOptions = p.augment === true ? LIGHT_AUGMENT : typeof p.augment === 'object' ? p.augment : {};
  let x = a.crop !== false ? randomResizedCrop(img, p.imageSize, rng, a.scale ?? [0.08, 1], a.ratio ?? [3 / 4, 4 / 3], p.interpolation) : evalResize(img, p);
  if (a.flip !== false && rng.next() < 0.5) x = horizontalFlip(x);
  if (a.verticalFlip && rng.next() < 0.5) x = verticalFlip(x);
  if (a.jitter) x = colorJitter(x, rng, typeof a.jitter === 'number' ? { brightness: a.jitter, contrast: a.jitter, saturation: a.jitter } : a.jitter);
  if (a.autoAugment === 'trivial') x = trivialAugmentWide(x, rng);
  const out = normalize(x, p.mean, p.std, p.channels);
  if (a.erasing) randomErasing(out, [p.channels, p.imageSize, p.imageSize], rng, typeof a.erasing === 'number' ? { p: a.erasing } : a.erasing);
  return out;
}
