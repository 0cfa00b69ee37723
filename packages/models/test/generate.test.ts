/**
 * generate() on the causal-LM fixtures of scripts/causal_lm_fixtures.py: greedy continuations
 * of left-padded prompts and beam search (3 beams, length penalty 1 and 2) equal transformers'
 * algorithms run in PyTorch; cached greedy equals greedy recomputed over the whole sequence;
 * seeded sampling repeats; top-k and top-p keep what transformers' warpers keep.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { argmax, fromPretrainedCausalLM, generate, parseSafetensors, topKFilter, topPFilter, type CausalLM } from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

const folder = (name: string): string => fileURLToPath(new URL(`./fixtures/causal_lm/${name}`, import.meta.url));
const ref = parseSafetensors(readFileSync(new URL('./fixtures/causal_lm/reference.safetensors', import.meta.url)));
const ints = (key: string): number[] => Array.from(ref.get(key).data);

/** The prompts of the fixture without their left padding. */
function prompts(name: string): number[][] {
  const ids = ints(`${name}.prompt_ids`);
  const mask = ints(`${name}.prompt_mask`);
  const [b, s] = ref.get(`${name}.prompt_ids`).shape as [number, number];
  return Array.from({ length: b }, (_, r) => ids.slice(r * s, (r + 1) * s).filter((_, i) => mask[r * s + i] !== 0));
}

/** Greedy decoding by a full forward over the growing sequence each step (no cache). */
async function uncachedGreedy(model: CausalLM, prompt: number[], n: number): Promise<number[]> {
  const seq = [...prompt];
  for (let i = 0; i < n; i++) {
    const last = A.tidy(() => A.noGrad(() => model.forward(A.tensor(Int32Array.from(seq), { shape: [1, seq.length], dtype: 'int32' })).select(1, seq.length - 1).contiguous()));
    seq.push(argmax(await last.data()));
    last.dispose();
  }
  return seq.slice(prompt.length);
}

describe('generate against PyTorch', () => {
  for (const name of ['llama', 'gpt2-lm']) {
    it(`${name}: greedy and beam search as transformers; the cache changes nothing`, async () => {
      const { model } = await fromPretrainedCausalLM(null, { weights: folder(name) });
      model.eval();
      const ps = prompts(name);
      const greedy = await generate(model, ps, { maxNewTokens: 8, eosTokenId: 0 });
      const want = ints(`${name}.greedy`);
      const width = want.length / ps.length;
      greedy.sequences.forEach((seq, r) => {
        const row = want.slice(r * width, (r + 1) * width);
        const end = row.indexOf(0);
        expect(seq, `${name} greedy row ${r}`).toEqual(end < 0 ? row : row.slice(0, end + 1));
      });
      expect(await uncachedGreedy(model, ps[0]!, greedy.sequences[0]!.length)).toEqual(greedy.sequences[0]);
      for (const lp of [1, 2]) {
        const beam = await generate(model, [ps[0]!], { maxNewTokens: 6, eosTokenId: 0, numBeams: 3, lengthPenalty: lp });
        expect(beam.sequences[0], `${name} beam search, length penalty ${lp}`).toEqual(ints(`${name}.beam_lp${lp}`));
        expect(beam.scores[0]).toBeCloseTo(ref.get(`${name}.beam_lp${lp}_score`).data[0]!, 4);
        const [stopId, ...stopWant] = ints(`${name}.beam_stop_lp${lp}`);
        const stopped = await generate(model, [ps[0]!], { maxNewTokens: 6, eosTokenId: stopId, numBeams: 3, lengthPenalty: lp });
        expect(stopped.sequences[0], `${name} beam search, stop token ${stopId}, length penalty ${lp}`).toEqual(stopWant);
        expect(stopped.scores[0]).toBeCloseTo(ref.get(`${name}.beam_stop_lp${lp}_score`).data[0]!, 4);
      }
      // A stop token ends a row where greedy reaches it, and is kept.
      const stop = greedy.sequences[0]![2]!;
      const stopped = await generate(model, [ps[0]!], { maxNewTokens: 8, eosTokenId: stop });
      expect(stopped.sequences[0]).toEqual(greedy.sequences[0]!.slice(0, greedy.sequences[0]!.indexOf(stop) + 1));
      // Seeded sampling repeats itself.
      const opts = { maxNewTokens: 6, doSample: true, temperature: 1.5, topK: 50, topP: 0.95, seed: 7 };
      const a = await generate(model, ps, opts);
      expect((await generate(model, ps, opts)).sequences).toEqual(a.sequences);
      expect((await generate(model, ps, { ...opts, seed: 8 })).sequences).not.toEqual(a.sequences);
      model.dispose();
    });
  }

  it('says how long a prompt may be', async () => {
    const { model } = await fromPretrainedCausalLM(null, { weights: folder('gpt2-lm') });
    await expect(generate(model, [Array.from({ length: 60 }, () => 5)], { maxNewTokens: 10 })).rejects.toThrow(/context is 64: the prompt may be at most 54 tokens/);
    model.dispose();
  });
});

describe('logits filters', () => {
  const logits = Float32Array.from([1, 3, 2, 3, -1, 0]);
  it('top-k keeps the k largest and ties with the k-th', () => {
    expect(Array.from(topKFilter(logits, 2))).toEqual([-Infinity, 3, -Infinity, 3, -Infinity, -Infinity]);
    expect(Array.from(topKFilter(logits, 3))).toEqual([-Infinity, 3, 2, 3, -Infinity, -Infinity]);
    expect(Array.from(topKFilter(logits, 0))).toEqual(Array.from(logits));
  });
  it('top-p keeps the smallest set whose probability reaches p', () => {
    // softmax of [ln .5, ln .3, ln .15, ln .05]: cumulative .5, .8, .95, 1.
    const l = Float32Array.from([0.5, 0.3, 0.15, 0.05].map(Math.log));
    const kept = (p: number): number[] => Array.from(topPFilter(l, p)).map((v, i) => (v === -Infinity ? -1 : i)).filter((i) => i >= 0);
    expect(kept(0.5)).toEqual([0]);
    expect(kept(0.6)).toEqual([0, 1]);
    expect(kept(0.9)).toEqual([0, 1, 2]);
    expect(kept(0.99)).toEqual([0, 1, 2, 3]);
    expect(kept(0.01)).toEqual([0]);
  });
});
