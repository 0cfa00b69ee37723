/**
 * Resampling and the evaluation transform against Pillow 9.4 / torchvision 0.14
 * (fixtures/make_transform_fixtures.py): 8-bit resampling to the byte, float resampling to
 * float32 rounding, the whole eval transform (resize by cropPct, centre crop, normalise), and
 * sharp's JPEG decoding against Pillow's on real CIFAR-10 photos.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { centerCrop, crop, decodeImage, evalResizeSize, evalTransform, resample, shorterSideSize, trainTransform, Rng, type Image, type Interpolation } from '../src/node.js';
import { repoData } from '../../../test-data.js';
import { cases, fixtures as f, fixtureImage, hwcBytes, maxAbsDiff } from './transform-fixtures.js';

const toBytes = (img: Image): number[] => Array.from(img.data, (v) => Math.round(v * 255));

describe('resample matches Pillow', () => {
  for (const interp of ['bilinear', 'bicubic'] as Interpolation[]) {
    for (const kind of ['down', 'up', 'box']) {
      it(`8-bit ${kind} ${interp}, to the byte`, () => {
        const c = cases[`resample_${kind}_${interp}`]!;
        const box = c.box as [number, number, number, number] | undefined;
        const got = resample(fixtureImage(c.image), c.height as number, c.width as number, { interpolation: interp, box, uint8: true });
        expect(toBytes(got)).toEqual(hwcBytes(`resample_${kind}_${interp}.out`));
      });
    }
    it(`8-bit ${interp} of a crop (torchvision's resized_crop), to the byte`, () => {
      const c = cases[`resample_crop_${interp}`]!;
      const part = crop(fixtureImage(c.image), c.top as number, c.left as number, c.cropHeight as number, c.cropWidth as number);
      expect(toBytes(resample(part, 32, 32, { interpolation: interp, uint8: true }))).toEqual(hwcBytes(`resample_crop_${interp}.out`));
    });
    it(`float ${interp} as Pillow's mode F`, () => {
      const c = cases[`resample_float_${interp}`]!;
      const got = resample(fixtureImage(c.image), c.height as number, c.width as number, { interpolation: interp });
      expect(maxAbsDiff(got.data, f.get(`resample_float_${interp}.out`).data)).toBeLessThan(1e-5);
    });
  }

  it('rejects bad sizes, boxes and interpolations with one-line errors', () => {
    const img = fixtureImage('B');
    expect(() => resample(img, 0, 5)).toThrow(/positive integers, got 0x5/);
    expect(() => resample(img, 5, 5, { box: [0, 0, 99, 5] })).toThrow(/box \[0, 0, 99, 5\] is not a non-empty region of the 23x35 image/);
    expect(() => resample(img, 5, 5, { interpolation: 'lanczos' as Interpolation })).toThrow(/"lanczos" is not one of bilinear, bicubic/);
    expect(() => evalResizeSize(224, 0)).toThrow(/cropPct must be in \(0, 1\], got 0/);
  });
});

describe('the evaluation transform is torchvision\'s', () => {
  for (const name of ['eval_a', 'eval_b', 'eval_tall', 'eval_small', 'eval_odd']) {
    it(name, () => {
      const c = cases[name]!;
      const pre = { imageSize: c.size as number, cropPct: c.cropPct as number, interpolation: c.interpolation as Interpolation, mean: c.mean as number[], std: c.std as number[], channels: 3, augment: false };
      const got = evalTransform(fixtureImage(c.image), pre);
      expect(maxAbsDiff(got, f.get(`${name}.out`).data)).toBeLessThan(1e-5);
    });
  }

  it('sizes: floor(size / cropPct) on the shorter side, torchvision\'s truncated longer side', () => {
    expect(evalResizeSize(224, 0.875)).toBe(256);
    expect(evalResizeSize(224, 224 / 232)).toBe(232);
    expect(evalResizeSize(299, 299 / 342)).toBe(342);
    expect(evalResizeSize(380, 380 / 384)).toBe(384);
    expect(shorterSideSize(375, 500, 256)).toEqual([256, 341]);
    expect(shorterSideSize(500, 333, 256)).toEqual([384, 256]);
  });

  it('centre crop offsets round half to even as Python does, and pad small images', () => {
    const img: Image = { data: Float32Array.from({ length: 7 * 7 }, (_, i) => i), channels: 1, height: 7, width: 7 };
    // (7 - 4) / 2 = 1.5 rounds to 2; (7 - 2) / 2 = 2.5 rounds to 2.
    expect(centerCrop(img, 4).data[0]).toBe(2 * 7 + 2);
    expect(centerCrop(img, 2).data[0]).toBe(2 * 7 + 2);
    const padded = centerCrop(img, 9);
    expect([padded.height, padded.width, padded.data[0], padded.data[10]]).toEqual([9, 9, 0, 0]);
  });
});

describe('augment: { crop: false }', () => {
  it('gives the input size (3,072 values for 32x32 RGB, none NaN) from any image size', () => {
    for (const key of ['A', 'B', 'C']) {
      const pre = { imageSize: 32, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], channels: 3, augment: { crop: false, flip: true } };
      const out = trainTransform(fixtureImage(key), pre, new Rng(3));
      expect(out.length).toBe(3072);
      expect(out.every(Number.isFinite)).toBe(true);
    }
  });
  it('is the evaluation transform, flipped or not', () => {
    const pre = { imageSize: 32, cropPct: 0.875, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], channels: 3, augment: { crop: false, flip: false } };
    expect(trainTransform(fixtureImage('A'), pre, new Rng(1))).toEqual(evalTransform(fixtureImage('A'), pre));
  });
});

describe('sharp decodes JPEGs as Pillow does', () => {
  it('a 131x97 JPEG through decodeImage (shrunk to the resize size) and evalTransform is torchvision\'s', async () => {
    const c = cases.eval_jpeg!;
    const pre = { imageSize: 32, cropPct: 0.875, interpolation: 'bicubic' as const, mean: c.mean as number[], std: c.std as number[], channels: 3, augment: false };
    const img = await decodeImage(fileURLToPath(new URL(`../fixtures/${c.path as string}`, import.meta.url)), 3, evalResizeSize(32, 0.875), 'bicubic');
    expect([img.height, img.width]).toEqual([36, 48]);
    // One 8-bit level (1/255) is 0.0175 after normalisation by std 0.224.
    expect(maxAbsDiff(evalTransform(img, pre), f.get('eval_jpeg.out').data)).toBeLessThan(0.018);
  });
  for (const name of ['jpeg_0', 'jpeg_1', 'jpeg_2']) {
    it(`${cases[name]!.path}`, async () => {
      const img = await decodeImage(repoData((cases[name]!.path as string).replace(/^data\//, '')));
      const want = hwcBytes(`${name}.out`);
      const got = toBytes(img);
      const diff = got.map((v, i) => Math.abs(v - want[i]!));
      // libjpeg-turbo in both; identical IDCT and chroma upsampling give identical bytes.
      expect(Math.max(...diff)).toBeLessThanOrEqual(1);
      expect(diff.filter((d) => d > 0).length / diff.length).toBeLessThan(0.01);
    });
  }
});
