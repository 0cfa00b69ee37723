/**
 * Inception v3 against torchvision 0.14: torchvision's Inception3 with every width divided by
 * 16 (fixtures/make_vision_inception_convnext_fixtures.py, a float64 reference) loads strictly and
 * gives the same logits, auxiliary logits (training) and parameter gradients; inception_v3's
 * full key set (AuxLogits included) and parameter count.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { setup } from '../../tensor/test/helpers.js';
import { closeToFixture, gpu } from './fixture-close.js';
import { getModelSpec, Inception3, isImageModelSpec, parseSafetensors, type Inception3Config, type SafetensorsFile } from '../src/index.js';

beforeAll(setup);

const load = (name: string): SafetensorsFile => parseSafetensors(readFileSync(new URL(`../fixtures/vision_${name}.safetensors`, import.meta.url)));

describe('Inception v3 against torchvision (widths / 16, batch 2)', () => {
  it('eval at 107 px with transform_input: logits and every gradient to 1e-4, AuxLogits idle', async () => {
    const f = load('inception');
    const model = new Inception3(JSON.parse(f.metadata.config!) as Inception3Config);
    try {
      const state = new Map(f.keys().filter((k) => k.startsWith('sd.')).map((k) => [k.slice(3), f.get(k)]));
      expect(new Set(model.stateDict().keys())).toEqual(new Set(state.keys()));
      model.loadStateDict(state);
      model.eval();
      const x = gpu(f.get('x'));
      const { logits, auxLogits } = model.forwardWithAux(x);
      expect(auxLogits).toBeNull();
      await closeToFixture(logits, f.get('logits'), 'logits', 1e-7);
      A.backward(logits, gpu(f.get('r')));
      const withGrad = f.keys().filter((k) => k.startsWith('grad.')).map((k) => k.slice(5));
      for (const [k, p] of model.namedParameters()) {
        if (k.startsWith('AuxLogits.')) {
          expect(p.grad, k).toBeFalsy();
          expect(withGrad).not.toContain(k);
        } else await closeToFixture(p.grad!, f.get(`grad.${k}`), `gradient of ${k}`, 1e-7);
      }
      expect(withGrad.length).toBe(model.namedParameters().filter(([k]) => !k.startsWith('AuxLogits.')).length);
      await closeToFixture(A.noGrad(() => model.forward(x)), f.get('logits'), 'forward', 1e-7);
    } finally {
      model.dispose();
    }
  });

  it('training at 299 px: main and auxiliary logits and running statistics to 1e-4, every gradient as close as PyTorch float32', async () => {
    const f = load('inception_train');
    const model = new Inception3(JSON.parse(f.metadata.config!) as Inception3Config);
    try {
      model.loadStateDict(new Map(f.keys().filter((k) => k.startsWith('sd.')).map((k) => [k.slice(3), f.get(k)])));
      model.train();
      const { logits, auxLogits } = model.forwardWithAux(gpu(f.get('x')));
      await closeToFixture(logits, f.get('logits'), 'logits', 1e-7);
      await closeToFixture(auxLogits!, f.get('aux_logits'), 'aux_logits', 1e-7);
      A.backward(A.add(A.sum(A.mul(logits, gpu(f.get('r')))), A.sum(A.mul(auxLogits!, gpu(f.get('r_aux'))))));
      const params = model.namedParameters();
      expect(params.length).toBe(f.keys().filter((k) => k.startsWith('grad.')).length);
      // The float64 reference's gradients are sums over 2 x 149 x 149 positions that the
      // BatchNorm after each layer nearly cancels: PyTorch's own float32 pass is off by up to
      // 1e-3 of their scale (f32_error). Each is held to 1e-4, or to 4x PyTorch's float32 error
      // where that is larger (ours is within 2.4x of it).
      for (const [k, p] of params) {
        const rtol = Math.max(1e-4, 4 * f.get(`f32_error.${k}`).data[0]!);
        await closeToFixture(p.grad!, f.get(`grad.${k}`), `gradient of ${k}`, 1e-7, rtol);
      }
      const sd = model.stateDict();
      for (const k of f.keys().filter((key) => key.startsWith('after.'))) {
        const t = sd.get(k.slice(6))!;
        await closeToFixture(t.dtype === 'int32' ? A.cast(t, 'float32') : t, f.get(k), k, 1e-7);
      }
    } finally {
      model.dispose();
    }
  });

  it('a new head replaces fc and AuxLogits.fc; blockOrder ends at fc; no AuxLogits when asked', async () => {
    const model = new Inception3({ channelDivisor: 16, numClasses: 5, transformInput: true });
    try {
      const before = model.stateDict();
      model.resetClassifier(3);
      const after = model.stateDict();
      expect([...after.keys()]).toEqual([...before.keys()]);
      for (const [k, t] of after) {
        if (k.startsWith('fc.') || k.startsWith('AuxLogits.fc.')) expect(t.shape[0], k).toBe(3);
        else expect(t, k).toBe(before.get(k));
      }
      model.eval();
      const features = A.noGrad(() => model.forwardFeatures(A.randn([1, 3, 75, 75])));
      expect(features.shape).toEqual([1, 128]);
      expect(A.noGrad(() => model.forwardHead(features)).shape).toEqual([1, 3]);
      const order = model.blockOrder();
      for (const b of order) model.freeze(b);
      expect(model.numParameters({ trainable: true })).toBe(0);
      model.unfreeze(order.at(-1)!);
      expect(model.namedParameters({ trainable: true }).map(([k]) => k)).toEqual(['fc.weight', 'fc.bias']);
      // A frozen backbone (the CLI's --freeze backbone) leaves both new classifiers trainable.
      model.freeze().unfreeze(model.headPattern());
      expect(model.namedParameters({ trainable: true }).map(([k]) => k).sort()).toEqual(['AuxLogits.fc.bias', 'AuxLogits.fc.weight', 'fc.bias', 'fc.weight']);
    } finally {
      model.dispose();
    }
    const plain = new Inception3({ channelDivisor: 16, auxLogits: false });
    try {
      expect([...plain.stateDict().keys()].some((k) => k.startsWith('AuxLogits'))).toBe(false);
      expect(plain.blockOrder()).not.toContain('AuxLogits');
      expect(plain.headPattern()).toBe('fc.*');
    } finally {
      plain.dispose();
    }
    expect(() => new Inception3({ channelDivisor: 32 })).toThrow(/channelDivisor 32 must divide every width.*not 80/);
  });
});

describe('inception_v3 at full size', () => {
  it("has torchvision's keys (AuxLogits included), shapes, order and parameter count, and its preprocessing", () => {
    const full = JSON.parse(gunzipSync(readFileSync(new URL('../fixtures/vision_inception_convnext_full_keys.json.gz', import.meta.url))).toString()) as Record<string, { keys: [string, number[]][]; parameters: number }>;
    const spec = getModelSpec('inception_v3');
    const m = spec.create();
    try {
      expect(m).toBeInstanceOf(Inception3);
      expect([...m.stateDict()].map(([k, t]) => [k, [...t.shape]])).toEqual(full.inception_v3!.keys);
      expect(m.numParameters()).toBe(full.inception_v3!.parameters);
      expect(spec.parameters).toBe(27_161_264);
      expect((m as Inception3).transformInput).toBe(true);
      expect((m as Inception3).auxLossWeight).toBe(0.4);
    } finally {
      m.dispose();
    }
    expect(isImageModelSpec(spec) && spec.inputSize === 299 && Math.round(spec.inputSize / spec.cropPct) === 342).toBe(true);
  });
});
