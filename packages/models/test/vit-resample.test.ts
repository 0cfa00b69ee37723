/**
 * A ViT built for another image size loads a checkpoint of the trained size, its pos_embed
 * resampled as timm's resample_abs_pos_embed: against PyTorch's F.interpolate (bicubic,
 * align_corners=False, with and without antialias) through
 * fixtures/make_vision_fixtures.py's `vit_resample`.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { setup } from '../../tensor/test/helpers.js';
import { closeToFixture, gpu } from './fixture-close.js';
import {
  getModelSpec,
  Module,
  parseSafetensors,
  resampleAbsPosEmbed,
  StateDictError,
  VisionTransformer,
  type HostArray,
  type ViTConfig,
} from '../src/index.js';

beforeAll(setup);

const f = parseSafetensors(readFileSync(new URL('../fixtures/vision_vit_resample.safetensors', import.meta.url)));
const config = JSON.parse(f.metadata.config!) as ViTConfig;
const cases = JSON.parse(f.metadata.cases!) as { name: string; imgSize: [number, number] }[];
const checkpoint = (): Map<string, HostArray> => new Map(f.keys().filter((k) => k.startsWith('sd.')).map((k) => [k.slice(3), f.get(k)]));

const close = (got: Tensor, key: string): Promise<void> => closeToFixture(got, f.get(key), key);

class Wrapper extends Module {
  constructor(readonly backbone: VisionTransformer) {
    super();
    this.module('backbone', backbone);
  }
  forward(x: Tensor): Tensor {
    return this.backbone.forward(x);
  }
}

describe('VisionTransformer at another image size', () => {
  it('loads a 16x16 checkpoint strictly at 24x24, 8x8 and 12x28: pos_embed and logits as PyTorch', async () => {
    const sd = checkpoint();
    const base = new VisionTransformer(config);
    base.loadStateDict(sd);
    try {
      for (const { name, imgSize } of cases) {
        const m = new VisionTransformer({ ...config, imgSize }).eval();
        try {
          expect(m.gridSize).toEqual([imgSize[0] / 4, imgSize[1] / 4]);
          const live = A.engine().liveTensors;
          m.loadStateDict(sd, { strict: true });
          expect(A.engine().liveTensors, 'tensors left behind by the load').toBe(live);
          await close(m.posEmbed, `pos_embed.${name}`);
          await close(A.noGrad(() => m.forward(gpu(f.get(`x.${name}`)))), `logits.${name}`);
          // Values that are already tensors (another model's state dict) take the same path.
          m.loadStateDict(base.stateDict(), { strict: true });
          await close(m.posEmbed, `pos_embed.${name}`);
          await close(resampleAbsPosEmbed(base.posEmbed, m.gridSize, { antialias: false }), `pos_embed_plain.${name}`);
        } finally {
          m.dispose();
        }
      }
      // The caller's dict keeps the checkpoint's own values.
      expect(sd.get('pos_embed')!.shape).toEqual([1, 17, 8]);
    } finally {
      base.dispose();
    }
  });

  it('resamples a ViT nested in another module, under its prefix', async () => {
    const { name, imgSize } = cases[0]!;
    const outer = new Wrapper(new VisionTransformer({ ...config, imgSize }));
    try {
      outer.loadStateDict(new Map([...checkpoint()].map(([k, v]) => [`backbone.${k}`, v])), { strict: true });
      await close(outer.backbone.posEmbed, `pos_embed.${name}`);
    } finally {
      outer.dispose();
    }
  });

  it('leaves a checkpoint of another embedding width to the shape check, and asks for oldSize when the grid is not square', () => {
    const m = new VisionTransformer({ ...config, imgSize: 24 });
    try {
      const wide = checkpoint();
      wide.set('pos_embed', { ...wide.get('pos_embed')!, shape: [1, 34, 4] });
      expect(() => m.loadStateDict(wide)).toThrow(StateDictError);
      expect(() => m.loadStateDict(wide)).toThrow(/pos_embed: the model has \[1, 37, 8\], the checkpoint \[1, 34, 4\]/);
      const rect = checkpoint();
      rect.set('pos_embed', f.get('pos_embed.rect'));
      expect(() => m.loadStateDict(rect)).toThrow(/21 grid positions .* not a square; pass oldSize/);
    } finally {
      m.dispose();
    }
  });

  it('checks imgSize against patchSize, and the input against imgSize', () => {
    expect(() => new VisionTransformer({ ...config, imgSize: [16, 18] })).toThrow(/imgSize \[16,18\] must be positive multiples of patchSize \(4\)/);
    expect(() => new VisionTransformer({ ...config, imgSize: 0 })).toThrow(/imgSize 0/);
    const m = new VisionTransformer({ ...config, imgSize: [8, 32] });
    try {
      // As many patches as a 16x16 input, on another grid.
      expect(() => m.forward(A.zeros([1, 3, 16, 16]))).toThrow(/a 16x16 input gives a 4x4 grid of patches; the position embedding has 2x8 \(imgSize \[8,32\]\)/);
    } finally {
      m.dispose();
    }
  });
});

describe('resampleAbsPosEmbed', () => {
  it('takes a non-square source grid through oldSize', async () => {
    await close(resampleAbsPosEmbed(gpu(f.get('pos_embed.rect')), [5, 2], { oldSize: [3, 7] }), 'pos_embed.rect_to_5x2');
  });

  it('keeps the prefix rows, and is the identity on the same grid', async () => {
    const pos = gpu(f.get('sd.pos_embed'));
    const withPrefix = resampleAbsPosEmbed(pos, [3, 5]);
    const patchesOnly = resampleAbsPosEmbed(pos.narrow(1, 1, 16), [3, 5], { numPrefixTokens: 0 });
    expect(withPrefix.shape).toEqual([1, 16, 8]);
    const [a, b, p] = await Promise.all([withPrefix.data(), patchesOnly.data(), pos.data()]);
    expect(a.slice(0, 8)).toEqual(p.slice(0, 8));
    expect(a.slice(8)).toEqual(b);
    expect(await resampleAbsPosEmbed(pos, 4).data()).toEqual(p);
  });

  it('names the bad argument', () => {
    const pos = gpu(f.get('sd.pos_embed'));
    expect(() => resampleAbsPosEmbed(pos.select(0, 0), 3)).toThrow(/posEmbed must be \[1, tokens, dim\], got \[17, 8\]/);
    expect(() => resampleAbsPosEmbed(pos, 3, { numPrefixTokens: 2 })).toThrow(/15 grid positions \(after 2 prefix rows\) are not a square; pass oldSize/);
    expect(() => resampleAbsPosEmbed(pos, 3, { numPrefixTokens: 17 })).toThrow(/numPrefixTokens must be an integer in \[0, 16\] for 17 rows, got 17/);
    expect(() => resampleAbsPosEmbed(pos, 3, { oldSize: [2, 7] })).toThrow(/oldSize 2x7 has 14 positions, but posEmbed has 16/);
    expect(() => resampleAbsPosEmbed(pos, [2, 0])).toThrow(/newSize must be a positive integer or \[rows, cols\] of them, got \[2,0\]/);
  });
});

describe('registry', () => {
  it('builds vit_b_16 at another input size', () => {
    const m = getModelSpec('vit_b_16').create({ imgSize: 384, numClasses: 2 }) as VisionTransformer;
    try {
      expect(m.gridSize).toEqual([24, 24]);
      expect(m.posEmbed.shape).toEqual([1, 577, 768]);
      expect(m.numClasses).toBe(2);
    } finally {
      m.dispose();
    }
  });
});
