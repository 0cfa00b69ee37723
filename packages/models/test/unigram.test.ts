/**
 * The SentencePiece Unigram tokenizer from tokenizer.json against sentencepiece itself
 * (scripts/unigram_tokenizer_fixtures.py): two models trained on the npm `sentiment` sentences,
 * one with byte fallback, converted to transformers' current tokenizer.json layout (and the
 * first also to the older t5-small layout); on 300 held-out IMDb sentences and cases of unicode, digits,
 * whitespace runs and control characters the ids equal sentencepiece's, `</s>` is appended, and
 * decoding gives sentencepiece's decoding.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Tokenizer, type TokenizerJSON } from '../src/index.js';

const fixture = (file: string): string => readFileSync(new URL(`./fixtures/unigram/${file}`, import.meta.url), 'utf8');
const cases = JSON.parse(fixture('cases.json')) as { sentences: string[]; models: Record<string, { ids: number[][]; pieces: string[][]; decoded: string[] }> };

describe('Unigram tokenizer against sentencepiece', () => {
  for (const [model, layout] of [['unigram', ''], ['unigram', '-legacy'], ['unigram-bytes', '']] as const) {
    it(`${model}${layout}: ids, pieces, </s>, decoding on ${cases.sentences.length} sentences`, () => {
      const tok = Tokenizer.fromJSON(JSON.parse(fixture(`${model}${layout}.tokenizer.json`)) as TokenizerJSON);
      const want = cases.models[model]!;
      const unk = tok.tokenToId('<unk>');
      cases.sentences.forEach((s, i) => {
        const got = tok.encode(s, { addSpecialTokens: false });
        expect(got.inputIds, JSON.stringify(s)).toEqual(want.ids[i]);
        // sentencepiece names an unknown piece by its text, Hugging Face by <unk>.
        expect(got.tokens.filter((_, k) => got.inputIds[k] !== unk)).toEqual(want.pieces[i]!.filter((_, k) => want.ids[i]![k] !== unk));
        expect(tok.encode(s).inputIds).toEqual([...want.ids[i]!, tok.tokenToId('</s>')]);
        if (!want.ids[i]!.includes(unk!)) expect(tok.decode(want.ids[i]!)).toBe(want.decoded[i]);
      });
    });
  }

  it('special tokens in the text are their ids; skipSpecialTokens drops them; padding uses <pad>', () => {
    const tok = Tokenizer.fromJSON(JSON.parse(fixture('unigram.tokenizer.json')) as TokenizerJSON);
    const plain = tok.encode('great food', { addSpecialTokens: false }).inputIds;
    expect(tok.encode('great food</s>', { addSpecialTokens: false }).inputIds).toEqual([...plain, 1]);
    expect(tok.decode([...plain, 1, 0, 0], { skipSpecialTokens: true })).toBe('great food');
    expect(tok.padTokenId).toBe(0);
    const batch = tok.encodeBatch(['great food', 'ok'], { padding: 'longest' });
    expect(batch.attentionMask[1]!.filter((m) => m === 0).length).toBe(batch.inputIds[0]!.length - batch.inputIds[1]!.length);
  });

  it('a vocabulary without unk_id, or byte fallback without every byte piece, is a one-line error naming it', () => {
    const json = JSON.parse(fixture('unigram-bytes.tokenizer.json')) as TokenizerJSON;
    const model = json.model as { vocab: [string, number][]; unk_id?: number };
    expect(() => Tokenizer.fromJSON({ ...json, model: { ...model, unk_id: undefined } })).toThrow(/unk_id must index the vocabulary of \d+ pieces/);
    expect(() => Tokenizer.fromJSON({ ...json, model: { ...model, vocab: model.vocab.filter(([p]) => p !== '<0x41>') } })).toThrow(/no piece <0x41>/);
  });
});
