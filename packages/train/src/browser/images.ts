/**
 * Images in the browser (page or worker): a Blob, File, ImageBitmap, ImageData or canvas is
 * decoded with createImageBitmap and read back through an OffscreenCanvas into the float CHW
 * [0, 1] `Image` that the transforms use — the same shape Node's sharp decoder gives.
 *
 * A data set reads its images lazily, when a sample is first asked for, and mirrors Node's image
 * pipeline (node/image-pipeline.ts) with the same option names: `workers` decode off the calling
 * thread (image-workers.ts), and decoded images are kept in a cache bounded by `cache`
 * megabytes, least recently used evicted, so memory is set by the cache and the loader's
 * prefetched batches, not by the data set. An evicted image is decoded again when next needed.
 */
import { stratifiedSplit, type Dataset, type Sample } from '../data/dataset.js';
import { Rng } from '@tl/tensor';
import { checkPreprocess, describePreprocess, evalTransform, trainTransform, type Image, type Preprocess } from '../data/transforms.js';
import { evalResizeSize, resample, shorterSideSize, type Interpolation } from '../data/resample.js';
import { ByteLru } from '../data/lru.js';
import { BITMAP_OPTIONS, DecodeFailed, decodeInWorker, defaultImageWorkers, isPostable, type DecodeFailure, type Rgba } from './image-workers.js';

export { closeImageWorkers, defaultImageWorkers, runningImageWorkers } from './image-workers.js';

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
  return rgbaToShrunkImage(await decodeRgba(src, name), channels, maxSide, interpolation);
}

/** RGBA bytes of `src`, decoded in this thread. */
async function decodeRgba(src: ImageSource, name: string): Promise<Rgba> {
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(src as ImageBitmapSource, BITMAP_OPTIONS);
  } catch (e) {
    throw new BrowserImageError(failure(name, 'decode', (e as Error).message));
  }
  const { width, height } = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  if (!ctx) {
    bitmap.close();
    throw new BrowserImageError(failure(name, 'context', ''));
  }
  try {
    ctx.drawImage(bitmap, 0, 0);
    return { data: ctx.getImageData(0, 0, width, height).data, width, height };
  } catch (e) {
    throw new BrowserImageError(failure(name, 'read', (e as Error).message));
  } finally {
    bitmap.close();
  }
}

/** The error message of a failed decode, the same from a worker as from this thread. */
function failure(name: string, stage: DecodeFailure, message: string): string {
  if (stage === 'context') return `${name}: no 2D canvas context in this browser`;
  if (stage === 'read') return `${name}: cannot read the decoded image back (${message})`;
  return `${name}: cannot decode image (${message})`;
}

/** RGBA bytes of `src`, decoded by a pool worker where it can be posted to one, else here. */
async function decodeRgbaOffThread(src: ImageSource, name: string, workers: number): Promise<Rgba> {
  if (isPostable(src)) {
    try {
      const rgba = await decodeInWorker(src, workers);
      if (rgba) return rgba;
    } catch (e) {
      throw e instanceof DecodeFailed ? new BrowserImageError(failure(name, e.stage, e.message)) : e;
    }
  }
  return decodeRgba(src, name);
}

function rgbaToShrunkImage({ data, width, height }: Rgba, channels: 1 | 3, maxSide?: number, interpolation?: Interpolation): Image {
  const img = rgbaToImage(data, width, height, channels);
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

/** The decoded-image cache a data set has unless told otherwise, in megabytes (2^20 bytes):
 * about 200 square images kept as float RGB at the 336-pixel side the 224-pixel training crops
 * are taken from. Less than Node's DEFAULT_CACHE_MB, as a tab shares the machine's memory with
 * the rest of the browser. */
export const DEFAULT_CACHE_MB = 256;

/** How a BrowserImageDataset reads its images (the names of Node's ImagePipelineOptions). */
export interface BrowserImageReadOptions {
  /** Web Workers decoding images off the calling thread (Blobs, Files, ImageBitmaps and
   * ImageData; page elements are always decoded in the calling thread); 0 decodes everything
   * in the calling thread. Default `defaultImageWorkers()`. The samples are the same either way. */
  workers?: number;
  /** The decoded-image cache limit in megabytes (2^20 bytes); 0 keeps nothing. Default
   * DEFAULT_CACHE_MB. */
  cache?: number;
}

/**
 * Images held by the page (files, drops, webcam frames), decoded on first use and kept in a
 * byte-bounded cache; a cached image's later samples only run the seeded transforms. The
 * browser twin of Node's image folders.
 */
export class BrowserImageDataset implements Dataset {
  /** Decoded images by index (float CHW, shrunk to what the transforms need); read its
   * `bytes`, `size`, `limitBytes`, `hits`, `misses` and `evictions`. */
  readonly cache: ByteLru<number, Image>;
  readonly workers: number;
  /** Decodes under way, so that concurrent requests for one image decode it once. */
  private readonly inFlight = new Map<number, Promise<Image>>();
  readonly inputShape: number[];
  readonly fingerprint: string;
  constructor(
    readonly items: LabelledImage[],
    readonly classes: string[],
    readonly preprocess: Preprocess,
    identity = `browser:${Date.now()}`,
    opts: BrowserImageReadOptions = {},
  ) {
    this.inputShape = [preprocess.channels, preprocess.imageSize, preprocess.imageSize];
    this.fingerprint = `images:${identity}:${items.length}:${describePreprocess(preprocess)}`;
    for (const [i, it] of items.entries()) {
      if (!Number.isInteger(it.label) || it.label < 0 || it.label >= classes.length) {
        throw new BrowserImageError(`${it.name ?? `image ${i}`}: label ${it.label} is not a class index (0..${classes.length - 1})`);
      }
    }
    this.workers = opts.workers ?? defaultImageWorkers();
    if (!Number.isInteger(this.workers) || this.workers < 0) throw new RangeError(`workers must be a whole number >= 0, got ${this.workers}`);
    const mb = opts.cache ?? DEFAULT_CACHE_MB;
    if (typeof mb !== 'number' || !(mb >= 0) || !Number.isFinite(mb)) throw new RangeError(`the image cache limit must be a number of megabytes >= 0, got ${String(mb)}`);
    this.cache = new ByteLru(Math.floor(mb * 2 ** 20));
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
  /** The decoded image `i`, from the cache or decoded now. */
  image(i: number): Promise<Image> {
    const hit = this.cache.get(i);
    if (hit) return Promise.resolve(hit);
    let p = this.inFlight.get(i);
    if (!p) {
      p = this.decode(i).then((img) => {
        this.cache.set(i, img, img.data.byteLength + 64);
        return img;
      });
      this.inFlight.set(i, p);
      const done = (): void => void this.inFlight.delete(i);
      p.then(done, done);
    }
    return p;
  }
  private async decode(i: number): Promise<Image> {
    const it = this.items[i]!;
    const name = it.name ?? `image ${i}`;
    const rgba = this.workers > 0 ? await decodeRgbaOffThread(it.source, name, this.workers) : await decodeRgba(it.source, name);
    // As image-folder.ts: 1.5x the input for training crops, torchvision's resize for evaluation.
    const pre = this.preprocess;
    const side = this.augments ? Math.ceil(pre.imageSize * 1.5) : evalResizeSize(pre.imageSize, pre.cropPct ?? 1);
    return rgbaToShrunkImage(rgba, pre.channels === 1 ? 1 : 3, side, pre.interpolation);
  }
  async get(i: number, augmentSeed?: number): Promise<Sample> {
    if (!Number.isInteger(i) || i < 0 || i >= this.items.length) throw new RangeError(`sample ${i} is out of range for ${this.items.length} images`);
    const img = await this.image(i);
    const input = augmentSeed !== undefined && this.augments ? trainTransform(img, this.preprocess, new Rng(augmentSeed)) : evalTransform(img, this.preprocess);
    return { input, label: this.items[i]!.label };
  }
}

export interface BrowserImagesOptions extends Partial<Preprocess>, BrowserImageReadOptions {
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
  const ds = new BrowserImageDataset(items, classes, pre, opts.identity, { workers: opts.workers, cache: opts.cache });
  if (!opts.valSplit) return { train: ds, val: null, classes };
  const { train, val } = stratifiedSplit(ds, opts.valSplit, opts.seed ?? 0);
  return { train, val, classes };
}
