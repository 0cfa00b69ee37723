/**
 * Wav2Vec2 against torchaudio 0.13's wav2vec2_model (fixtures/make_wav2vec2_fixtures.py), at a
 * reduced configuration in eval mode: base's layout (group norm, post-norm) and large-lv60's
 * (layer norm on every conv, pre-norm). Hugging Face key names load strictly and save back;
 * hidden states, both heads' logits and every parameter's gradient agree to 1e-4.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { setup } from '../../tensor/test/helpers.js';
import { closeToFixture, gpu } from './fixture-close.js';
import {
  featureFrames, parseSafetensors, resolveWav2Vec2Config, specAugmentMask, Wav2Vec2ForCTC, Wav2Vec2ForSequenceClassification,
  type SafetensorsFile, type Wav2Vec2Config,
} from '../src/index.js';
import '../src/node.js';

beforeAll(setup);

const load = (name: string): SafetensorsFile => parseSafetensors(readFileSync(new URL(`../fixtures/wav2vec2_${name}.safetensors`, import.meta.url)));
/** The fixture's tensors under `prefix`, without it, leaving out keys that start with any of `skip`. */
const withPrefix = (f: SafetensorsFile, prefix: string, ...skip: string[]): Map<string, ReturnType<SafetensorsFile['get']>> =>
  new Map(f.keys().filter((k) => k.startsWith(prefix) && !skip.some((s) => k.startsWith(prefix + s))).map((k) => [k.slice(prefix.length), f.get(k)]));

/** Every parameter's gradient against the fixture's; one that eval mode leaves unused
 * (masked_spec_embed) has no gradient here and an all-zero one there. */
async function gradientsClose(params: [string, A.Tensor][], grads: Map<string, ReturnType<SafetensorsFile['get']>>): Promise<void> {
  for (const [k, p] of params) {
    const want = grads.get(k)!;
    if (p.grad) await closeToFixture(p.grad, want, `gradient of ${k}`, 1e-6);
    else expect([k, want.data.every((v) => v === 0)]).toEqual([k, true]);
  }
}

describe('Wav2Vec2 against torchaudio (conv 16x3, embed 32, 2 layers, 4 heads, pos conv 8/4)', () => {
  for (const name of ['base', 'stable']) {
    it(`${name}: sequence classification keys, hidden state, logits and gradients to 1e-4`, async () => {
      const f = load(name);
      const model = new Wav2Vec2ForSequenceClassification(JSON.parse(f.metadata.config!) as Wav2Vec2Config);
      try {
        const state = withPrefix(f, 'sd.', 'lm_head');
        expect(new Set(model.stateDict().keys())).toEqual(new Set(state.keys()));
        model.loadStateDict(state, { strict: true });
        model.eval();
        const x = gpu(f.get('x'));
        await closeToFixture(A.noGrad(() => model.wav2vec2.forward(x)), f.get('hidden'), 'hidden state', 1e-7);
        const logits = model.forward(x);
        await closeToFixture(logits, f.get('logits'), 'logits', 1e-7);
        A.backward(logits, gpu(f.get('r')));
        const grads = withPrefix(f, 'grad.');
        expect(model.namedParameters().map(([k]) => k).sort()).toEqual([...grads.keys()].sort());
        await gradientsClose(model.namedParameters(), grads);
      } finally {
        model.dispose();
      }
    });

    it(`${name}: CTC logits and gradients to 1e-4`, async () => {
      const f = load(name);
      const model = new Wav2Vec2ForCTC(JSON.parse(f.metadata.config!) as Wav2Vec2Config);
      try {
        model.loadStateDict(withPrefix(f, 'sd.', 'projector.', 'classifier.'), { strict: true });
        model.eval();
        const logits = model.forward(gpu(f.get('x')));
        expect(logits.shape).toEqual([2, featureFrames(model.config, 400), 5]);
        await closeToFixture(logits, f.get('ctc_logits'), 'CTC logits', 1e-7);
        A.backward(logits, gpu(f.get('r_ctc')));
        const grads = withPrefix(f, 'ctc_grad.');
        expect(model.namedParameters().map(([k]) => k).sort()).toEqual([...grads.keys()].sort());
        await gradientsClose(model.namedParameters(), grads);
      } finally {
        model.dispose();
      }
    });
  }

  it('saves Hugging Face key names that load back strictly into a fresh model with the same logits', async () => {
    const f = load('base');
    const config = JSON.parse(f.metadata.config!) as Wav2Vec2Config;
    const a = new Wav2Vec2ForSequenceClassification(config);
    const b = new Wav2Vec2ForSequenceClassification(config);
    const dir = mkdtempSync(join(tmpdir(), 'tl-w2v2-'));
    try {
      a.loadStateDict(withPrefix(f, 'sd.', 'lm_head'));
      await a.save(join(dir, 'model.safetensors'));
      const saved = parseSafetensors(readFileSync(join(dir, 'model.safetensors')));
      expect(saved.keys()).toContain('wav2vec2.encoder.pos_conv_embed.conv.weight_g');
      expect(saved.keys()).toContain('wav2vec2.feature_extractor.conv_layers.0.layer_norm.weight');
      expect(saved.get('wav2vec2.feature_extractor.conv_layers.0.conv.weight').shape).toEqual([16, 1, 10]);
      await b.load(join(dir, 'model.safetensors'), { strict: true });
      a.eval();
      b.eval();
      const x = gpu(f.get('x'));
      await closeToFixture(A.noGrad(() => b.forward(x)), { ...f.get('logits'), data: await A.noGrad(() => a.forward(x)).data() } as ReturnType<SafetensorsFile['get']>, 'reloaded logits');
    } finally {
      rmSync(dir, { recursive: true, force: true });
      a.dispose();
      b.dispose();
    }
  });

  it('freezeFeatureEncoder freezes exactly the convolutional feature encoder', () => {
    const m = new Wav2Vec2ForSequenceClassification(JSON.parse(load('base').metadata.config!) as Wav2Vec2Config);
    try {
      m.freezeFeatureEncoder();
      const frozen = m.namedParameters({ trainable: false }).map(([k]) => k);
      expect(frozen.sort()).toEqual(['wav2vec2.feature_extractor.conv_layers.0.conv.weight', 'wav2vec2.feature_extractor.conv_layers.0.layer_norm.bias',
        'wav2vec2.feature_extractor.conv_layers.0.layer_norm.weight', 'wav2vec2.feature_extractor.conv_layers.1.conv.weight', 'wav2vec2.feature_extractor.conv_layers.2.conv.weight']);
    } finally {
      m.dispose();
    }
  });
});

describe('Wav2Vec2 configuration and SpecAugment', () => {
  it('has wav2vec2-base\'s shape by default and names bad values', () => {
    const c = resolveWav2Vec2Config({});
    expect([c.hiddenSize, c.numLayers, c.numHeads, c.numConvPosEmbeddings, c.numConvPosEmbeddingGroups, c.featExtractNorm]).toEqual([768, 12, 12, 128, 16, 'group']);
    expect(featureFrames(c, 16000)).toBe(49);
    expect(() => resolveWav2Vec2Config({ feat_extract_norm: 'batch' })).toThrow(/feat_extract_norm must be "group" or "layer", got "batch"/);
    expect(() => resolveWav2Vec2Config({ conv_dim: [8, 8], conv_stride: [2], conv_kernel: [2] })).toThrow(/same length/);
    expect(() => resolveWav2Vec2Config({ hidden_size: 30, num_conv_pos_embedding_groups: 16, num_attention_heads: 3 })).toThrow(/num_conv_pos_embedding_groups/);
  });

  it('masks spans of mask_time_length frames, at least mask_time_min_masks of them, reproducibly', () => {
    const m1 = specAugmentMask(new A.Rng(5), 4, 100, 0.3, 10, 2);
    const m2 = specAugmentMask(new A.Rng(5), 4, 100, 0.3, 10, 2);
    expect(m1).toEqual(m2);
    for (let b = 0; b < 4; b++) {
      const row = m1.subarray(b * 100, (b + 1) * 100);
      const masked = row.reduce((s, v) => s + v, 0);
      // int(0.3 * 100 / 10 + u) = 3 spans of 10, overlapping at most to 10 frames.
      expect(masked).toBeGreaterThanOrEqual(10);
      expect(masked).toBeLessThanOrEqual(30);
    }
    expect(() => specAugmentMask(new A.Rng(0), 1, 5, 0.5, 10, 2)).toThrow(/mask_time_length \(10\) exceeds the 5 frames/);
  });
});
