/**
 * BrowserImageDataset in Chromium (no mocks): decode workers give exactly the samples of the
 * in-thread decode, in a page and in a dedicated worker (decode workers nested in it, as in
 * apps/web's training worker); the byte-bounded cache never holds more than its limit while
 * more images than fit are read, and the images it evicted decode again to the same samples;
 * a file that is not an image is named in the error; where a Content-Security-Policy forbids
 * blob: workers, images are decoded in the calling thread; bad options are refused by name.
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrowserImageDataset, type BrowserImageReadOptions } from '../../../packages/train/src/browser/images.js';
import type { Preprocess } from '../../../packages/train/src/data/transforms.js';
import { bundlePage, launchChromium, serveStatic, type Browser, type StaticServer } from './harness.js';
import type { Outcome, RunResult, RunSpec } from './images-page.js';

const CIFAR = fileURLToPath(new URL('../../../data/cifar10-test/', import.meta.url));
/** Real 32x32 CIFAR-10 JPEGs, then larger PNG and JPEG files made from them (shrunk by the
 * data set, one with an alpha channel, one grey). */
const JPEGS = ['airplane', 'cat', 'ship', 'frog', 'truck', 'horse'].flatMap((c) => [`${c}-0000.jpg`, `${c}-0001.jpg`]);
const MADE = ['wide.png', 'alpha.png', 'grey.png', 'large.jpg'];

let dir: string;
let server: StaticServer;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tl-images-page-'));
  await bundlePage(new URL('./images-page.ts', import.meta.url), join(dir, 'page.js'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><meta charset="utf-8"><title>images</title><body><script type="module" src="page.js"></script></body>');
  for (const f of JPEGS) {
    const [cls, n] = f.split('-');
    copyFileSync(join(CIFAR, cls!, n!), join(dir, f));
  }
  writeFileSync(join(dir, 'csp.html'), `<!doctype html><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="worker-src 'self'"><title>images</title><body><script type="module" src="page.js"></script></body>`);
  writeFileSync(join(dir, 'not-an-image.jpg'), 'these bytes are not a JPEG');
  const cat = join(CIFAR, 'cat', '0002.jpg');
  await sharp(cat).resize(97, 61, { kernel: 'cubic' }).png().toFile(join(dir, 'wide.png'));
  await sharp(cat).resize(50, 70).ensureAlpha(0.6).png().toFile(join(dir, 'alpha.png'));
  await sharp(join(CIFAR, 'dog', '0000.jpg')).resize(64, 64).grayscale().png().toFile(join(dir, 'grey.png'));
  await sharp(join(CIFAR, 'deer', '0000.jpg')).resize(120, 90).jpeg({ quality: 80 }).toFile(join(dir, 'large.jpg'));
  [server, browser] = await Promise.all([serveStatic(dir), launchChromium({ gpu: 'none' })]);
  page = await browser.context.newPage();
  await page.goto(server.url);
  await page.waitForFunction(() => window.__images !== undefined, null, { timeout: 60_000 });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const ok = (r: Outcome): RunResult => {
  if ('error' in r) throw new Error(r.error);
  return r;
};

async function inPage(spec: RunSpec, where: 'page' | 'worker' = 'page'): Promise<Outcome> {
  return where === 'page' ? page.evaluate((s) => window.__images!.run(s), spec) : page.evaluate((s) => window.__images!.runInWorker(s), spec);
}

const base: RunSpec = { files: [...JPEGS, ...MADE], workers: 0, imageSize: 16, channels: 3, augment: true, seeds: [11, 12345], passes: 1, prefetch: 3 };

describe('BrowserImageDataset in Chromium', () => {
  it('decode workers give the same samples as the in-thread decode, in the page and in a worker', async () => {
    for (const variant of [{}, { channels: 1 as const }, { augment: false, seeds: [], imageSize: 28 }]) {
      const spec = { ...base, ...variant };
      const here = ok(await inPage(spec));
      expect(here.workersRunning).toBe(0);
      // Not a blank decode: the samples vary.
      const first = here.samples[0]![0]![0]!;
      expect(Math.max(...first) - Math.min(...first)).toBeGreaterThan(0.5);
      expect(here.batches.flatMap((b) => b.indices).sort((a, b) => a - b)).toEqual([...spec.files.keys()]);
      for (const [workers, where] of [[1, 'page'], [3, 'page'], [2, 'worker']] as const) {
        const off = ok(await inPage({ ...spec, workers }, where));
        expect(off.workersRunning, `${workers} workers in the ${where}`).toBeGreaterThan(0);
        expect(off.samples, `${workers} workers in the ${where}, ${JSON.stringify(variant)}`).toEqual(here.samples);
        // Seeded augmentation through the prefetching loader does not depend on the workers either.
        expect(off.batches).toEqual(here.batches);
      }
    }
  });

  it('the cache holds no more than its limit, and evicted images decode again to the same samples', async () => {
    // imageSize 16 with augmentation keeps images at a 24-pixel shorter side: 3 x 24 x 24 floats
    // (6,912 bytes, 6,976 counted) for a CIFAR image, so 0.02 MB holds three of the 12.
    const spec = { ...base, files: JPEGS, cache: 0.02, passes: 2, seeds: [5] };
    const everything = ok(await inPage({ ...spec, cache: undefined }));
    expect(everything.cacheLimit).toBe(256 * 2 ** 20);
    expect(everything.cacheImages).toBe(JPEGS.length);
    expect(everything.evictions).toBe(0);
    for (const workers of [0, 2]) {
      const small = ok(await inPage({ ...spec, workers }));
      expect(small.cacheLimit).toBe(Math.floor(0.02 * 2 ** 20));
      expect(small.cacheMaxBytes).toBeGreaterThan(0);
      expect(small.cacheMaxBytes).toBeLessThanOrEqual(small.cacheLimit);
      expect(small.cacheImages).toBeLessThanOrEqual(3);
      expect(small.evictions).toBeGreaterThanOrEqual(2 * JPEGS.length - 3);
      expect(small.samples[1]).toEqual(small.samples[0]);
      expect(small.samples).toEqual(everything.samples);
    }
    const none = ok(await inPage({ ...spec, cache: 0, workers: 1 }));
    expect([none.cacheMaxBytes, none.cacheImages]).toEqual([0, 0]);
    expect(none.samples).toEqual(everything.samples);
  });

  it('a file that is not an image is named in the error, with and without workers', async () => {
    for (const where of ['page', 'worker'] as const) {
      for (const workers of [0, 1]) {
        const r = await inPage({ ...base, files: [JPEGS[0]!, 'not-an-image.jpg'], workers, prefetch: undefined }, where);
        expect('error' in r && r.error, `${workers} workers in the ${where}`).toMatch(/^BrowserImageError: not-an-image\.jpg: cannot decode image \(.+\)$/);
      }
    }
  });

  it('decodes in the calling thread, with the same samples, where a Content-Security-Policy forbids blob: workers', async () => {
    const csp = await browser.context.newPage();
    const warnings: string[] = [];
    csp.on('console', (m) => void (m.type() === 'warning' && warnings.push(m.text())));
    try {
      await csp.goto(`${server.url}csp.html`);
      await csp.waitForFunction(() => window.__images !== undefined, null, { timeout: 60_000 });
      const spec = { ...base, files: JPEGS.slice(0, 4) };
      const blocked = ok(await csp.evaluate((s) => window.__images!.run(s), { ...spec, workers: 2 }));
      expect(blocked.workersRunning).toBe(0);
      expect(blocked.samples).toEqual(ok(await inPage(spec)).samples);
      expect(warnings.join('\n')).toMatch(/decoding images in this thread instead/);
    } finally {
      await csp.close();
    }
  });

  it('refuses a bad worker count or cache limit, naming the value', () => {
    const pre: Preprocess = { imageSize: 16, mean: [0.5], std: [0.5], channels: 1, augment: false };
    const make = (opts: BrowserImageReadOptions) => () => new BrowserImageDataset([], ['a', 'b'], pre, 'x', opts);
    expect(make({ workers: -1 })).toThrow('workers must be a whole number >= 0, got -1');
    expect(make({ workers: 1.5 })).toThrow('workers must be a whole number >= 0, got 1.5');
    expect(make({ cache: NaN })).toThrow('the image cache limit must be a number of megabytes >= 0, got NaN');
    expect(make({ cache: -2 })).toThrow('the image cache limit must be a number of megabytes >= 0, got -2');
    expect(make({ cache: Infinity })).toThrow('the image cache limit must be a number of megabytes >= 0, got Infinity');
    expect(make({ workers: 0, cache: 0 })).not.toThrow();
  });
});
