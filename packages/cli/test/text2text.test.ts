/**
 * `tl train --task text2text`, `tl eval` and `tl predict` of its run, through the built command:
 * the tiny T5 of the models package's PyTorch fixture (a character-level Unigram tokenizer) learns
 * to copy short words; the run folder holds results.json and report.html with loss, exact match,
 * ROUGE-L and chrF before and after and the held-out generations; a target longer than
 * --max-target-length is cut and counted; `tl eval --run` gives the figures training reported;
 * `tl predict --run` and `--model t5 --weights` generate what evaluation generated; a tokenizer
 * without the special tokens T5 needs is refused in one line naming them.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnNode } from './spawn-node.js';

const TL = fileURLToPath(new URL('../dist/tl.js', import.meta.url));
const T5 = fileURLToPath(new URL('../../models/test/fixtures/t5/t5', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'tl-text2text-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function tl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await spawnNode([TL, ...args], { cwd: work, encoding: 'utf8', env: { ...process.env, CI: '1' }, timeout: 300_000 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr.split('\n').filter((l) => !l.startsWith('Warning: max')).join('\n') };
}

const WORDS = ['cab', 'dog', 'fig', 'hat', 'jar', 'kit', 'log', 'map', 'nut', 'owl', 'pig', 'rug'];
// Each word three times, so that held-out pairs were also seen in training (a dozen words teach
// copying only by heart); one target (9 tokens with </s>) is longer than --max-target-length 6.
const csv = ['source,target', ...[0, 1, 2].flatMap(() => WORDS.map((w) => `${w},${w}`)), 'long,abcdefgh'].join('\n');

interface Scores { loss: number; exactMatch: number; rougeL: number; chrF: number }
interface Sample { source: string; prediction: string; reference: string }

describe('tl text2text', () => {
  it('trains T5, reports its scores and samples, and evaluates and predicts from the run', async () => {
    writeFileSync(join(work, 'pairs.csv'), csv);
    const run = join(work, 'run');
    const r = await tl(['train', '--task', 'text2text', '--model', 't5', '--weights', T5, '--data', 'pairs.csv', '--max-source-length', '6', '--max-target-length', '6',
      '--epochs', '20', '--batch-size', '16', '--lr', '1e-2', '--weight-decay', '0', '--val-split', '0.2', '--out', run]);
    expect(r.code, r.err + r.out).toBe(0);
    expect(r.err).toMatch(/1 targets cut to 6 tokens/);
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json', 'train_config.json', 'results.json', 'report.html']) expect(existsSync(join(run, f)), f).toBe(true);
    const results = JSON.parse(readFileSync(join(run, 'results.json'), 'utf8')) as { truncatedTargets: number; valPairs: number; before: Scores; after: Scores; samples: Sample[] };
    expect(results.truncatedTargets).toBe(1);
    expect(results.after.loss).toBeLessThan(results.before.loss);
    expect(results.after.chrF).toBeGreaterThan(results.before.chrF);
    expect(results.samples).toHaveLength(results.valPairs);
    const html = readFileSync(join(run, 'report.html'), 'utf8');
    expect(html).toMatch(/<th>exact match<\/th><th>ROUGE-L<\/th><th>chrF<\/th>/);
    expect(html).toContain(`<td>after fine-tuning</td><td>${results.after.loss.toFixed(4)}</td>`);
    expect(html).toContain(`<h2>Sample generations (held out)</h2>`);
    expect(html).toContain(`<td>${results.samples[0]!.source}</td><td>${results.samples[0]!.reference}</td>`);

    const ev = await tl(['eval', '--run', run, '--json']);
    expect(ev.code, ev.err).toBe(0);
    const scores = JSON.parse(ev.out) as Scores & { pairs: number };
    expect(scores.pairs).toBe(results.valPairs);
    for (const k of ['loss', 'exactMatch', 'rougeL', 'chrF'] as const) expect(scores[k], k).toBeCloseTo(results.after[k], 4);

    const sources = results.samples.map((s) => s.source);
    const fromRun = await tl(['predict', '--run', run, ...sources.flatMap((s) => ['--text', s]), '--json']);
    expect(fromRun.code, fromRun.err).toBe(0);
    const outputs = (JSON.parse(fromRun.out) as { output: string }[]).map((o) => o.output);
    expect(outputs).toEqual(results.samples.map((s) => s.prediction));
    const fromWeights = await tl(['predict', '--model', 't5', '--weights', run, '--text', sources[0]!, '--max-new-tokens', '6']);
    expect(fromWeights.code, fromWeights.err).toBe(0);
    expect(fromWeights.out).toBe(`${outputs[0]}\n`);
  }, 300_000);

  it('names the special tokens a tokenizer lacks, in one line', async () => {
    // GPT-2's byte-level BPE (the Llama fixture's) beside the T5 checkpoint: no <pad> or </s>.
    const dir = join(work, 'foreign-tokenizer');
    cpSync(T5, dir, { recursive: true });
    cpSync(fileURLToPath(new URL('../../models/test/fixtures/causal_lm/llama/tokenizer.json', import.meta.url)), join(dir, 'tokenizer.json'));
    writeFileSync(join(work, 'pairs.csv'), csv);
    const r = await tl(['train', '--task', 'text2text', '--model', 't5', '--weights', dir, '--data', 'pairs.csv', '--out', join(work, 'run-foreign')]);
    expect(r.code).toBe(2);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect(r.err).toContain('the tokenizer has no token for eos_token_id 1 (the tokenizer\'s "!" there is not a special token) of config.json, which T5 needs');
  });
});
