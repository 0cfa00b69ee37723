/**
 * Tokenizers against Hugging Face's Rust `tokenizers`: fixtures/make_tokenizer_fixtures.py
 * trains tiny BERT (uncased and cased), GPT-2 and RoBERTa tokenizers and records the reference's
 * encodings of awkward texts (accents, CJK, contractions, emoji, whitespace runs, pairs,
 * truncation, padding) and decodings; hand-made vocabularies check the algorithms by reasoning.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { setup } from '../../tensor/test/helpers.js';
import { batchTensors, Tokenizer, type Encoding, type TokenizerJSON } from '../src/index.js';

interface Expected {
  text: string;
  pair?: string;
  maxLength?: number;
  ids: number[];
  tokens: string[];
  typeIds: number[];
  attentionMask: number[];
  noSpecial?: number[];
}
interface Fixture {
  tokenizer: TokenizerJSON;
  padToken: string;
  single: Expected[];
  pairs: Expected[];
  truncated: Expected[];
  batch: { texts: string[]; encodings: Omit<Expected, 'text'>[] };
  decode: { ids: number[]; skipSpecial: string; keepSpecial: string }[];
}

const fixtures = JSON.parse(readFileSync(new URL('../fixtures/tokenizers.json', import.meta.url), 'utf8')) as Record<string, Fixture>;

function expectEncoding(got: Encoding, want: Omit<Expected, 'text'>, what: string): void {
  expect({ tokens: got.tokens, ids: got.inputIds, typeIds: got.tokenTypeIds, mask: got.attentionMask }, what).toEqual({
    tokens: want.tokens,
    ids: want.ids,
    typeIds: want.typeIds,
    mask: want.attentionMask,
  });
}

describe('tokenizers against the Rust reference', () => {
  for (const [name, f] of Object.entries(fixtures)) {
    describe(name, () => {
      const tok = Tokenizer.fromJSON(f.tokenizer, { padToken: f.padToken });

      it('encodes single texts, with and without special tokens', () => {
        for (const c of f.single) {
          expectEncoding(tok.encode(c.text), c, JSON.stringify(c.text));
          expect(tok.encode(c.text, { addSpecialTokens: false }).inputIds, JSON.stringify(c.text)).toEqual(c.noSpecial);
        }
      });

      it('encodes pairs', () => {
        for (const c of f.pairs) expectEncoding(tok.encode(c.text, { pair: c.pair }), c, `${c.text} | ${c.pair}`);
      });

      it('truncates (longest first) and pads to maxLength', () => {
        for (const c of f.truncated) {
          const got = tok.encode(c.text, { pair: c.pair, maxLength: c.maxLength, padding: 'max_length' });
          expectEncoding(got, c, `${c.text} | ${c.pair ?? ''}`);
        }
      });

      it('pads a batch to its longest', () => {
        const got = tok.encodeBatch(f.batch.texts, { padding: 'longest' });
        f.batch.encodings.forEach((want, i) => {
          expectEncoding({ inputIds: got.inputIds[i]!, tokens: got.tokens[i]!, tokenTypeIds: got.tokenTypeIds[i]!, attentionMask: got.attentionMask[i]! }, want, f.batch.texts[i]!);
        });
      });

      it('decodes, with and without special tokens', () => {
        for (const c of f.decode) {
          expect(tok.decode(c.ids, { skipSpecialTokens: true })).toBe(c.skipSpecial);
          expect(tok.decode(c.ids)).toBe(c.keepSpecial);
        }
      });
    });
  }

  it('reads BPE merges in the older "a b" string form too', () => {
    const f = fixtures.gpt2!;
    const model = f.tokenizer.model as { merges: [string, string][] };
    const old = Tokenizer.fromJSON({ ...f.tokenizer, model: { ...model, merges: model.merges.map((m) => m.join(' ')) } });
    for (const c of f.single) expect(old.encode(c.text).inputIds).toEqual(c.ids);
  });
});

/** GPT-2's byte-to-unicode map: printable Latin-1 bytes map to themselves, the rest to 256+. */
function byteChars(): string[] {
  const keep = (b: number): boolean => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let extra = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(keep(b) ? b : 256 + extra++));
}

describe('tokenizers by hand', () => {
  const wordPiece = (): TokenizerJSON => ({
    added_tokens: ['[PAD]', '[UNK]', '[CLS]', '[SEP]'].map((content, id) => ({ id, content, special: true })),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: { type: 'BertProcessing', cls: ['[CLS]', 2], sep: ['[SEP]', 3] },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'hello', 'un', '##aff', '##able', ',', '!', 'cafe', '中'].map((t, i) => [t, i])),
    },
  });

  it('WordPiece: lowercase, accents stripped, punctuation split, longest match first, ## continuations, [UNK]', () => {
    const tok = Tokenizer.fromJSON(wordPiece());
    const e = tok.encode('Hello, UNAFFABLE world! Café 中文');
    expect(e.tokens).toEqual(['[CLS]', 'hello', ',', 'un', '##aff', '##able', '[UNK]', '!', 'cafe', '中', '[UNK]', '[SEP]']);
    expect(e.inputIds).toEqual([2, 4, 8, 5, 6, 7, 1, 9, 10, 11, 1, 3]);
    expect(tok.numSpecialTokensToAdd()).toBe(2);
    expect(tok.numSpecialTokensToAdd(true)).toBe(3);
    expect(tok.padTokenId).toBe(0);
    expect(tok.vocabSize).toBe(12);
    // [UNK] is a special token too, so it goes with the others.
    expect(tok.decode(e.inputIds, { skipSpecialTokens: true })).toBe('hello, unaffable! cafe 中');
    expect(tok.decode(e.inputIds)).toBe('[CLS] hello, unaffable [UNK]! cafe 中 [UNK] [SEP]');
    const p = tok.encode('hello', { pair: 'cafe !', maxLength: 6, padding: 'max_length' });
    expect(p.tokens).toEqual(['[CLS]', 'hello', '[SEP]', 'cafe', '!', '[SEP]']);
    expect(p.tokenTypeIds).toEqual([0, 0, 0, 1, 1, 1]);
  });

  it('byte-level BPE: merges applied by rank, spaces as Ġ, added tokens kept whole, bytes round trip', () => {
    const chars = byteChars();
    const vocab: Record<string, number> = Object.fromEntries(chars.map((c, i) => [c, i]));
    for (const t of ['he', 'the', 'Ġt']) vocab[t] = Object.keys(vocab).length;
    const tok = Tokenizer.fromJSON({
      added_tokens: [{ id: 259, content: '<|endoftext|>', special: true }],
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      post_processor: { type: 'ByteLevel', trim_offsets: false },
      decoder: { type: 'ByteLevel' },
      model: { type: 'BPE', vocab: { ...vocab, '<|endoftext|>': 259 }, merges: ['h e', 't he', 'Ġ t'] },
    });
    // "the": t h e -> t he -> the. " the": Ġ t h e -> Ġ t he (rank 0) -> Ġ the (rank 1 beats Ġ t's 2).
    const e = tok.encode('the the<|endoftext|>');
    expect(e.tokens).toEqual(['the', 'Ġ', 'the', '<|endoftext|>']);
    expect(e.inputIds).toEqual([257, vocab['Ġ'], 257, 259]);
    expect(tok.padToken).toBe('<|endoftext|>');
    expect(tok.decode(e.inputIds)).toBe('the the<|endoftext|>');
    expect(tok.decode(e.inputIds, { skipSpecialTokens: true })).toBe('the the');
    const text = 'ünï 🤗\n\tx';
    expect(tok.decode(tok.encode(text).inputIds)).toBe(text);
  });

  it('batches become int32 tensors; ragged ones and impossible lengths are refused', async () => {
    await setup();
    const tok = Tokenizer.fromJSON(wordPiece());
    const b = tok.encodeBatch(['hello', ['cafe', 'un ##aff']], { padding: 'longest' });
    const t = batchTensors(b);
    expect(t.inputIds.dtype).toBe('int32');
    expect(t.inputIds.shape).toEqual([2, b.inputIds[1]!.length]);
    expect([...(await t.attentionMask.data())]).toEqual(b.attentionMask.flat());
    expect(() => batchTensors(tok.encodeBatch(['hello', 'hello cafe']))).toThrow(/differ in length/);
    expect(() => tok.encode('hello', { pair: 'cafe', maxLength: 2 })).toThrow(/shorter than the 3 special tokens/);
    expect(() => tok.encode('hello', { padding: 'max_length' })).toThrow(/needs maxLength/);
    expect(() => Tokenizer.fromJSON(wordPiece(), { padToken: '<nope>' })).toThrow(/not in the vocabulary/);
    expect(() => Tokenizer.fromJSON({} as TokenizerJSON)).toThrow(/"model" field/);
    expect(tok.decode([])).toBe('');
  });
});
