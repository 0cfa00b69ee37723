/**
 * `tl train`, `eval`, `predict`, `export` and `--resume` with text models, as a user runs them:
 * the built CLI on the tiny Hub-format checkpoints of packages/models/fixtures/hub_text (folders
 * as save_pretrained writes them) and a CSV of synthetic sentences whose label follows from
 * their words, so a few epochs learn it. The run folder must be what transformers loads
 * (config.json with id2label, tokenizer.json, model.safetensors with its keys); every user
 * mistake gets one line.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnNode } from './spawn-node.js';

const PKG = fileURLToPath(new URL('..', import.meta.url));
const TL = join(PKG, 'dist/tl.js');
const HUB = fileURLToPath(new URL('../../models/fixtures/hub_text/', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'tl-text-cli-'));
const run = join(work, 'run');

async function tl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await spawnNode([TL, ...args], { cwd: work, encoding: 'utf8', env: { ...process.env, CI: '1' }, timeout: 300_000 });
  // Dawn's notes about reduced limits are not the CLI's output.
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr.split('\n').filter((l) => !l.startsWith('Warning: max')).join('\n') };
}

/** Sentences of 2 to 6 words, all from one of two word groups: the group is the label. */
function sentences(n: number, seed: number): { text: string; label: string }[] {
  const groups = { pos: ['the', 'and', 'in', 'on', 'over'], neg: ['to', 'is', 'it', 'he', 'set'] };
  let s = seed;
  const rand = (k: number): number => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s % k;
  };
  return Array.from({ length: n }, (_, i) => {
    const label = i % 2 ? 'neg' : 'pos';
    return { text: Array.from({ length: 2 + rand(5) }, () => groups[label][rand(5)]).join(' '), label };
  });
}

const csv = (rows: { text: string; label: string }[], head = 'sentence,sentiment'): string => `${head}\n${rows.map((r) => `${r.text},${r.label}`).join('\n')}\n`;

/** The tensor names of a safetensors file (its JSON header). */
function safetensorsKeys(path: string): string[] {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  return Object.keys(JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'))).filter((k) => k !== '__metadata__');
}

beforeAll(async () => {
  // The tests run the bundled CLI; bundle the current sources first.
  const b = await spawnNode(['../../scripts/build-package.mjs', '--bin', 'tl'], { cwd: PKG, encoding: 'utf8' });
  expect(b.status, b.stderr).toBe(0);
  writeFileSync(join(work, 'train.csv'), csv(sentences(160, 7)));
  writeFileSync(join(work, 'test.csv'), csv(sentences(40, 99)));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('tl train with a text model', () => {
  it('fine-tunes bert from a save_pretrained folder on a CSV into a folder transformers loads', async () => {
    const r = await tl(['train', '--model', 'bert', '--weights', join(HUB, 'bert'), '--data', 'train.csv', '--text-column', 'sentence', '--label-column', 'sentiment',
      '--epochs', '3', '--lr', '1e-2', '--batch-size', '16', '--out', run]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/newly initialised \(not in the checkpoint\): classifier\.weight, classifier\.bias/);
    expect(r.err).toMatch(/128 training and 32 validation texts, 2 classes/);
    // CI: one plain line per epoch, no bar.
    expect(r.err).toMatch(/^epoch 3 {2}loss .* samples\/s/m);
    expect(r.err).not.toContain('\r');
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json', 'tokenizer_config.json', 'train_config.json', 'metrics.jsonl', 'report.html', 'checkpoint/model.safetensors', 'checkpoint/trainer.json']) {
      expect(existsSync(join(run, f)), f).toBe(true);
    }
    const config = JSON.parse(readFileSync(join(run, 'config.json'), 'utf8'));
    expect(config).toMatchObject({
      architectures: ['BertForSequenceClassification'], model_type: 'bert', num_labels: 2, id2label: { 0: 'neg', 1: 'pos' }, label2id: { neg: 0, pos: 1 },
      vocab_size: 160, hidden_size: 8,
    });
    expect(readFileSync(join(run, 'tokenizer.json'))).toEqual(readFileSync(join(HUB, 'bert', 'tokenizer.json')));
    const keys = safetensorsKeys(join(run, 'model.safetensors'));
    expect(keys).toEqual(expect.arrayContaining(['bert.embeddings.word_embeddings.weight', 'bert.encoder.layer.1.output.LayerNorm.weight', 'bert.pooler.dense.weight', 'classifier.weight']));
    expect(keys.filter((k) => k.startsWith('cls.') || k.endsWith('gamma'))).toEqual([]);
    expect(JSON.parse(readFileSync(join(run, 'train_config.json'), 'utf8'))).toMatchObject({ model: 'bert', textColumn: 'sentence', labelColumn: 'sentiment', maxLength: 32, task: 'text-classification' });
    const epochs = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.type === 'epoch');
    expect(epochs).toHaveLength(3);
    expect(epochs.at(-1).valAccuracy).toBeGreaterThan(0.75);
    expect(readFileSync(join(run, 'report.html'), 'utf8')).toMatch(/Misclassified examples/);
  });

  it('--resume continues the text run from its checkpoint', async () => {
    const r = await tl(['train', '--resume', run, '--epochs', '4']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/resumed from .* at epoch 4/);
    const epochs = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.type === 'epoch');
    expect(epochs.map((e) => e.epoch)).toEqual([0, 1, 2, 3]);
  });

  it('eval scores the validation texts again, or another file; predict takes --text or a file of lines', async () => {
    const e = await tl(['eval', '--run', run, '--json']);
    expect(e.code, e.err).toBe(0);
    const ev = JSON.parse(e.out);
    const last = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.type === 'epoch').at(-1);
    expect(ev.total).toBe(32);
    expect(ev.accuracy).toBeCloseTo(last.valAccuracy, 6);
    expect(ev.perClass.map((c: { class: string }) => c.class)).toEqual(['neg', 'pos']);
    const t = await tl(['eval', '--run', run, '--data', 'test.csv']);
    expect(t.code, t.err).toBe(0);
    const acc = Number(/^accuracy ([\d.]+)% \((\d+)\/40\)/m.exec(t.out)?.[1]);
    expect(acc).toBeGreaterThan(75);

    const p = await tl(['predict', '--run', run, '--text', 'the and over in the on', '--text', 'it is he to set']);
    expect(p.code, p.err).toBe(0);
    expect(p.out.trim().split('\n')).toEqual([
      expect.stringMatching(/^pos \d+\.\d% \(neg \d+\.\d%\)\tthe and over in the on$/),
      expect.stringMatching(/^neg \d+\.\d% \(pos \d+\.\d%\)\tit is he to set$/),
    ]);
    writeFileSync(join(work, 'lines.txt'), 'on the and in\n\nhe it is\n');
    const j = await tl(['predict', '--run', run, 'lines.txt', '--json', '--top-k', '1', '--logits']);
    expect(j.code, j.err).toBe(0);
    const preds = JSON.parse(j.out);
    expect(preds.map((x: { text: string; label: string }) => [x.text, x.label])).toEqual([['on the and in', 'pos'], ['he it is', 'neg']]);
    for (const x of preds) {
      expect(Object.keys(x).sort()).toEqual(['index', 'label', 'logits', 'prob', 'text', 'topk']);
      expect(x.topk).toHaveLength(1);
      expect(x.logits).toHaveLength(2);
      expect(x.prob).toBeGreaterThan(0.5);
    }
    const x = await tl(['export', '--run', run, '--out', join(work, 'exported')]);
    expect(x.code, x.err).toBe(0);
    expect(JSON.parse(readFileSync(join(work, 'exported', 'config.json'), 'utf8')).id2label).toEqual({ 0: 'neg', 1: 'pos' });
    expect(existsSync(join(work, 'exported', 'tokenizer.json'))).toBe(true);
  });

  it('gpt2 from JSONL with a --val file: config.json gets the pad_token_id transformers needs', async () => {
    const jsonl = (rows: { text: string; label: string }[]): string => rows.map((r) => JSON.stringify(r)).join('\n');
    writeFileSync(join(work, 'train.jsonl'), jsonl(sentences(48, 3)));
    writeFileSync(join(work, 'val.jsonl'), jsonl(sentences(16, 5)));
    const out = join(work, 'gpt2-run');
    const r = await tl(['train', '--model', 'gpt2', '--weights', join(HUB, 'gpt2'), '--data', 'train.jsonl', '--val', 'val.jsonl', '--freeze', 'backbone',
      '--epochs', '1', '--lr', '1e-2', '--out', out]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/48 training and 16 validation texts/);
    expect(r.err).toMatch(/, 16 trainable;/);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(config).toMatchObject({ architectures: ['GPT2ForSequenceClassification'], num_labels: 2, id2label: { 0: 'neg', 1: 'pos' } });
    expect(Number.isInteger(config.pad_token_id)).toBe(true);
    expect((await tl(['eval', '--run', out])).code).toBe(0);
  });

  it('sentence pairs, trained from scratch from a config.json (--config-json), predicted with --text-pair', async () => {
    const rows = sentences(40, 11).map((r, i) => ({ premise: r.text, hypothesis: sentences(40, 13)[i]!.text, label: r.label }));
    writeFileSync(join(work, 'pairs.csv'), `premise,hypothesis,label\n${rows.map((r) => `${r.premise},${r.hypothesis},${r.label}`).join('\n')}\n`);
    const out = join(work, 'pairs-run');
    const r = await tl(['train', '--model', 'bert', '--config-json', join(HUB, 'bert', 'config.json'), '--data', 'pairs.csv', '--text-column', 'premise',
      '--text-pair-column', 'hypothesis', '--epochs', '1', '--max-length', '24', '--out', out]);
    expect(r.code, r.err).toBe(0);
    const p = await tl(['predict', '--run', out, '--text', 'the and', '--text-pair', 'it is', '--json']);
    expect(p.code, p.err).toBe(0);
    expect(JSON.parse(p.out)[0]).toMatchObject({ text: 'the and', textPair: 'it is' });
    const bad = await tl(['predict', '--run', out, '--text', 'the and']);
    expect(bad.err).toMatch(/give a --text-pair for each --text/);
  });
});

describe('every text mistake gets one line and a non-zero exit', () => {
  const bert = join(HUB, 'bert');
  const files: Record<string, string> = {
    'empty.csv': '',
    'header.csv': 'text,label\n',
    'columns.csv': 'text,label\nthe and,pos\non in,pos\nit is,neg\nhe to,neg\n',
    'typo.csv': 'text,label\nthe and,pos\non in,pos\nit is,neg\nhe to,neg\nthe on,postive\n',
  };
  beforeAll(() => {
    for (const [f, text] of Object.entries(files)) writeFileSync(join(work, f), text);
    // A BERT checkpoint with GPT-2's tokenizer beside it.
    const mixed = join(work, 'mixed');
    mkdirSync(mixed, { recursive: true });
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(bert, f), join(mixed, f));
    copyFileSync(join(HUB, 'gpt2', 'tokenizer.json'), join(mixed, 'tokenizer.json'));
  });
  const train = (...args: string[]): string[] => ['train', '--model', 'bert', ...args];
  const cases: [string, string[], RegExp, number][] = [
    ['an empty CSV', train('--weights', bert, '--data', 'empty.csv'), /empty\.csv is empty; expected a header line naming the columns \(text,label\)/, 2],
    ['a CSV with only a header', train('--weights', bert, '--data', 'header.csv'), /header\.csv has no rows, only a header/, 2],
    ['a missing column', train('--weights', bert, '--data', 'columns.csv', '--text-column', 'sentence'), /columns\.csv has no column "sentence"; its columns are "text", "label"/, 2],
    ['a label that appears once', train('--weights', bert, '--data', 'typo.csv'), /the label "postive" appears only once \(the text "the on"\)/, 2],
    ['a tokenizer that does not fit the model', train('--weights', 'mixed', '--data', 'columns.csv'), /--weights mixed: the tokenizer has 420 tokens but the model's vocab_size is 160/, 2],
    ['a checkpoint of another model type', train('--weights', join(HUB, 'gpt2'), '--data', 'columns.csv'), /model_type "gpt2", not "bert"/, 2],
    ['no weights and no config', train('--data', 'columns.csv'), /bert needs pretrained weights: --weights hf:google-bert\/bert-base-uncased .*--config-json/, 2],
    ['--max-length past the position table', train('--weights', bert, '--data', 'columns.csv', '--max-length', '64'), /--max-length 64 is longer than bert takes \(32 positions/, 2],
    ['an image flag', train('--weights', bert, '--data', 'columns.csv', '--image-size', '64'), /--image-size is for image models; bert is a text model/, 2],
    ['--text-pair for a model of single texts', ['predict', '--run', run, '--text', 'x', '--text-pair', 'y'], /--text-pair is for a model trained on text pairs/, 2],
  ];
  for (const [name, args, msg, code] of cases) {
    it(name, async () => {
      const r = await tl(args);
      expect(r.code, r.err).toBe(code);
      expect(r.err.trim().split('\n')).toEqual([expect.stringMatching(msg)]);
    });
  }
});
