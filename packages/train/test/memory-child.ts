/**
 * Run by memory.test.ts in a child process of its own (bundled by esbuild): epochs of an image
 * folder through the DataLoader's sample batches (prefetching, decode workers; no GPU), then
 * the peak resident memory of the whole process (the worker threads included) as JSON.
 * argv: folder, worker script URL, cache MB, workers, image size, epochs.
 */
import { imageFolder, setImageWorkerScript, type ImageListDataset } from '../src/node/image-folder.js';
import { DataLoader } from '../src/data/loader.js';
import { peakResidentBytes } from '../src/node/peak-rss.js';

const [dir, worker, cacheMb, workers, size, epochs = '1'] = process.argv.slice(2);
setImageWorkerScript(worker!);
const t0 = performance.now();
const data = await imageFolder(dir!, { imageSize: Number(size), augment: true, workers: Number(workers), cache: Number(cacheMb) });
const ds = data.train as ImageListDataset;
const loader = new DataLoader(ds, { batchSize: 32, shuffle: true, seed: 0, augment: true });
let samples = 0;
let checksum = 0;
for (let e = 0; e < Number(epochs); e++) {
  for await (const b of loader.sampleBatches(e)) {
    samples += b.samples.length;
    checksum += (b.samples[0]!.input as Float32Array)[0]!;
  }
}
const stats = ds.cache.stats();
process.stdout.write(JSON.stringify({
  samples, checksum, seconds: (performance.now() - t0) / 1000, maxRssBytes: peakResidentBytes(),
  cacheBytes: stats.bytes, cacheImages: stats.images, evictions: stats.evictions, skipped: loader.skipped,
}) + '\n');
process.exit(0);
