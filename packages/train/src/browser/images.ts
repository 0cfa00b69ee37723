/**
 * Images in the browser (page or worker): a Blob, File, ImageBitmap, ImageData or canvas is
 * decoded with createImageBitmap and read back through an OffscreenCanvas into the float CHW
 * [0, 1] `Image` that the transforms use — the same shape Node's sharp decoder gives.
 */
import { stratifiedSplit, type Dataset, type Sample } from '../data/dataset.js';
import { Rng } from '@tl/tensor';
import { checkPreprocess, describePreprocess, evalTransform, trainTransform, type Image, type Preprocess } from '../data/transforms.js';
import { evalResizeSize, resample, shorterSideSize, type Interpolation } from '../data/resample.js';

export type ImageSource = Blob | ImageBitmap | ImageData | OffscreenCanvas | HTMLCanvasElement | HTMLImageElement | HTMLVideoElement;

export class BrowserImageError extends Error {
  override name = 'BrowserImageError';
}

/**
 * Decodes to float CHW in [0, 1]: RGB, or luma (ITU-R BT.601 weights) when `channels` is 1.
 * `maxSide` shrinks large images so their shorter side is `maxSide` (never enlarges) by
 * Pillow's resampling (resample.ts) rather than the browser's, whose kernels are its own: at
 * the evaluation resize size this is torchvision's Resize. Alpha is dropped, as sharp's
 * removeAlpha does.
 */
export async function decodeImageData(src: ImageSource, channels: 1 | 3 = 3, maxSide?: number, name = 'image', interpolation?: Interpolation): Promise<Image> {
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(src as ImageBitmapSource, { colorSpaceConversion: 'none', premultiplyAlpha: 'none', imageOrientation: 'from-image' });
  } catch (e) {
    throw new BrowserImageError(`${name}: cannot decode image (${(e as Error).message})`);
  }
  const { width, height } = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  if (!ctx) throw new BrowserImageError(`${name}: no 2D canvas context in this browser`);
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const img = rgbaToImage(ctx.getImageData(0, 0, width, height).data, width, height, channels);
  if (!maxSide || Math.min(width, height) <= maxSide) return img;
  const [h, w] = shorterSideSize(height, width, maxSide);
  return resample(img, h, w, { interpolation, uint8: true });
}

/** RGBA bytes (ImageData order) to float CHW in [0, 1]. */
export function rgbaToImage(rgba: Uint8ClampedArray | Uint8Array, width: number, height: number, channels: 1 | 3 = 3): Image {
  const n = width * height;
  const out = new Float32Array(channels * n);
  if (channels === 1) {
    for (let k = 0; k < n; k++) out[k] = (0.299 * rgba[4 * k]! + 0.587 * rgba[4 * k + 1]! + 0.114 * rgba[4 * k + 2]!) / 255;
  } else {
    for (let k = 0; k < n; k++) for (let c = 0; c < 3; c++) out[c * n + k] = rgba[4 * k + c]! / 255;
  }
  return { data: out, channels, height, width };
}

export interface LabelledImage {
  source: ImageSource;
  label: number;
  /** Shown in error messages (a file name). */
  name?: string;
}

/**
 * Images held by the page (files, drops, webcam frames), decoded once on first use; epochs
 * after the first only run the seeded transforms. The browser twin of Node's image folders.
 */
export class BrowserImageDataset implements Dataset {
  private cache = new Map<number, Promise<Image>>();
  readonly inputShape: number[];
  readonly fingerprint: string;
  constructor(
    readonly items: LabelledImage[],
    readonly classes: string[],
    readonly preprocess: Preprocess,
    identity = `browser:${Date.now()}`,
  ) {
    this.inputShape = [preprocess.channels, preprocess.imageSize, preprocess.imageSize];
    this.fingerprint = `images:${identity}:${items.length}:${describePreprocess(preprocess)}`;
    for (const [i, it] of items.entries()) {
      if (!Number.isInteger(it.label) || it.label < 0 || it.label >= classes.length) {
        throw new BrowserImageError(`${it.name ?? `image ${i}`}: label ${it.label} is not a class index (0..${classes.length - 1})`);
      }
    }
  }
  get length(): number {
    return this.items.length;
  }
  get augments(): boolean {
    return this.preprocess.augment !== false;
  }
  labels(): number[] {
    return this.items.map((it) => it.label);
  }
  image(i: number): Promise<Image> {
    let p = this.cache.get(i);
    if (!p) {
      const it = this.items[i]!;
      // As image-folder.ts: 1.5x the input for training crops, torchvision's resize for evaluation.
      const pre = this.preprocess;
      const side = this.augments ? Math.ceil(pre.imageSize * 1.5) : evalResizeSize(pre.imageSize, pre.cropPct ?? 1);
      p = decodeImageData(it.source, pre.channels === 1 ? 1 : 3, side, it.name ?? `image ${i}`, pre.interpolation);
      this.cache.set(i, p);
      p.catch(() => this.cache.delete(i));
    }
    return p;
  }
  async get(i: number, augmentSeed?: number): Promise<Sample> {
    if (!Number.isInteger(i) || i < 0 || i >= this.items.length) throw new RangeError(`sample ${i} is out of range for ${this.items.length} images`);
    const img = await this.image(i);
    const input = augmentSeed !== undefined && this.augments ? trainTransform(img, this.preprocess, new Rng(augmentSeed)) : evalTransform(img, this.preprocess);
    return { input, label: this.items[i]!.label };
  }
}

export interface BrowserImagesOptions extends Partial<Preprocess> {
  /** Hold out this fraction of each class for validation (stratified, seeded). */
  valSplit?: number;
  seed?: number;
  identity?: string;
}

/** Images per class (the page's lists) as a data set, optionally split for validation. */
export function browserImages(
  perClass: { name: string; images: { source: ImageSource; name?: string }[] }[],
  opts: BrowserImagesOptions = {},
): { train: Dataset; val: Dataset | null; classes: string[] } {
  const classes = perClass.map((c) => c.name);
  if (classes.length < 2) throw new BrowserImageError(`classification needs at least two classes, got ${classes.length}`);
  const items: LabelledImage[] = [];
  perClass.forEach((c, label) => {
    if (c.images.length === 0) throw new BrowserImageError(`class "${c.name}" has no images`);
    for (const im of c.images) items.push({ source: im.source, label, name: im.name });
  });
  const pre: Preprocess = {
    imageSize: opts.imageSize ?? 224,
    mean: opts.mean ?? [0.485, 0.456, 0.406],
    std: opts.std ?? [0.229, 0.224, 0.225],
    channels: opts.channels ?? 3,
    cropPct: opts.cropPct,
    interpolation: opts.interpolation,
    augment: opts.augment ?? false,
  };
  checkPreprocess(pre);
  const ds = new BrowserImageDataset(items, classes, pre, opts.identity);
  if (!opts.valSplit) return { train: ds, val: null, classes };
  const { train, val } = stratifiedSplit(ds, opts.valSplit, opts.seed ?? 0);
  return { train, val, classes };
}
