/**
 * @tl/models' browser loaders in Chromium. Text models through fromPretrainedTextBrowser: the
 * bert and gpt2 fixtures of the Node loader's test, served by the local Hub (cross-origin, as
 * huggingface.co is), load with the same report and give PyTorch's backbone output; a second load
 * comes from the Cache API with no request; a wrong model type fails on config.json alone; picked
 * files and a folder URL load too. Image weights through fromPretrained: the embedded default's
 * checkpoint from `hf:` (then the Cache API), a URL, a File and OPFS, each to the same tensors.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors, type HostArray } from '@tl/models';
import { startFakeHub, type FakeHub } from '../../../packages/models/test/hub-server.js';
import { EMBEDDED_FILE } from '../src/job.js';
import { caseOf } from '../../../packages/models/test/hub-text-cases.js';
import { bundlePage, launchChromium, serveStatic, type Browser, type StaticServer } from './harness.js';
import type { ImageLoadArgs, ImageRun, Output, TextLoadArgs, TextRun } from './pretrained-page.js';

const FIXTURES = fileURLToPath(new URL('../../../packages/models/fixtures/', import.meta.url));
const reference = parseSafetensors(readFileSync(join(FIXTURES, 'hub_text_reference.safetensors')));
const batches = JSON.parse(readFileSync(join(FIXTURES, 'tokenizers.json'), 'utf8')) as Record<string, { batch: { texts: string[] } }>;
const COMMIT = 'c'.repeat(40);
const WEIGHTS = process.env.TL_EMBEDDED_WEIGHTS ?? fileURLToPath(new URL(`../../../packages/cli/assets/${EMBEDDED_FILE}`, import.meta.url));
const weightsBytes = new Uint8Array(readFileSync(WEIGHTS));
const checkpoint = parseSafetensors(weightsBytes, WEIGHTS);

/** bert and gpt2 of the Node loader's cases. */
const CASES = [caseOf('bert'), caseOf('gpt2')] as const;

const repoFiles = (repo: string): Record<string, Uint8Array> =>
  Object.fromEntries(readdirSync(join(FIXTURES, 'hub_text', repo)).map((f) => [f, new Uint8Array(readFileSync(join(FIXTURES, 'hub_text', repo, f)))]));

let dir: string;
let server: StaticServer;
let hub: FakeHub;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tl-pretrained-page-'));
  await bundlePage(new URL('./pretrained-page.ts', import.meta.url), join(dir, 'page.js'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><meta charset="utf-8"><title>pretrained models</title><script type="module" src="page.js"></script>');
  [server, hub, browser] = await Promise.all([
    serveStatic(dir),
    startFakeHub({ 'tiny/bert': repoFiles('bert'), 'tiny/gpt2': repoFiles('gpt2'), 'test-org/digits04': { 'model.safetensors': weightsBytes } }, { commit: COMMIT, cors: true }),
    launchChromium(),
  ]);
  page = await browser.context.newPage();
  await page.goto(server.url);
  await page.waitForFunction(() => window.__text !== undefined, null, { timeout: 60_000 });
  const ready = await page.evaluate(() => window.__text!);
  if ('error' in ready) throw new Error(`the text page failed: ${ready.error}`);
  console.log(`pretrained models in Chromium on ${ready.adapter}`);
});

afterAll(async () => {
  await browser?.close();
  await Promise.all([server?.close(), hub?.close()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function load(args: TextLoadArgs): Promise<TextRun> {
  const r = await page.evaluate((a) => (window.__text as { load(a: TextLoadArgs): Promise<TextRun | { error: string }> }).load(a), args);
  if ('error' in r) throw new Error(`loading ${args.id} from ${typeof args.weights === 'string' ? args.weights : 'picked files'} failed: ${r.error}`);
  return r;
}

async function loadError(args: TextLoadArgs): Promise<{ error: string; name: string }> {
  const r = await page.evaluate((a) => (window.__text as { load(a: TextLoadArgs): Promise<TextRun | { error: string; name: string }> }).load(a), args);
  if (!('error' in r)) throw new Error(`loading ${args.id} from ${String(args.weights)} did not fail`);
  return r;
}

/** Within 1e-4 of the reference, relative to its largest element (as the Node test). */
function expectClose(got: Output, want: HostArray, what: string): void {
  expect(got.shape, what).toEqual(want.shape);
  let max = 0;
  for (const v of want.data) max = Math.max(max, Math.abs(v));
  for (let i = 0; i < want.data.length; i++) {
    const w = want.data[i]!;
    if (!(Math.abs(got.data[i]! - w) <= 1e-4 * max + 1e-4 * Math.abs(w))) throw new Error(`${what}: element ${i} is ${got.data[i]}, PyTorch has ${w}`);
  }
}

function checkAgainstPyTorch(c: (typeof CASES)[number], r: TextRun): void {
  expect(r.inputIds).toEqual([...reference.get(`${c.repo}.input_ids`).data]);
  expect(r.attentionMask).toEqual([...reference.get(`${c.repo}.attention_mask`).data]);
  expectClose(r.hidden, reference.get(`${c.repo}.last_hidden_state`), `${c.repo}: last hidden state`);
  if (c.repo === 'bert') expectClose(r.pooled!, reference.get('bert.pooler_output'), 'bert: pooled output');
}

const args = (c: (typeof CASES)[number], extra: Partial<TextLoadArgs> = {}): TextLoadArgs =>
  ({ id: c.id, weights: `hf:tiny/${c.repo}`, endpoint: hub.url, numClasses: 4, texts: batches[c.tokenizer]!.batch.texts, ...extra });

describe('text models in the browser (fromPretrainedTextBrowser)', () => {
  for (const c of CASES) {
    it(`${c.repo}: from the Hub, one commit, the Node loader's report, PyTorch's backbone output; then from the Cache API`, async () => {
      const before = hub.requests.length;
      const r = await load(args(c));
      expect(r.report.dropped.map((d) => d.key).sort()).toEqual([...c.dropped].sort());
      expect(r.report.renamed.length).toBe(c.renamed[0]);
      expect(r.report.renamed).toContainEqual(c.renamed[1]);
      expect(r.report.newlyInitialized).toEqual(c.newlyInitialized);
      expect(r.numClasses).toBe(4);
      expect(r.modelType).toBe(c.id);
      expect(r.fromCache).toBe(false);
      checkAgainstPyTorch(c, r);
      // config.json at the branch, the rest at the commit it resolved to (the weights through the CDN).
      const paths = hub.requests.slice(before).map((q) => q.url);
      expect(paths).toEqual([
        `/tiny/${c.repo}/resolve/main/config.json`,
        `/tiny/${c.repo}/resolve/${COMMIT}/tokenizer.json`,
        `/tiny/${c.repo}/resolve/${COMMIT}/tokenizer_config.json`,
        `/tiny/${c.repo}/resolve/${COMMIT}/model.safetensors`,
        expect.stringMatching(/^\/cdn\/[0-9a-f]{64}$/),
      ]);
      expect(r.files.tokenizerConfig).toBe(c.repo === 'bert' ? `${hub.url}/tiny/bert/resolve/${COMMIT}/tokenizer_config.json` : null);

      const again = await load(args(c));
      expect(hub.requests.length - before).toBe(paths.length);
      expect(again.fromCache).toBe(true);
      expect(again.report).toEqual(r.report);
      checkAgainstPyTorch(c, again);
    });
  }

  it('picked files, and a folder URL on the page\'s own server, load as the Hub repo does', async () => {
    const files = Object.fromEntries(Object.entries(repoFiles('gpt2')).map(([f, b]) => [f, Buffer.from(b).toString('base64')]));
    const before = hub.requests.length;
    const r = await load(args(CASES[1], { weights: files, numClasses: undefined }));
    expect(hub.requests.length).toBe(before);
    expect(r.numClasses).toBe(2);
    expect(r.files).toEqual({ config: 'config.json', tokenizer: 'tokenizer.json', tokenizerConfig: null, weights: 'model.safetensors' });
    expect(r.report.newlyInitialized).toEqual(['score.weight']);
    checkAgainstPyTorch(CASES[1], r);

    cpSync(join(FIXTURES, 'hub_text', 'bert'), join(dir, 'models', 'bert'), { recursive: true });
    const fromUrl = await load(args(CASES[0], { weights: 'models/bert' }));
    expect(fromUrl.files.weights).toBe(`${server.url}models/bert/model.safetensors`);
    expect(fromUrl.report.renamed.length).toBe(CASES[0].renamed[0]);
    checkAgainstPyTorch(CASES[0], fromUrl);
  });

  it('a checkpoint of another model type fails on config.json, before the weights download; a bad numClasses before any request', async () => {
    const before = hub.requests.length;
    const e = await loadError(args(CASES[0], { id: 'gpt2', weights: `hf:tiny/bert@${COMMIT}` }));
    expect(e.error).toMatch(/model_type "bert", not "gpt2"; load it as "bert"/);
    expect(hub.requests.slice(before).map((q) => q.url)).toEqual([`/tiny/bert/resolve/${COMMIT}/config.json`]);
    const bad = await loadError(args(CASES[1], { weights: 'hf:tiny/elsewhere', numClasses: 0 }));
    expect(bad.error).toMatch(/fromPretrainedTextBrowser: numClasses must be a positive integer, got 0/);
    const missing = await loadError(args(CASES[1], { weights: 'hf:tiny/none' }));
    expect(missing.error).toMatch(new RegExp(`^hf:tiny/none has no config\\.json \\(HTTP 404 from ${hub.url}/tiny/none/resolve/main/config\\.json\\)`));
    expect(hub.requests.length - before).toBe(2);
  });
});

async function loadImage(args: ImageLoadArgs): Promise<ImageRun | { error: string; name: string }> {
  return page.evaluate((a) => (window.__text as { loadImage(a: ImageLoadArgs): Promise<ImageRun | { error: string; name: string }> }).loadImage(a), args);
}

/** Every tensor equals the checkpoint's (the head too, unless it was resized). */
function expectCheckpoint(r: ImageRun | { error: string }, what: string): ImageRun {
  if ('error' in r) throw new Error(`${what}: ${r.error}`);
  expect(Object.keys(r.tensors).sort(), what).toEqual(checkpoint.keys().sort());
  for (const [k, t] of Object.entries(r.tensors)) {
    if (k.startsWith('linear.') && r.numClasses !== 5) continue;
    const want = checkpoint.get(k);
    expect(t.shape, `${what}: ${k}`).toEqual(want.shape);
    expect(t.data, `${what}: ${k}`).toEqual([...want.data]);
  }
  return r;
}

describe('image weights in the browser (fromPretrained)', () => {
  const id = 'digits_resnet14';
  it('from hf: (a Hub resolve URL, then the Cache API with no request), a URL, a File and OPFS', async () => {
    const before = hub.requests.length;
    const hf = expectCheckpoint(await loadImage({ id, weights: 'hf:test-org/digits04', endpoint: hub.url }), 'hf:');
    expect(hf.info).toEqual({ source: `${hub.url}/test-org/digits04/resolve/main/model.safetensors`, bytes: weightsBytes.byteLength, tensors: checkpoint.keys().length, fromCache: false });
    const requests = hub.requests.length - before;
    expect(requests).toBeGreaterThan(0);
    const again = expectCheckpoint(await loadImage({ id, weights: 'hf:test-org/digits04', endpoint: hub.url, numClasses: 3 }), 'hf: again');
    expect(again.info.fromCache).toBe(true);
    expect(again.numClasses).toBe(3);
    expect(again.tensors['linear.weight']!.shape).toEqual([3, 64]);
    expect(hub.requests.length - before).toBe(requests);

    mkdirSync(join(dir, 'models'), { recursive: true });
    cpSync(WEIGHTS, join(dir, 'models', 'digits.safetensors'));
    const url = expectCheckpoint(await loadImage({ id, weights: 'models/digits.safetensors' }), 'URL');
    expect(url.info.source).toBe(`${server.url}models/digits.safetensors`);

    const base64 = Buffer.from(weightsBytes).toString('base64');
    const file = expectCheckpoint(await loadImage({ id, weights: { name: 'dropped.safetensors', base64 } }), 'File');
    expect(file.info).toMatchObject({ source: 'dropped.safetensors', fromCache: false });

    const opfs = expectCheckpoint(await loadImage({ id, weights: 'opfs:tests/digits.safetensors', opfs: { path: 'tests/digits.safetensors', base64 } }), 'OPFS');
    expect(opfs.info.source).toBe('opfs:tests/digits.safetensors');
  });

  it('names the source that cannot be read', async () => {
    expect(await loadImage({ id, weights: 'opfs:tests/none.safetensors' })).toMatchObject({ error: 'opfs:tests/none.safetensors: no such file' });
    expect(await loadImage({ id, weights: 'models/none.safetensors' })).toMatchObject({ error: `${server.url}models/none.safetensors: HTTP 404 Not Found` });
    expect(await loadImage({ id: 'cifar_resnet20', weights: 'models/digits.safetensors' })).toMatchObject({ name: 'StateDictError', error: expect.stringContaining(`${server.url}models/digits.safetensors: `) });
  });
});
