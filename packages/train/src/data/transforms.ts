/** Image transforms on float32 CHW arrays in [0, 1] (before normalisation), seeded. */
import type { Rng } from '@tl/tensor';

export interface Image {
  data: Float32Array;
  channels: number;
  height: number;
  width: number;
}

/** Bilinear resize with half-pixel centres (as PIL / torchvision without antialias). */
export function resize(img: Image, height: number, width: number): Image {
  const { channels: C, height: H, width: W, data } = img;
  if (H === height && W === width) return img;
  const out = new Float32Array(C * height * width);
  const sy = H / height;
  const sx = W / width;
  for (let y = 0; y < height; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), H - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, H - 1);
    const wy = fy - y0;
    for (let x = 0; x < width; x++) {
      const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), W - 1);
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, W - 1);
      const wx = fx - x0;
      for (let c = 0; c < C; c++) {
        const p = c * H * W;
        const top = data[p + y0 * W + x0]! * (1 - wx) + data[p + y0 * W + x1]! * wx;
        const bot = data[p + y1 * W + x0]! * (1 - wx) + data[p + y1 * W + x1]! * wx;
        out[c * height * width + y * width + x] = top * (1 - wy) + bot * wy;
      }
    }
  }
  return { data: out, channels: C, height, width };
}

export function crop(img: Image, top: number, left: number, height: number, width: number): Image {
  const { channels: C, height: H, width: W, data } = img;
  const out = new Float32Array(C * height * width);
  for (let c = 0; c < C; c++) {
    for (let y = 0; y < height; y++) {
      const sy = Math.min(Math.max(top + y, 0), H - 1);
      out.set(data.subarray(c * H * W + sy * W + left, c * H * W + sy * W + left + width), c * height * width + y * width);
    }
  }
  return { data: out, channels: C, height, width };
}

export function centerCrop(img: Image, size: number): Image {
  const h = Math.min(size, img.height);
  const w = Math.min(size, img.width);
  return crop(img, Math.floor((img.height - h) / 2), Math.floor((img.width - w) / 2), h, w);
}

/** torchvision's RandomResizedCrop: a random area (scale) and aspect (ratio) crop, resized. */
export function randomResizedCrop(img: Image, size: number, rng: Rng, scale: [number, number] = [0.08, 1], ratio: [number, number] = [3 / 4, 4 / 3]): Image {
  const area = img.height * img.width;
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(Math.log(ratio[0]), Math.log(ratio[1])));
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= img.width && h <= img.height) {
      const top = rng.int(img.height - h + 1);
      const left = rng.int(img.width - w + 1);
      return resize(crop(img, top, left, h, w), size, size);
    }
  }
  return resize(centerCrop(img, Math.min(img.height, img.width)), size, size);
}

export function horizontalFlip(img: Image): Image {
  const { channels: C, height: H, width: W, data } = img;
  const out = new Float32Array(data.length);
  for (let c = 0; c < C; c++) for (let y = 0; y < H; y++) {
    const row = c * H * W + y * W;
    for (let x = 0; x < W; x++) out[row + x] = data[row + W - 1 - x]!;
  }
  return { ...img, data: out };
}

/** Brightness, contrast and saturation jitter as torchvision's ColorJitter (hue omitted). */
export function colorJitter(img: Image, rng: Rng, o: { brightness?: number; contrast?: number; saturation?: number } = {}): Image {
  let d = Float32Array.from(img.data);
  const n = img.height * img.width;
  const factor = (s: number | undefined): number => (s ? rng.uniform(Math.max(0, 1 - s), 1 + s) : 1);
  const b = factor(o.brightness);
  const c = factor(o.contrast);
  const s = factor(o.saturation);
  for (let i = 0; i < d.length; i++) d[i] = d[i]! * b;
  const gray = (k: number): number => (img.channels === 3 ? 0.299 * d[k]! + 0.587 * d[n + k]! + 0.114 * d[2 * n + k]! : d[k]!);
  if (c !== 1) {
    let mean = 0;
    for (let k = 0; k < n; k++) mean += gray(k);
    mean /= n;
    for (let i = 0; i < d.length; i++) d[i] = mean + (d[i]! - mean) * c;
  }
  if (s !== 1 && img.channels === 3) {
    const out = new Float32Array(d.length);
    for (let k = 0; k < n; k++) {
      const g = gray(k);
      for (let ch = 0; ch < 3; ch++) out[ch * n + k] = g + (d[ch * n + k]! - g) * s;
    }
    d = out;
  }
  for (let i = 0; i < d.length; i++) d[i] = Math.min(Math.max(d[i]!, 0), 1);
  return { ...img, data: d };
}

/** (x - mean) / std per channel, in place; grayscale inputs are repeated to `channels`. */
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

/** Zero padding (in [0, 1] space, before normalisation) to a square of `size`. */
export function padTo(img: Image, size: number): Image {
  if (img.height === size && img.width === size) return img;
  const top = Math.floor((size - img.height) / 2);
  const left = Math.floor((size - img.width) / 2);
  const out = new Float32Array(img.channels * size * size);
  for (let c = 0; c < img.channels; c++) for (let y = 0; y < img.height; y++) {
    out.set(img.data.subarray(c * img.height * img.width + y * img.width, c * img.height * img.width + (y + 1) * img.width), c * size * size + (y + top) * size + left);
  }
  return { data: out, channels: img.channels, height: size, width: size };
}

export interface Preprocess {
  imageSize: number;
  mean: readonly number[];
  std: readonly number[];
  /** Channels the model takes (grayscale data is repeated). */
  channels: number;
  /** Random resized crop, flip and color jitter on the training split. */
  augment: boolean | { flip?: boolean; crop?: boolean; scale?: [number, number]; jitter?: number };
}

export function describePreprocess(p: Preprocess): string {
  return JSON.stringify({ s: p.imageSize, m: p.mean, d: p.std, c: p.channels, a: p.augment });
}

/** Evaluation: resize the short side then center-crop (or pad small images); normalise. */
export function evalTransform(img: Image, p: Preprocess): Float32Array {
  let x = img;
  if (x.height < p.imageSize && x.width < p.imageSize && x.height * 2 > p.imageSize) x = padTo(x, p.imageSize);
  else if (x.height !== p.imageSize || x.width !== p.imageSize) {
    const scale = p.imageSize / Math.min(x.height, x.width);
    x = centerCrop(resize(x, Math.round(x.height * scale), Math.round(x.width * scale)), p.imageSize);
  }
  return normalize(x, p.mean, p.std, p.channels);
}

export function trainTransform(img: Image, p: Preprocess, rng: Rng): Float32Array {
  const a = typeof p.augment === 'object' ? p.augment : {};
  let x = img;
  if (a.crop !== false) {
    const base = x.height < p.imageSize ? padTo(x, p.imageSize) : x;
    x = randomResizedCrop(base, p.imageSize, rng, a.scale ?? [0.6, 1]);
  } else x = { ...x, data: evalTransform(x, { ...p, mean: [0], std: [1], channels: x.channels }) };
  if (a.flip !== false && rng.next() < 0.5) x = horizontalFlip(x);
  if (a.jitter) x = colorJitter(x, rng, { brightness: a.jitter, contrast: a.jitter, saturation: a.jitter });
  return normalize(x, p.mean, p.std, p.channels);
}
