/**
 * The CIFAR-10 test JPEGs of ../shared/data as 8-bit pixels, corrupted as CIFAR-10-C does and
 * turned into a CIFAR ResNet's input; shared by the domain-adaptation scripts.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { corruptPixels, JPEG_QUALITY, type Corruption } from '../src/index.js';

export interface CifarImages {
  /** HWC RGB pixels, per class in file order. */
  pixels: Uint8Array[];
  labels: number[];
  classes: string[];
  /** Position of each image among its class's files (0 = the first). */
  rank: number[];
}

/** The first `perClass` test JPEGs of each class folder of `root` (cifar10-test). */
export async function loadCifarImages(root: string, perClass: number): Promise<CifarImages> {
  const classes = readdirSync(root).sort();
  const out: CifarImages = { pixels: [], labels: [], classes, rank: [] };
  for (const [c, name] of classes.entries()) {
    const files = readdirSync(join(root, name)).sort();
    if (files.length < perClass) throw new Error(`${join(root, name)} holds ${files.length} images; ${perClass} per class asked`);
    for (const [i, f] of files.slice(0, perClass).entries()) {
      const { data, info } = await sharp(join(root, name, f)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      if (info.width !== 32 || info.height !== 32 || info.channels !== 3) throw new Error(`${f}: expected 32x32 RGB, got ${info.width}x${info.height}x${info.channels}`);
      out.pixels.push(new Uint8Array(data));
      out.labels.push(c);
      out.rank.push(i);
    }
  }
  return out;
}

/** One image under a corruption at a severity in 1..5 ('clean' returns it as it is). */
export async function corruptImage(px: Uint8Array, kind: Corruption | 'clean', severity: number, seed: number): Promise<Uint8Array> {
  if (kind === 'clean') return px;
  if (kind !== 'jpegCompression') return corruptPixels(px, { height: 32, width: 32, channels: 3 }, kind, severity, seed);
  const jpeg = await sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).jpeg({ quality: JPEG_QUALITY[severity - 1] }).toBuffer();
  return new Uint8Array(await sharp(jpeg).raw().toBuffer());
}

/** The model's input: [0, 1] pixels normalised with its mean and std, CHW. */
export function toInput(px: Uint8Array, mean: readonly number[], std: readonly number[]): Float32Array {
  const x = new Float32Array(3 * 32 * 32);
  for (let i = 0; i < 32 * 32; i++) for (let c = 0; c < 3; c++) x[c * 1024 + i] = (px[i * 3 + c]! / 255 - mean[c]!) / std[c]!;
  return x;
}
