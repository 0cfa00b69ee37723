/**
 * Images from files to samples off the main thread, with memory bounded by a byte limit.
 *
 * - A pool of worker threads (image-worker.ts) decodes with sharp, shrinks and runs the seeded
 *   transforms; the main thread only hands out jobs and collects samples (moved, not copied),
 *   so it stays free to drive the GPU. Each worker takes two jobs at a time, so its JavaScript
 *   (resampling, augmentation) runs while sharp decodes the next file on libuv's threads. With
 *   `workers: 0` the same code runs on the main thread.
 * - Files are read when a sample is asked for, never ahead of the loader.
 * - Decoded pixels (8-bit, already shrunk to what the transforms need) are kept in an LRU
 *   cache bounded in bytes (`ImageCache`). With workers, each worker keeps its share of the
 *   limit, and a cached image's next job goes to the worker that holds it: pixels never cross
 *   threads, and evicted ones are garbage in the worker, which collects it (image-worker.ts).
 *   Evicted images are decoded again when next needed.
 *
 * A sample depends only on the file, the preprocessing and the augmentation seed the loader
 * derives from (seed, epoch, index): not on the worker that made it or how many there are.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ByteLru } from '../data/lru.js';
import type { Preprocess } from '../data/transforms.js';
import { BadImageError, type BadImageKind } from './data-error.js';
import { decodePixels, pixelsToSample, type DecodeSpec, type Pixels } from './image-decode.js';

export interface CacheStats {
  bytes: number;
  images: number;
  hits: number;
  misses: number;
  evictions: number;
}

export interface WorkerJob {
  id: number;
  path: string;
  /** The cache key (decode settings and path). */
  key: string;
  /** Which ImageCache, and this worker's share of its limit in bytes. */
  cacheId: number;
  cacheBytes: number;
  decode: DecodeSpec;
  preprocess: Preprocess;
  augmentSeed?: number;
}

export interface WorkerReply {
  id: number;
  input?: Float32Array;
  /** The job's pixels are now cached in this worker. */
  stored?: boolean;
  /** Keys this worker's cache dropped during the job. */
  evicted?: string[];
  cache?: CacheStats;
  error?: { message: string; stack?: string; bad?: { kind: BadImageKind; reason: string } };
}

/** The decode workers a data set uses by default: one per core less one for the main thread
 * (which drives the GPU), at least one and at most four. */
export function defaultImageWorkers(): number {
  return Math.max(1, Math.min(4, availableParallelism() - 1));
}

let cacheIds = 0;

/** Decoded images kept in memory, up to `limitMb` megabytes (least recently used evicted).
 * One cache may serve several data sets (a training and a validation folder). */
export class ImageCache {
  readonly id = ++cacheIds;
  readonly limitBytes: number;
  /** The main thread's part (decoding without workers). */
  readonly lru: ByteLru<string, Pixels>;
  /** The workers' parts, as they last reported them. */
  readonly workerStats = new Map<object, CacheStats>();
  constructor(readonly limitMb: number) {
    if (!(limitMb >= 0) || !Number.isFinite(limitMb)) throw new RangeError(`the image cache limit must be a number of megabytes >= 0, got ${limitMb}`);
    this.limitBytes = Math.floor(limitMb * 1024 * 1024);
    this.lru = new ByteLru(this.limitBytes);
  }
  /** Totals over the main thread and the workers. */
  stats(): CacheStats {
    const l = this.lru;
    const out = { bytes: l.bytes, images: l.size, hits: l.hits, misses: l.misses, evictions: l.evictions };
    for (const w of this.workerStats.values()) for (const k of Object.keys(out) as (keyof CacheStats)[]) out[k] += w[k];
    return out;
  }
  get bytes(): number {
    return this.stats().bytes;
  }
  get images(): number {
    return this.stats().images;
  }
}

/** The cache a data set makes for itself when given none: 1 GB, about 2,000 photos kept at the
 * 336-pixel side the 224-pixel training crops are taken from. */
export const DEFAULT_CACHE_MB = 1024;

const PER_WORKER = 2;

// V8 grows an isolate's young generation with its allocation rate, up to 3 x 16 MB, and a decode
// worker allocates fast (a decoded photo, its shrunk copy, the augmented sample) while keeping
// almost nothing: measured over one epoch of 8,000 small JPEGs with one worker, the process's
// peak RSS was 152 MB with V8's default and 128 MB with this cap, no slower.
const WORKER_YOUNG_GENERATION_MB = 3;

interface Slot {
  worker: Worker;
  inFlight: Map<number, Queued>;
  /** Jobs for images this worker has cached. */
  queue: Queued[];
}

interface Queued {
  job: WorkerJob;
  cache: ImageCache;
  resolve(r: WorkerReply): void;
  reject(e: Error): void;
}

/** Worker threads running image-worker.ts, shared by every data set of the process. Workers are
 * unreferenced while idle, so they never keep a finished program alive. */
class WorkerPool {
  private slots: Slot[] = [];
  private queue: Queued[] = [];
  private nextId = 1;
  /** Which worker holds each cached image. */
  private readonly owner = new Map<string, Slot>();
  size = 0;

  constructor(private readonly script: URL) {}

  grow(n: number): void {
    this.size = Math.max(this.size, n);
  }

  run(job: Omit<WorkerJob, 'id' | 'cacheBytes'>, cache: ImageCache): Promise<WorkerReply> {
    return new Promise((resolve, reject) => {
      const q: Queued = { job: { ...job, id: this.nextId++, cacheBytes: Math.floor(cache.limitBytes / Math.max(1, this.size)) }, cache, resolve, reject };
      const holder = this.owner.get(job.key);
      (holder && this.slots.includes(holder) ? holder.queue : this.queue).push(q);
      this.pump();
    });
  }

  private spawn(): Slot {
    const worker = new Worker(this.script, { resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB } });
    const slot: Slot = { worker, inFlight: new Map(), queue: [] };
    worker.unref();
    worker.on('message', (r: WorkerReply) => {
      const p = slot.inFlight.get(r.id);
      if (!p) return;
      slot.inFlight.delete(r.id);
      if (slot.inFlight.size === 0) worker.unref();
      for (const k of r.evicted ?? []) if (this.owner.get(k) === slot) this.owner.delete(k);
      if ((r.error || r.stored === false) && this.owner.get(p.job.key) === slot) this.owner.delete(p.job.key);
      if (r.cache) p.cache.workerStats.set(slot, r.cache);
      p.resolve(r);
      this.pump();
    });
    const fail = (e: Error): void => {
      this.slots = this.slots.filter((s) => s !== slot);
      for (const [k, s] of this.owner) if (s === slot) this.owner.delete(k);
      for (const p of slot.inFlight.values()) p.reject(new Error(`an image decode worker stopped: ${e.message}`));
      slot.inFlight.clear();
      // Its waiting jobs go to the others.
      this.queue.unshift(...slot.queue.splice(0));
      this.pump();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (this.slots.includes(slot)) fail(new Error(`exit code ${code}`));
    });
    this.slots.push(slot);
    return slot;
  }

  private send(slot: Slot, q: Queued): void {
    if (slot.inFlight.size === 0) slot.worker.ref();
    slot.inFlight.set(q.job.id, q);
    slot.worker.postMessage(q.job);
  }

  private pump(): void {
    while (this.slots.length < this.size && (this.queue.length > 0 || this.slots.length === 0)) this.spawn();
    for (;;) {
      let sent = false;
      for (const s of this.slots) {
        if (s.inFlight.size >= PER_WORKER) continue;
        // Its own cached images first, then shared work.
        const q = s.queue.shift() ?? this.queue.shift();
        if (!q) continue;
        // Remembered once sent: the worker caches what it decodes (the reply may say it did not).
        this.owner.set(q.job.key, s);
        this.send(s, q);
        sent = true;
      }
      if (!sent) return;
    }
  }

  async close(): Promise<void> {
    const slots = this.slots;
    this.slots = [];
    this.size = 0;
    this.owner.clear();
    for (const q of [...this.queue.splice(0), ...slots.flatMap((s) => s.queue.splice(0))]) q.reject(new Error('the image decode workers were closed'));
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }
}

let pool: WorkerPool | undefined;
let script: Promise<URL> | undefined;

/** The pool, with at least `n` workers. */
async function workers(n: number): Promise<WorkerPool> {
  script ??= imageWorkerScript();
  const url = await script;
  pool ??= new WorkerPool(url);
  pool.grow(n);
  return pool;
}

/** Ends the decode workers (they end by themselves with the program; tests and benchmarks
 * that change the worker count call this). */
export async function closeImageWorkers(): Promise<void> {
  const p = pool;
  pool = undefined;
  await p?.close();
}

/**
 * Where the decode workers' script is, for a program that bundles this module into one file
 * (so image-worker.js is no longer beside it): point it at the built worker, before the first
 * image is read.
 */
export function setImageWorkerScript(url: URL | string): void {
  if (pool) throw new Error('setImageWorkerScript: the decode workers are already running');
  script = Promise.resolve(typeof url === 'string' ? new URL(url, 'file://') : url);
}

/**
 * The worker's script: image-worker.js beside this module in the built package. Run from the
 * TypeScript sources (the workspace's tests import src/ through vitest), Node cannot start a
 * .ts worker, so the worker is bundled once with esbuild, the workspace's build tool, into
 * node_modules/.cache, where `sharp` still resolves.
 */
export async function imageWorkerScript(): Promise<URL> {
  if (script) return script;
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new URL('./image-worker.js', here);
  const entry = fileURLToPath(new URL('./image-worker.ts', here));
  const pkg = fileURLToPath(new URL('../../', here));
  const out = `${pkg}node_modules/.cache/tl-image-worker/image-worker.mjs`;
  const sources = fileURLToPath(new URL('../', here));
  // Rebuilt when any source is newer than the bundle.
  if (existsSync(out) && statSync(out).mtimeMs >= newestSource(sources)) return new URL(`file://${out}`);
  const name = 'esbuild';
  const esbuild = (await import(/* @vite-ignore */ name)) as { build(o: Record<string, unknown>): Promise<unknown> };
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp.mjs`;
  await esbuild.build({
    entryPoints: [entry], outfile: tmp, bundle: true, platform: 'node', format: 'esm', target: 'node20', external: ['sharp'],
    alias: { '@tl/tensor': fileURLToPath(new URL('../../../tensor/src/rng.ts', here)) }, logLevel: 'warning',
  });
  renameSync(tmp, out);
  return new URL(`file://${out}`);
}

function newestSource(dir: string): number {
  let t = 0;
  for (const sub of ['node', 'data', 'data/augment']) {
    const d = `${dir}${sub}`;
    if (!existsSync(d)) continue;
    for (const f of readdirSync(d)) if (f.endsWith('.ts')) t = Math.max(t, statSync(`${d}/${f}`).mtimeMs);
  }
  return t;
}

export interface ImagePipelineOptions {
  /** Decode workers: 0 decodes and transforms on the main thread. Default
   * `defaultImageWorkers()`. */
  workers?: number;
  /** The decoded-image cache (shared between data sets), or its limit in megabytes; 0 keeps
   * nothing. Default: a cache of DEFAULT_CACHE_MB for this data set. */
  cache?: ImageCache | number;
}

/** Samples from image files for one preprocessing: a worker (or the main thread) with its
 * cache. Bad files reject with a BadImageError. */
export class ImagePipeline {
  readonly cache: ImageCache;
  readonly workers: number;
  private readonly inFlight = new Map<string, Promise<Pixels>>();

  constructor(readonly preprocess: Preprocess, readonly decode: DecodeSpec, opts: ImagePipelineOptions = {}) {
    this.workers = opts.workers ?? defaultImageWorkers();
    if (!Number.isInteger(this.workers) || this.workers < 0) throw new RangeError(`workers must be a whole number >= 0, got ${this.workers}`);
    this.cache = opts.cache instanceof ImageCache ? opts.cache : new ImageCache(opts.cache ?? DEFAULT_CACHE_MB);
  }

  private key(path: string): string {
    const d = this.decode;
    return `${d.channels}:${d.maxSide ?? 0}:${d.interpolation ?? 'bilinear'}:${d.maxPixels ?? 0}:${path}`;
  }

  /** The model input for the file `path` (the training transform when `augmentSeed` is given). */
  async sample(path: string, augmentSeed?: number): Promise<Float32Array> {
    const key = this.key(path);
    if (this.workers === 0) {
      const px = this.cache.lru.get(key) ?? (await this.decodeHere(key, path));
      return pixelsToSample(px, this.preprocess, augmentSeed);
    }
    const pool = await workers(this.workers);
    const r = await pool.run({ path, key, cacheId: this.cache.id, decode: this.decode, preprocess: this.preprocess, augmentSeed }, this.cache);
    if (r.error) {
      if (r.error.bad) throw new BadImageError(path, r.error.bad.kind, r.error.bad.reason);
      const e = new Error(`${path}: ${r.error.message}`);
      e.stack = r.error.stack;
      throw e;
    }
    return r.input!;
  }

  private decodeHere(key: string, path: string): Promise<Pixels> {
    let p = this.inFlight.get(key);
    if (!p) {
      p = decodePixels(path, this.decode).then((px) => {
        this.cache.lru.set(key, px, px.data.byteLength + 64);
        return px;
      });
      this.inFlight.set(key, p);
      const done = (): void => void this.inFlight.delete(key);
      p.then(done, done);
    }
    return p;
  }
}
