/**
 * Memory is bounded by the cache and the prefetch, not by the data set: one epoch over 1,600
 * images peaks within 1.1x of eight epochs over 200 of them, the same number of samples made
 * from 8x the data, at the same settings (image size, one decode worker, a 1 MB cache that 200
 * images overflow, batch size, prefetch); the same 1,600 with an unbounded cache show what the
 * bound saves. Each run is a child process of its own, measured by its peak RSS
 * (peakResidentBytes: the address space's high-water mark, which counts the worker thread and,
 * unlike getrusage's maxRSS, is not inherited from this test runner's process).
 *
 * Equal work, because peak RSS also creeps with the number of samples made whatever the data
 * (native memory settling: over the same 1,000 images, 1, 4 and 16 epochs peaked at 95, 110 and
 * 119 MB), so one epoch over each folder compares unequal work: measured at 1.05-1.28x
 * depending on image size and load. `pnpm bench:data --memory` measures that comparison.
 *
 * The child runs with --max-semi-space-size=1: V8 grows the main thread's young generation with
 * the allocation rate of whatever the program does, up to 3 x 16 MB, then keeps it; in a
 * training process that happens in the first steps whatever the data, and says nothing about
 * the data set. The decode workers' young generation is capped by the pipeline itself
 * (image-pipeline.ts). `pnpm bench:data --memory` measures the same with and without the flag.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { linkSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { imageWorkerScript } from '../src/node/image-pipeline.js';

const execFileAsync = promisify(execFile);
const work = mkdtempSync(join(tmpdir(), 'tl-memory-'));
const SIDE = 64; // JPEGs of 64 x 64
const SIZE = '32'; // decoded and cached at 48 x 48 (1.5x), 6.9 kB an image
const CACHE_MB = '1'; // about 150 images
const SMALL = 200;
const BIG = 1600;
const WORKERS = '1';
let child = '';
let worker = '';

async function writeJpegs(dir: string, n: number): Promise<void> {
  for (const c of ['a', 'b']) mkdirSync(join(dir, c), { recursive: true });
  let seed = 7;
  const rnd = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const jobs: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) {
    const px = Buffer.alloc(SIDE * SIDE * 3);
    const r = rnd() * 255;
    const g = rnd() * 255;
    for (let k = 0; k < SIDE * SIDE; k++) {
      px[k * 3] = r;
      px[k * 3 + 1] = ((k % SIDE) * 2 + i) & 255;
      px[k * 3 + 2] = g * (k / (SIDE * SIDE));
    }
    jobs.push(sharp(px, { raw: { width: SIDE, height: SIDE, channels: 3 } }).jpeg({ quality: 85 }).toFile(join(dir, i % 2 ? 'a' : 'b', `${i}.jpg`)));
    if (jobs.length >= 64) await Promise.all(jobs.splice(0));
  }
  await Promise.all(jobs);
}

beforeAll(async () => {
  await writeJpegs(join(work, 'big'), BIG);
  // The small folder: the first of the same files.
  for (const c of ['a', 'b']) mkdirSync(join(work, 'small', c), { recursive: true });
  for (let i = 0; i < SMALL; i++) linkSync(join(work, 'big', i % 2 ? 'a' : 'b', `${i}.jpg`), join(work, 'small', i % 2 ? 'a' : 'b', `${i}.jpg`));
  worker = (await imageWorkerScript()).href;
  const here = fileURLToPath(new URL('.', import.meta.url));
  const src = (p: string): string => join(here, '../..', p);
  child = join(here, '../node_modules/.cache/tl-memory/child.mjs');
  const name = 'esbuild';
  const esbuild = (await import(/* @vite-ignore */ name)) as { build(o: Record<string, unknown>): Promise<unknown> };
  await esbuild.build({
    entryPoints: [join(here, 'memory-child.ts')], outfile: child, bundle: true, platform: 'node', format: 'esm', target: 'node20',
    external: ['sharp', 'webgpu'], logLevel: 'warning',
    alias: { '@tl/tensor': src('tensor/src/node.ts'), '@tl/autograd': src('autograd/src/index.ts'), '@tl/models': src('models/src/node.ts') },
  });
}, 180_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Run {
  samples: number;
  seconds: number;
  maxRssBytes: number;
  cacheBytes: number;
  cacheImages: number;
  evictions: number;
}

async function run(folder: string, epochs: number, cacheMb = CACHE_MB): Promise<Run> {
  const { stdout } = await execFileAsync(process.execPath, ['--max-semi-space-size=1', child, join(work, folder), worker, cacheMb, WORKERS, SIZE, String(epochs)], { encoding: 'utf8', timeout: 120_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Run;
}

it(`one epoch over ${BIG} images peaks within 1.1x of ${BIG / SMALL} epochs over ${SMALL} (the cache limit bounds memory, not the data)`, async () => {
  const small = await run('small', BIG / SMALL);
  const big = await run('big', 1);
  const unbounded = await run('big', 1, '100000');
  const mb = (r: Run): string => `${(r.maxRssBytes / 2 ** 20).toFixed(1)} MB peak RSS, ${(r.cacheBytes / 2 ** 20).toFixed(1)} MB cached (${r.cacheImages} images), ${r.seconds.toFixed(1)} s`;
  console.log(`${SMALL} images x ${BIG / SMALL} epochs: ${mb(small)}\n${BIG} images x 1 epoch: ${mb(big)}\n${BIG} images, unbounded cache: ${mb(unbounded)}`);
  expect([small.samples, big.samples]).toEqual([BIG, BIG]);
  // The cache was full and evicting in both bounded runs, and held to its limit.
  expect(small.evictions).toBeGreaterThan(0);
  expect(big.cacheBytes).toBeLessThanOrEqual(Number(CACHE_MB) * 2 ** 20);
  expect(big.maxRssBytes).toBeLessThanOrEqual(1.1 * small.maxRssBytes);
  // Without the bound, the same run keeps every image, and memory shows it.
  expect(unbounded.cacheImages).toBe(BIG);
  expect(unbounded.maxRssBytes).toBeGreaterThan(big.maxRssBytes + 0.5 * unbounded.cacheBytes);
}, 300_000);
