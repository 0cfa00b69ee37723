/**
 * Private LoRA in Chromium: the tiny BERT of packages/models/fixtures/hub_text loads from a local
 * Hub (cross-origin, as huggingface.co is), LoRA adapters on query/value and a new head train on
 * sentences that exist only in the page, and PEFT's files come out of adapterFiles. Every
 * request of the session is recorded: each is a GET of the page's own files or of the model's
 * public files, none has a body, and none carries a word of the user's sentences.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page, Request } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeHub, type FakeHub } from '../../../packages/models/test/hub-server.js';
import { bundlePage, launchChromium, serveStatic, type Browser, type StaticServer } from './harness.js';
import type { LoraArgs, LoraRun } from './lora-page.js';

const FIXTURES = fileURLToPath(new URL('../../../packages/models/fixtures/', import.meta.url));
const COMMIT = 'd'.repeat(40);

/** The user's data: words of two groups (the label follows from them) and a private marker in every sentence. */
function userRows(n: number): { text: string; label: string }[] {
  const groups = { pos: ['the', 'and', 'in', 'on', 'over'], neg: ['to', 'is', 'it', 'he', 'set'] };
  let s = 11;
  const rand = (k: number): number => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s % k;
  };
  return Array.from({ length: n }, (_, i) => {
    const label = i % 2 ? 'neg' : 'pos';
    return { text: `qzxprivate${i} ${Array.from({ length: 2 + rand(4) }, () => groups[label][rand(5)]).join(' ')}`, label };
  });
}

let dir: string;
let server: StaticServer;
let hub: FakeHub;
let browser: Browser;
let page: Page;
const requests: { url: string; method: string; body: string | null; headers: Record<string, string> }[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tl-lora-page-'));
  await bundlePage(new URL('./lora-page.ts', import.meta.url), join(dir, 'page.js'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><meta charset="utf-8"><title>private LoRA</title><script type="module" src="page.js"></script>');
  const bert = Object.fromEntries(readdirSync(join(FIXTURES, 'hub_text', 'bert')).map((f) => [f, new Uint8Array(readFileSync(join(FIXTURES, 'hub_text', 'bert', f)))]));
  [server, hub, browser] = await Promise.all([serveStatic(dir), startFakeHub({ 'tiny/bert': bert }, { commit: COMMIT, cors: true }), launchChromium()]);
  page = await browser.context.newPage();
  page.on('request', (r: Request) => requests.push({ url: r.url(), method: r.method(), body: r.postData(), headers: r.headers() }));
  await page.goto(server.url);
  await page.waitForFunction(() => window.__lora !== undefined, null, { timeout: 60_000 });
  const ready = await page.evaluate(() => window.__lora!);
  if ('error' in ready) throw new Error(`the LoRA page failed: ${ready.error}`);
});

afterAll(async () => {
  await browser?.close();
  await Promise.all([server?.close(), hub?.close()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('LoRA on the user\'s own sentences, in the page', () => {
  it('trains the adapters and the head, gives PEFT files, and sends nothing of the data anywhere', async () => {
    const rows = userRows(96);
    const args: LoraArgs = { id: 'bert', weights: 'hf:tiny/bert', endpoint: hub.url, rows, targets: ['query', 'value'], epochs: 10 };
    const r = await page.evaluate((a) => (window.__lora as { run(a: LoraArgs): Promise<LoraRun | { error: string }> }).run(a), args);
    if ('error' in r) throw new Error(r.error);
    console.log(`LoRA in the page: losses ${r.losses.map((l) => l.toFixed(3)).join(', ')}, train accuracy ${r.trainAccuracy}, ${r.trainable} of ${r.total} trainable, adapter ${r.adapterBytes} bytes`);
    expect(r.trainable).toBeLessThan(r.total / 10);
    expect(r.losses.at(-1)!).toBeLessThan(r.losses[0]!);
    expect(r.trainAccuracy).toBeGreaterThan(0.7);
    expect(r.config).toMatchObject({ peft_type: 'LORA', task_type: 'SEQ_CLS', r: 2, lora_alpha: 4, target_modules: ['query', 'value'], modules_to_save: ['classifier'] });
    expect(r.adapterKeys).toContain('base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight');
    expect(r.adapterKeys).toContain('base_model.model.classifier.weight');
    expect(r.mergeDiff).toBeLessThan(1e-4);

    // The page's server and the Hub (whose file URLs redirect to its CDN under the name localhost).
    const origins = new Set([server.url, hub.url].flatMap((u) => ['127.0.0.1', 'localhost'].map((h) => `http://${h}:${new URL(u).port}`)));
    expect(requests.length).toBeGreaterThan(0);
    for (const q of requests) {
      expect(['GET', 'HEAD', 'OPTIONS'], q.url).toContain(q.method);
      expect(q.body, q.url).toBeNull();
      if (!q.url.startsWith('blob:') && !q.url.startsWith('data:')) expect(origins.has(new URL(q.url).origin), q.url).toBe(true);
      const sent = `${decodeURIComponent(q.url)} ${JSON.stringify(q.headers)}`;
      expect(sent).not.toContain('qzxprivate');
      for (const row of rows.slice(0, 4)) expect(sent).not.toContain(row.text);
    }
    // The Hub saw only the model's public files.
    expect(hub.requests.length).toBeGreaterThan(0);
    for (const h of hub.requests) expect(h.url).not.toContain('qzxprivate');
  });
});
