/** The augmentation flags of `tl train`: what each turns on, and their bad values. */
import { describe, expect, it } from 'vitest';
import { augmentOptions, mixedTraining, validateConfig, type TrainConfig } from '../src/commands/train.js';
import { Rng, type Dataset, type Sample } from '@tl/train';

const cfg = (extra: Partial<TrainConfig>): TrainConfig => validateConfig({ model: 'cifar_resnet20', data: 'x', out: 'o', ...extra });

describe('tl train augmentation flags', () => {
  it('--augment is the light preset; --auto-augment and --random-erasing add to it or start from torchvision\'s crop', () => {
    expect(augmentOptions(cfg({}))).toBe(false);
    expect(augmentOptions(cfg({ augment: true }))).toEqual({ scale: [0.6, 1], jitter: 0.2 });
    expect(augmentOptions(cfg({ autoAugment: 'trivial', randomErasing: 0.25 }))).toEqual({ autoAugment: 'trivial', erasing: 0.25 });
    expect(augmentOptions(cfg({ augment: true, autoAugment: 'trivial' }))).toEqual({ scale: [0.6, 1], jitter: 0.2, autoAugment: 'trivial' });
  });
  it('--mixup / --cutmix give the training set a batch transform of soft targets', async () => {
    const ds: Dataset = {
      length: 2, inputShape: [1, 2, 2], fingerprint: 't', augments: false,
      get: async (i: number): Promise<Sample> => ({ input: new Float32Array(4).fill(i), label: i }),
      labels: () => [0, 1],
    };
    expect(mixedTraining(ds, 3, cfg({}))).toBe(ds);
    const mixed = mixedTraining(ds, 3, cfg({ mixup: 0.2, cutmix: 1 }));
    expect(mixed.augments).toBe(true);
    const rows = mixed.batchTransform!([await ds.get(0), await ds.get(1)], new Rng(4)).map((s) => Array.from(s.label as Float32Array));
    for (const r of rows) expect(r.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
  });
  it('bad values are one-line errors naming the flag', () => {
    expect(() => cfg({ autoAugment: 'rand' as 'trivial' })).toThrow(/--auto-augment rand is not one of trivial/);
    expect(() => cfg({ randomErasing: 1.5 })).toThrow(/--random-erasing must be a probability in \[0, 1\], got 1.5/);
    expect(() => cfg({ mixup: -0.2 })).toThrow(/--mixup must be an alpha of at least 0, got -0.2/);
    expect(() => validateConfig({ model: 'distilbert', data: 'x.csv', cutmix: 1 })).toThrow(/--cutmix is for image models/);
  });
});
