/**
 * Image folders (root/<class>/<image>) and CSV / JSONL lists of `path,label`, decoded with
 * sharp. Decoded images are cached in memory at their stored size, so epochs after the first
 * only run the (seeded) transforms. An unreadable image is skipped by the loader with a
 * warning naming it (see `DataLoader`).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join, resolve, dirname } from 'node:path';
import sharp from 'sharp';
import { stratifiedSplit, type Dataset, type Sample, type Subset } from '../data/dataset.js';
import { Rng } from '@tl/tensor';
import { checkPreprocess, describePreprocess, evalTransform, trainTransform, type Image, type Preprocess } from '../data/transforms.js';
import { evalResizeSize, resample, shorterSideSize, type Interpolation } from '../data/resample.js';

export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.bmp', '.tif', '.tiff', '.avif']);

export class DataError extends Error {
  override name = 'DataError';
}

/**
 * Decodes an image file to float CHW in [0, 1], RGB (or grayscale when `channels` is 1). With
 * `maxSide`, an image whose shorter side is longer is shrunk so that side is `maxSide`, by
 * Pillow's resampling (resample.ts), not sharp's: at the evaluation resize size this is
 * torchvision's Resize to the byte, where sharp's kernels differ by several levels.
 */
export async function decodeImage(path: string, channels: 1 | 3 = 3, maxSide?: number, interpolation?: Interpolation): Promise<Image> {
  const decoded = await decodeFull(path, channels);
  if (!maxSide || Math.min(decoded.height, decoded.width) <= maxSide) return decoded;
  const [h, w] = shorterSideSize(decoded.height, decoded.width, maxSide);
  return resample(decoded, h, w, { interpolation, uint8: true });
}

async function decodeFull(path: string, channels: 1 | 3): Promise<Image> {
  let img = sharp(path, { failOn: 'error' });
  img = channels === 1 ? img.grayscale() : img.removeAlpha().toColourspace('srgb');
  let raw;
  try {
    raw = await img.raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new DataError(`${path}: cannot decode image (${(e as Error).message})`);
  }
  const { data, info } = raw;
  const C = info.channels;
  const n = info.width * info.height;
  const out = new Float32Array(C * n);
  for (let k = 0; k < n; k++) for (let c = 0; c < C; c++) out[c * n + k] = data[k * C + c]! / 255;
  return { data: out, channels: C, height: info.height, width: info.width };
}

export class ImageListDataset implements Dataset {
  private cache = new Map<number, Promise<Image>>();
  readonly inputShape: number[];
  readonly fingerprint: string;
  constructor(
    readonly files: string[],
    readonly targets: number[],
    readonly classes: string[],
    readonly preprocess: Preprocess,
    identity: string,
  ) {
    this.inputShape = [preprocess.channels, preprocess.imageSize, preprocess.imageSize];
    this.fingerprint = `images:${identity}:${files.length}:${describePreprocess(preprocess)}`;
  }
  get length(): number {
    return this.files.length;
  }
  get augments(): boolean {
    return this.preprocess.augment !== false;
  }
  labels(): number[] {
    return this.targets;
  }
  private image(i: number): Promise<Image> {
    let p = this.cache.get(i);
    if (!p) {
      // Keep about 1.5x the training size (enough for crops, and bounded memory), or for
      // evaluation exactly torchvision's resize, so the eval transform only crops.
      const pre = this.preprocess;
      const side = this.augments ? Math.ceil(pre.imageSize * 1.5) : evalResizeSize(pre.imageSize, pre.cropPct ?? 1);
      p = decodeImage(this.files[i]!, pre.channels === 1 ? 1 : 3, side, pre.interpolation);
      this.cache.set(i, p);
      p.catch(() => this.cache.delete(i));
    }
    return p;
  }
  async get(i: number, augmentSeed?: number): Promise<Sample> {
    if (i < 0 || i >= this.files.length) throw new RangeError(`sample ${i} is out of range for ${this.files.length} images`);
    const img = await this.image(i);
    const input = augmentSeed !== undefined && this.augments ? trainTransform(img, this.preprocess, new Rng(augmentSeed)) : evalTransform(img, this.preprocess);
    return { input, label: this.targets[i]! };
  }
}

export interface ImageFolderOptions extends Partial<Preprocess> {
  /** Hold out this fraction of each class for validation (stratified, seeded). */
  valSplit?: number;
  seed?: number;
}

export interface ImageFolderResult {
  /** The whole folder (no split), or the training part. */
  train: Dataset;
  val: Dataset | null;
  classes: string[];
}

/** One sub-folder per class, sorted by name (class index order, as torchvision's ImageFolder). */
export async function imageFolder(root: string, opts: ImageFolderOptions = {}): Promise<ImageFolderResult> {
  const dir = resolve(root);
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw new DataError(`data folder ${root}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : (e as Error).message}`);
  }
  const classes = entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name).sort();
  if (classes.length === 0) throw new DataError(`data folder ${root} has no class sub-folders; expected ${root}/<class name>/<images>`);
  const files: string[] = [];
  const targets: number[] = [];
  for (const [c, name] of classes.entries()) {
    const imgs = (await readdir(join(dir, name))).filter((f) => IMAGE_EXTENSIONS.has(extname(f).toLowerCase())).sort();
    if (imgs.length === 0) throw new DataError(`class folder ${join(root, name)} has no images (${[...IMAGE_EXTENSIONS].join(', ')})`);
    for (const f of imgs) {
      files.push(join(dir, name, f));
      targets.push(c);
    }
  }
  if (classes.length < 2) throw new DataError(`data folder ${root} has only one class (${classes[0]}); classification needs at least two`);
  const pre = fullPreprocess(opts);
  const ds = new ImageListDataset(files, targets, classes, pre, `${dir}:${(await stat(dir)).mtimeMs}`);
  return split(ds, classes, opts);
}

function fullPreprocess(o: Partial<Preprocess>): Preprocess {
  const p: Preprocess = {
    imageSize: o.imageSize ?? 224,
    mean: o.mean ?? [0.485, 0.456, 0.406],
    std: o.std ?? [0.229, 0.224, 0.225],
    channels: o.channels ?? 3,
    cropPct: o.cropPct,
    interpolation: o.interpolation,
    augment: o.augment ?? false,
  };
  checkPreprocess(p);
  return p;
}

function split(ds: ImageListDataset, classes: string[], opts: ImageFolderOptions): ImageFolderResult {
  if (!opts.valSplit) return { train: ds, val: null, classes };
  const { train, val }: { train: Subset; val: Subset } = stratifiedSplit(ds, opts.valSplit, opts.seed ?? 0);
  return { train, val, classes };
}

/** A CSV (`path,label` with a header line) or JSONL (`{"path": ..., "label": ...}`) list of images. */
export async function imageList(listFile: string, opts: ImageFolderOptions & { classes?: string[] } = {}): Promise<ImageFolderResult> {
  const rows = await readLabelledRows(listFile, 'path');
  const classes = opts.classes ?? [...new Set(rows.map((r) => r.label))].sort();
  const files = rows.map((r) => resolve(dirname(listFile), r.value));
  const targets = rows.map((r, i) => {
    const c = classes.indexOf(r.label);
    if (c < 0) throw new DataError(`${listFile}: row ${i + 1} has label "${r.label}", not one of ${classes.join(', ')}`);
    return c;
  });
  const ds = new ImageListDataset(files, targets, classes, fullPreprocess(opts), `${resolve(listFile)}:${(await stat(listFile)).mtimeMs}`);
  return split(ds, classes, opts);
}

/** Rows of `<key>,label` from a CSV with a header, or JSONL objects with `<key>` and `label`. */
export async function readLabelledRows(file: string, key: 'path' | 'text'): Promise<{ value: string; label: string }[]> {
  const text = await readFile(file, 'utf8');
  const rows: { value: string; label: string }[] = [];
  if (file.endsWith('.jsonl') || file.endsWith('.ndjson')) {
    text.split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      let o: Record<string, unknown>;
      try {
        o = JSON.parse(line);
      } catch {
        throw new DataError(`${file}: line ${i + 1} is not JSON`);
      }
      if (typeof o[key] !== 'string' || o.label === undefined) throw new DataError(`${file}: line ${i + 1} needs "${key}" (string) and "label"`);
      rows.push({ value: o[key] as string, label: String(o.label) });
    });
  } else {
    const lines = parseCsv(text);
    const header = lines.shift()?.map((h) => h.trim().toLowerCase());
    const vi = header?.indexOf(key) ?? -1;
    const li = header?.indexOf('label') ?? -1;
    if (vi < 0 || li < 0) throw new DataError(`${file}: the CSV header must name the columns "${key}" and "label", got ${JSON.stringify(header)}`);
    lines.forEach((cols, i) => {
      if (cols.length === 1 && cols[0] === '') return;
      if (cols[vi] === undefined || cols[li] === undefined) throw new DataError(`${file}: row ${i + 2} has ${cols.length} columns`);
      rows.push({ value: cols[vi]!, label: cols[li]!.trim() });
    });
  }
  if (rows.length === 0) throw new DataError(`${file} lists no samples`);
  return rows;
}

/** RFC 4180 CSV: quoted fields with commas, doubled quotes and newlines. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(field);
      field = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += ch;
  }
  if (field !== '' || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}
