/**
 * LoRA on the causal LMs of scripts/causal_lm_fixtures.py (Llama's q_proj/v_proj, GPT-2's fused
 * c_attn, a Conv1D stored [in, out]): PEFT's keys and config for a CAUSAL_LM adapter; merged
 * weights equal W + B @ A * alpha / r computed on the host in float64 (transposed for Conv1D);
 * the merged model's logits and its greedy generation (through the key/value cache) equal the
 * unmerged model's; unmerging restores the base; the files load onto a fresh base.
 */
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { adapterFiles, fromPretrainedCausalLM, generate, loadAdapter, lora, parseSafetensors } from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

const folder = (name: string): string => fileURLToPath(new URL(`./fixtures/causal_lm/${name}`, import.meta.url));

const CASES = [
  { name: 'llama', targets: ['q_proj', 'v_proj'], probe: 'model.layers.1.self_attn.v_proj', fanInFanOut: false },
  { name: 'gpt2-lm', targets: ['c_attn'], probe: 'transformer.h.1.attn.c_attn', fanInFanOut: true },
];

async function maxDiff(a: Tensor | ArrayLike<number>, b: Tensor | ArrayLike<number>): Promise<number> {
  const host = async (t: Tensor | ArrayLike<number>): Promise<ArrayLike<number>> => (t instanceof A.Tensor ? t.data() : t);
  const [x, y] = [await host(a), await host(b)];
  expect(x.length).toBe(y.length);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

describe('LoRA on causal LMs', () => {
  for (const c of CASES) {
    it(`${c.name}: PEFT files, merged weights, and logits and greedy generation after merging equal the unmerged model`, async () => {
      const { model } = await fromPretrainedCausalLM(null, { weights: folder(c.name) });
      model.eval();
      const lm = lora(model, { r: 4, alpha: 8, targetModules: c.targets, taskType: 'CAUSAL_LM', baseModelNameOrPath: folder(c.name) });
      // A trained adapter: B nonzero, so it changes what the model says.
      A.noGrad(() => {
        let seed = 30;
        for (const [, t] of lm.adapterStateDict()) A.assign(t, A.randn([...t.shape], { seed: seed++, std: 0.2 }));
      });
      const files = await adapterFiles(lm);
      expect(files.config).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, target_modules: c.targets, fan_in_fan_out: c.fanInFanOut });
      const keys = parseSafetensors(files.weights).keys();
      expect(keys).toContain(`base_model.model.${c.probe}.lora_A.weight`);
      expect(keys.every((k) => /^base_model\.model\..*\.lora_[AB]\.weight$/.test(k) && c.targets.some((t) => k.includes(`.${t}.lora_`)))).toBe(true);

      const ids = A.tensor(Int32Array.from([5, 17, 42, 9, 300, 11]), { shape: [1, 6], dtype: 'int32' });
      const prompts = [[5, 17, 42], [9, 300, 11, 8]];
      const base = lm.layers.get(c.probe)!.base.weight;
      const w0 = await base.data();
      const logits = await A.noGrad(() => model.forward(ids)).data();
      const greedy = await generate(model, prompts, { maxNewTokens: 8 });

      lm.merge();
      const { a, b } = lm.layers.get(c.probe)!.weights('default');
      const [ah, bh, wm] = [await a.data(), await b.data(), await base.data()];
      const [r, inF] = a.shape as [number, number];
      const outF = b.shape[0]!;
      let err = 0;
      for (let o = 0; o < outF; o++) {
        for (let i = 0; i < inF; i++) {
          let d = 0;
          for (let k = 0; k < r; k++) d += bh[o * r + k]! * ah[k * inF + i]!;
          const at = c.fanInFanOut ? i * outF + o : o * inF + i;
          err = Math.max(err, Math.abs(wm[at]! - (w0[at]! + (d * 8) / 4)));
        }
      }
      expect(err).toBeLessThan(1e-5);
      expect(await maxDiff(await A.noGrad(() => model.forward(ids)).data(), logits)).toBeLessThan(1e-4);
      const mergedGreedy = await generate(model, prompts, { maxNewTokens: 8 });
      expect(mergedGreedy.sequences).toEqual(greedy.sequences);
      mergedGreedy.scores.forEach((v, i) => expect(v).toBeCloseTo(greedy.scores[i]!, 4));

      lm.unmerge();
      expect(await maxDiff(base, w0)).toBeLessThan(1e-6);
      lm.setAdapter('default');

      const fresh = (await fromPretrainedCausalLM(null, { weights: folder(c.name) })).model.eval();
      loadAdapter(fresh, { config: JSON.stringify(files.config), weights: files.weights });
      expect(await maxDiff(await A.noGrad(() => fresh.forward(ids)).data(), logits)).toBeLessThan(1e-5);
      const withoutAdapter = (await fromPretrainedCausalLM(null, { weights: folder(c.name) })).model.eval();
      expect(await maxDiff(await A.noGrad(() => withoutAdapter.forward(ids)).data(), logits)).toBeGreaterThan(1e-3);
      for (const m of [model, fresh, withoutAdapter]) m.dispose();
    });
  }
});
