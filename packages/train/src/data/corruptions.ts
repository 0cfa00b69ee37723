/**
 * Common corruptions as CIFAR-10-C applies them (Hendrycks & Dietterich 2019, make_cifar_c.py),
 * with its published parameters for 32x32 images at severities 1-5, on 8-bit RGB pixels
 * (row-major HWC) with the result truncated to 8 bits as CIFAR-10-C stores it. Noise is drawn
 * from a seeded generator, so a corrupted set is the same on every run. JPEG compression is an
 * encoder's business: `JPEG_QUALITY` gives its quality per severity.
 */
import { Rng } from '@tl/tensor';

export type PixelCorruption = 'gaussianNoise' | 'gaussianBlur' | 'contrast';
export type Corruption = PixelCorruption | 'jpegCompression';

export const CORRUPTIONS: readonly Corruption[] = ['gaussianNoise', 'gaussianBlur', 'contrast', 'jpegCompression'];

/** Standard deviation of the noise added to [0, 1] pixels. */
export const NOISE_STD = [0.04, 0.06, 0.08, 0.09, 0.1] as const;
/** Sigma in pixels of the Gaussian blur (skimage's `gaussian`, edges repeated, truncated at 4 sigma). */
export const BLUR_SIGMA = [0.4, 0.6, 0.7, 0.8, 1] as const;
/** Factor by which each channel's deviation from its mean is scaled. */
export const CONTRAST_FACTOR = [0.75, 0.5, 0.4, 0.3, 0.15] as const;
/** Quality of the JPEG encoding. */
export const JPEG_QUALITY = [80, 65, 58, 50, 40] as const;

function checkSeverity(severity: number): number {
  if (!Number.isInteger(severity) || severity < 1 || severity > 5) throw new RangeError(`corruption severity must be an integer from 1 to 5, got ${severity}`);
  return severity - 1;
}

/** [0, 1] values back to 8 bits as numpy's uint8 conversion does (clipped, then truncated). */
function toBytes(v: Float64Array): Uint8Array {
  return Uint8Array.from(v, (x) => Math.floor(Math.min(Math.max(x, 0), 1) * 255));
}

/** Standard normal samples by Box-Muller from the seeded generator. */
function normals(n: number, rng: Rng): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - rng.next()));
    const t = 2 * Math.PI * rng.next();
    out[i] = r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

/** A normalised 1-D Gaussian kernel of radius round(4 sigma), as scipy's gaussian_filter1d. */
function gaussianKernel(sigma: number): Float64Array {
  const radius = Math.floor(4 * sigma + 0.5);
  const k = Float64Array.from({ length: 2 * radius + 1 }, (_, i) => Math.exp(-0.5 * ((i - radius) / sigma) ** 2));
  const s = k.reduce((a, v) => a + v, 0);
  return k.map((v) => v / s);
}

/** Separable blur of HWC values along height then width, edge pixels repeated. */
function blur(x: Float64Array, height: number, width: number, channels: number, sigma: number): Float64Array {
  const k = gaussianKernel(sigma);
  const r = (k.length - 1) / 2;
  const pass = (src: Float64Array, alongHeight: boolean): Float64Array => {
    const dst = new Float64Array(src.length);
    for (let y = 0; y < height; y++) {
      for (let xx = 0; xx < width; xx++) {
        for (let c = 0; c < channels; c++) {
          let acc = 0;
          for (let j = -r; j <= r; j++) {
            const yy = alongHeight ? Math.min(Math.max(y + j, 0), height - 1) : y;
            const xj = alongHeight ? xx : Math.min(Math.max(xx + j, 0), width - 1);
            acc += k[j + r]! * src[(yy * width + xj) * channels + c]!;
          }
          dst[(y * width + xx) * channels + c] = acc;
        }
      }
    }
    return dst;
  };
  return pass(pass(x, true), false);
}

/**
 * One of the pixel corruptions at `severity` (1-5) of an 8-bit HWC image; `seed` picks the noise
 * (the other two are deterministic).
 */
export function corruptPixels(pixels: Uint8Array, size: { height: number; width: number; channels: number }, kind: PixelCorruption, severity: number, seed = 0): Uint8Array {
  const s = checkSeverity(severity);
  const { height, width, channels } = size;
  if (pixels.length !== height * width * channels) throw new RangeError(`corruptPixels: ${pixels.length} bytes is not ${height}x${width}x${channels}`);
  const x = Float64Array.from(pixels, (v) => v / 255);
  switch (kind) {
    case 'gaussianNoise': {
      const n = normals(x.length, new Rng(seed));
      return toBytes(x.map((v, i) => v + NOISE_STD[s] * n[i]!));
    }
    case 'gaussianBlur':
      return toBytes(blur(x, height, width, channels, BLUR_SIGMA[s]));
    case 'contrast': {
      const means = new Float64Array(channels);
      for (let i = 0; i < x.length; i++) means[i % channels]! += x[i]! / (height * width);
      return toBytes(x.map((v, i) => (v - means[i % channels]!) * CONTRAST_FACTOR[s] + means[i % channels]!));
    }
    default:
      throw new RangeError(`corruptPixels: unknown corruption ${JSON.stringify(kind)}; expected gaussianNoise, gaussianBlur or contrast (JPEG: encode at JPEG_QUALITY)`);
  }
}
