/**
 * The image pipeline (image-pipeline.ts) and the data layouts (image-folder.ts): samples the
 * same whatever the worker count and the same as decode-then-transform on the main thread; the
 * byte-bounded cache; bad images skipped, counted and recorded; CSV (csv-parse: quotes, BOM,
 * CRLF), JSONL and Hugging Face imagefolder layouts with their one-line errors; the balanced
 * sampler and class weights.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { decodePixels } from '../src/node/image-decode.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  balancedClassWeights, BadImageError, BadImageLog, ByteLru, closeImageWorkers, DataError, DataLoader, decodeImage, evalResizeSize, evalTransform, imageFolder, ImageCache,
  imageList, Rng, trainTransform, type Dataset, type ImageListDataset, type Preprocess,
} from '../src/node.js';

const work = mkdtempSync(join(tmpdir(), 'tl-images-'));
const p = (...s: string[]): string => join(work, ...s);

async function jpeg(path: string, w: number, h: number, seed: number): Promise<void> {
  const px = Buffer.alloc(w * h * 3);
  for (let k = 0; k < w * h; k++) {
    px[k * 3] = (seed * 37 + k) & 255;
    px[k * 3 + 1] = ((k % w) * 5 + seed * 11) & 255;
    px[k * 3 + 2] = (Math.floor(k / w) * 7) & 255;
  }
  await sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(path);
}

/** root/<class>/<n>.jpg, sizes varied so shrinking and cropping both happen. */
async function classFolders(root: string, classes: Record<string, number>): Promise<void> {
  let s = 0;
  for (const [c, n] of Object.entries(classes)) {
    mkdirSync(join(root, c), { recursive: true });
    for (let i = 0; i < n; i++) await jpeg(join(root, c, `${i}.jpg`), 30 + ((s * 7) % 25), 24 + ((s * 5) % 19), s++);
  }
}

beforeAll(async () => {
  await classFolders(p('folder'), { cat: 4, dog: 3 });
}, 60_000);

afterAll(async () => {
  await closeImageWorkers();
});

const PRE = { imageSize: 16, augment: { jitter: 0.3 } } as const;

async function all(ds: Dataset, seed?: number): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let i = 0; i < ds.length; i++) out.push((await ds.get(i, seed === undefined ? undefined : seed + i)).input as Float32Array);
  return out;
}

describe('the pipeline', () => {
  it('gives the same samples on the main thread and with 1 or 3 workers, as decode-then-transform does', async () => {
    const runs = [];
    for (const workers of [0, 1, 3]) {
      const { train } = await imageFolder(p('folder'), { ...PRE, workers });
      runs.push({ aug: await all(train, 100), plain: await all(train) });
    }
    expect(runs[1]).toEqual(runs[0]);
    expect(runs[2]).toEqual(runs[0]);
    // The reference: the whole image decoded, shrunk as the transforms agent's decodeImage does,
    // then the transforms of data/transforms.ts.
    const { train } = await imageFolder(p('folder'), { ...PRE, workers: 0 });
    const ds = train as ImageListDataset;
    const pre = ds.preprocess as Preprocess;
    for (let i = 0; i < ds.length; i++) {
      const forTrain = await decodeImage(ds.files[i]!, 3, Math.max(Math.ceil(16 * 1.5), evalResizeSize(16, 1)));
      expect(runs[0]!.aug[i]).toEqual(trainTransform(forTrain, pre, new Rng(100 + i)));
      const forEval = await decodeImage(ds.files[i]!, 3, evalResizeSize(16, 1));
      expect(runs[0]!.plain[i]).toEqual(evalTransform(forEval, pre));
    }
  }, 60_000);

  it('reads nothing until asked, keeps decoded images within the byte limit and evicts the least recently used', async () => {
    for (const workers of [0, 2]) {
      // 24 x ~30 pixels x 3 bytes: about 2 kB an image; 5 kB hold two.
      const cache = new ImageCache(5 / 1024);
      const { train } = await imageFolder(p('folder'), { imageSize: 16, workers, cache });
      expect(cache.stats().misses).toBe(0);
      await all(train);
      const s = cache.stats();
      expect(s.misses).toBe(7);
      expect(s.bytes).toBeLessThanOrEqual(5 * 1024);
      expect(s.images).toBeGreaterThan(0);
      expect(s.evictions).toBeGreaterThan(0);
      // The last image read is still cached: reading it again is a hit.
      await train.get(6);
      expect(cache.stats().hits).toBe(1);
    }
    const none = new ImageCache(0);
    const { train } = await imageFolder(p('folder'), { imageSize: 16, workers: 0, cache: none });
    await all(train);
    await all(train);
    expect(none.stats()).toMatchObject({ bytes: 0, images: 0, hits: 0, misses: 14 });
  }, 60_000);

  it('ByteLru: least recently used first, a lowered limit evicts at once', () => {
    const evicted: string[] = [];
    const lru = new ByteLru<string, number>(10, (k) => evicted.push(k));
    lru.set('a', 1, 4);
    lru.set('b', 2, 4);
    lru.get('a');
    lru.set('c', 3, 4);
    expect(evicted).toEqual(['b']);
    expect(lru.set('huge', 4, 11)).toBe(false);
    lru.limitBytes = 4;
    expect(evicted).toEqual(['b', 'a']);
    expect(lru.bytes).toBe(4);
  });
});

describe('bad images', () => {
  beforeAll(async () => {
    await classFolders(p('bad'), { a: 2, b: 2 });
    const good = readFileSync(p('bad', 'a', '0.jpg'));
    writeFileSync(p('bad', 'a', 'truncated.jpg'), good.subarray(0, good.length >> 1));
    writeFileSync(p('bad', 'a', 'empty.jpg'), '');
    writeFileSync(p('bad', 'b', 'corrupt.jpg'), 'this is not a JPEG, whatever its name says');
    // 8000 x 6250 = 50 megapixels: refused by its header.
    await sharp({ create: { width: 8000, height: 6250, channels: 3, background: '#808080' } }).jpeg({ quality: 30 }).toFile(p('bad', 'b', 'huge.jpg'));
  }, 60_000);

  for (const workers of [0, 2]) {
    it(`are skipped by the loader, counted by kind, and refused without a read the next epoch (workers: ${workers})`, async () => {
      const badImages = new BadImageLog();
      const { train } = await imageFolder(p('bad'), { imageSize: 16, workers, badImages });
      const loader = new DataLoader(train, { batchSize: 3, onSkip: () => {} });
      let seen = 0;
      const t0 = performance.now();
      for await (const b of loader.sampleBatches(0)) seen += b.samples.length;
      expect(performance.now() - t0).toBeLessThan(5000);
      expect(seen).toBe(4);
      expect(loader.skipped).toBe(4);
      expect(badImages.counts()).toEqual({ empty: 1, truncated: 1, corrupt: 1, huge: 1, unreadable: 0 });
      expect(badImages.summary()).toBe('4 images skipped (1 empty, 1 truncated, 1 corrupt, 1 huge)');
      const huge = badImages.list().find((e) => e.kind === 'huge')!;
      expect(huge.reason).toMatch(/8000 x 6250 pixels \(50\.0 megapixels\) is over the limit of 40\.0 megapixels; refused by its header/);
      expect(badImages.toTsv().split('\n')[0]).toBe('kind\tpath\treason');
      for await (const b of loader.sampleBatches(1)) seen += b.samples.length;
      expect(loader.skipped).toBe(8);
      expect(badImages.size).toBe(4);
    }, 60_000);
  }

  it('a truncated JPEG, PNG, GIF and WebP are told from corrupt files by their missing end, whatever fails beside them', async () => {
    const dir = p('cut');
    mkdirSync(dir, { recursive: true });
    const img = sharp(Buffer.from(Array.from({ length: 40 * 30 * 3 }, (_, k) => (k * 97) % 251)), { raw: { width: 40, height: 30, channels: 3 } });
    const files: Record<string, string> = {};
    for (const [fmt, buf] of [
      ['jpg', await img.clone().jpeg().toBuffer()], ['png', await img.clone().png().toBuffer()],
      ['gif', await img.clone().gif().toBuffer()], ['webp', await img.clone().webp({ lossless: true }).toBuffer()],
    ] as const) {
      writeFileSync((files[`cut.${fmt}`] = join(dir, `cut.${fmt}`)), buf.subarray(0, buf.length >> 1));
      writeFileSync((files[`junk.${fmt}`] = join(dir, `junk.${fmt}`)), `not an image ${fmt}`);
    }
    // Decoded all at once, three times over: the kinds do not depend on what fails beside them.
    for (let round = 0; round < 3; round++) {
      const got = await Promise.all(Object.entries(files).map(async ([name, f]) => {
        const e = await decodePixels(f, { channels: 3 }).then(() => null, (err: unknown) => err);
        return [name, e instanceof BadImageError ? e.kind : String(e)];
      }));
      expect(Object.fromEntries(got)).toEqual({
        'cut.jpg': 'truncated', 'junk.jpg': 'corrupt', 'cut.png': 'truncated', 'junk.png': 'corrupt',
        'cut.gif': 'truncated', 'junk.gif': 'corrupt', 'cut.webp': 'truncated', 'junk.webp': 'corrupt',
      });
    }
  }, 60_000);

  it('maxPixels sets the limit: an image over it is refused, a larger limit takes it', async () => {
    await classFolders(p('limit'), { a: 1, b: 1 });
    await sharp({ create: { width: 1200, height: 1000, channels: 3, background: '#408060' } }).jpeg().toFile(p('limit', 'a', 'big.jpg'));
    for (const [maxPixels, kept] of [[1e6, false], [1.2e6, true]] as const) {
      const { train } = await imageFolder(p('limit'), { imageSize: 16, workers: 0, maxPixels });
      const ds = train as ImageListDataset;
      const got = await ds.get(ds.files.findIndex((f) => f.endsWith('big.jpg'))).then((s) => s.input, (e: Error) => e);
      if (kept) expect(got).toHaveLength(3 * 16 * 16);
      else expect((got as BadImageError).reason).toMatch(/^1200 x 1000 pixels \(1\.2 megapixels\) is over the limit of 1\.0 megapixels/);
    }
  }, 60_000);
});

describe('layouts', () => {
  it('CSV read with csv-parse: a BOM, CRLF, quoted paths with commas and quotes, labels sorted', async () => {
    mkdirSync(p('csv', 'imgs, odd'), { recursive: true });
    await jpeg(p('csv', 'imgs, odd', 'a "1".jpg'), 20, 20, 1);
    await jpeg(p('csv', 'imgs, odd', 'b.jpg'), 20, 20, 2);
    await jpeg(p('csv', 'c.jpg'), 20, 20, 3);
    writeFileSync(p('csv', 'list.csv'), '\uFEFFfile_name,label\r\n"imgs, odd/a ""1"".jpg",zebra\r\n"imgs, odd/b.jpg",ant\r\nc.jpg, zebra\r\n');
    const r = await imageList(p('csv', 'list.csv'), { imageSize: 16, workers: 0 });
    const ds = r.train as ImageListDataset;
    expect(r.classes).toEqual(['ant', 'zebra']);
    expect(ds.files).toEqual([p('csv', 'imgs, odd', 'a "1".jpg'), p('csv', 'imgs, odd', 'b.jpg'), p('csv', 'c.jpg')]);
    expect(ds.targets).toEqual([1, 0, 1]);
    expect(r.layout).toBe('CSV list');
  });

  it('JSONL lists, a named label column, numeric labels sorted as numbers', async () => {
    writeFileSync(p('csv', 'list.jsonl'), ['{"path": "c.jpg", "y": 10}', '', '{"path": "imgs, odd/b.jpg", "y": 2}', '{"path": "c.jpg", "y": 9}'].join('\n'));
    const r = await imageList(p('csv', 'list.jsonl'), { imageSize: 16, labelColumn: 'y' });
    expect(r.classes).toEqual(['2', '9', '10']);
    expect((r.train as ImageListDataset).targets).toEqual([2, 0, 1]);
  });

  it('list errors are one line naming the file, the row and what was expected', async () => {
    const bad = async (name: string, text: string, opts = {}): Promise<string> => {
      writeFileSync(p('csv', name), text);
      return imageList(p('csv', name), { imageSize: 16, ...opts }).then(() => 'no error', (e: Error) => {
        expect(e).toBeInstanceOf(DataError);
        expect(e.message).not.toContain('\n');
        return e.message;
      });
    };
    expect(await bad('nolabel.csv', 'path,species\nc.jpg,x\n')).toMatch(/nolabel\.csv has no label column \("label", "labels", "class", "category", "target"\); its columns are "path", "species"; name the label column with --label-column/);
    expect(await bad('nopath.csv', 'img,label\nc.jpg,x\n')).toMatch(/nopath\.csv has no image path column/);
    expect(await bad('missing.csv', 'path,label\nc.jpg,x\nnowhere.jpg,y\n')).toMatch(/missing\.csv: row 3 names .*nowhere\.jpg, which does not exist/);
    expect(await bad('quote.csv', 'path,label\n"c.jpg,x\n')).toMatch(/quote\.csv: .*quote/i);
    expect(await bad('short.csv', 'path,label\nc.jpg\n')).toMatch(/short\.csv: row 2 has 1 fields, the header 2/);
    expect(await bad('unseen.csv', 'path,label\nc.jpg,x\n', { classes: ['ant', 'zebra'] })).toMatch(/unseen\.csv: the label "x" .* is not a training class; training has ant, zebra/);
    expect(await bad('notjson.jsonl', '{"path": "c.jpg", "label": 1}\n{oops\n')).toMatch(/notjson\.jsonl: line 2 is not JSON/);
  });

  it("Hugging Face imagefolder: train/validation/test split folders of classes", async () => {
    await classFolders(p('hf', 'train'), { cat: 3, dog: 2 });
    await classFolders(p('hf', 'validation'), { cat: 1, dog: 1 });
    await classFolders(p('hf', 'test'), { dog: 2 });
    const r = await imageFolder(p('hf'), { imageSize: 16, augment: true, valSplit: 0.5 });
    expect(r.classes).toEqual(['cat', 'dog']);
    expect(r.layout).toBe('Hugging Face imagefolder (train, validation, test)');
    expect([r.train.length, r.val!.length, r.test!.length]).toEqual([5, 2, 2]);
    expect(r.val!.augments).toBe(false);
    expect(r.test!.labels()).toEqual([1, 1]);
  });

  it('Hugging Face imagefolder: metadata.csv / metadata.jsonl with file_name and a label, per split or at the root', async () => {
    mkdirSync(p('meta', 'train'), { recursive: true });
    mkdirSync(p('meta', 'validation'), { recursive: true });
    for (let i = 0; i < 4; i++) await jpeg(p('meta', 'train', `${i}.jpg`), 20, 20, i);
    await jpeg(p('meta', 'validation', 'v.jpg'), 20, 20, 9);
    writeFileSync(p('meta', 'train', 'metadata.csv'), 'file_name,label,caption\n0.jpg,1,x\n1.jpg,0,y\n2.jpg,1,z\n3.jpg,0,w\n');
    writeFileSync(p('meta', 'validation', 'metadata.jsonl'), '{"file_name": "v.jpg", "label": 1}\n');
    const r = await imageFolder(p('meta'), { imageSize: 16 });
    expect(r.classes).toEqual(['0', '1']);
    expect(r.train.labels()).toEqual([1, 0, 1, 0]);
    expect(r.val!.labels()).toEqual([1]);
    // One metadata file at the root naming files under the split folders.
    writeFileSync(p('meta', 'metadata.csv'), 'file_name,label\ntrain/0.jpg,b\ntrain/1.jpg,a\nvalidation/v.jpg,a\n');
    const root = await imageFolder(p('meta'), { imageSize: 16 });
    expect(root.train.labels()).toEqual([1, 0]);
    expect(root.val!.labels()).toEqual([0]);
    expect(root.layout).toBe('Hugging Face imagefolder (train, validation, metadata.csv)');
    // A single split: metadata.csv beside the images.
    const single = await imageFolder(p('meta', 'train'), { imageSize: 16, valSplit: 0.5 });
    expect(single.layout).toBe('Hugging Face imagefolder (metadata.csv)');
    expect(single.train.length + single.val!.length).toBe(4);
  });

  it('folder errors: an empty class folder, a validation label training never saw, a validation folder without train/', async () => {
    const err = (root: string, opts = {}): Promise<string> => imageFolder(root, { imageSize: 16, ...opts }).then(() => 'no error', (e: Error) => {
      expect(e).toBeInstanceOf(DataError);
      expect(e.message).not.toContain('\n');
      return e.message;
    });
    await classFolders(p('empty-class'), { cat: 2 });
    mkdirSync(p('empty-class', 'dog'));
    writeFileSync(p('empty-class', 'dog', 'notes.txt'), 'no images here');
    expect(await err(p('empty-class'))).toMatch(/class folder .*empty-class\/dog has no images \(\.jpg, /);
    await classFolders(p('unseen', 'train'), { cat: 2, dog: 2 });
    await classFolders(p('unseen', 'val'), { cat: 1, wolf: 1 });
    expect(await err(p('unseen'))).toMatch(/unseen\/val \(the val split\): the label "wolf" \(.*\) is not a training class; training has cat, dog/);
    // --val as its own folder: mapped onto the training classes by name.
    expect(await err(p('unseen', 'val'), { classes: ['cat', 'dog'] })).toMatch(/the label "wolf" .* is not a training class; training has cat, dog/);
    await classFolders(p('nosplit', 'validation'), { cat: 1, dog: 1 });
    expect(await err(p('nosplit'))).toMatch(/has validation but no train\/ folder/);
    expect(await err(p('nowhere'))).toMatch(/data folder .*nowhere: does not exist/);
  }, 60_000);
});

describe('class imbalance', () => {
  it("balancedClassWeights is scikit-learn's n / (classes * count)", () => {
    // sklearn.utils.class_weight.compute_class_weight('balanced', classes=[0, 1, 2], y=y)
    const y = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2];
    expect([...balancedClassWeights(y)]).toEqual([10 / 18, 10 / 6, 10 / 6].map(Math.fround));
    // A class with no samples gets 0 and is not counted among the classes.
    expect([...balancedClassWeights([0, 0, 2], 4)]).toEqual([0.75, 0, 1.5, 0]);
    expect(() => balancedClassWeights([0, new Float32Array(2)])).toThrow(/class-index labels; sample 1 has a vector/);
  });

  it("the balanced sampler draws each class about equally, seeded, with a fresh augmentation per draw", async () => {
    const labels = [...Array(100).keys()].map((i) => (i < 90 ? 0 : 1));
    const seen: number[] = [];
    const ds: Dataset = {
      length: 100, inputShape: [1], fingerprint: 'imbalanced', augments: true, labels: () => labels,
      get: async (i, seed) => {
        seen.push(seed ?? -1);
        return { input: new Float32Array([i]), label: labels[i]! };
      },
    };
    const loader = new DataLoader(ds, { batchSize: 10, sampler: 'balanced', seed: 3, augment: true, prefetch: 2 });
    const order = loader.order(0);
    expect(order).toHaveLength(100);
    // Over 20 epochs (2,000 draws) the minority class (10 % of the data) is about half.
    const draws = [...Array(20).keys()].flatMap((e) => loader.order(e));
    const minority = draws.filter((i) => i >= 90).length / draws.length;
    expect(minority).toBeGreaterThan(0.45);
    expect(minority).toBeLessThan(0.55);
    expect(loader.order(0)).toEqual(order);
    expect(loader.order(1)).not.toEqual(order);
    for await (const _ of loader.sampleBatches(0)) void _;
    expect(new Set(seen).size).toBe(100);
    expect(() => new DataLoader(ds, { batchSize: 10, sampler: { weights: [1, 2] } })).toThrow(/2 weights for 100 samples/);
    expect(() => new DataLoader(ds, { batchSize: 10, prefetch: 0 })).toThrow(/prefetch must be a positive whole number/);
  });
});
