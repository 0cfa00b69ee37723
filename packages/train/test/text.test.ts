/**
 * Text end to end: the npm `sentiment` package's labelled sentences (1,000 each from Yelp and
 * IMDB). A WordPiece tokenizer.json is built from the Yelp sentences, written to disk and loaded
 * as a user would; a small BERT (random init) trains on Yelp (20% held out) through
 * tokenization, padding, attention masks, the Trainer and the metrics, and is tested on IMDB:
 * another domain (restaurants -> films), which it must still get above chance. Sentence pairs
 * get the token type ids of Rust `tokenizers` (its recorded encodings), and a small BERT learns
 * from them in which of the two texts a word stands.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { BertForSequenceClassification, DistilBertForSequenceClassification, Tokenizer, type TokenizerJSON } from '@tl/models';
import { adam, adamw, cosine, DataLoader, readTextRows, stratifiedSplit, textDataset, textFile, Trainer, type TextRow } from '../src/node.js';
import { rng, setup } from '../../tensor/test/helpers.js';

const EPOCHS = Number(process.env.TL_TEXT_EPOCHS ?? 6);
const LR = Number(process.env.TL_TEXT_LR ?? 3e-3);
const SEED = Number(process.env.TL_TEXT_SEED ?? 11);
const MAX_LENGTH = 32;
const SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
const PIECES = ['##s', '##ed', '##d', '##ing', '##ly', '##er', '##est', '##y', '##n'];

const fixtures = join(dirname(createRequire(import.meta.url).resolve('sentiment/package.json')), 'test/fixtures');
/** The fixtures' {text, class} records; each file ends with an empty one (class null). */
function sentences(name: 'yelp' | 'imdb'): TextRow[] {
  const raw = JSON.parse(readFileSync(join(fixtures, `${name}.json`), 'utf8')) as { text: string; class: number | null }[];
  return raw.filter((r) => r.class === 0 || r.class === 1).map((r) => ({ text: r.text, label: r.class! }));
}

/** A BERT-style (uncased) WordPiece tokenizer.json: the most frequent words of `texts`, a few
 * continuation pieces, and the special tokens first ([PAD] = 0). */
function buildTokenizerJSON(texts: string[], size: number): TokenizerJSON {
  const counts = new Map<string, number>();
  for (const t of texts) {
    // About what BertNormalizer + BertPreTokenizer do: lowercase, split at spaces and punctuation.
    for (const w of t.toLowerCase().normalize('NFD').replace(/\p{Mn}/gu, '').match(/[\p{L}\p{N}]+|[^\s\p{L}\p{N}]/gu) ?? []) {
      counts.set(w, (counts.get(w) ?? 0) + 1);
    }
  }
  const words = [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([w]) => w);
  const tokens = [...SPECIALS, ...PIECES, ...words.slice(0, size - SPECIALS.length - PIECES.length)];
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: {
        '[CLS]': { id: '[CLS]', ids: [2], tokens: ['[CLS]'] },
        '[SEP]': { id: '[SEP]', ids: [3], tokens: ['[SEP]'] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(tokens.map((t, i) => [t, i])),
    },
  };
}

/** RFC 4180 quoting for the CSV written below. */
const csvField = (s: string): string => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

let dir: string;
let tok: Tokenizer;
const yelp = sentences('yelp');
const imdb = sentences('imdb');

beforeAll(async () => {
  await setup();
  dir = mkdtempSync(join(tmpdir(), 'tl-text-'));
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(buildTokenizerJSON(yelp.map((r) => r.text), 2000)));
  tok = Tokenizer.fromJSON(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as TokenizerJSON);
  // IMDB as a user's CSV (text,label), read back through the Node helper.
  writeFileSync(join(dir, 'imdb.csv'), ['text,label', ...imdb.map((r) => `${csvField(r.text)},${r.label}`)].join('\n') + '\n');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('text data sets', () => {
  it('the fixtures: 1,000 labelled sentences each, balanced', () => {
    for (const rows of [yelp, imdb]) {
      expect(rows).toHaveLength(1000);
      expect(rows.filter((r) => r.label === 1)).toHaveLength(500);
    }
  });

  it('tokenizes, pads and truncates to maxLength with an int32 attention mask; the loader stacks [B, T]', async () => {
    expect(tok.padTokenId).toBe(0);
    expect(tok.vocabSize).toBe(2000);
    expect(tok.tokenize('Wow... Loved this place.')).toEqual(['wow', '.', '.', '.', 'loved', 'this', 'place', '.']);
    const long = 'the food was great and the service was great and the prices were great and the place was great and we will be back again and again';
    const ds = textDataset([{ text: 'Crust is not good.', label: 0 }, { text: long, label: 1 }, { text: '', label: 1 }], tok, { maxLength: 12 });
    expect(ds.inputShape).toEqual([12]);
    expect(ds.classes).toEqual(['0', '1']);
    const [a, b, c] = [await ds.get(0), await ds.get(1), await ds.get(2)];
    const id = (t: string): number => tok.tokenToId(t)!;
    expect(a.input).toBeInstanceOf(Int32Array);
    expect(a.mask).toBeInstanceOf(Int32Array);
    expect([...a.input]).toEqual([id('[CLS]'), id('crust'), id('is'), id('not'), id('good'), id('.'), id('[SEP]'), 0, 0, 0, 0, 0]);
    expect([...a.mask!]).toEqual([1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
    expect(b.input[0]).toBe(id('[CLS]'));
    expect(b.input[11]).toBe(id('[SEP]'));
    expect([...b.mask!]).toEqual(new Array(12).fill(1));
    expect([...c.input.slice(0, 3)]).toEqual([id('[CLS]'), id('[SEP]'), 0]);
    expect(a.label).toBe(0);
    const batch = (await new DataLoader(ds, { batchSize: 3 }).epoch(0).next()).value!;
    expect(batch.x.dtype).toBe('int32');
    expect(batch.x.shape).toEqual([3, 12]);
    expect(batch.mask!.dtype).toBe('int32');
    expect(batch.mask!.shape).toEqual([3, 12]);
    expect([...(await batch.mask!.data())]).toEqual([...a.mask!, ...b.mask!, ...c.mask!]);
    batch.dispose();
    // Class names as labels, the fingerprint follows the tokens, bad labels are named.
    const named = textDataset([{ text: 'good', label: 'pos' }, { text: 'bad', label: 'neg' }], tok, { maxLength: 8 });
    expect(named.classes).toEqual(['neg', 'pos']);
    expect(named.labels()).toEqual([1, 0]);
    expect(textDataset([{ text: 'good', label: 'pos' }], tok, { maxLength: 8, classes: ['neg', 'pos'] }).fingerprint).not.toBe(
      textDataset([{ text: 'bad', label: 'pos' }], tok, { maxLength: 8, classes: ['neg', 'pos'] }).fingerprint,
    );
    expect(() => textDataset([{ text: 'x', label: 'meh' }], tok, { maxLength: 8, classes: ['neg', 'pos'] })).toThrow(/row 0 has label "meh"/);
    expect(() => textDataset([{ text: 'x', label: 0 }], tok, { maxLength: 0 })).toThrow(/maxLength/);
  });

  it('reads text,label from CSV and JSONL files', async () => {
    const rows = await readTextRows(join(dir, 'imdb.csv'));
    expect(rows).toHaveLength(1000);
    expect(rows.map((r) => r.text)).toEqual(imdb.map((r) => r.text));
    writeFileSync(join(dir, 'few.jsonl'), imdb.slice(0, 10).map((r) => JSON.stringify({ text: r.text, label: r.label ? 'pos' : 'neg' })).join('\n'));
    const few = await textFile(join(dir, 'few.jsonl'), tok, { maxLength: MAX_LENGTH, valSplit: 0.2 });
    expect(few.classes).toEqual(['neg', 'pos']);
    expect(few.train.length + few.val!.length).toBe(10);
    expect(few.val!.length).toBe(2);
  });
});

describe('BERT on Yelp, tested on IMDB', () => {
  it('the Trainer hands the int32 mask to BERT, which hides the padding: logits do not depend on the padded length', async () => {
    const rows = yelp.filter((r) => tok.encode(r.text).inputIds.length <= 16).slice(0, 6);
    A.manualSeed(5);
    // Large initial weights, so attention is far from uniform and padding would show.
    const model = new BertForSequenceClassification({
      vocab_size: tok.vocabSize, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 64, num_labels: 2,
      initializer_range: 0.5,
    });
    const trainer = new Trainer(model, { batchSize: 6, logger: () => {} });
    const short = await trainer.predict(textDataset(rows, tok, { maxLength: 16 }));
    const padded = textDataset(rows, tok, { maxLength: MAX_LENGTH });
    const long = await trainer.predict(padded);
    expect(long.width).toBe(2);
    const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i]!)));
    // Without the mask the padding changes the logits: the mask is what makes them equal.
    model.eval();
    const batch = (await new DataLoader(padded, { batchSize: 6 }).epoch(0).next()).value!;
    const unmasked = A.noGrad(() => model.forward(batch.x));
    const diffs = [maxDiff(short.outputs, long.outputs), maxDiff(await unmasked.data(), long.outputs)];
    console.log(`logits, padded to 16 vs ${MAX_LENGTH}: max difference ${diffs[0]!.toExponential(2)} with the mask, ${diffs[1]!.toExponential(2)} without`);
    expect(diffs[0]).toBeLessThan(1e-4);
    expect(diffs[1]).toBeGreaterThan(1e-2);
    unmasked.dispose();
    batch.dispose();
    model.dispose();
  });

  it(`trains from scratch through the Trainer and beats chance on another domain (${EPOCHS} epochs, lr ${LR})`, async () => {
    const all = textDataset(yelp, tok, { maxLength: MAX_LENGTH, name: 'yelp' });
    const { train, val } = stratifiedSplit(all, 0.2, 1);
    const test = (await textFile(join(dir, 'imdb.csv'), tok, { maxLength: MAX_LENGTH, classes: ['0', '1'] })).train;
    expect([train.length, val.length, test.length]).toEqual([800, 200, 1000]);
    const first = await train.get(0);
    expect([first.input.constructor.name, first.input.length, first.mask?.constructor.name]).toEqual(['Int32Array', MAX_LENGTH, 'Int32Array']);
    const unk = tok.tokenToId('[UNK]')!;
    const unkShare = (ds: typeof all): number => {
      let u = 0;
      let n = 0;
      ds.inputs.forEach((x, i) => x.forEach((t, j) => { if (ds.masks![i]![j]) { n++; if (t === unk) u++; } }));
      return u / n;
    };
    const imdbAll = textDataset(imdb, tok, { maxLength: MAX_LENGTH });

    A.manualSeed(SEED);
    const model = new BertForSequenceClassification({
      vocab_size: tok.vocabSize, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64,
      max_position_embeddings: 64, pad_token_id: tok.padTokenId!, num_labels: 2,
    });
    const t0 = performance.now();
    const trainer = new Trainer(model, {
      optimizer: adamw({ lr: LR, weightDecay: 0.01 }), schedule: cosine({ warmupSteps: 10 }), epochs: EPOCHS, batchSize: 32, seed: SEED, logger: () => {},
      onEvent: (e) => e.type === 'epochEnd' && console.log(
        `epoch ${e.epoch + 1}: loss ${e.logs.trainLoss.toFixed(3)} acc ${(100 * e.logs.trainAccuracy!).toFixed(1)}% ` +
          `val ${(100 * e.logs.valAccuracy!).toFixed(1)}% (${e.logs.seconds.toFixed(1)} s)`,
      ),
    });
    const history = await trainer.fit(train, val);
    const r = await trainer.evaluate(test);
    const seconds = (performance.now() - t0) / 1000;
    console.log(
      `Yelp -> IMDB: val ${(100 * history.at(-1)!.valAccuracy!).toFixed(1)}%, IMDB accuracy ${(100 * r.accuracy!).toFixed(1)}% ` +
        `macro-F1 ${r.report!.macroF1.toFixed(3)}, confusion ${JSON.stringify(r.report!.confusion)}; ` +
        `[UNK] share yelp ${(100 * unkShare(all)).toFixed(1)}% imdb ${(100 * unkShare(imdbAll)).toFixed(1)}%; ${seconds.toFixed(1)} s`,
    );
    model.dispose();

    expect(history).toHaveLength(EPOCHS);
    expect(history.at(-1)!.trainLoss).toBeLessThan(history[0]!.trainLoss);
    expect(r.total).toBe(1000);
    expect(r.report!.confusion.flat().reduce((a, b) => a + b, 0)).toBe(1000);
    expect(r.report!.macroF1).toBeGreaterThan(0.5);
    expect(r.report!.perClass).toHaveLength(2);
    expect(history.at(-1)!.valMacroF1).toBeGreaterThan(0.5);
    expect(history.at(-1)!.valAccuracy).toBeGreaterThan(0.6);
    expect(r.accuracy).toBeGreaterThan(0.55);
  }, 120_000); // about 20 s on lavapipe
});

/** A pair case of packages/models/fixtures/tokenizers.json (Rust `tokenizers`' own encodings). */
interface PairCase {
  text: string;
  pair?: string;
  maxLength?: number;
  ids: number[];
  typeIds: number[];
  attentionMask: number[];
}

describe('sentence pairs', () => {
  it('token type ids as Rust tokenizers gives them, stacked [B, T] by the loader', async () => {
    const fixture = (JSON.parse(readFileSync(new URL('../../models/fixtures/tokenizers.json', import.meta.url), 'utf8')) as Record<string, {
      tokenizer: TokenizerJSON; padToken: string; pairs: PairCase[]; truncated: PairCase[];
    }>)['bert-uncased']!;
    const ref = Tokenizer.fromJSON(fixture.tokenizer, { padToken: fixture.padToken });
    const pad = ref.padTokenId!;
    // Truncated (longest first) and padded to 8 by the reference itself.
    const cut = fixture.truncated.filter((c) => c.pair !== undefined);
    expect(cut).toHaveLength(3);
    const ds8 = textDataset(cut.map((c) => ({ text: c.text, textPair: c.pair, label: 0 })), ref, { maxLength: 8 });
    // Whole pairs, padded here: pad ids, mask 0 and type 0 after the reference's tokens.
    const T = 40;
    const dsT = textDataset(fixture.pairs.map((c) => ({ text: c.text, textPair: c.pair, label: 0 })), ref, { maxLength: T });
    const padded = (c: PairCase): PairCase => {
      const n = T - c.ids.length;
      return { ...c, ids: [...c.ids, ...new Array<number>(n).fill(pad)], typeIds: [...c.typeIds, ...new Array<number>(n).fill(0)], attentionMask: [...c.attentionMask, ...new Array<number>(n).fill(0)] };
    };
    for (const [ds, cases] of [[ds8, cut], [dsT, fixture.pairs.map(padded)]] as const) {
      for (const [i, c] of cases.entries()) {
        const s = await ds.get(i);
        expect({ ids: [...s.input], types: [...s.tokenTypeIds!], mask: [...s.mask!] }, `${c.text} | ${c.pair}`).toEqual({ ids: c.ids, types: c.typeIds, mask: c.attentionMask });
      }
    }

    // BERT's template by hand: [CLS] a [SEP] b [SEP], types 0 … 0 1 … 1, then padding of type 0;
    // a row without a pair is all type 0. Single texts alone carry no token type ids.
    const id = (t: string): number => tok.tokenToId(t)!;
    const ds = textDataset([{ text: 'Good food', textPair: 'bad service', label: 1 }, { text: 'slow', label: 0 }], tok, { maxLength: 10 });
    const [a, b] = [await ds.get(0), await ds.get(1)];
    expect([...a.input]).toEqual([id('[CLS]'), id('good'), id('food'), id('[SEP]'), id('bad'), id('service'), id('[SEP]'), 0, 0, 0]);
    expect([...a.tokenTypeIds!]).toEqual([0, 0, 0, 0, 1, 1, 1, 0, 0, 0]);
    expect([...b.tokenTypeIds!]).toEqual(new Array(10).fill(0));
    expect((await textDataset([{ text: 'slow', label: 0 }], tok, { maxLength: 10 }).get(0)).tokenTypeIds).toBeUndefined();
    const batch = (await new DataLoader(ds, { batchSize: 2 }).epoch(0).next()).value!;
    expect([batch.tokenTypeIds!.dtype, batch.tokenTypeIds!.shape]).toEqual(['int32', [2, 10]]);
    expect([...(await batch.tokenTypeIds!.data())]).toEqual([...a.tokenTypeIds!, ...b.tokenTypeIds!]);
    batch.dispose();
    // The same tokens split differently are different samples.
    expect(textDataset([{ text: 'good food', textPair: 'bad', label: 0 }], tok, { maxLength: 10, addSpecialTokens: false }).fingerprint)
      .not.toBe(textDataset([{ text: 'good', textPair: 'food bad', label: 0 }], tok, { maxLength: 10, addSpecialTokens: false }).fingerprint);
    expect(() => textDataset([{ text: 'a', textPair: 3 as unknown as string, label: 0 }], tok, { maxLength: 8 })).toThrow(/row 0 has a textPair that is not a string: 3/);
  });

  it('the Trainer passes token type ids to BERT, which learns in which text a word stands', async () => {
    // Each pair holds "great" once, in the first text (label 0) or the second (label 1); the texts
    // are 1 to 5 other words, so the position of "great" alone does not tell. (Without the type
    // ids this model stays at chance for these 3 epochs.)
    const words = ['the', 'food', 'was', 'and', 'service', 'place', 'very', 'good', 'bad', 'not', 'we', 'back'];
    const r = rng(3);
    const pick = (): string => words[Math.floor(r() * words.length)]!;
    const text = (withGreat: boolean): string => {
      const w = Array.from({ length: 1 + Math.floor(r() * 5) }, pick);
      if (withGreat) w.splice(Math.floor(r() * (w.length + 1)), 0, 'great');
      return w.join(' ');
    };
    const rows: TextRow[] = Array.from({ length: 240 }, (_, i) => ({ text: text(i % 2 === 0), textPair: text(i % 2 === 1), label: i % 2 }));
    const all = textDataset(rows, tok, { maxLength: 16, name: 'great-pairs' });
    const { train, val } = stratifiedSplit(all, 0.2, 1);
    A.manualSeed(2);
    const model = new BertForSequenceClassification({
      vocab_size: tok.vocabSize, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 16, num_labels: 2,
      // Larger than BERT's 0.02, so the few steps here get past the first plateau.
      initializer_range: 0.1,
    });
    const typeRow = async (): Promise<number[]> => [...(await model.stateDict().get('bert.embeddings.token_type_embeddings.weight')!.data())].slice(32);
    const before = await typeRow();
    const t0 = performance.now();
    // Adam without weight decay: the type-1 embedding moves only if type ids reach the model.
    const trainer = new Trainer(model, { optimizer: adam({ lr: 5e-3 }), schedule: cosine({ warmupSteps: 5 }), epochs: 3, batchSize: 16, seed: 4, logger: () => {} });
    const history = await trainer.fit(train, val);
    console.log(`pairs: val accuracy ${history.map((e) => (100 * e.valAccuracy!).toFixed(1)).join('% -> ')}%, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    expect(await typeRow()).not.toEqual(before);
    expect(history.at(-1)!.valAccuracy).toBeGreaterThan(0.8);
    model.dispose();

    // A model whose forward takes no token type ids (DistilBERT) is not handed them, and is told so once.
    const lines: string[] = [];
    const distil = new DistilBertForSequenceClassification({ vocab_size: tok.vocabSize, dim: 16, n_layers: 1, n_heads: 2, hidden_dim: 32, max_position_embeddings: 16 });
    const p = await new Trainer(distil, { batchSize: 50, logger: (l) => lines.push(l) }).predict(val);
    expect(p.width).toBe(2);
    expect(lines).toEqual(['the samples carry token type ids, but DistilBertForSequenceClassification.forward takes none (its third argument); they are not used']);
    distil.dispose();
  });
});
