/**
 * The causal-LM objective and data sets: the shifted next-token loss equals PyTorch's on the
 * models fixture (scripts/causal_lm_fixtures.py); plain text is cut into blocks with eos between
 * rows, prompt rows take no loss on the prompt, long rows are cut and counted; a tiny Llama
 * trained through the Trainer lowers its held-out perplexity, which is exp of the mean token loss.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { fromPretrainedCausalLM, parseSafetensors, type Tokenizer } from '@tl/models';
import { adamw, causalLMDataset, CausalLMObjective, eosIdOf, IGNORE_INDEX, shiftedTokenLoss, Trainer } from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

const fixtures = new URL('../../models/test/fixtures/causal_lm/', import.meta.url);
const ref = parseSafetensors(readFileSync(new URL('reference.safetensors', fixtures)));
const gpu = (key: string) => { const h = ref.get(key); return A.tensor(h.data, { shape: h.shape, dtype: h.dtype }); };

async function tokenizerOf(): Promise<Tokenizer> {
  const { model, tokenizer } = await fromPretrainedCausalLM(null, { weights: fileURLToPath(new URL('gpt2-lm', fixtures)) });
  model.dispose();
  return tokenizer;
}

describe('causal-LM objective', () => {
  it('the shifted token loss equals PyTorch cross-entropy with -100 on padding', async () => {
    for (const name of ['llama', 'gpt2-lm']) {
      const ids = ref.get(`${name}.input_ids`).data;
      const mask = ref.get(`${name}.attention_mask`).data;
      const labels = A.tensor(Int32Array.from(ids, (v, i) => (mask[i] ? v : IGNORE_INDEX)), { shape: ref.get(`${name}.input_ids`).shape, dtype: 'int32' });
      const { sum, tokens } = shiftedTokenLoss(gpu(`${name}.logits`), labels);
      const n = (await tokens.data())[0]!;
      expect(n).toBe(2 * 6 - 2);
      expect((await sum.data())[0]! / n).toBeCloseTo(ref.get(`${name}.loss`).data[0]!, 5);
    }
  });

  it('plain text becomes blocks with eos between rows; prompts take no loss; long rows are cut and counted', async () => {
    const tok = await tokenizerOf();
    const eos = eosIdOf(tok);
    expect(eos).toBe(tok.tokenToId('<|endoftext|>'));
    const rows = [{ text: 'the cat sat' }, { text: 'a dog ran far away' }];
    const plain = causalLMDataset(rows, tok, { maxLength: 8 });
    const stream = rows.flatMap((r) => [...tok.encode(r.text, { addSpecialTokens: true }).inputIds, eos]);
    const got = plain.dataset.inputs.flatMap((x, i) => Array.from(x).slice(0, plain.dataset.masks![i]!.reduce((a, b) => a + b, 0)));
    expect(got).toEqual(stream);
    expect(plain.dataset.targets.map((l) => Array.from(l as Int32Array))).toEqual(plain.dataset.inputs.map((x, i) => Array.from(x, (v, j) => (plain.dataset.masks![i]![j] ? v : IGNORE_INDEX))));
    const p = causalLMDataset([{ prompt: 'Q: cat?', text: ' A: yes' }, { prompt: 'Q: did the dog run far away and then far back again?', text: ' A: no' }], tok, { maxLength: 16 });
    const promptLen = tok.encode('Q: cat?', { addSpecialTokens: true }).inputIds.length;
    const answer = tok.encode(' A: yes', { addSpecialTokens: false }).inputIds;
    const label0 = Array.from(p.dataset.targets[0] as Int32Array);
    expect(label0.slice(0, promptLen).every((v) => v === IGNORE_INDEX)).toBe(true);
    expect(label0.slice(promptLen, promptLen + answer.length + 1)).toEqual([...answer, eos]);
    expect(p.truncated).toBe(1);
    expect(p.targetTokens).toBe(answer.length + 1 + Array.from(p.dataset.targets[1] as Int32Array).filter((v) => v !== IGNORE_INDEX).length);
  });

  it('names the missing end-of-sequence token', () => {
    const bare = { encode: () => ({ inputIds: [1], attentionMask: [1], tokenTypeIds: [0], tokens: ['x'] }), tokenToId: () => undefined, padTokenId: null };
    expect(() => causalLMDataset([{ text: 'x' }], bare, { maxLength: 4 })).toThrow(/none of the end-of-sequence tokens <\/s>, <\|endoftext\|>/);
  });

  it('a tiny Llama learns repeated text: held-out perplexity falls and equals exp(loss)', async () => {
    const { model, tokenizer } = await fromPretrainedCausalLM(null, { weights: fileURLToPath(new URL('llama', fixtures)) });
    const line = 'the cat sat on the mat and the dog sat on the log';
    const train = causalLMDataset(Array.from({ length: 8 }, () => ({ text: line })), tokenizer, { maxLength: 16, eosTokenId: 0 });
    const val = causalLMDataset([{ text: line }], tokenizer, { maxLength: 16, eosTokenId: 0 });
    const trainer = new Trainer(model, { objective: new CausalLMObjective(), optimizer: adamw({ lr: 3e-3, weightDecay: 0 }), epochs: 3, batchSize: 4 });
    const before = await trainer.evaluate(val.dataset);
    expect(before.metrics.perplexity!).toBeCloseTo(Math.exp(before.loss), 3);
    const history = await trainer.fit(train.dataset);
    const after = await trainer.evaluate(val.dataset);
    expect(history[2]!.trainLoss).toBeLessThan(history[0]!.trainLoss);
    expect(after.metrics.perplexity!).toBeLessThan(before.metrics.perplexity! / 2);
    expect(after.total).toBe(val.targetTokens - val.dataset.length);
    model.dispose();
  });
});
