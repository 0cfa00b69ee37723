/**
 * T5 against PyTorch: the reduced t5-small (ReLU, tied head) and v1.1/flan (gated GELU, untied
 * head) networks of scripts/t5_fixtures.py load strictly from their save_pretrained layout and
 * give the same logits, loss from labels and gradient of every parameter (float64 references);
 * the relative-position buckets equal transformers' definition for t5-small's and the reduced
 * configuration; decoding with the cache gives the teacher-forced logits step by step.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { setup } from '../../tensor/test/helpers.js';
import { closeToFixture, gpu } from './fixture-close.js';
import { parseSafetensors, relativePositionBucket, shiftRight, T5ForConditionalGeneration, type SafetensorsFile } from '../src/index.js';

beforeAll(setup);

const dir = (tag: string): URL => new URL(`./fixtures/t5/${tag}/`, import.meta.url);
const read = (tag: string, file: string): SafetensorsFile => parseSafetensors(readFileSync(new URL(file, dir(tag))));
const config = (tag: string): Record<string, unknown> => JSON.parse(readFileSync(new URL('config.json', dir(tag)), 'utf8')) as Record<string, unknown>;

function loaded(tag: string): T5ForConditionalGeneration {
  const weights = read(tag, 'model.safetensors');
  const model = new T5ForConditionalGeneration(config(tag));
  model.loadStateDict(new Map(weights.keys().map((k) => [k, weights.get(k)])), { strict: true });
  return model.eval();
}

describe('T5 against PyTorch (reduced configurations)', () => {
  for (const tag of ['t5', 't5-v1_1']) {
    it(`${tag}: logits, loss from labels, every parameter's gradient`, async () => {
      const ref = read(tag, 'reference.safetensors');
      const model = loaded(tag);
      expect(model.lmHead === null).toBe(tag === 't5');
      const ids = gpu(ref.get('input_ids'));
      const mask = gpu(ref.get('attention_mask'));
      const labels = gpu(ref.get('labels'));
      const c = model.config;
      expect(Array.from(await shiftRight(labels, c.decoderStartTokenId, c.padTokenId).data())).toEqual(Array.from(ref.get('decoder_input_ids').data));
      const { loss, logits } = model.loss(ids, mask, labels);
      await closeToFixture(logits, ref.get('logits'), 'logits');
      await closeToFixture(loss, ref.get('loss'), 'loss');
      A.backward(loss);
      const params = model.namedParameters();
      expect(params.length).toBe(ref.keys().filter((k) => k.startsWith('grad.')).length);
      for (const [k, p] of params) {
        expect(p.grad, `gradient of ${k}`).toBeTruthy();
        await closeToFixture(p.grad!, ref.get(`grad.${k}`), `gradient of ${k}`, 1e-7);
      }
      model.dispose();
    });
  }

  it('relative-position buckets as transformers computes them (t5-small and the reduced configuration)', () => {
    const ref = read('t5', 'reference.safetensors');
    for (const [nb, md] of [[32, 128], [8, 20]] as const) {
      for (const bi of [true, false]) {
        const want = Array.from(ref.get(`buckets.${nb}.${md}.${bi ? 'bi' : 'causal'}`).data);
        const got = want.map((_, i) => relativePositionBucket(i - 300, bi, nb, md));
        expect(got).toEqual(want);
      }
    }
  });

  it('decoding with the cache gives the teacher-forced logits, and reordering the cache moves its rows', async () => {
    const ref = read('t5-v1_1', 'reference.safetensors');
    const model = loaded('t5-v1_1');
    const ids = gpu(ref.get('input_ids'));
    const mask = gpu(ref.get('attention_mask'));
    const dec = ref.get('decoder_input_ids');
    const [b, t] = dec.shape as [number, number];
    const full = (await A.noGrad(() => model.forward(ids, mask, gpu(dec))).data()) as Float32Array;
    const v = model.vocabSize;
    let cache = model.newCache(b, { inputIds: ids, attentionMask: mask });
    // Steps of 2, 1, then the rest: a multi-token step must see its own causal mask.
    let at = 0;
    for (const n of [2, 1, t - 3]) {
      const step = Int32Array.from({ length: b * n }, (_, k) => dec.data[Math.floor(k / n) * t + at + (k % n)]!);
      const got = (await A.noGrad(() => model.forwardCached(A.tensor(step, { shape: [b, n], dtype: 'int32' }), cache)).data()) as Float32Array;
      for (let r = 0; r < b; r++) {
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < v; j++) expect(got[(r * n + i) * v + j]).toBeCloseTo(full[(r * t + at + i) * v + j]!, 4);
        }
      }
      at += n;
      if (at === 3) cache = model.reorderCache(cache, Int32Array.from([1, 0]));
      if (at === 3) {
        // Rows swapped: continue with the swapped decoder inputs and compare against the swapped rows.
        const swapped = new Int32Array(dec.data.length);
        swapped.set((dec.data as Int32Array).subarray(t, 2 * t), 0);
        swapped.set((dec.data as Int32Array).subarray(0, t), t);
        const encSwapped = A.indexSelect(ids, 0, A.tensor(Int32Array.from([1, 0]), { dtype: 'int32' }));
        const maskSwapped = A.indexSelect(mask, 0, A.tensor(Int32Array.from([1, 0]), { dtype: 'int32' }));
        const fullSwapped = (await A.noGrad(() => model.forward(encSwapped, maskSwapped, A.tensor(swapped, { shape: [b, t], dtype: 'int32' }))).data()) as Float32Array;
        full.set(fullSwapped);
        (dec.data as Int32Array).set(swapped);
      }
    }
    model.disposeCache(cache);
    model.dispose();
  });
});
