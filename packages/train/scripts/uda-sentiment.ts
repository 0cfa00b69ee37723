/**
 * Unsupervised domain adaptation on text: the npm `sentiment` package's labelled sentences (UCI
 * Sentiment Labelled Sentences, CC BY 4.0), Amazon and Yelp reviews as the labelled source, IMDB
 * film reviews as the target. A tiny BERT-shaped classifier learns positive/negative from
 * scratch on the source with the WordPiece vocabulary of scripts/make-causal-lm-corpus.mjs (the
 * source sentences' most frequent words), source-only against DANN and CORAL, which also see
 * `--target` IMDB sentences without their labels; all are scored on the other IMDB sentences,
 * whose labels serve only that score. One budget (epochs, batch, optimizer, seed) for every arm.
 *
 *   pnpm --dir bench exec tsx ../packages/train/scripts/uda-sentiment.ts [--seeds 0] [--epochs 6] [--coral-weight 1000] [--out results.json]
 *
 * Runs of other seeds already in --out at the same budget are kept beside the new ones.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as A from '@tl/autograd';
import { BertForSequenceClassification, Tokenizer, type TokenizerJSON } from '@tl/models';
import { adamw, coral, cosine, dann, Trainer, textDataset, type Objective, type TextRow } from '../src/index.js';

const { values: args } = parseArgs({
  options: {
    seeds: { type: 'string', default: '0' },
    epochs: { type: 'string', default: '6' },
    batch: { type: 'string', default: '64' },
    lr: { type: 'string', default: '3e-3' },
    'max-length': { type: 'string', default: '32' },
    target: { type: 'string', default: '500' },
    'coral-weight': { type: 'string', default: '1000' },
    out: { type: 'string' },
  },
});
const [epochs, batch, lr, maxLength, nTarget, coralWeight] = (['epochs', 'batch', 'lr', 'max-length', 'target', 'coral-weight'] as const).map((k) => Number(args[k]));
const seeds = args.seeds!.split(',').map(Number);
const repo = resolve(import.meta.dirname, '../../..');
const CLASSES = ['negative', 'positive'];

const fixtures = join(dirname(createRequire(join(repo, 'packages/train/package.json')).resolve('sentiment/package.json')), 'test/fixtures');
const sentences = (name: string): TextRow[] =>
  (JSON.parse(readFileSync(join(fixtures, `${name}.json`), 'utf8')) as { text: unknown; class: number }[])
    .filter((r): r is { text: string; class: number } => typeof r.text === 'string' && r.text.trim() !== '')
    .map((r) => ({ text: r.text.trim(), label: CLASSES[r.class]! }));

/** The causal-LM corpus script's WordPiece tokenizer, with [CLS] and [SEP] added around each
 * sentence as BERT's post-processor does. */
function tokenizer(): Tokenizer {
  const dir = mkdtempSync(join(tmpdir(), 'uda-sentiment-'));
  try {
    execFileSync(process.execPath, [join(repo, 'scripts/make-causal-lm-corpus.mjs'), dir], { cwd: repo, stdio: 'ignore' });
    const json = JSON.parse(readFileSync(join(dir, 'llama', 'tokenizer.json'), 'utf8')) as TokenizerJSON & { model: { vocab: Record<string, number> }; added_tokens: { id: number; content: string }[] };
    const size = Object.keys(json.model.vocab).length;
    const specials = { '[CLS]': size, '[SEP]': size + 1 };
    Object.assign(json.model.vocab, specials);
    for (const [content, id] of Object.entries(specials)) json.added_tokens.push({ ...json.added_tokens[0]!, id, content });
    json.post_processor = { type: 'BertProcessing', cls: ['[CLS]', specials['[CLS]']], sep: ['[SEP]', specials['[SEP]']] };
    return Tokenizer.fromJSON(json);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await A.init();
const tok = tokenizer();
const vocabSize = tok.vocabSize;
const source = textDataset([...sentences('amazon'), ...sentences('yelp')], tok, { maxLength, classes: CLASSES, name: 'amazon+yelp' });
// The IMDB sentences alternate by a fixed shuffle into the unlabelled target and the held-out test.
const imdb = sentences('imdb');
const order = imdb.map((_, i) => i).sort((a, b) => ((a * 7919) % 1000) - ((b * 7919) % 1000) || a - b);
const targetRows = order.slice(0, nTarget).map((i) => ({ text: imdb[i]!.text, label: 0 }));
const testRows = order.slice(nTarget).map((i) => imdb[i]!);
// The target's labels are all 0: what the objectives see of IMDB carries no label at all.
const target = textDataset(targetRows, tok, { maxLength, classes: CLASSES, name: 'imdb-unlabelled' });
const test = textDataset(testRows, tok, { maxLength, classes: CLASSES, name: 'imdb-test' });
const config = {
  vocab_size: vocabSize, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 128, max_position_embeddings: maxLength,
  type_vocab_size: 1, hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1, pad_token_id: 0, num_labels: 2,
};
const steps = epochs * Math.ceil(source.length / batch);
console.log(`source ${source.length} Amazon+Yelp sentences, target ${target.length} unlabelled IMDB sentences, held-out ${test.length} IMDB sentences; vocabulary ${vocabSize}, max length ${maxLength}`);
console.log(`BERT hidden 64, 2 layers, 2 heads from scratch; ${epochs} epochs, batch ${batch} (+ ${batch} target for DANN and CORAL), ${steps} steps, AdamW lr ${lr}, warmup 10% then cosine decay; seeds ${seeds.join(', ')}`);

interface Run { arm: string; seed: number; imdb: number; seconds: number; trainAccuracy: number; domainAccuracy?: number; coralLoss?: number }
const budget = { epochs, batch, steps, lr, maxLength };
// Seeds already measured into --out at the same budget are kept, so seeds can run one at a time.
const previous = args.out && existsSync(args.out) ? (JSON.parse(readFileSync(args.out, 'utf8')) as { budget: unknown; coralWeight: number; runs: Run[] }) : null;
const sameBudget = previous !== null && JSON.stringify(previous.budget) === JSON.stringify(budget) && previous.coralWeight === coralWeight;
const runs: Run[] = sameBudget ? previous.runs.filter((r) => !seeds.includes(r.seed)) : [];
const arms: [string, () => Objective | undefined][] = [
  ['source-only', () => undefined],
  ['DANN', () => dann({ target })],
  ['CORAL', () => coral({ target, weight: coralWeight })],
];
for (const seed of seeds) {
  for (const [arm, objective] of arms) {
    A.manualSeed(seed);
    const model = new BertForSequenceClassification(config);
    const obj = objective();
    const t0 = performance.now();
    const trainer = new Trainer(model, { objective: obj, optimizer: adamw({ lr, weightDecay: 0.01 }), schedule: cosine({ warmupSteps: Math.round(0.1 * steps) }), epochs, batchSize: batch, seed, logger: () => {} });
    await trainer.fit(source, null);
    obj?.dispose?.();
    const r = await trainer.evaluate(test);
    const last = trainer.history.at(-1)!;
    runs.push({ arm, seed, imdb: r.accuracy!, seconds: (performance.now() - t0) / 1000, trainAccuracy: last.trainAccuracy!, domainAccuracy: last.metrics?.trainDomainAccuracy, coralLoss: last.metrics?.trainCoralLoss });
    console.log(`seed ${seed} ${arm}: IMDB ${(100 * r.accuracy!).toFixed(1)} % (${r.correct}/${r.total}), source train accuracy ${(100 * last.trainAccuracy!).toFixed(1)} %${last.metrics?.trainDomainAccuracy === undefined ? '' : `, domain accuracy ${(100 * last.metrics.trainDomainAccuracy).toFixed(1)} %`}${last.metrics?.trainCoralLoss === undefined ? '' : `, CORAL loss ${last.metrics.trainCoralLoss.toExponential(2)}`} (${runs.at(-1)!.seconds.toFixed(0)} s)`);
    model.dispose();
    if (args.out) writeFileSync(args.out, JSON.stringify({ source: 'amazon+yelp', target: 'imdb', sizes: { source: source.length, target: target.length, test: test.length }, config, budget, coralWeight, runs }, null, 2) + '\n');
  }
}
console.log(`\n| arm | IMDB accuracy (mean of ${new Set(runs.map((r) => r.seed)).size} seeds) | per seed |\n| --- | --- | --- |`);
for (const [arm] of arms) {
  const r = runs.filter((x) => x.arm === arm);
  console.log(`| ${arm} | ${((100 * r.reduce((s, x) => s + x.imdb, 0)) / r.length).toFixed(1)} % | ${r.map((x) => (100 * x.imdb).toFixed(1)).join(' / ')} |`);
}
