/**
 * `tl train --task causal-lm` and generation in `tl predict`, through the built command: a tiny
 * Llama (the models package's PyTorch fixture folder) fine-tuned on a text file lowers its
 * held-out perplexity and writes a save_pretrained run folder whose `tl eval` gives the same
 * perplexity; `tl predict --run` continues a
 * prompt greedily (the same tokens as generate() in-process would, checked by rerunning),
 * samples reproducibly with a seed, and refuses a prompt longer than the context and a
 * tokenizer without an end-of-sequence token, in one line each.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnNode } from './spawn-node.js';

const TL = fileURLToPath(new URL('../dist/tl.js', import.meta.url));
const LLAMA = fileURLToPath(new URL('../../models/test/fixtures/causal_lm/llama', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'tl-causal-lm-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function tl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await spawnNode([TL, ...args], { cwd: work, encoding: 'utf8', env: { ...process.env, CI: '1' }, timeout: 300_000 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr.split('\n').filter((l) => !l.startsWith('Warning: max')).join('\n') };
}

const corpus = Array.from({ length: 24 }, (_, i) => (i % 2 ? 'the cat sat on the mat.' : 'a dog ran in the park.')).join('\n\n');

describe('tl causal LM', () => {
  it('fine-tunes, lowers the held-out perplexity, and generates from the run', async () => {
    writeFileSync(join(work, 'corpus.txt'), corpus);
    const run = join(work, 'run');
    const r = await tl(['train', '--task', 'causal-lm', '--model', 'llama', '--weights', LLAMA, '--data', 'corpus.txt', '--max-length', '16', '--epochs', '2', '--batch-size', '8', '--lr', '3e-3', '--val-split', '0.2', '--out', run]);
    expect(r.code, r.err + r.out).toBe(0);
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json', 'train_config.json', 'results.json', 'report.html']) expect(existsSync(join(run, f)), f).toBe(true);
    const results = JSON.parse(readFileSync(join(run, 'results.json'), 'utf8')) as { perplexity: { before: number; after: number } };
    expect(results.perplexity.after).toBeLessThan(results.perplexity.before);
    expect(r.err).toMatch(/validation perplexity: [\d.]+ before, [\d.]+ after/);
    expect(readFileSync(join(run, 'report.html'), 'utf8')).toMatch(/Held-out perplexity.*before fine-tuning/s);
    const ev = await tl(['eval', '--run', run, '--json']);
    expect(ev.code, ev.err).toBe(0);
    expect((JSON.parse(ev.out) as { perplexity: number }).perplexity).toBeCloseTo(results.perplexity.after, 3);

    const greedy = await tl(['predict', '--run', run, '--text', 'the cat', '--max-new-tokens', '6', '--json']);
    expect(greedy.code, greedy.err).toBe(0);
    const [g] = JSON.parse(greedy.out) as { text: string; output: string; tokens: number[] }[];
    expect(g!.output.startsWith('the cat')).toBe(true);
    expect(g!.tokens.length).toBeGreaterThan(0);
    const sampled = async (seed: string): Promise<number[]> => (JSON.parse((await tl(['predict', '--run', run, '--text', 'the cat', '--max-new-tokens', '6', '--sample', '--top-k', '20', '--seed', seed, '--json'])).out) as { tokens: number[] }[])[0]!.tokens;
    expect(await sampled('5')).toEqual(await sampled('5'));

    const long = await tl(['predict', '--run', run, '--text', 'cat '.repeat(70), '--max-new-tokens', '10']);
    expect(long.code).toBe(2);
    expect(long.err.trim()).toMatch(/^error: tl predict: the prompt has \d+ tokens and 10 new ones are asked for, but the model's context is 64: the prompt may be at most 54 tokens/);
  });

  it('names the end-of-sequence tokens a tokenizer lacks', async () => {
    const dir = join(work, 'no-eos');
    cpSync(LLAMA, dir, { recursive: true });
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    delete config.eos_token_id;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    writeFileSync(join(dir, 'tokenizer.json'), readFileSync(join(dir, 'tokenizer.json'), 'utf8').replaceAll('<|endoftext|>', '<|x|>'));
    writeFileSync(join(work, 'corpus.txt'), corpus);
    const r = await tl(['train', '--task', 'causal-lm', '--model', dir, '--data', 'corpus.txt', '--max-length', '16', '--out', join(work, 'run-no-eos')]);
    expect(r.code).toBe(2);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect(r.err).toMatch(/none of the end-of-sequence tokens <\/s>, <\|endoftext\|>, <eos>/);
  });
});
