/** Wav2Vec2's SpecAugment feature (channel) masks, transformers' mask_feature_prob /
 * mask_feature_length: masked channels are zero at every frame, the rest pass unchanged, the
 * masks are seeded, and the masked share follows the probability. */
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { resolveWav2Vec2Config, specAugmentMask, Wav2Vec2Model } from '../src/index.js';
import { setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

const E = 32;
const model = (cfg: Record<string, unknown>): Wav2Vec2Model => new Wav2Vec2Model(resolveWav2Vec2Config({
  conv_dim: [8], conv_kernel: [4], conv_stride: [4], hidden_size: E, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16,
  num_conv_pos_embeddings: 4, num_conv_pos_embedding_groups: 2, mask_time_prob: 0, ...cfg,
}));

describe('Wav2Vec2 feature (channel) masks', () => {
  it('zero whole channels across every frame in training, the same channels at each frame of a clip; nothing in eval', async () => {
    const m = model({ mask_feature_prob: 0.4, mask_feature_length: 3 });
    const [B, T] = [3, 7];
    const hidden = A.add(A.rand([B, T, E]), 1);
    const want = await hidden.data();
    m.train();
    const got = await m.maskHiddenStates(hidden).data();
    let maskedTotal = 0;
    for (let b = 0; b < B; b++) {
      for (let e = 0; e < E; e++) {
        const col = Array.from({ length: T }, (_, t) => got[(b * T + t) * E + e]!);
        const masked = col[0] === 0;
        maskedTotal += masked ? 1 : 0;
        col.forEach((v, t) => expect(v).toBe(masked ? 0 : want[(b * T + t) * E + e]));
      }
    }
    // int(0.4 · 32 / 3 + u) = 4 or 5 spans of 3 per clip, overlapping: 3 to 15 channels each.
    expect(maskedTotal).toBeGreaterThanOrEqual(3 * B);
    expect(maskedTotal).toBeLessThanOrEqual(15 * B);
    m.eval();
    expect(Array.from(await m.maskHiddenStates(hidden).data())).toEqual(Array.from(want));
  });

  it('seeded: the same generator state gives the same channels; the masked share follows the probability', () => {
    expect(specAugmentMask(new A.Rng(3), 4, E, 0.3, 2, 0, 'feature')).toEqual(specAugmentMask(new A.Rng(3), 4, E, 0.3, 2, 0, 'feature'));
    // Spans of one channel cannot overlap, so E[masked share] = E[int(p·E + u)] / E = p exactly.
    for (const p of [0.1, 0.25, 0.5]) {
      const rng = new A.Rng(11);
      const draws = 400;
      const m = specAugmentMask(rng, draws, E, p, 1, 0, 'feature');
      const share = m.reduce((s, v) => s + v, 0) / (draws * E);
      // A clip's count int(p·E + u) varies by at most 1 (sd <= 0.5): the share's sd over 400 clips is < 0.5 / (32 · 20) < 0.001.
      expect(Math.abs(share - p)).toBeLessThan(0.005);
    }
  });

  it('bad settings name the value', () => {
    expect(() => resolveWav2Vec2Config({ mask_feature_prob: 1.5 })).toThrow(/mask_feature_prob must be a probability in \[0, 1\], got 1.5/);
    expect(() => resolveWav2Vec2Config({ mask_feature_length: 0 })).toThrow(/mask_feature_length must be a positive integer, got 0/);
    expect(() => specAugmentMask(new A.Rng(0), 1, 8, 0.5, 10, 0, 'feature')).toThrow(/mask_feature_length \(10\) exceeds the 8 hidden channels/);
    expect(resolveWav2Vec2Config({ apply_spec_augment: false, mask_feature_prob: 0.3 }).maskFeatureProb).toBe(0);
  });
});
