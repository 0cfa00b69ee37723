/**
 * Augmentations: each deterministic op (given its parameters) against torchvision 0.14's
 * functional op (fixtures/make_transform_fixtures.py); the random parts for torchvision's
 * parameter rules and for being reproducible from a seed; mixup and CutMix as soft targets
 * through the DataLoader.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  adjustBrightness, adjustContrast, adjustHue, adjustSaturation, adjustSharpness, affine, autocontrast, colorJitter, cutmix, cutmixBox, DataLoader, equalize, erase,
  horizontalFlip, mixBatch, mixup, posterize, randomErasingParams, randomResizedCropParams, rotate, Rng, sampleBeta, solarize, trainTransform, trivialAugmentOp,
  trivialAugmentWide, TRIVIAL_AUGMENT_OPS, verticalFlip, withBatchTransform, type Dataset, type Image, type Preprocess, type Sample,
} from '../src/node.js';
import { cases, fixtures, fixtureImage, maxAbsDiff } from './transform-fixtures.js';
import { setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

const B = fixtureImage('B');
const want = (name: string): Float32Array => fixtures.get(`op_${name}.out`).data as Float32Array;
const p = (name: string): Record<string, number> => cases[`op_${name}`] as unknown as Record<string, number>;
const lowContrast = (img: Image): Image => ({ ...img, data: img.data.map((v) => v * 0.5 + 0.2) });

/** Fraction of values further than 1e-5 apart: nearest-neighbour warps may round a point that
 * lies on a pixel boundary (in float32 in torch, float64 here) the other way. */
function mismatch(a: Float32Array, b: Float32Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (Math.abs(a[i]! - b[i]!) > 1e-5) n++;
  return n / a.length;
}

describe('ops match torchvision.transforms.functional', () => {
  const exact: [string, () => Image][] = [
    ['brightness', () => adjustBrightness(B, p('brightness').factor!)],
    ['contrast', () => adjustContrast(B, p('contrast').factor!)],
    ['saturation', () => adjustSaturation(B, p('saturation').factor!)],
    ['hue_pos', () => adjustHue(B, p('hue_pos').factor!)],
    ['hue_neg', () => adjustHue(B, p('hue_neg').factor!)],
    ['sharpness_up', () => adjustSharpness(B, p('sharpness_up').factor!)],
    ['sharpness_down', () => adjustSharpness(B, p('sharpness_down').factor!)],
    ['solarize', () => solarize(B, p('solarize').threshold!)],
    ['autocontrast', () => autocontrast(lowContrast(B))],
    ['posterize', () => posterize(B, p('posterize').bits!)],
    ['equalize', () => equalize(B)],
    ['hflip', () => horizontalFlip(B)],
    ['vflip', () => verticalFlip(B)],
  ];
  for (const [name, run] of exact) {
    it(`${name} within 1e-5`, () => expect(maxAbsDiff(run().data, want(name))).toBeLessThan(1e-5));
  }
  const warps: [string, () => Image][] = [
    ['rotate_pos', () => rotate(B, p('rotate_pos').angle!)],
    ['rotate_neg', () => rotate(B, p('rotate_neg').angle!)],
    ['shear_x', () => trivialAugmentOp(B, 'ShearX', p('shear_x').slope!)],
    ['shear_y', () => trivialAugmentOp(B, 'ShearY', p('shear_y').slope!)],
    ['translate', () => affine(B, { translate: [p('translate').dx!, p('translate').dy!] })],
  ];
  for (const [name, run] of warps) {
    it(`${name}: nearest-neighbour warp, at most 1 % of values differ`, () => expect(mismatch(run().data, want(name))).toBeLessThan(0.01));
  }
  it('erase', () => {
    const c = p('erase') as unknown as { top: number; left: number; height: number; width: number; value: number[] };
    expect(maxAbsDiff(erase(B.data.slice(), [3, B.height, B.width], c, c.value), want('erase'))).toBe(0);
  });
  it('the TrivialAugmentWide ops by name are the functional ops', () => {
    expect(TRIVIAL_AUGMENT_OPS).toHaveLength(14);
    expect(maxAbsDiff(trivialAugmentOp(B, 'Rotate', 37).data, rotate(B, 37).data)).toBe(0);
    expect(maxAbsDiff(trivialAugmentOp(B, 'Brightness', 0.37).data, want('brightness'))).toBeLessThan(1e-5);
    expect(maxAbsDiff(trivialAugmentOp(B, 'Solarize', 0.6 * 255).data, want('solarize'))).toBeLessThan(1e-6);
    expect(maxAbsDiff(trivialAugmentOp(B, 'Posterize', 3).data, want('posterize'))).toBe(0);
    expect(() => trivialAugmentOp(B, 'Invert', 0)).toThrow(/unknown op "Invert"/);
  });
  it('bad factors are one-line errors naming the value', () => {
    expect(() => adjustHue(B, 0.7)).toThrow(/\[-0.5, 0.5\], got 0.7/);
    expect(() => adjustBrightness(B, -1)).toThrow(/>= 0, got -1/);
    expect(() => posterize(B, 9)).toThrow(/\[0, 8\], got 9/);
    expect(() => colorJitter(B, new Rng(0), { hue: 0.6 })).toThrow(/hue must be in \[0, 0.5\], got 0.6/);
  });
});

describe('random parameters follow torchvision', () => {
  it('RandomResizedCrop: area in scale, ratio in range, inside the image; fallback clamps the ratio', () => {
    const rng = new Rng(5);
    for (let i = 0; i < 300; i++) {
      const b = randomResizedCropParams(120, 200, rng);
      const area = (b.height * b.width) / (120 * 200);
      expect(area).toBeGreaterThan(0.07);
      expect(area).toBeLessThanOrEqual(1.01);
      expect(b.width / b.height).toBeGreaterThan(0.7);
      expect(b.width / b.height).toBeLessThan(1.4);
      expect(b.top + b.height).toBeLessThanOrEqual(120);
      expect(b.left + b.width).toBeLessThanOrEqual(200);
    }
    // A 10x300 strip fits no crop of ratio <= 4/3 at 50 % area or more: the fallback is the
    // centred 10x13 crop (300 > 4/3 * 10, so w = round(10 * 4/3)).
    expect(randomResizedCropParams(10, 300, new Rng(1), [0.5, 1])).toEqual({ top: 0, left: 143, height: 10, width: 13 });
    expect(randomResizedCropParams(300, 10, new Rng(1), [0.5, 1])).toEqual({ top: 143, left: 0, height: 13, width: 10 });
    expect(() => randomResizedCropParams(10, 10, new Rng(1), [0, 1])).toThrow(/scale must be/);
  });
  it('RandomErasing: the box lies strictly inside, or none after ten tries', () => {
    const rng = new Rng(2);
    for (let i = 0; i < 200; i++) {
      const b = randomErasingParams(32, 32, rng)!;
      expect(b.height).toBeLessThan(32);
      expect(b.top + b.height).toBeLessThanOrEqual(32);
    }
    expect(randomErasingParams(2, 2, new Rng(0), [0.9, 1])).toBeNull();
  });
  it('TrivialAugmentWide draws every op', () => {
    const rng = new Rng(9);
    const seen = new Set<string>();
    for (let i = 0; i < 400; i++) seen.add(Array.from(trivialAugmentWide(B, rng).data.slice(0, 8)).join());
    expect(seen.size).toBeGreaterThan(30);
  });
  it('Beta(alpha, alpha) draws have the right mean and variance', () => {
    for (const a of [0.2, 1, 2.5]) {
      const rng = new Rng(11);
      const xs = Array.from({ length: 20000 }, () => sampleBeta(a, a, rng));
      const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
      const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length;
      expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
      expect(Math.abs(variance - 1 / (4 * (2 * a + 1)))).toBeLessThan(0.01);
    }
  });
});

describe('the training pipeline is reproducible from a seed', () => {
  const pre: Preprocess = {
    imageSize: 16, mean: [0.5, 0.4, 0.3], std: [0.2, 0.2, 0.2], channels: 3, interpolation: 'bicubic',
    augment: { flip: true, verticalFlip: true, jitter: { brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1 }, autoAugment: 'trivial', erasing: 0.5 },
  };
  it('same seed, same output; other seeds, other outputs', () => {
    const a = trainTransform(B, pre, new Rng(42));
    expect(trainTransform(B, pre, new Rng(42))).toEqual(a);
    expect(a.length).toBe(3 * 16 * 16);
    expect(a.every(Number.isFinite)).toBe(true);
    const others = [1, 2, 3].map((s) => trainTransform(B, pre, new Rng(s)));
    for (const o of others) expect(maxAbsDiff(o, a)).toBeGreaterThan(0.1);
  });
});

class Toy implements Dataset {
  readonly inputShape = [1, 4, 4];
  readonly fingerprint = 'toy';
  readonly augments = false;
  get length(): number {
    return 6;
  }
  async get(i: number): Promise<Sample> {
    return { input: new Float32Array(16).fill(i), label: i % 3 };
  }
  labels(): number[] {
    return [0, 1, 2, 0, 1, 2];
  }
}

describe('mixup and CutMix', () => {
  it('mixup blends each sample with the previous one, and its one-hot rows', () => {
    const inputs = [new Float32Array([1, 1]), new Float32Array([0, 4])];
    const targets = [Float32Array.from([1, 0]), Float32Array.from([0, 1])];
    const m = mixup(inputs, targets, 0.75);
    expect(Array.from(m.inputs[0]!)).toEqual([0.75, 1.75]);
    expect(Array.from(m.inputs[1]!)).toEqual([0.25, 3.25]);
    expect(Array.from(m.targets[0]!)).toEqual([0.75, 0.25]);
  });
  it('CutMix pastes the box from the previous sample and weighs targets by the area kept', () => {
    const box = cutmixBox(4, 4, 0.75, 1, 2);
    // r = sqrt(0.25) / 2 = 0.25: half-sides of 1 pixel around (1, 2).
    expect(box).toEqual({ top: 0, left: 1, height: 2, width: 2 });
    const inputs = [new Float32Array(16).fill(0), new Float32Array(16).fill(1)];
    const c = cutmix(inputs, [Float32Array.from([1, 0]), Float32Array.from([0, 1])], [1, 4, 4], box);
    expect(c.lam).toBe(0.75);
    expect(Array.from(c.inputs[0]!.slice(0, 4))).toEqual([0, 1, 1, 0]);
    expect(c.inputs[0]!.reduce((s, v) => s + v, 0)).toBe(4);
    expect(Array.from(c.targets[0]!)).toEqual([0.75, 0.25]);
  });
  it('the DataLoader applies the data set\'s batch transform when it augments: soft float32 [B, C] targets, seeded', async () => {
    const ds = withBatchTransform(new Toy(), mixBatch({ numClasses: 3, mixupAlpha: 0.4, cutmixAlpha: 1, inputShape: [1, 4, 4] }));
    const rows = async (augment: boolean): Promise<{ y: Float32Array | Int32Array; shape: readonly number[]; x: Float32Array | Int32Array }> => {
      const loader = new DataLoader(ds, { batchSize: 6, shuffle: true, seed: 3, augment });
      for await (const b of loader.epoch(1)) {
        const out = { y: await b.y!.data(), shape: b.y!.shape, x: await b.x.data() };
        b.dispose();
        return out;
      }
      throw new Error('no batch');
    };
    const a = await rows(true);
    expect(a.shape).toEqual([6, 3]);
    for (let i = 0; i < 6; i++) expect(a.y[3 * i]! + a.y[3 * i + 1]! + a.y[3 * i + 2]!).toBeCloseTo(1, 5);
    expect(Array.from(a.y).some((v) => v > 0 && v < 1)).toBe(true);
    const again = await rows(true);
    expect(Array.from(again.y)).toEqual(Array.from(a.y));
    expect(Array.from(again.x)).toEqual(Array.from(a.x));
    const plain = await rows(false);
    expect(plain.shape).toEqual([6]);
  });
  it('bad options and labels are one-line errors', () => {
    expect(() => mixBatch({ numClasses: 3, inputShape: [1, 4, 4] })).toThrow(/set mixupAlpha or cutmixAlpha above 0/);
    expect(() => mixBatch({ numClasses: 3, mixupAlpha: -1, inputShape: [1, 4, 4] })).toThrow(/mixupAlpha must be a finite number >= 0, got -1/);
    const t = mixBatch({ numClasses: 2, mixupAlpha: 1, inputShape: [1, 4, 4] });
    expect(() => t([{ input: new Float32Array(16), label: 5 }], new Rng(0))).toThrow(/label 5 is not a class index in \[0, 2\)/);
  });
});
