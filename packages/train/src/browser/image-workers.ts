/**
 * Image decoding off the thread that asks for samples (in apps/web, the training worker, which
 * also drives the GPU): a pool of dedicated Web Workers turns a Blob, ImageBitmap or ImageData
 * into RGBA bytes with createImageBitmap and an OffscreenCanvas, the same calls with the same
 * options as the in-thread decode of images.ts, and moves the bytes back (transferred, not
 * copied). Shrinking to the transforms' size (Pillow's resampling) and the seeded transforms
 * then run where the bytes arrive, so a sample is the same floats whatever thread decoded it.
 *
 * The worker is started from a Blob URL of the plain-JavaScript source below rather than from
 * `new Worker(new URL('./worker.js', import.meta.url))`: this package is bundled by its users
 * (esbuild, which leaves that pattern alone, so the worker file would be missing from their
 * output), and it is not made from `someFunction.toString()` either, since a bundler or a
 * coverage tool may rewrite a function's body to call helpers of its module (esbuild lowering
 * `async` for an older target does), which would not exist inside the worker. A string literal
 * is never rewritten. The cost is that the worker runs only what the browser already has: the
 * JavaScript of resample.ts and transforms.ts stays in the calling thread.
 *
 * Where workers cannot start (no `Worker` in this context, or a Content-Security-Policy without
 * `worker-src blob:`), images are decoded in the calling thread, after one warning.
 */

/** The options of every createImageBitmap call here and in images.ts: the file's own pixel
 * values (no colour management, no premultiplication), EXIF orientation applied, as sharp's
 * decode in Node gives them. */
export const BITMAP_OPTIONS: ImageBitmapOptions = { colorSpaceConversion: 'none', premultiplyAlpha: 'none', imageOrientation: 'from-image' };

/** Decoded RGBA bytes (ImageData order). */
export interface Rgba {
  data: Uint8ClampedArray;
  width: number;
  height: number;
}

/** Why a decode failed: the image (`decode`), the browser (`context`: no 2D canvas), or reading
 * the decoded pixels back (`read`: out of memory, say). */
export type DecodeFailure = 'decode' | 'context' | 'read';

/** A decode that failed in a worker; images.ts words it as it words the same failure in its own
 * thread, naming the image. */
export class DecodeFailed extends Error {
  constructor(readonly stage: DecodeFailure, message: string) {
    super(message);
  }
}

/** Sources a worker can receive by postMessage (structured clone; a Blob's bytes are shared,
 * not copied). Elements cannot be posted, and an OffscreenCanvas only by transfer, which would
 * take it from its owner. */
export type PostableImage = Blob | ImageBitmap | ImageData;

export function isPostable(src: unknown): src is PostableImage {
  return (typeof Blob !== 'undefined' && src instanceof Blob)
    || (typeof ImageBitmap !== 'undefined' && src instanceof ImageBitmap)
    || (typeof ImageData !== 'undefined' && src instanceof ImageData);
}

// Every failure is answered, never thrown: an exception in the async handler would only be an
// unhandled rejection in the worker, and its job would wait forever.
const WORKER_SOURCE = `'use strict';
const OPTIONS = ${JSON.stringify(BITMAP_OPTIONS)};
const message = (e) => String((e && e.message) || e);
self.onmessage = async (event) => {
  const { id, source } = event.data;
  let bitmap;
  try {
    bitmap = await createImageBitmap(source, OPTIONS);
  } catch (e) {
    self.postMessage({ id, stage: 'decode', error: message(e) });
    return;
  }
  try {
    const { width, height } = bitmap;
    const ctx = new OffscreenCanvas(width, height).getContext('2d', { willReadFrequently: true });
    if (!ctx) {
      self.postMessage({ id, stage: 'context', error: 'no 2D canvas context in this browser' });
      return;
    }
    ctx.drawImage(bitmap, 0, 0);
    const data = ctx.getImageData(0, 0, width, height).data;
    self.postMessage({ id, width, height, data }, [data.buffer]);
  } catch (e) {
    self.postMessage({ id, stage: 'read', error: message(e) });
  } finally {
    bitmap.close();
  }
};
`;

interface Reply {
  id: number;
  width?: number;
  height?: number;
  data?: Uint8ClampedArray;
  stage?: DecodeFailure;
  error?: string;
}

interface Job {
  id: number;
  source: PostableImage;
  /** null: decode in the calling thread (the workers could not start). */
  resolve(r: Rgba | null): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  inFlight: Map<number, Job>;
}

// Two jobs per worker, so one image's bytes travel while the next decodes.
const PER_WORKER = 2;

/** The decode workers a data set uses by default: one per core less one for the thread that
 * drives the GPU, at least one and at most four (as Node's defaultImageWorkers). */
export function defaultImageWorkers(): number {
  const cores = typeof navigator !== 'undefined' && navigator.hardwareConcurrency > 0 ? navigator.hardwareConcurrency : 2;
  return Math.max(1, Math.min(4, cores - 1));
}

/** Workers shared by every data set of this page or worker; it grows to the largest count asked. */
class DecodePool {
  private slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private url: string | null = null;
  /** Why workers cannot be used here, once that is known. */
  unusable: string | null = typeof Worker === 'undefined' ? 'Worker is not available in this context' : null;
  size = 0;

  grow(n: number): void {
    this.size = Math.max(this.size, n);
  }

  decode(source: PostableImage): Promise<Rgba | null> {
    if (this.unusable) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, source, resolve, reject });
      this.pump();
    });
  }

  private spawn(): Slot | null {
    try {
      this.url ??= URL.createObjectURL(new Blob([WORKER_SOURCE], { type: 'text/javascript' }));
      const slot: Slot = { worker: new Worker(this.url, { name: 'tl-image-decode' }), inFlight: new Map() };
      slot.worker.onmessage = (e: MessageEvent<Reply>) => this.reply(slot, e.data);
      // A worker that fails to load (a CSP refusing blob: workers) reports it here, with no job.
      slot.worker.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        this.disable(`an image decode worker failed: ${e.message || 'it could not start'}`);
      };
      slot.worker.onmessageerror = () => this.disable('an image decode worker could not read a reply');
      this.slots.push(slot);
      return slot;
    } catch (e) {
      this.disable(`image decode workers cannot start here (${(e as Error).message})`);
      return null;
    }
  }

  private reply(slot: Slot, r: Reply): void {
    const job = slot.inFlight.get(r.id);
    if (!job) return;
    slot.inFlight.delete(r.id);
    if (r.error !== undefined) job.reject(new DecodeFailed(r.stage ?? 'decode', r.error));
    else job.resolve({ data: r.data!, width: r.width!, height: r.height! });
    this.pump();
  }

  /** Gives up on workers: every waiting and running job is decoded in the calling thread. */
  private disable(reason: string): void {
    if (this.unusable) return;
    this.unusable = reason;
    console.warn(`${reason}; decoding images in this thread instead`);
    const jobs = [...this.queue.splice(0), ...this.slots.flatMap((s) => [...s.inFlight.values()])];
    this.terminate();
    for (const j of jobs) j.resolve(null);
  }

  private pump(): void {
    while (this.queue.length > 0 && !this.unusable) {
      // An idle worker, else a new one while the pool is under its size, else one with room.
      const slot = this.slots.find((s) => s.inFlight.size === 0)
        ?? (this.slots.length < this.size ? this.spawn() : this.slots.find((s) => s.inFlight.size < PER_WORKER));
      if (!slot) return;
      const job = this.queue.shift()!;
      slot.inFlight.set(job.id, job);
      try {
        // Cloned, not transferred: the data set keeps its source to decode it again after eviction.
        slot.worker.postMessage({ id: job.id, source: job.source });
      } catch {
        // A source that cannot be cloned (a closed ImageBitmap) fails in the calling thread,
        // with the message it gives there.
        slot.inFlight.delete(job.id);
        job.resolve(null);
      }
    }
  }

  get running(): number {
    return this.slots.length;
  }

  private terminate(): void {
    for (const s of this.slots) s.worker.terminate();
    this.slots = [];
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
  }

  close(): void {
    const jobs = [...this.queue.splice(0), ...this.slots.flatMap((s) => [...s.inFlight.values()])];
    this.terminate();
    this.size = 0;
    for (const j of jobs) j.reject(new Error('the image decode workers were closed'));
  }
}

let pool: DecodePool | undefined;

/** RGBA bytes of `source` decoded by one of at least `workers` pool workers; null when workers
 * cannot run here (the caller decodes in its own thread). A bad image rejects with DecodeFailed. */
export function decodeInWorker(source: PostableImage, workers: number): Promise<Rgba | null> {
  pool ??= new DecodePool();
  pool.grow(workers);
  return pool.decode(source);
}

/** Ends the decode workers (a page that is done with its data sets, tests); a later decode
 * starts new ones. Decodes still waiting reject. */
export function closeImageWorkers(): void {
  const p = pool;
  pool = undefined;
  p?.close();
}

/** How many decode workers are running now (0 before the first decode and after close). */
export function runningImageWorkers(): number {
  return pool?.running ?? 0;
}
