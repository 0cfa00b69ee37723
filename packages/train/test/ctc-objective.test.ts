/**
 * CTC training of Wav2Vec2ForCTC: the character tokenizer as transformers' Wav2Vec2CTCTokenizer,
 * greedy decoding, corpus CER/WER by their definitions, and a tiny Wav2Vec2ForCTC that learns
 * through the Trainer to transcribe synthetic clips in which each letter is a tone burst.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { CtcCharTokenizer, ctcGreedyDecode, editDistance, Wav2Vec2ForCTC, type Wav2Vec2Config } from '@tl/models';
import { adamw, AudioTranscriptDataset, characterErrorRate, CtcObjective, IGNORE_INDEX, Trainer, wordErrorRate } from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

const RATE = 16000;
const TONES: Record<string, number> = { a: 1000, b: 2500, c: 5000 };
const LETTER = 320;
const GAP = 160;

/** Each letter a 20 ms tone (4 frames of the tiny model), 10 ms of silence between letters and around the word. */
function clipOf(word: string): Float32Array {
  const x = new Float32Array(GAP + 3 * (LETTER + GAP));
  [...word].forEach((ch, k) => {
    const start = GAP + k * (LETTER + GAP);
    for (let i = 0; i < LETTER; i++) x[start + i] = 0.5 * Math.sin((2 * Math.PI * TONES[ch]! * i) / RATE);
  });
  return x;
}

const TINY: Wav2Vec2Config = {
  conv_dim: [32, 32], conv_kernel: [20, 8], conv_stride: [10, 8], hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2,
  intermediate_size: 64, num_conv_pos_embeddings: 8, num_conv_pos_embedding_groups: 4, hidden_dropout: 0, activation_dropout: 0,
  attention_dropout: 0, final_dropout: 0, layerdrop: 0, apply_spec_augment: false,
};

describe('CTC objective', () => {
  it('the character tokenizer: spaces as "|", unknown characters as <unk>, decoding collapses repeats and drops the pad', () => {
    const tok = CtcCharTokenizer.fromTexts(['ab c', 'ba']);
    expect(tok.vocab).toEqual({ '<pad>': 0, '<unk>': 1, a: 2, b: 3, c: 4, '|': 5 });
    expect(tok.encode('ab cz')).toEqual([2, 3, 5, 4, 1]);
    // a a <pad> a b | | c <pad>: the repeated a before the blank is one a, the one after it another.
    expect(tok.decode([2, 2, 0, 2, 3, 5, 5, 4, 0])).toBe('aab c');
    expect(tok.decode([2, 2, 0, 3], { groupTokens: false })).toBe('aab');
    expect(ctcGreedyDecode([0, 1, 1, 0, 0, 2, 1, 1], 0)).toEqual([1, 2, 1]);
    expect(() => new CtcCharTokenizer({ a: 0 })).toThrow(/pad token "<pad>" is not in the vocabulary/);
    expect(() => tok.decode([9])).toThrow(/id 9 is not in the vocabulary of 6/);
  });

  it('CER and WER are corpus edits over reference characters and words', () => {
    expect(editDistance([...'kitten'], [...'sitting'])).toBe(3);
    // 'kitten' vs 'sitting': 3 edits over 7 characters; 'ab' vs 'ab': 0 over 2.
    expect(characterErrorRate(['kitten', 'ab'], ['sitting', 'ab'])).toBeCloseTo(3 / 9, 12);
    // 'the cat sat' vs 'the bat sat on': 1 substitution + 1 deletion over 4 words; then 0 over 1.
    expect(wordErrorRate(['the cat sat', 'hi'], ['the bat sat on', 'hi'])).toBeCloseTo(2 / 5, 12);
  });

  it('transcripts are padded with -100 to the longest; an empty one is refused', async () => {
    const tok = CtcCharTokenizer.fromTexts(['ab', 'c']);
    const ds = new AudioTranscriptDataset([new Float32Array(8), new Float32Array(8)], ['ab', 'c'], tok, RATE, 't');
    expect(Array.from((await ds.get(1)).label as Int32Array)).toEqual([tok.encode('c')[0], IGNORE_INDEX]);
    expect(() => new AudioTranscriptDataset([new Float32Array(8)], [''], tok, RATE, 't')).toThrow(/transcript 0 \(""\) is empty/);
  });

  it('a tiny Wav2Vec2ForCTC learns to transcribe tone-burst words: the loss falls and CER/WER reach 0', async () => {
    const words = ['ab', 'ba', 'ca', 'abc', 'cab', 'bca', 'aa', 'cc', 'bb', 'acb'];
    const tok = CtcCharTokenizer.fromTexts(words);
    const ds = new AudioTranscriptDataset(words.map(clipOf), words, tok, RATE, 'tones');
    const model = new Wav2Vec2ForCTC({ ...TINY, vocab_size: tok.vocabSize });
    const decoded: { prediction: string; reference: string }[] = [];
    const trainer = new Trainer(model, { objective: new CtcObjective({ tokenizer: tok, onDecoded: (d) => decoded.push(d) }), optimizer: adamw({ lr: 1e-2, weightDecay: 0 }), epochs: 150, batchSize: 10, seed: 0 });
    const before = await trainer.evaluate(ds);
    await trainer.fit(ds);
    decoded.length = 0;
    const after = await trainer.evaluate(ds);
    expect(decoded.map((d) => d.reference)).toEqual(words);
    expect(after.metrics.cer).toBeCloseTo(characterErrorRate(decoded.map((d) => d.prediction), words), 12);
    expect(after.metrics.wer).toBeCloseTo(wordErrorRate(decoded.map((d) => d.prediction), words), 12);
    expect(after.loss).toBeLessThan(before.loss / 4);
    expect(after.metrics.cer).toBe(0);
    expect(after.metrics.wer).toBe(0);
    model.dispose();
  }, 300_000);
});
