/**
 * Labelled images on disk, in the layouts people have:
 * - torchvision's ImageFolder: root/<class>/<image>, classes sorted by name;
 * - Hugging Face's `imagefolder`: split folders (train/, validation/, test/ and their
 *   aliases) each holding class folders, and/or a `metadata.csv` / `metadata.jsonl` with a
 *   `file_name` column and a label column;
 * - a CSV (read with csv-parse: quoted fields, a BOM, CRLF) or JSONL list of paths and labels.
 *
 * Images are read lazily through an ImagePipeline (image-pipeline.ts): decode workers, and
 * decoded pixels in a cache bounded in bytes, so memory does not grow with the data set. A
 * corrupt, truncated, empty or over-large image is skipped by the loader and recorded in the
 * data set's `badImages` (refused again at once in later epochs, without a read); what can
 * be known before training (an empty class folder, a validation label training never saw, a
 * list without the columns it needs) is a DataError with a one-line message.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { parse as parseCsvSync } from 'csv-parse/sync';
import { stratifiedSplit, type Dataset, type Sample } from '../data/dataset.js';
import { checkPreprocess, describePreprocess, type Image, type Preprocess } from '../data/transforms.js';
import { evalResizeSize, type Interpolation } from '../data/resample.js';
import { BadImageError, BAD_IMAGE_KINDS, DataError, type BadImageKind } from './data-error.js';
import { decodePixels, DEFAULT_MAX_PIXELS, pixelsToImage } from './image-decode.js';
import { ImagePipeline, type ImagePipelineOptions } from './image-pipeline.js';

export { BadImageError, BAD_IMAGE_KINDS, DataError, type BadImageKind } from './data-error.js';
export { DEFAULT_MAX_PIXELS } from './image-decode.js';
export { closeImageWorkers, defaultImageWorkers, DEFAULT_CACHE_MB, ImageCache, imageWorkerScript, setImageWorkerScript, type ImagePipelineOptions } from './image-pipeline.js';

export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.bmp', '.tif', '.tiff', '.avif']);

/**
 * Decodes an image file to float CHW in [0, 1], RGB (or grayscale when `channels` is 1). With
 * `maxSide`, an image whose shorter side is longer is shrunk so that side is `maxSide`, by
 * Pillow's resampling (resample.ts), not sharp's: at the evaluation resize size this is
 * torchvision's Resize to the byte, where sharp's kernels differ by several levels. Images over
 * `maxPixels` are refused by their header (default: sharp's own limit, 268 megapixels).
 */
export async function decodeImage(path: string, channels: 1 | 3 = 3, maxSide?: number, interpolation?: Interpolation, maxPixels = 0x3fff * 0x3fff): Promise<Image> {
  return pixelsToImage(await decodePixels(path, { channels, maxSide, interpolation, maxPixels }));
}

/** The images skipped as unusable, by path (shared by the data sets of one run). */
export class BadImageLog {
  private readonly entries = new Map<string, BadImageError>();
  add(e: BadImageError): void {
    if (!this.entries.has(e.path)) this.entries.set(e.path, e);
  }
  get(path: string): BadImageError | undefined {
    return this.entries.get(path);
  }
  get size(): number {
    return this.entries.size;
  }
  list(): { path: string; kind: BadImageKind; reason: string }[] {
    return [...this.entries.values()].map((e) => ({ path: e.path, kind: e.kind, reason: e.reason }));
  }
  counts(): Record<BadImageKind, number> {
    const out = Object.fromEntries(BAD_IMAGE_KINDS.map((k) => [k, 0])) as Record<BadImageKind, number>;
    for (const e of this.entries.values()) out[e.kind]++;
    return out;
  }
  /** "3 images skipped (1 corrupt, 2 truncated)", or '' when none were. */
  summary(): string {
    if (this.size === 0) return '';
    const parts = Object.entries(this.counts()).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`);
    return `${this.size} image${this.size === 1 ? '' : 's'} skipped (${parts.join(', ')})`;
  }
  /** One line per image: kind, path and reason, tab-separated, under a header line. */
  toTsv(): string {
    return ['kind\tpath\treason', ...this.list().map((e) => `${e.kind}\t${e.path}\t${e.reason.replace(/[\t\n]/g, ' ')}`)].join('\n') + '\n';
  }
}

/** How images are read: decode workers, the cache, the pixel limit, the bad-image record. */
export interface ImageReadOptions extends ImagePipelineOptions {
  /** Images above this many pixels are skipped unread; default DEFAULT_MAX_PIXELS (40 M). */
  maxPixels?: number;
  /** Where skipped images are recorded; default a log of the data set's own. */
  badImages?: BadImageLog;
}

export class ImageListDataset implements Dataset {
  readonly inputShape: number[];
  readonly fingerprint: string;
  readonly badImages: BadImageLog;
  /** Training samples (decoded at 1.5x the input side, room for random crops) and evaluation
   * samples (decoded at torchvision's resize size, so only the centre crop is left). */
  private readonly trainPipe: ImagePipeline;
  private readonly evalPipe: ImagePipeline;
  constructor(
    readonly files: string[],
    readonly targets: number[],
    readonly classes: string[],
    readonly preprocess: Preprocess,
    identity: string,
    opts: ImageReadOptions = {},
  ) {
    if (files.length !== targets.length) throw new RangeError(`${files.length} files but ${targets.length} targets`);
    checkPreprocess(preprocess);
    this.inputShape = [preprocess.channels, preprocess.imageSize, preprocess.imageSize];
    this.fingerprint = `images:${identity}:${files.length}:${describePreprocess(preprocess)}`;
    this.badImages = opts.badImages ?? new BadImageLog();
    const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
    if (!(maxPixels > 0)) throw new RangeError(`maxPixels must be a positive number of pixels, got ${maxPixels}`);
    const channels = preprocess.channels === 1 ? 1 : 3;
    const common = { channels, interpolation: preprocess.interpolation, maxPixels } as const;
    const evalSide = evalResizeSize(preprocess.imageSize, preprocess.cropPct ?? 1);
    this.evalPipe = new ImagePipeline(preprocess, { ...common, maxSide: evalSide }, opts);
    // The same cache for both (their entries are told apart by decode size).
    this.trainPipe = new ImagePipeline(preprocess, { ...common, maxSide: Math.max(Math.ceil(preprocess.imageSize * 1.5), evalSide) }, { ...opts, cache: this.evalPipe.cache });
  }
  get length(): number {
    return this.files.length;
  }
  get augments(): boolean {
    return this.preprocess.augment !== false;
  }
  /** The decoded-image cache (bytes, images, hits and misses in `cache.lru`). */
  get cache(): ImagePipeline['cache'] {
    return this.evalPipe.cache;
  }
  get workers(): number {
    return this.evalPipe.workers;
  }
  labels(): number[] {
    return this.targets;
  }
  async get(i: number, augmentSeed?: number): Promise<Sample> {
    if (!Number.isInteger(i) || i < 0 || i >= this.files.length) throw new RangeError(`sample ${i} is out of range for ${this.files.length} images`);
    const path = this.files[i]!;
    const known = this.badImages.get(path);
    if (known) throw known;
    const augment = augmentSeed !== undefined && this.augments;
    try {
      const input = augment ? await this.trainPipe.sample(path, augmentSeed) : await this.evalPipe.sample(path);
      return { input, label: this.targets[i]! };
    } catch (e) {
      if (e instanceof BadImageError) this.badImages.add(e);
      throw e;
    }
  }
}

export interface ImageFolderOptions extends Partial<Preprocess>, ImageReadOptions {
  /** Hold out this fraction of each class for validation (stratified, seeded), where the data
   * has no validation split of its own. */
  valSplit?: number;
  seed?: number;
  /** The training classes, in index order: labels are mapped by name onto them, and a label
   * outside them is an error (a validation set read on its own). */
  classes?: string[];
  /** The label column of a metadata file or list; default `label`. */
  labelColumn?: string;
}

export interface ImageFolderResult {
  /** The whole data set (no split), or its training part. */
  train: Dataset;
  /** The validation split: the data's own, or held out by `valSplit`. */
  val: Dataset | null;
  /** The data's own test split, if it has one (never trained on). */
  test?: Dataset | null;
  classes: string[];
  /** What was found, for logs: "class folders", "Hugging Face imagefolder (train, validation)". */
  layout?: string;
  /** Where skipped images are recorded (shared by the splits). */
  badImages?: BadImageLog;
}

/** Hugging Face's split folder names (datasets' data_files patterns), by split. */
export const SPLIT_NAMES = {
  train: ['train', 'training'],
  validation: ['validation', 'valid', 'val', 'dev'],
  test: ['test', 'testing', 'eval', 'evaluation'],
} as const;
type Split = keyof typeof SPLIT_NAMES;
const splitOf = (name: string): Split | undefined => (Object.keys(SPLIT_NAMES) as Split[]).find((s) => (SPLIT_NAMES[s] as readonly string[]).includes(name.toLowerCase()));
const METADATA_FILES = ['metadata.csv', 'metadata.jsonl'];

interface Labelled {
  files: string[];
  labels: string[];
}

/**
 * A folder of labelled images: class sub-folders (torchvision's ImageFolder), or Hugging
 * Face's imagefolder layout (split folders and/or a metadata file). With split folders, the
 * validation split is the data's own and `valSplit` is not used.
 */
export async function imageFolder(root: string, opts: ImageFolderOptions = {}): Promise<ImageFolderResult> {
  const dir = resolve(root);
  const entries = await listDir(dir, root);
  const dirs = entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
  const metadata = METADATA_FILES.find((m) => entries.some((e) => e.isFile() && e.name === m));
  const splitDirs = dirs.filter((d) => splitOf(d));
  const isSplit = splitDirs.some((d) => splitOf(d) === 'train') && splitDirs.length === dirs.length;
  const pre = fullPreprocess(opts);
  const badImages = opts.badImages ?? new BadImageLog();
  const read = { ...opts, badImages };
  const identity = async (): Promise<string> => `${dir}:${(await stat(dir)).mtimeMs}`;
  if (!isSplit) {
    if (splitDirs.some((d) => splitOf(d) !== 'train') && !dirs.some((d) => splitOf(d) === 'train')) {
      // validation/ and test/ without train/ are surely not classes.
      throw new DataError(`data folder ${root} has ${splitDirs.join(', ')} but no train/ folder; Hugging Face's imagefolder layout needs root/train/ (and optionally validation/, test/)`);
    }
    const found = metadata ? await metadataRows(join(dir, metadata), root, opts.labelColumn) : await classFolders(dir, root, dirs);
    const classes = opts.classes ?? classList(found.labels, root, !metadata);
    const ds = new ImageListDataset(found.files, targetsOf(found, classes, metadata ? join(root, metadata) : root), classes, pre, await identity(), read);
    return { ...split(ds, classes, opts), layout: metadata ? `Hugging Face imagefolder (${metadata})` : 'class folders', badImages };
  }
  // Split folders: each is class folders or has its own metadata file; or one metadata file at
  // the root names files under the split folders.
  const bySplit = new Map<Split, Labelled>();
  const rootRows = metadata ? await metadataRows(join(dir, metadata), root, opts.labelColumn) : null;
  for (const d of splitDirs) {
    const s = splitOf(d)!;
    if (bySplit.has(s)) throw new DataError(`data folder ${root} has two ${s} folders (${splitDirs.filter((x) => splitOf(x) === s).join(', ')}); keep one`);
    let rows: Labelled;
    if (rootRows) {
      const under = join(dir, d) + sep;
      const keep = rootRows.files.map((f, i) => [f, i] as const).filter(([f]) => f.startsWith(under));
      rows = { files: keep.map(([f]) => f), labels: keep.map(([, i]) => rootRows.labels[i]!) };
    } else {
      const sub = await listDir(join(dir, d), join(root, d));
      const meta = METADATA_FILES.find((m) => sub.some((e) => e.isFile() && e.name === m));
      rows = meta
        ? await metadataRows(join(dir, d, meta), join(root, d), opts.labelColumn)
        : await classFolders(join(dir, d), join(root, d), sub.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name));
    }
    if (rows.files.length === 0) throw new DataError(`${join(root, d)} holds no images`);
    bySplit.set(s, rows);
  }
  const train = bySplit.get('train')!;
  const classes = opts.classes ?? classList(train.labels, join(root, splitDirs.find((d) => splitOf(d) === 'train')!), !rootRows);
  const id = await identity();
  const make = (s: Split, pre2: Preprocess): ImageListDataset | null => {
    const rows = bySplit.get(s);
    if (!rows) return null;
    const name = splitDirs.find((d) => splitOf(d) === s)!;
    return new ImageListDataset(rows.files, targetsOf(rows, classes, join(root, name), s === 'train' ? undefined : name), classes, pre2, `${id}:${s}`, read);
  };
  const noAugment = { ...pre, augment: false as const };
  const trainDs = make('train', pre)!;
  const val = make('validation', noAugment);
  const test = make('test', noAugment);
  const layout = `Hugging Face imagefolder (${(Object.keys(SPLIT_NAMES) as Split[]).filter((k) => bySplit.has(k)).join(', ')}${rootRows ? `, ${metadata}` : ''})`;
  if (val) return { train: trainDs, val, test, classes, layout, badImages };
  return { ...split(trainDs, classes, opts), test, layout, badImages };
}

async function listDir(dir: string, shown: string): Promise<import('node:fs').Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(`data folder ${shown}: ${code === 'ENOENT' ? 'does not exist' : code === 'ENOTDIR' ? 'is not a folder' : (e as Error).message}`);
  }
}

/** root/<class>/<image>: every class folder must hold images. */
async function classFolders(dir: string, shown: string, classDirs: string[]): Promise<Labelled> {
  if (classDirs.length === 0) throw new DataError(`data folder ${shown} has no class sub-folders; expected ${shown}/<class name>/<images> (or a metadata.csv with file_name and label columns)`);
  const files: string[] = [];
  const labels: string[] = [];
  for (const name of [...classDirs].sort()) {
    const imgs = (await readdir(join(dir, name))).filter((f) => IMAGE_EXTENSIONS.has(extname(f).toLowerCase())).sort();
    if (imgs.length === 0) throw new DataError(`class folder ${join(shown, name)} has no images (${[...IMAGE_EXTENSIONS].join(', ')})`);
    for (const f of imgs) {
      files.push(join(dir, name, f));
      labels.push(name);
    }
  }
  return { files, labels };
}

/** Class names in index order: folder names sorted as strings (torchvision), list labels
 * sorted as numbers when they all are (Hugging Face's integer ClassLabels), else as strings. */
function classList(labels: string[], shown: string, folders: boolean): string[] {
  const set = [...new Set(labels)];
  const numeric = !folders && set.every((l) => /^-?\d+(\.\d+)?$/.test(l));
  const classes = numeric ? set.sort((a, b) => Number(a) - Number(b)) : set.sort();
  if (classes.length < 2) throw new DataError(`data folder ${shown} has only one class (${classes[0]}); classification needs at least two`);
  return classes;
}

/** Labels to class indices; a label outside `classes` is an error naming where it came from. */
function targetsOf(rows: Labelled, classes: string[], shown: string, splitName?: string): number[] {
  const index = new Map(classes.map((c, i) => [c, i]));
  return rows.labels.map((l, i) => {
    const c = index.get(l);
    if (c === undefined) {
      const where = splitName ? `${shown} (the ${splitName} split)` : shown;
      throw new DataError(`${where}: the label "${l}" (${relative(process.cwd(), rows.files[i]!) || rows.files[i]}) is not a training class; training has ${classes.join(', ')}`);
    }
    return c;
  });
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
  const { train, val } = stratifiedSplit(ds, opts.valSplit, opts.seed ?? 0);
  return { train, val, classes };
}

/** Column names a path may go by in a list, first match wins (`file_name` is Hugging Face's). */
export const PATH_COLUMNS = ['path', 'file_name', 'filename', 'file', 'image', 'image_path', 'filepath'];
/** Label column names tried when none is given. */
export const LABEL_COLUMNS = ['label', 'labels', 'class', 'category', 'target'];

/**
 * A CSV (with a header line) or JSONL list of images and labels: a path column (`path`,
 * `file_name`, …; see PATH_COLUMNS) relative to the list's folder, and a label column
 * (`labelColumn`, or `label`, `class`, …).
 */
export async function imageList(listFile: string, opts: ImageFolderOptions = {}): Promise<ImageFolderResult> {
  const rows = await listRows(listFile, listFile, opts.labelColumn, PATH_COLUMNS);
  const classes = opts.classes ?? classList(rows.labels, listFile, false);
  const badImages = opts.badImages ?? new BadImageLog();
  const targets = targetsOf(rows, classes, listFile);
  const ds = new ImageListDataset(rows.files, targets, classes, fullPreprocess(opts), `${resolve(listFile)}:${(await stat(listFile)).mtimeMs}`, { ...opts, badImages });
  return { ...split(ds, classes, opts), layout: `${extname(listFile).slice(1).toUpperCase()} list`, badImages };
}

/** Hugging Face's metadata file: `file_name` relative to its folder, and a label column. */
async function metadataRows(file: string, shown: string, labelColumn?: string): Promise<Labelled> {
  return listRows(file, join(shown, basename(file)), labelColumn, ['file_name']);
}

async function listRows(file: string, shown: string, labelColumn: string | undefined, pathColumns: string[]): Promise<Labelled> {
  const records = await readRecords(file, shown);
  if (records.rows.length === 0) throw new DataError(`${shown} lists no images`);
  const cols = records.columns;
  const pick = (wanted: string[], what: string, flag: string): string => {
    const c = wanted.find((w) => cols.includes(w)) ?? wanted.map((w) => cols.find((k) => k.toLowerCase() === w.toLowerCase())).find((k) => k !== undefined);
    if (!c) throw new DataError(`${shown} has no ${what} column (${wanted.map((w) => `"${w}"`).join(', ')}); its columns are ${cols.map((k) => JSON.stringify(k)).join(', ')}${flag}`);
    return c;
  };
  const pathCol = pick(pathColumns, 'image path', '');
  const labelCol = pick(labelColumn ? [labelColumn] : LABEL_COLUMNS, 'label', labelColumn ? '' : '; name the label column with --label-column');
  const base = dirname(resolve(file));
  const files: string[] = [];
  const labels: string[] = [];
  records.rows.forEach((r) => {
    const p = r.get(pathCol);
    const l = r.get(labelCol);
    if (typeof p !== 'string' || p.trim() === '') throw new DataError(`${shown}: ${r.where} has no image path in "${pathCol}"`);
    if (l === undefined || l === null || (typeof l === 'string' && l.trim() === '')) throw new DataError(`${shown}: ${r.where} has no label in "${labelCol}"`);
    if (typeof l === 'object') throw new DataError(`${shown}: ${r.where} has a "${labelCol}" that is not a single label: ${JSON.stringify(l)}`);
    files.push(isAbsolute(p) ? p : resolve(base, p));
    labels.push(String(l).trim());
  });
  const missing = files.findIndex((f) => !existsSync(f));
  if (missing >= 0) throw new DataError(`${shown}: ${records.rows[missing]!.where} names ${files[missing]}, which does not exist`);
  return { files, labels };
}

interface RecordsRead {
  columns: string[];
  rows: { where: string; get(column: string): unknown }[];
}

/** Rows of a CSV with a header line (csv-parse) or of a JSONL file, with where each came from. */
async function readRecords(file: string, shown: string): Promise<RecordsRead> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(`${shown}: ${code === 'ENOENT' ? 'does not exist' : code === 'EISDIR' ? 'is a folder' : (e as Error).message}`);
  }
  if (/\.(jsonl|ndjson)$/i.test(file)) {
    const rows: RecordsRead['rows'] = [];
    const columns = new Set<string>();
    text.replace(/^\uFEFF/, '').split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      let o: unknown;
      try {
        o = JSON.parse(line);
      } catch {
        throw new DataError(`${shown}: line ${i + 1} is not JSON`);
      }
      if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new DataError(`${shown}: line ${i + 1} is not a JSON object`);
      for (const k of Object.keys(o)) columns.add(k);
      rows.push({ where: `line ${i + 1}`, get: (c) => (o as Record<string, unknown>)[c] });
    });
    return { columns: [...columns], rows };
  }
  const lines = parseCsv(text, shown);
  const header = lines.shift();
  if (!header) throw new DataError(`${shown} is empty; expected a header line naming the columns`);
  const columns = header.map((h) => h.trim());
  const rows: RecordsRead['rows'] = [];
  lines.forEach((cols, i) => {
    if (cols.length === 1 && cols[0] === '') return;
    const where = `row ${i + 2}`;
    if (cols.length !== columns.length) throw new DataError(`${shown}: ${where} has ${cols.length} fields, the header ${columns.length}`);
    rows.push({ where, get: (c) => cols[columns.indexOf(c)] });
  });
  return { columns, rows };
}

/** Rows of `<key>,label` from a CSV with a header, or JSONL objects with `<key>` and `label`. */
export async function readLabelledRows(file: string, key: 'path' | 'text'): Promise<{ value: string; label: string }[]> {
  const { rows } = await readRecords(file, file);
  const out = rows.map((r) => {
    const v = r.get(key);
    const l = r.get('label');
    if (typeof v !== 'string' || l === undefined) throw new DataError(`${file}: ${r.where} needs "${key}" (string) and "label"`);
    return { value: v, label: String(l).trim() };
  });
  if (out.length === 0) throw new DataError(`${file} lists no samples`);
  return out;
}

/** RFC 4180 CSV by csv-parse: quoted fields with commas, doubled quotes and newlines, a
 * UTF-8 BOM, LF or CRLF line ends. Every line is a row (blank ones as ['']). */
export function parseCsv(text: string, name = 'CSV'): string[][] {
  try {
    return parseCsvSync(text, { bom: true, relax_column_count: true, skip_empty_lines: false }) as string[][];
  } catch (e) {
    throw new DataError(`${name}: ${(e as Error).message}`);
  }
}
