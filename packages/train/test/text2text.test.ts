/**
 * The text-to-text objective and data set: the teacher-forced loss through the Trainer's
 * evaluation equals PyTorch's loss from `labels` on the T5 fixture (scripts/t5_fixtures.py);
 * long sources and targets are cut and counted, target padding is -100; ROUGE-L and exact
 * match follow their definitions; a tiny T5 trained through the Trainer learns to copy short
 * words, and its generated exact match, ROUGE-L and chrF (checked against chrF of what it
 * generated) rise.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { fromPretrainedSeq2Seq, parseSafetensors } from '@tl/models';
import { adamw, chrF, exactMatch, IGNORE_INDEX, rougeL, type GeneratedPair, TensorDataset, Text2TextObjective, text2textDataset, Trainer } from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

const t5 = (tag: string): string => fileURLToPath(new URL(`../../models/test/fixtures/t5/${tag}`, import.meta.url));

describe('text-to-text objective', () => {
  it('ROUGE-L is the F-measure of the longest common subsequence of lower-cased words; exact match trims', () => {
    // LCS of "the cat sat down" and "The cat, it sat": the cat sat (3); P = 3/4, R = 3/4.
    expect(rougeL('the cat sat down', 'The cat, it sat')).toBeCloseTo(0.75, 12);
    // LCS 2 of 2 predicted and 4 reference words: P 1, R 0.5, F 2/3.
    expect(rougeL('a b', 'a x b y')).toBeCloseTo(2 / 3, 12);
    expect(rougeL('', 'a')).toBe(0);
    expect(exactMatch(' positive ', 'positive')).toBe(1);
    expect(exactMatch('positive', 'negative')).toBe(0);
  });

  it('the evaluation loss equals PyTorch loss from labels (mean over the tokens that are not -100)', async () => {
    const { model, tokenizer } = await fromPretrainedSeq2Seq({ weights: t5('t5') });
    const ref = parseSafetensors(readFileSync(`${t5('t5')}/reference.safetensors`));
    const ids = ref.get('input_ids');
    const [b, s] = ids.shape as [number, number];
    const rows = (key: string): Int32Array[] => { const h = ref.get(key); const n = h.shape[1]!; return Array.from({ length: b }, (_, r) => Int32Array.from(h.data.subarray(r * n, (r + 1) * n))); };
    const ds = new TensorDataset(rows('input_ids'), rows('labels'), [s], 't5-ref', undefined, rows('attention_mask'));
    const trainer = new Trainer(model, { objective: new Text2TextObjective({ tokenizer, generate: false }), optimizer: adamw({ lr: 1e-3 }), epochs: 1, batchSize: b });
    const r = await trainer.evaluate(ds);
    expect(r.loss).toBeCloseTo(ref.get('loss').data[0]!, 4);
    model.dispose();
  });

  it('cuts and counts long sources and targets; target padding is -100', async () => {
    const { model, tokenizer } = await fromPretrainedSeq2Seq({ weights: t5('t5') });
    model.dispose();
    const built = text2textDataset([{ source: 'ab cd ef', target: 'gh' }, { source: 'a', target: 'ab cd ef gh' }], tokenizer, { maxSourceLength: 5, maxTargetLength: 4 });
    expect([built.truncatedSources, built.truncatedTargets]).toEqual([1, 1]);
    const first = await built.dataset.get(0);
    expect(Array.from(first.label as Int32Array)).toEqual([...tokenizer.encode('gh').inputIds, IGNORE_INDEX]);
    expect(Array.from(first.mask!)).toEqual([1, 1, 1, 1, 1]);
    expect(() => text2textDataset([], tokenizer, { maxSourceLength: 4, maxTargetLength: 4 })).toThrow('text2textDataset: no rows');
  });

  it('a tiny T5 learns to copy words: exact match, ROUGE-L and chrF of generated text rise', async () => {
    const { model, tokenizer } = await fromPretrainedSeq2Seq({ weights: t5('t5-v1_1') });
    const words = ['cab', 'dog', 'fig', 'hat', 'jar', 'kit'];
    const rows = words.map((w) => ({ source: w, target: w }));
    const data = text2textDataset(rows, tokenizer, { maxSourceLength: 6, maxTargetLength: 6 });
    const generated: GeneratedPair[] = [];
    const objective = new Text2TextObjective({ tokenizer, maxNewTokens: 6, onGenerated: (g) => generated.push(g) });
    const trainer = new Trainer(model, { objective, optimizer: adamw({ lr: 1e-2, weightDecay: 0 }), epochs: 40, batchSize: 6 });
    const before = await trainer.evaluate(data.dataset);
    await trainer.fit(data.dataset);
    generated.length = 0;
    const after = await trainer.evaluate(data.dataset);
    expect(generated.map((g) => [g.source, g.reference])).toEqual(words.map((w) => [w, w]));
    expect(after.metrics.chrF!).toBeCloseTo(chrF(generated.map((g) => g.prediction), words) / 100, 12);
    expect(after.metrics.exactMatch!).toBeCloseTo(generated.filter((g) => g.prediction === g.reference).length / words.length, 12);
    expect(after.metrics.chrF!).toBeGreaterThan(before.metrics.chrF!);
    expect(after.loss).toBeLessThan(before.loss / 4);
    expect(after.metrics.exactMatch!).toBeGreaterThan(before.metrics.exactMatch!);
    expect(after.metrics.exactMatch!).toBeGreaterThanOrEqual(0.5);
    expect(after.metrics.rougeL!).toBeGreaterThanOrEqual(after.metrics.exactMatch!);
    model.dispose();
  }, 120_000);
});
