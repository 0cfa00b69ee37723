/**
 * BrowserImageDataset in Chromium, for images.test.ts: one bundle that is both the page (a
 * module script; `window.__images`) and a dedicated module worker started by the page (as
 * apps/web's training worker, whose decode workers are nested workers). Either runs a data set
 * over image files served beside it and hands back every sample and the cache's figures.
 */
import { BrowserImageDataset, BrowserImageError, DataLoader, closeImageWorkers, runningImageWorkers, type Preprocess } from '@tl/train';

export interface RunSpec {
  files: string[];
  workers: number;
  /** Cache limit in megabytes; absent: the default. */
  cache?: number;
  imageSize: number;
  channels: 1 | 3;
  augment: boolean;
  /** Augmentation seeds: each image's samples are the evaluation one, then one per seed. */
  seeds: number[];
  /** Times the whole list is read (the cache evicts and decodes again on later passes). */
  passes: number;
  /** Also read one epoch through a DataLoader with this prefetch depth (batches of 4). */
  prefetch?: number;
}

export interface RunResult {
  /** [pass][image][sample] values. */
  samples: number[][][][];
  /** The loader's epoch: batch indices and their samples' values. */
  batches: { indices: number[]; values: number[][] }[];
  cacheLimit: number;
  /** The most bytes the cache held after any sample. */
  cacheMaxBytes: number;
  cacheImages: number;
  evictions: number;
  hits: number;
  workersRunning: number;
}

export type Outcome = RunResult | { error: string };

async function run(spec: RunSpec): Promise<RunResult> {
  const blobs = await Promise.all(spec.files.map(async (f) => {
    const res = await fetch(f);
    if (!res.ok) throw new Error(`${f}: HTTP ${res.status}`);
    return res.blob();
  }));
  const pre: Preprocess = {
    imageSize: spec.imageSize, channels: spec.channels,
    mean: spec.channels === 1 ? [0.5] : [0.485, 0.456, 0.406], std: spec.channels === 1 ? [0.25] : [0.229, 0.224, 0.225],
    cropPct: 0.875, augment: spec.augment ? { flip: true, crop: true, scale: [0.5, 1], jitter: spec.channels === 3 ? 0.2 : 0 } : false,
  };
  const items = blobs.map((b, i) => ({ source: b, label: i % 2, name: spec.files[i] }));
  const ds = new BrowserImageDataset(items, ['a', 'b'], pre, 'test', { workers: spec.workers, cache: spec.cache });
  let cacheMaxBytes = 0;
  const samples: number[][][][] = [];
  for (let p = 0; p < spec.passes; p++) {
    const pass: number[][][] = [];
    for (let i = 0; i < ds.length; i++) {
      const one: number[][] = [];
      for (const seed of [undefined, ...spec.seeds]) {
        one.push(Array.from((await ds.get(i, seed)).input));
        cacheMaxBytes = Math.max(cacheMaxBytes, ds.cache.bytes);
      }
      pass.push(one);
    }
    samples.push(pass);
  }
  const batches: RunResult['batches'] = [];
  if (spec.prefetch !== undefined) {
    const loader = new DataLoader(ds, { batchSize: 4, shuffle: true, seed: 7, augment: spec.augment, prefetch: spec.prefetch });
    for await (const b of loader.sampleBatches(0)) {
      batches.push({ indices: b.indices, values: b.samples.map((s) => Array.from(s.input)) });
      cacheMaxBytes = Math.max(cacheMaxBytes, ds.cache.bytes);
    }
  }
  const result = {
    samples, batches, cacheLimit: ds.cache.limitBytes, cacheMaxBytes, cacheImages: ds.cache.size,
    evictions: ds.cache.evictions, hits: ds.cache.hits, workersRunning: runningImageWorkers(),
  };
  closeImageWorkers();
  return result;
}

async function guard(spec: RunSpec): Promise<Outcome> {
  try {
    return await run(spec);
  } catch (e) {
    closeImageWorkers();
    return { error: `${e instanceof BrowserImageError ? 'BrowserImageError' : (e as Error).name}: ${(e as Error).message}` };
  }
}

declare global {
  interface Window {
    __images?: {
      run(spec: RunSpec): Promise<Outcome>;
      /** The same, in a dedicated worker of this page. */
      runInWorker(spec: RunSpec): Promise<Outcome>;
    };
  }
}

if (typeof window === 'undefined') {
  const scope = self as unknown as { onmessage: ((e: MessageEvent<RunSpec>) => void) | null; postMessage(m: Outcome): void };
  scope.onmessage = (e) => void guard(e.data).then((r) => scope.postMessage(r));
} else {
  window.__images = {
    run: guard,
    runInWorker: (spec) => new Promise((resolve) => {
      const w = new Worker('page.js', { type: 'module' });
      w.onmessage = (e: MessageEvent<Outcome>) => {
        w.terminate();
        resolve(e.data);
      };
      w.onerror = (e) => {
        w.terminate();
        resolve({ error: `worker: ${e.message}` });
      };
      w.postMessage(spec);
    }),
  };
}
