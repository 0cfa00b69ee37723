/** The fixtures of fixtures/make_vision_v3_fixtures.py and the check that a model matches one. */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { expect } from 'vitest';
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { parseSafetensors, type ClassifierModel, type HostArray, type SafetensorsFile } from '../src/index.js';
import { closeToFixture, gpu } from './fixture-close.js';

export const loadFixture = (name: string): SafetensorsFile => parseSafetensors(readFileSync(new URL(`../fixtures/vision_${name}.safetensors`, import.meta.url)));

export interface FixtureExtra {
  /** torchvision key -> timm key. */
  timm: Record<string, string>;
  /** torchvision's drop probability of each MBConv, in order. */
  stochasticDepth?: number[];
}

export const fixtureExtra = (): Record<string, FixtureExtra> =>
  JSON.parse(readFileSync(new URL('../fixtures/vision_v3_extra.json', import.meta.url), 'utf8')) as Record<string, FixtureExtra>;

export interface FullSize {
  keys: [string, number[]][];
  parameters: number;
  timm: Record<string, string>;
}

export const fullSizeKeys = (): Record<string, FullSize> =>
  JSON.parse(gunzipSync(readFileSync(new URL('../fixtures/vision_v3_full_keys.json.gz', import.meta.url))).toString()) as Record<string, FullSize>;

/** The fixture's state dict (`sd.` keys without the prefix). */
export const fixtureState = (f: SafetensorsFile): Map<string, HostArray> =>
  new Map(f.keys().filter((k) => k.startsWith('sd.')).map((k) => [k.slice(3), f.get(k)]));

const close = (got: Tensor, h: HostArray, what: string, floor = 1e-7): Promise<void> => closeToFixture(got, h, what, floor, 1e-4);

function maxAbs(h: HostArray): number {
  let m = 0;
  for (const v of h.data) m = Math.max(m, Math.abs(v));
  return m;
}

/**
 * Loads the fixture's weights strictly, then checks the logits, every parameter's gradient and,
 * in training mode (fixtures named `*_train`), the running statistics after the step, each to
 * 1e-4 of the tensor's scale.
 */
export async function expectMatchesFixture(name: string, model: ClassifierModel & { forward(x: Tensor): Tensor }): Promise<void> {
  const f = loadFixture(name);
  const train = name.endsWith('_train');
  const state = fixtureState(f);
  expect([...model.stateDict().keys()].sort()).toEqual([...state.keys()].sort());
  model.loadStateDict(state);
  model.train(train);
  const logits = model.forward(gpu(f.get('x')));
  await close(logits, f.get('logits'), `${name} logits`);
  A.backward(logits, gpu(f.get('r')));
  const params = model.namedParameters();
  expect(params.length).toBe(f.keys().filter((k) => k.startsWith('grad.')).length);
  for (const [k, p] of params) {
    expect(p.grad, `gradient of ${k}`).toBeTruthy();
    // In training mode the bias of a BatchNorm whose output only reaches the next BatchNorm
    // through convolutions has a zero gradient (batch statistics remove any constant shift):
    // both sides hold rounding noise, so a bias is held to 1e-4 of its layer's weight gradient.
    const weight = `grad.${k.replace(/bias$/, 'weight')}`;
    const floor = k.endsWith('.bias') && f.keys().includes(weight) ? 1e-4 * maxAbs(f.get(weight)) : 1e-7;
    await close(p.grad!, f.get(`grad.${k}`), `${name}: gradient of ${k}`, floor);
  }
  if (train) {
    for (const k of f.keys().filter((key) => key.startsWith('after.'))) {
      const t = model.stateDict().get(k.slice(6))!;
      await close(t.dtype === 'int32' ? A.cast(t, 'float32') : t, f.get(k), `${name}: ${k}`);
    }
  }
}
