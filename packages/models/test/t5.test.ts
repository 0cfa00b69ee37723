/**
 * T5 against PyTorch: the reduced t5-small (ReLU, tied head) and v1.1/flan (gated GELU, untied
 * head) networks of scripts/t5_fixtures.py load strictly from their save_pretrained layout and
 * give the same logits, loss from labels and gradient of every parameter (float64 references);
 * the relative-position buckets equal transformers' definition for t5-small's and the reduced
 * configuration; decoding with the cache gives the teacher-forced logits step by step, and
 * generate() decodes greedily from decoder_start_token_id.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { setup } from '../../tensor/test/helpers.js';
import { closeToFixture, gpu } from './fixture-close.js';
import { fileURLToPath } from 'node:url';
import { generate, mapT5Keys, parseSafetensors, relativePositionBucket, shiftRight, T5ForConditionalGeneration, type SafetensorsFile } from '../src/index.js';
import { fromPretrainedSeq2Seq } from '../src/node.js';

beforeAll(setup);

const dir = (tag: string): URL => new URL(`./fixtures/t5/${tag}/`, import.meta.url);
const read = (tag: string, file: string): SafetensorsFile => parseSafetensors(readFileSync(new URL(file, dir(tag))));

/** The save_pretrained folder through the user-facing loader (strict; nothing dropped or new). */
async function loaded(tag: string): Promise<T5ForConditionalGeneration> {
  const { model, report, tokenizer } = await fromPretrainedSeq2Seq({ weights: fileURLToPath(dir(tag)) });
  expect(report).toEqual({ renamed: [], dropped: [], newlyInitialized: [] });
  expect(tokenizer.encode('a b').inputIds).toEqual([4, 5, 1]);
  return model.eval();
}

describe('T5 against PyTorch (reduced configurations)', () => {
  for (const tag of ['t5', 't5-v1_1']) {
    it(`${tag}: logits, loss from labels, every parameter's gradient`, async () => {
      const ref = read(tag, 'reference.safetensors');
      const model = await loaded(tag);
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
    const model = await loaded('t5-v1_1');
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

  it('greedy generate() continues from decoder_start_token_id with the argmax of the teacher-forced logits', async () => {
    const model = await loaded('t5');
    const prompts = [[5, 17, 42, 9, 63, 21, 1], [8, 3, 77, 12, 1]];
    const out = await generate(model, prompts, { maxNewTokens: 6, eosTokenId: -1 });
    for (let r = 0; r < prompts.length; r++) {
      const p = prompts[r]!;
      const seq = out.sequences[r]!;
      expect(seq.length).toBe(6);
      const dec = [model.decoderStartTokenId, ...seq.slice(0, -1)];
      const logits = (await A.noGrad(() => model.forward(A.tensor(Int32Array.from(p), { shape: [1, p.length], dtype: 'int32' }), null, A.tensor(Int32Array.from(dec), { shape: [1, dec.length], dtype: 'int32' }))).data()) as Float32Array;
      const v = model.vocabSize;
      const argmax = dec.map((_, i) => logits.subarray(i * v, (i + 1) * v).reduce((best, x, j, row) => (x > row[best]! ? j : best), 0));
      expect(seq).toEqual(argmax);
    }
    model.dispose();
  });

  it('the key map reads pytorch_model.bin layouts: tied copies and the unused cross-attention bias dropped, a lone tied name read as shared', () => {
    const own = ['shared.weight', 'encoder.final_layer_norm.weight', 'decoder.block.0.layer.1.EncDecAttention.q.weight'];
    const bin = [...own, 'encoder.embed_tokens.weight', 'decoder.embed_tokens.weight', 'lm_head.weight', 'decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight'];
    const tied = mapT5Keys(bin, { tied: true });
    expect([...tied.keys.keys()].sort()).toEqual([...own].sort());
    expect(tied.dropped.map((d) => d.key).sort()).toEqual(bin.filter((k) => !own.includes(k)).sort());
    expect([...mapT5Keys(bin, { tied: false }).keys.keys()]).toContain('lm_head.weight');
    const lone = mapT5Keys(['encoder.embed_tokens.weight', 'encoder.final_layer_norm.weight'], { tied: true });
    expect(lone.renamed).toEqual([['encoder.embed_tokens.weight', 'shared.weight']]);
    expect([...mapT5Keys(bin, { tied: true, encoderOnly: true }).keys.keys()].sort()).toEqual(['encoder.final_layer_norm.weight', 'shared.weight']);
  });

  it('a tokenizer without the pad or eos token the config names is a one-line error naming them', async () => {
    const { checkSeq2SeqTokenizer, Tokenizer } = await import('../src/index.js');
    const model = new T5ForConditionalGeneration({ ...JSON.parse(readFileSync(new URL('config.json', dir('t5')), 'utf8')), eos_token_id: 150, pad_token_id: 120, vocab_size: 200 });
    const tok = Tokenizer.fromJSON(readFileSync(new URL('tokenizer.json', dir('t5')), 'utf8'));
    expect(() => checkSeq2SeqTokenizer(model, tok, 'x')).toThrow('x: the tokenizer has no token for pad_token_id 120 and eos_token_id 150 of config.json, which T5 needs to start and end a target');
    model.dispose();
    // GPT-2's byte-level BPE beside a T5 config: id 0 is its special <|endoftext|>, id 1 the ordinary "!".
    const t5 = new T5ForConditionalGeneration({ ...JSON.parse(readFileSync(new URL('config.json', dir('t5')), 'utf8')), vocab_size: 500 });
    const gpt2 = Tokenizer.fromJSON(readFileSync(new URL('../../causal_lm/llama/tokenizer.json', dir('t5')), 'utf8'));
    expect(() => checkSeq2SeqTokenizer(t5, gpt2, 'y')).toThrow('y: the tokenizer has no token for eos_token_id 1 (the tokenizer\'s "!" there is not a special token) of config.json');
    t5.dispose();
  });
});
