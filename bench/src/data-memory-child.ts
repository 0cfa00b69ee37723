/**
 * One measured run of `pnpm bench:data --memory` (a process of its own): one epoch of an image
 * folder through the DataLoader's sample batches (decode workers, prefetch, augmentation; no
 * GPU), then the process's peak RSS, worker threads included, and the cache's figures as JSON.
 * argv: folder, cache MB, workers, image size.
 */
import { DataLoader, ImageCache, imageFolder, peakResidentBytes } from '@tl/train';

const [dir, cacheMb, workers, size] = process.argv.slice(2);
const cache = new ImageCache(Number(cacheMb));
const data = await imageFolder(dir!, { imageSize: Number(size), augment: true, workers: Number(workers), cache });
const loader = new DataLoader(data.train, { batchSize: 32, shuffle: true, seed: 0, augment: true });
let samples = 0;
for await (const b of loader.sampleBatches(0)) samples += b.samples.length;
const stats = cache.stats();
process.stdout.write(JSON.stringify({ samples, maxRssBytes: peakResidentBytes(), cacheBytes: stats.bytes, cacheImages: stats.images }) + '\n');
process.exit(0);
