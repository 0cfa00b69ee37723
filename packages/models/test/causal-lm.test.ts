/**
 * Llama (untied and tied head) and GPT-2 with its LM head against the PyTorch references of
 * scripts/causal_lm_fixtures.py: each fixture folder (config.json, tokenizer.json,
 * model.safetensors as save_pretrained writes them) loads strictly through
 * fromPretrainedCausalLM; logits of a right-padded batch, the shifted next-token
 * cross-entropy and every parameter's gradient match to 1e-4.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { fromPretrainedCausalLM, GPT2LMHeadModel, LlamaForCausalLM, parseSafetensors, repeatKv } from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';
import { closeToFixture, gpu } from './fixture-close.js';

beforeAll(setup);

const folder = (name: string): string => fileURLToPath(new URL(`./fixtures/causal_lm/${name}`, import.meta.url));
const ref = parseSafetensors(readFileSync(new URL('./fixtures/causal_lm/reference.safetensors', import.meta.url)));

describe('causal LMs against PyTorch', () => {
  for (const name of ['llama', 'llama-tied', 'gpt2-lm']) {
    it(`${name}: strict load, logits, loss and every gradient`, async () => {
      const { model, report, tokenizer } = await fromPretrainedCausalLM(null, { weights: folder(name) });
      expect(model).toBeInstanceOf(name === 'gpt2-lm' ? GPT2LMHeadModel : LlamaForCausalLM);
      expect(report.newlyInitialized).toEqual([]);
      expect(report.dropped).toEqual([]);
      expect(tokenizer.vocabSize).toBe(420);
      const file = parseSafetensors(readFileSync(`${folder(name)}/model.safetensors`));
      expect(model.namedParameters().map(([k]) => k).sort()).toEqual(file.keys().sort());
      model.eval();
      const ids = gpu(ref.get(`${name}.input_ids`));
      const mask = gpu(ref.get(`${name}.attention_mask`));
      const logits = model.forward(ids, mask);
      await closeToFixture(logits, ref.get(`${name}.logits`), `${name} logits`);
      const [b, t, v] = logits.shape as [number, number, number];
      const idsHost = ref.get(`${name}.input_ids`).data;
      const maskHost = ref.get(`${name}.attention_mask`).data;
      const labels = new Int32Array(b * (t - 1));
      for (let r = 0; r < b; r++) for (let i = 1; i < t; i++) labels[r * (t - 1) + i - 1] = maskHost[r * t + i] ? idsHost[r * t + i]! : -100;
      const loss = A.crossEntropy(logits.slice(1, 0, t - 1).reshape(b * (t - 1), v), labels);
      await closeToFixture(loss.reshape(1), ref.get(`${name}.loss`), `${name} loss`);
      A.backward(loss);
      for (const [k, p] of model.namedParameters()) await closeToFixture(p.grad!, ref.get(`${name}.grad.${k}`), `${name} gradient of ${k}`, 1e-7);
      model.dispose();
    });
  }

  it('loads the same weights under the id matching config.json, and names a mismatch', async () => {
    const { model } = await fromPretrainedCausalLM('llama', { weights: folder('llama') });
    model.dispose();
    await expect(fromPretrainedCausalLM('gpt2', { weights: folder('llama') })).rejects.toThrow(/model_type "llama", not "gpt2"/);
  });

  it('repeatKv gives each group of query heads its key/value head', async () => {
    const x = A.tensor(Float32Array.from({ length: 2 * 2 * 3 * 4 }, (_, i) => i), { shape: [2, 2, 3, 4] });
    const y = repeatKv(x, 3);
    expect(y.shape).toEqual([2, 6, 3, 4]);
    const xs = await x.data();
    const ys = await y.data();
    for (let bb = 0; bb < 2; bb++) for (let h = 0; h < 6; h++) for (let i = 0; i < 12; i++) {
      expect(ys[(bb * 6 + h) * 12 + i]).toBe(xs[(bb * 2 + Math.floor(h / 3)) * 12 + i]);
    }
  });

  it('rejects unsupported rope_scaling and head counts GQA cannot group', () => {
    expect(() => new LlamaForCausalLM({ hidden_size: 8, num_attention_heads: 2, num_hidden_layers: 1, intermediate_size: 8, vocab_size: 8, rope_scaling: { type: 'linear', factor: 2 } })).toThrow(/rope_scaling/);
    expect(() => new LlamaForCausalLM({ hidden_size: 12, num_attention_heads: 3, num_key_value_heads: 2, num_hidden_layers: 1, intermediate_size: 8, vocab_size: 8 })).toThrow(/multiple of num_key_value_heads/);
  });
});
