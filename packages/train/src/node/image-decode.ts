/**
 * The work on one image file, the same on the main thread and in the decode workers
 * (image-worker.ts), so a sample does not depend on where or by how many threads it was made:
 * sharp decodes (refusing images over a pixel limit by their header, before decoding), an
 * image larger than needed is shrunk by Pillow's resampling (resample.ts), and the bytes are
 * kept as 8-bit CHW `Pixels`, a quarter of their float size, for the cache. A sample is then
 * the seeded training transform or the evaluation transform of those pixels.
 */
import sharp from 'sharp';
import { Rng } from '@tl/tensor';
import { evalTransform, trainTransform, type Image, type Preprocess } from '../data/transforms.js';
import { resample, shorterSideSize, type Interpolation } from '../data/resample.js';
import { classifyBadImage } from './bad-image.js';

/** Images above this many pixels are skipped unread (an 8000 x 5000 photo is 40 megapixels):
 * decoding one takes 4 bytes a pixel per channel on the way to the cache. */
export const DEFAULT_MAX_PIXELS = 40_000_000;

/** 8-bit channel-first pixels: `data[c * height * width + y * width + x]`. */
export interface Pixels {
  data: Uint8Array;
  channels: number;
  height: number;
  width: number;
}

export interface DecodeSpec {
  channels: 1 | 3;
  /** Shrink so the shorter side is this (never enlarge); none: the stored size. */
  maxSide?: number;
  interpolation?: Interpolation;
  /** Refuse larger images by their header (sharp's limitInputPixels). */
  maxPixels?: number;
}

// One grow-only float buffer per thread for the images that only live inside a synchronous
// step (decode-to-shrink, pixels-to-transform): fewer large short-lived allocations, which
// otherwise drive the allocator's and the garbage collector's footprint up over a long run.
let scratch = new Float32Array(0);
function scratchFloats(n: number): Float32Array {
  if (scratch.length < n) scratch = new Float32Array(Math.ceil(n * 1.25));
  return scratch.subarray(0, n);
}

// Bytes of buffers allocated here since the last takeAllocated(), roughly (decode workers
// collect garbage by it).
let allocated = 0;
export function takeAllocated(): number {
  const n = allocated;
  allocated = 0;
  return n;
}

/** Decodes `path` to 8-bit CHW pixels; a bad file throws a BadImageError saying what is wrong. */
export async function decodePixels(path: string, spec: DecodeSpec): Promise<Pixels> {
  const maxPixels = spec.maxPixels ?? DEFAULT_MAX_PIXELS;
  let raw;
  try {
    let img = sharp(path, { failOn: 'error', limitInputPixels: maxPixels }).removeAlpha();
    img = spec.channels === 1 ? img.grayscale() : img.toColourspace('srgb');
    raw = await img.raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw await classifyBadImage(path, (e as Error).message, maxPixels);
  }
  const { data, info } = raw;
  allocated += data.length * 6;
  const C = info.channels;
  const H = info.height;
  const W = info.width;
  const n = H * W;
  const side = spec.maxSide;
  if (!side || Math.min(H, W) <= side) {
    const out = new Uint8Array(C * n);
    for (let c = 0; c < C; c++) for (let k = 0; k < n; k++) out[c * n + k] = data[k * C + c]!;
    return { data: out, channels: C, height: H, width: W };
  }
  // Shrunk as torchvision's Resize shrinks a PIL image (8-bit, antialiased): the input is
  // taken as k / 255 and the output comes back as bytes.
  const full = scratchFloats(C * n);
  for (let c = 0; c < C; c++) for (let k = 0; k < n; k++) full[c * n + k] = data[k * C + c]! / 255;
  const [h, w] = shorterSideSize(H, W, side);
  const small = resample({ data: full, channels: C, height: H, width: W }, h, w, { interpolation: spec.interpolation, uint8: true });
  const out = new Uint8Array(small.data.length);
  for (let i = 0; i < out.length; i++) out[i] = Math.round(small.data[i]! * 255);
  return { data: out, channels: C, height: h, width: w };
}

/** Pixels as the float CHW image in [0, 1] the transforms take (with `reuse`, in this
 * thread's scratch buffer: valid until the next call). */
export function pixelsToImage(p: Pixels, reuse = false): Image {
  const out = reuse ? scratchFloats(p.data.length) : new Float32Array(p.data.length);
  for (let i = 0; i < out.length; i++) out[i] = p.data[i]! / 255;
  return { data: out, channels: p.channels, height: p.height, width: p.width };
}

/** The model's input from decoded pixels: the seeded training transform when `augmentSeed`
 * is given, else the evaluation transform. */
export function pixelsToSample(p: Pixels, pre: Preprocess, augmentSeed?: number): Float32Array {
  // Every transform ends in normalize's new array, so the input may be the scratch buffer.
  const img = pixelsToImage(p, true);
  const out = augmentSeed !== undefined ? trainTransform(img, pre, new Rng(augmentSeed)) : evalTransform(img, pre);
  allocated += (p.data.length + out.length) * 8;
  return out;
}
