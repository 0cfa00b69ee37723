/**
 * ConvNeXt against torchvision 0.14: a reduced configuration written by
 * fixtures/make_vision_inception_convnext_fixtures.py loads strictly and gives the same logits
 * and parameter gradients in eval and training mode; stochastic depth by its definition;
 * convnext_tiny's full key set and parameter count.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { setup } from '../../tensor/test/helpers.js';
import { closeToFixture, gpu } from './fixture-close.js';
import { CNBlock, ConvNeXt, getModelSpec, isImageModelSpec, parseSafetensors, StochasticDepth, type ConvNeXtConfig, type SafetensorsFile } from '../src/index.js';

beforeAll(setup);

const load = (name: string): SafetensorsFile => parseSafetensors(readFileSync(new URL(`../fixtures/vision_${name}.safetensors`, import.meta.url)));

describe('ConvNeXt against torchvision (reduced: widths 8/16, 1+2 blocks, 32 px)', () => {
  for (const name of ['convnext', 'convnext_train']) {
    it(`${name}: keys, logits and every parameter gradient to 1e-4`, async () => {
      const f = load(name);
      const model = new ConvNeXt(JSON.parse(f.metadata.config!) as ConvNeXtConfig);
      try {
        const state = new Map(f.keys().filter((k) => k.startsWith('sd.')).map((k) => [k.slice(3), f.get(k)]));
        expect(new Set(model.stateDict().keys())).toEqual(new Set(state.keys()));
        model.loadStateDict(state);
        model.train(JSON.parse(f.metadata.train!) as boolean);
        const x = gpu(f.get('x'));
        const logits = model.forward(x);
        await closeToFixture(logits, f.get('logits'), 'logits', 1e-7);
        A.backward(logits, gpu(f.get('r')));
        const params = model.namedParameters();
        expect(params.map(([k]) => k).sort()).toEqual(f.keys().filter((k) => k.startsWith('grad.')).map((k) => k.slice(5)).sort());
        for (const [k, p] of params) await closeToFixture(p.grad!, f.get(`grad.${k}`), `gradient of ${k}`, 1e-7);

        model.eval();
        const features = A.noGrad(() => model.forwardFeatures(x));
        expect(features.shape).toEqual([2, 16]);
        model.resetClassifier(3);
        expect(A.noGrad(() => model.forwardHead(features)).shape).toEqual([2, 3]);
        const order = model.blockOrder();
        for (const b of order) model.freeze(b);
        expect(model.numParameters({ trainable: true })).toBe(0);
        model.unfreeze(order.at(-1)!);
        expect(model.namedParameters({ trainable: true }).map(([k]) => k)).toEqual(['classifier.2.weight', 'classifier.2.bias']);
      } finally {
        model.dispose();
      }
    });
  }
});

describe('ConvNeXt stochastic depth', () => {
  it('rises linearly from 0 at the first block to the configured probability at the last', () => {
    const m = new ConvNeXt({ stages: [[4, 8, 2], [8, null, 3]], stochasticDepthProb: 0.2, numClasses: 2 });
    try {
      const ps = [...m.namedModules()].filter(([, c]) => c instanceof StochasticDepth).map(([, c]) => (c as StochasticDepth).p);
      expect(ps.map((p) => Number(p.toFixed(12)))).toEqual([0, 0.05, 0.1, 0.15, 0.2]);
      expect([...m.namedModules()].filter(([, c]) => c instanceof StochasticDepth).every(([, c]) => (c as StochasticDepth).mode === 'row')).toBe(true);
    } finally {
      m.dispose();
    }
  });

  it('in training keeps each sample\'s residual branch scaled by 1/(1-p) or drops it; in eval adds it', async () => {
    const block = new CNBlock(4, 0.7, 0.5);
    try {
      const x = A.randn([32, 4, 5, 5]);
      block.eval();
      const full = await A.noGrad(() => block.forward(x)).data();
      const input = await x.data();
      block.train();
      A.manualSeed(11);
      const y = await A.noGrad(() => block.forward(x)).data();
      const per = 4 * 5 * 5;
      let kept = 0;
      for (let n = 0; n < 32; n++) {
        let dropped = true;
        let scaled = true;
        for (let i = n * per; i < (n + 1) * per; i++) {
          const branch = full[i]! - input[i]!;
          if (Math.abs(y[i]! - input[i]!) > 1e-5) dropped = false;
          if (Math.abs(y[i]! - (input[i]! + 2 * branch)) > 1e-4 * (1 + Math.abs(branch))) scaled = false;
        }
        expect(dropped !== scaled, `sample ${n} is either dropped or kept at 1/(1-p)`).toBe(true);
        if (scaled) kept++;
      }
      expect(kept).toBeGreaterThan(4);
      expect(kept).toBeLessThan(28);
    } finally {
      block.dispose();
    }
  });
});

describe('convnext_tiny at full size', () => {
  it("has torchvision's keys, shapes, order and parameter count, and its preprocessing", () => {
    const full = JSON.parse(gunzipSync(readFileSync(new URL('../fixtures/vision_inception_convnext_full_keys.json.gz', import.meta.url))).toString()) as Record<string, { keys: [string, number[]][]; parameters: number }>;
    const spec = getModelSpec('convnext_tiny');
    const m = spec.create();
    try {
      expect([...m.stateDict()].map(([k, t]) => [k, [...t.shape]])).toEqual(full.convnext_tiny!.keys);
      expect(m.numParameters()).toBe(full.convnext_tiny!.parameters);
      expect(spec.parameters).toBe(28_589_128);
    } finally {
      m.dispose();
    }
    expect(isImageModelSpec(spec) && spec.inputSize === 224 && Math.round(spec.inputSize / spec.cropPct) === 236).toBe(true);
  });
});
