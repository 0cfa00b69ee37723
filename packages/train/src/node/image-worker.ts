/**
 * A decode worker (node:worker_threads) of image-pipeline.ts: each message is one sample to
 * make. The worker keeps its share of the decoded-image cache (the main thread sends a cached
 * image's jobs back to the worker holding it), and answers with the sample, its buffer moved
 * rather than copied, the keys its cache dropped, and the cache's figures.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { parentPort } from 'node:worker_threads';
import { ByteLru } from '../data/lru.js';
import { decodePixels, pixelsToSample, takeAllocated, type Pixels } from './image-decode.js';
import { BadImageError } from './data-error.js';
import type { WorkerJob, WorkerReply } from './image-pipeline.js';

const port = parentPort;
if (!port) throw new Error('image-worker.ts runs as a worker thread (see image-pipeline.ts)');

// V8 frees an ArrayBuffer's memory only when it collects the buffer's object, by heuristics
// that let dead decode buffers pile up: measured, the process's peak memory crept up with the
// number of images decoded (about 50 MB more over 8,000 small JPEGs than over 1,000). A
// worker's heap holds little but these buffers, so a full collection after every GC_BYTES
// allocated (a few milliseconds) keeps its memory flat.
const GC_BYTES = 32 * 2 ** 20;
v8.setFlagsFromString('--expose-gc');
const collect = vm.runInNewContext('gc') as () => void;
let allocated = 0;
function count(bytes: number): void {
  allocated += bytes;
  if (allocated < GC_BYTES) return;
  allocated = 0;
  collect();
}

const caches = new Map<number, ByteLru<string, Pixels>>();
let evicted: string[] = [];

port.on('message', (job: WorkerJob) => {
  void run(job).then(
    (reply) => port.postMessage(reply, reply.input ? [reply.input.buffer as ArrayBuffer] : []),
    (e: Error) => {
      const bad = e instanceof BadImageError ? { kind: e.kind, reason: e.reason } : undefined;
      port.postMessage({ id: job.id, error: { message: e.message, stack: e.stack, bad }, evicted: evicted.splice(0) } satisfies WorkerReply);
    },
  );
});

async function run(job: WorkerJob): Promise<WorkerReply> {
  let lru = caches.get(job.cacheId);
  if (!lru) {
    lru = new ByteLru<string, Pixels>(job.cacheBytes, (k, px) => {
      evicted.push(k);
      count(px.data.byteLength);
    });
    caches.set(job.cacheId, lru);
  }
  if (lru.limitBytes !== job.cacheBytes) lru.limitBytes = job.cacheBytes;
  const hit = lru.get(job.key);
  const pixels = hit ?? (await decodePixels(job.path, job.decode));
  const stored = hit ? undefined : lru.set(job.key, pixels, pixels.data.byteLength + 64);
  const input = pixelsToSample(pixels, job.preprocess, job.augmentSeed);
  count(takeAllocated());
  const cache = { bytes: lru.bytes, images: lru.size, hits: lru.hits, misses: lru.misses, evictions: lru.evictions };
  return { id: job.id, input, stored, evicted: evicted.splice(0), cache };
}
