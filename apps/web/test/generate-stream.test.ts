/**
 * Streaming generation in Chromium: the generation panel loads the tiny Llama and T5 of the
 * models package's PyTorch fixtures from a local Hub (cross-origin, as huggingface.co is) into
 * a Web Worker, and the tokens it streams into the page, one message per token, equal what
 * generate() gives in Node for the same prompt (greedy); the page's output grows token by token.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate, loadPretrainedCausalLM, loadPretrainedSeq2Seq } from '@tl/models';
import { init } from '@tl/tensor';
import { startFakeHub, type FakeHub } from '../../../packages/models/test/hub-server.js';
import { folderSource } from './fixture-source.js';
import { bundlePage, launchChromium, serveStatic, type Browser, type StaticServer } from './harness.js';

const FIXTURES = fileURLToPath(new URL('../../../packages/models/test/fixtures/', import.meta.url));
const LLAMA = join(FIXTURES, 'causal_lm', 'llama');
const T5 = join(FIXTURES, 't5', 't5');
const NEW_TOKENS = 12;

const repo = (dir: string): Record<string, Uint8Array> => Object.fromEntries(readdirSync(dir).filter((f) => f !== 'reference.safetensors').map((f) => [f, new Uint8Array(readFileSync(join(dir, f)))]));

let dir: string;
let server: StaticServer;
let hub: FakeHub;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tl-generate-page-'));
  await Promise.all([
    bundlePage(new URL('./generate-page.ts', import.meta.url), join(dir, 'page.js')),
    bundlePage(new URL('./generate-test-worker.ts', import.meta.url), join(dir, 'worker.js')),
  ]);
  writeFileSync(join(dir, 'index.html'), '<!doctype html><meta charset="utf-8"><title>generation</title><script type="module" src="page.js"></script>');
  [server, hub, browser] = await Promise.all([
    serveStatic(dir), startFakeHub({ 'tiny/llama': repo(LLAMA), 'tiny/t5': repo(T5) }, { commit: 'e'.repeat(40), cors: true }), launchChromium(), init(),
  ]);
  page = await browser.context.newPage();
  await page.goto(`${server.url}?hub=${encodeURIComponent(hub.url)}`);
  await page.waitForFunction(() => window.__gen !== undefined, null, { timeout: 60_000 });
});

afterAll(async () => {
  await browser?.close();
  await Promise.all([server?.close(), hub?.close()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Streamed { streamed: number[]; done: number[]; text: string; outputs: string[] }

/** Loads `ref` in the panel, generates greedily from `prompt`, and returns what the page saw. */
async function inPage(ref: string, prompt: string): Promise<Streamed> {
  await page.fill('#gen-model-url', ref);
  await page.click('#gen-load');
  await page.waitForFunction(() => window.__gen!.state.loaded !== null || window.__gen!.state.error !== null, null, { timeout: 120_000 });
  const loadError = await page.evaluate(() => window.__gen!.state.error);
  if (loadError) throw new Error(`loading ${ref} in the page: ${loadError}`);
  await page.fill('#gen-prompt', prompt);
  await page.fill('#gen-max', String(NEW_TOKENS));
  await page.evaluate(() => (window.__gen!.outputs.length = 0));
  await page.click('#gen-run');
  await page.waitForFunction(() => window.__gen!.state.done !== null || window.__gen!.state.error !== null, null, { timeout: 120_000 });
  return page.evaluate(() => {
    const g = window.__gen!;
    if (g.state.error) throw new Error(g.state.error);
    return { streamed: [...g.state.streamed], done: g.state.done!.tokens, text: g.state.done!.text, outputs: [...g.outputs] };
  });
}

describe('streaming generation in the page', () => {
  it('streams the tiny Llama\'s greedy continuation token by token, equal to generate() in Node', async () => {
    const prompt = 'the cat sat';
    const got = await inPage('hf:tiny/llama', prompt);
    const { model, tokenizer, config } = await loadPretrainedCausalLM(null, folderSource(LLAMA), { label: LLAMA });
    model.eval();
    const ids = tokenizer.encode(prompt, { truncation: false }).inputIds;
    const node = await generate(model, [ids], { maxNewTokens: NEW_TOKENS, eosTokenId: config.eos_token_id as number });
    model.dispose();
    console.log(`Llama in the page streamed ${got.streamed.length} tokens: ${JSON.stringify(got.text)}`);
    expect(got.streamed).toEqual(node.sequences[0]);
    expect(got.done).toEqual(got.streamed);
    expect(got.streamed.length).toBeGreaterThan(1);
    // The output showed each prefix of the continuation as its token arrived.
    expect(new Set(got.outputs).size).toBeGreaterThan(1);
    expect(got.outputs.at(-1)).toBe(got.text);
  });

  it('streams T5\'s greedy target, equal to generate() in Node', async () => {
    const source = 'abc def';
    const got = await inPage('hf:tiny/t5', source);
    const { model, tokenizer } = await loadPretrainedSeq2Seq(folderSource(T5), { label: T5 });
    model.eval();
    const node = await generate(model, [tokenizer.encode(source, { truncation: false }).inputIds], { maxNewTokens: NEW_TOKENS, eosTokenId: model.config.eosTokenId, padTokenId: model.config.padTokenId });
    model.dispose();
    console.log(`T5 in the page streamed ${got.streamed.length} tokens: ${JSON.stringify(got.text)}`);
    expect(got.streamed).toEqual(node.sequences[0]);
    expect(got.text).toBe(tokenizer.decode(node.sequences[0]!, { skipSpecialTokens: true }));
  });
});
