/**
 * Private adaptation in the app itself (the Vite build, served from 127.0.0.1): one session
 * trains text LoRA on sentences that exist only in the page (the tiny BERT fixture from a local
 * Hub on another port, cross-origin as huggingface.co is), classifies new private sentences,
 * downloads PEFT's files, then runs AdaBN on private photos (PNG and JPEG made here) and
 * downloads the adapted weights. Every request of the session is recorded in the browser (page,
 * its worker included, and the routing layer) and by both servers; each must be a GET of the
 * app's own files or of the model's public files, without a body, and carry none of the user's
 * sentences, file names or pixels. The downloads are checked against the library in Node: the
 * same job gives the same adapter, the downloaded adapter applied to the base gives the page's
 * predictions, and AdaBN on the same photos gives the downloaded statistics.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { build } from 'vite';
import type { Download, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { DIGITS_RESNET14, fromPretrained, getModelSpec, isImageModelSpec, loadAdapter, loadPretrainedText, parseSafetensors, textModelSpec, type ClassifierModel } from '@tl/models';
import { init } from '@tl/tensor';
import { evalTransform, Trainer, TensorDataset, type DigitJson } from '@tl/train';
import { adaptToPhotos } from '../src/adabn-job.js';
import type { AdaBNPanelState } from '../src/adabn-panel.js';
import { EMBEDDED_FILE } from '../src/job.js';
import type { LabelledSentence } from '../src/labelled-text.js';
import type { LoraPanelState } from '../src/lora-panel.js';
import { classifySentences, trainTextLora, type TextLoraOptions } from '../src/text-lora-job.js';
import { startFakeHub, type FakeHub } from '../../../packages/models/test/hub-server.js';
import { folderSource } from './fixture-source.js';
import { launchChromium, serveStatic, type Browser, type StaticServer } from './harness.js';

const APP = fileURLToPath(new URL('..', import.meta.url));
const BERT = fileURLToPath(new URL('../../../packages/models/fixtures/hub_text/bert/', import.meta.url));
const WEIGHTS = process.env.TL_EMBEDDED_WEIGHTS ?? join(APP, '../../packages/cli/assets', EMBEDDED_FILE);
const MNIST = join(dirname(createRequire(import.meta.url).resolve('mnist/package.json')), 'src/digits');
const COMMIT = 'e'.repeat(40);
/** In every sentence and photo name: any request that carries it leaks user data. */
const MARK = 'qzxsecret';

/** The user's sentences: the label follows from the words used (two word groups of the tiny vocabulary). */
function privateSentences(n: number, seed: number): LabelledSentence[] {
  const words = { warm: ['the', 'and', 'in', 'on', 'over', 'ever'], cold: ['to', 'is', 'it', 'he', 'set', 'net'] };
  let s = seed;
  const next = (k: number): number => {
    s = (s * 48271) % 2147483647;
    return s % k;
  };
  return Array.from({ length: n }, (_, i) => {
    const label = i % 2 === 0 ? 'warm' : 'cold';
    const text = `${MARK}${i} ${Array.from({ length: 3 + next(3) }, () => words[label][next(6)]).join(' ')}`;
    return { text, label };
  });
}

const csvField = (s: string): string => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/** Digits 0-4 (the embedded model's domain) under a shift: low contrast on a grey background. */
async function privatePhotos(count: number): Promise<{ name: string; mimeType: string; buffer: Buffer; gray: Float32Array }[]> {
  const out = [];
  for (let i = 0; i < count; i++) {
    const d = i % 5;
    const { data } = JSON.parse(readFileSync(join(MNIST, `${d}.json`), 'utf8')) as DigitJson;
    const k = 40 + 7 * i;
    const px = Uint8Array.from(data.slice(784 * k, 784 * (k + 1)), (v) => Math.round(255 * (0.3 + 0.45 * v)));
    const jpeg = i % 2 === 1;
    const img = sharp(px, { raw: { width: 28, height: 28, channels: 1 } });
    const buffer = jpeg ? await img.toColourspace('srgb').jpeg({ quality: 92 }).toBuffer() : await img.png().toBuffer();
    // What a decoder makes of the file (JPEG is lossy): luma in [0, 1], as the page computes it.
    const raw = await sharp(buffer).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const c = raw.info.channels;
    const gray = new Float32Array(784);
    for (let p = 0; p < 784; p++) {
      const [r, g, b] = c === 1 ? [raw.data[p]!, raw.data[p]!, raw.data[p]!] : [raw.data[c * p]!, raw.data[c * p + 1]!, raw.data[c * p + 2]!];
      gray[p] = (0.299 * r + 0.587 * g + 0.114 * b) / 255;
    }
    out.push({ name: `${MARK}-photo-${i}.${jpeg ? 'jpg' : 'png'}`, mimeType: jpeg ? 'image/jpeg' : 'image/png', buffer, gray });
  }
  return out;
}

interface Seen {
  url: string;
  method: string;
  body: Buffer | null;
  headers: Record<string, string>;
  via: 'event' | 'route';
  /** The request this one is a redirect of (the route sees only the first of a chain). */
  redirectOf: string | null;
}

let outDir: string;
let server: StaticServer;
let hub: FakeHub;
let browser: Browser;
let page: Page;
const seen: Seen[] = [];
const sockets: string[] = [];

beforeAll(async () => {
  if (!existsSync(WEIGHTS)) throw new Error(`${WEIGHTS} is missing: run \`pnpm tl pretrain\` (or set TL_EMBEDDED_WEIGHTS)`);
  outDir = mkdtempSync(join(tmpdir(), 'tl-web-private-'));
  const bert = Object.fromEntries(readdirSync(BERT).map((f) => [f, new Uint8Array(readFileSync(join(BERT, f)))]));
  [, hub, browser] = await Promise.all([
    build({ root: APP, configFile: join(APP, 'vite.config.ts'), logLevel: 'warn', build: { outDir, emptyOutDir: true } }),
    startFakeHub({ 'tiny/bert': bert }, { commit: COMMIT, cors: true }),
    launchChromium(),
  ]);
  server = await serveStatic(outDir);
  // Two recorders: the context's request events (pages and their dedicated workers) and a
  // route on every URL, which sees each request before it leaves the browser.
  browser.context.on('request', (r) => seen.push({ url: r.url(), method: r.method(), body: r.postDataBuffer(), headers: r.headers(), via: 'event', redirectOf: r.redirectedFrom()?.url() ?? null }));
  await browser.context.route('**/*', async (route) => {
    const r = route.request();
    seen.push({ url: r.url(), method: r.method(), body: r.postDataBuffer(), headers: r.headers(), via: 'route', redirectOf: null });
    await route.continue();
  });
  page = await browser.context.newPage();
  page.on('websocket', (w) => sockets.push(w.url()));
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await Promise.all([server?.close(), hub?.close()]);
  if (outDir) rmSync(outDir, { recursive: true, force: true });
});

interface Panels {
  lora: LoraPanelState;
  adabn: AdaBNPanelState;
}
const lora = (p: Page): Promise<LoraPanelState> => p.evaluate(() => (window as unknown as { __tlAdapt: { lora: LoraPanelState } }).__tlAdapt.lora);

/** The panel's state once its job has finished; its error, if it failed. */
async function finished<K extends 'lora' | 'adabn'>(p: Page, panel: K, timeout: number): Promise<Panels[K]> {
  await p.waitForFunction((k) => {
    const s = (window as unknown as { __tlAdapt: Record<string, { done: unknown; error: string | null }> }).__tlAdapt[k]!;
    return s.done !== null || s.error !== null;
  }, panel, { timeout, polling: 250 });
  const s = (await p.evaluate((k) => (window as unknown as { __tlAdapt: Panels }).__tlAdapt[k], panel)) as Panels[K];
  if (s.error) throw new Error(`${panel} in the page failed: ${s.error}`);
  return s;
}
const bytesOf = async (d: Download): Promise<Buffer> => readFileSync(await d.path());

const OPTIONS: TextLoraOptions = { r: 2, alpha: 4, dropout: 0, targets: ['query', 'value'], epochs: 6, lr: 3e-2, batchSize: 8, maxLength: 16, valSplit: 0.25, seed: 3, baseModel: 'hf:tiny/bert' };

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('private adaptation in the app', () => {
  it('runs text LoRA and AdaBN on the user\'s data with no request carrying any of it', async () => {
    const rows = privateSentences(32, 7);
    // The panel lists the sentences label card by label card: the CSV's first label fills the first card.
    const pageOrder = [...rows.filter((r) => r.label === 'warm'), ...rows.filter((r) => r.label === 'cold')];
    const tries = [`${MARK} the and over in`, `${MARK} to it set is`, `${MARK} on ever the`, `${MARK} he net to`];
    const photos = await privatePhotos(10);
    await init();
    const spec = textModelSpec('bert', 'test');
    // The same job in Node, meanwhile (its adapter is compared with the download below).
    const nodeSide = trainTextLora((n) => loadPretrainedText(spec, folderSource(BERT), { label: 'hf:tiny/bert', numClasses: n }), pageOrder, OPTIONS);
    const t0 = performance.now();
    await page.goto(`${server.url}?hub=${encodeURIComponent(hub.url)}`);
    await page.waitForFunction(() => {
      const s = (window as unknown as { __tl: { ready: boolean; unsupported: string | null } }).__tl;
      return s.ready || s.unsupported !== null;
    }, null, { timeout: 60_000 });
    await page.waitForFunction(() => document.querySelectorAll('#lora-arch option').length > 0);

    // Text LoRA through the panel: the sentences come as a CSV file the user picks.
    const csv = ['text,label', ...rows.map((r) => `${csvField(r.text)},${r.label}`)].join('\n');
    await page.fill('#lora-model-url', 'hf:tiny/bert');
    await page.selectOption('#lora-arch', 'bert');
    await page.setInputFiles('#lora-table', { name: `${MARK}.csv`, mimeType: 'text/csv', buffer: Buffer.from(csv) });
    const o = OPTIONS;
    const fields: [string, string | number][] = [['#lora-r', o.r], ['#lora-alpha', o.alpha], ['#lora-dropout', o.dropout], ['#lora-targets', o.targets.join(', ')], ['#lora-epochs', o.epochs],
      ['#lora-lr', o.lr], ['#lora-batch', o.batchSize], ['#lora-max-length', o.maxLength], ['#lora-val-split', o.valSplit], ['#lora-seed', o.seed]];
    for (const [sel, v] of fields) await page.fill(sel, String(v));
    await page.click('#lora-train');
    const done = (await finished(page, 'lora', 240_000)).done!;
    expect(done.classes).toEqual(['cold', 'warm']);
    expect(done.trainableParams).toBeLessThan(done.totalParams / 5);
    expect(await page.textContent('#lora-trainable')).toBe(done.trainableParams.toLocaleString('en'));
    expect(await page.textContent('#lora-adapter-bytes')).toBe(done.adapterBytes.toLocaleString('en'));
    expect(done.adaptedModules).toHaveLength(4); // query and value of both layers
    expect(done.history.at(-1)!.trainLoss).toBeLessThan(done.history[0]!.trainLoss);

    await page.fill('#lora-try', tries.join('\n'));
    await page.click('#lora-classify');
    await page.waitForFunction(() => (window as unknown as { __tlAdapt: { lora: LoraPanelState } }).__tlAdapt.lora.predictions !== null);
    const pagePredictions = (await lora(page)).predictions!;
    const downloads: Download[] = [];
    const twoDownloads = new Promise<void>((ok) => page.on('download', (d) => downloads.push(d) === 2 && ok()));
    await page.click('#lora-download');
    await twoDownloads;
    const byName = Object.fromEntries(await Promise.all(downloads.map(async (d) => [d.suggestedFilename(), await bytesOf(d)] as const)));
    const config = JSON.parse(byName['adapter_config.json']!.toString('utf8')) as Record<string, unknown>;
    const adapter = byName['adapter_model.safetensors']!;
    expect(adapter.length).toBe(done.adapterBytes);
    const tLora = performance.now();

    // AdaBN through the panel, on the embedded default (section 1's choice).
    await page.check('input[name="model"][value="embedded"]');
    await page.setInputFiles('#adabn-files', photos.map(({ name, mimeType, buffer }) => ({ name, mimeType, buffer })));
    await page.fill('#adabn-batch', '32');
    await page.click('#adabn-run');
    const report = (await finished(page, 'adabn', 120_000)).done!.report;
    const [adaDownload] = await Promise.all([page.waitForEvent('download'), page.click('#adabn-download')]);
    const adaBytes = await bytesOf(adaDownload);
    const browserSeconds = (performance.now() - t0) / 1000;
    console.log(`page: LoRA ${done.trainableParams}/${done.totalParams} trainable, adapter ${done.adapterBytes} bytes, ${done.evaluation.on} accuracy ` +
      `${(100 * done.evaluation.accuracy).toFixed(1)}% (${done.evaluation.correct}/${done.evaluation.total}) in ${((tLora - t0) / 1000).toFixed(1)} s; ` +
      `AdaBN ${report.changedLayers}/${report.layers} BatchNorm layers updated on ${report.samples} photos, ${report.changedPredictions} predictions changed; session ${browserSeconds.toFixed(1)} s`);
    expect(report.layers).toBe(13);
    expect(report.changedLayers).toBe(13);
    expect(report.samples).toBe(photos.length);
    expect(Number(await page.textContent('#adabn-changed-layers'))).toBe(report.changedLayers);

    // The network: every request, seen by the browser and by the servers.
    const hubPort = new URL(hub.url).port;
    const appPort = new URL(server.url).port;
    const bertSha = createHash('sha256').update(readFileSync(join(BERT, 'model.safetensors'))).digest('hex');
    const appFiles = new Set(['/', ...readdirSync(join(outDir, 'assets')).map((f) => `/assets/${f}`), ...readdirSync(outDir).map((f) => `/${f}`)]);
    const modelFile = new RegExp(`^/tiny/bert/resolve/(main|${COMMIT})/(config\\.json|tokenizer\\.json|tokenizer_config\\.json|model\\.safetensors)$`);
    const network = seen.filter((q) => !q.url.startsWith('blob:') && !q.url.startsWith('data:'));
    const secrets = [MARK, ...rows.slice(0, 5).map((r) => r.text), ...tries, ...photos.map((p) => p.name)];
    for (const q of network) {
      const u = new URL(q.url);
      expect(['GET', 'HEAD', 'OPTIONS'], q.url).toContain(q.method);
      expect(q.body, q.url).toBeNull();
      expect(['127.0.0.1', 'localhost'], q.url).toContain(u.hostname);
      if (u.port === appPort) {
        expect(appFiles.has(u.pathname), q.url).toBe(true);
        // Only the page itself has a query: the Hub mirror the test hands it.
        if (u.search !== '') expect(`${u.pathname}${u.search}`).toBe(`/?hub=${encodeURIComponent(hub.url)}`);
      } else {
        expect(u.port, q.url).toBe(hubPort);
        expect(modelFile.test(u.pathname) || u.pathname === `/cdn/${bertSha}`, q.url).toBe(true);
        expect(u.search, q.url).toBe('');
      }
      const sent = `${decodeURIComponent(q.url)} ${JSON.stringify(q.headers)}`;
      for (const s of secrets) expect(sent).not.toContain(s);
    }
    expect(sockets).toEqual([]);
    // The worker's requests are in the log: only the worker fetches the model (and the embedded weights).
    const events = new Set(network.filter((q) => q.via === 'event').map((q) => `${q.method} ${q.url}`));
    const routed = new Set(network.filter((q) => q.via === 'route').map((q) => `${q.method} ${q.url}`));
    const fromWorker = [...events].filter((k) => k.includes(`:${hubPort}/`) || k.includes('digits04-resnet14'));
    expect(fromWorker.some((k) => k.endsWith('/config.json')) && fromWorker.some((k) => k.includes('/cdn/')) && fromWorker.some((k) => k.includes('digits04-resnet14'))).toBe(true);
    // Whatever reached a server was recorded in the browser, by both recorders.
    const served = [...server.requests.map((r) => `${r.method} http://127.0.0.1:${appPort}${r.url}`), ...hub.requests.filter((r) => r.method !== 'OPTIONS').map((r) => `${r.method} ${r.url}`)];
    for (const k of served) {
      const [method, path] = [k.slice(0, k.indexOf(' ')), k.slice(k.indexOf(' ') + 1)];
      const records = network.filter((q) => q.via === 'event' && q.method === method && (q.url === path || q.url.endsWith(path)));
      expect(records.length, `${k} reached a server but not the request events`).toBeGreaterThan(0);
      const first = records.map((q) => (q.redirectOf !== null ? `${method} ${q.redirectOf}` : `${method} ${q.url}`));
      expect(first.some((f) => routed.has(f)), `${k} reached a server but not the route`).toBe(true);
    }
    console.log(`network: ${network.length} records (${events.size} distinct requests by event, ${routed.size} by route), ${fromWorker.length} of them the worker's; ` +
      `the app server answered ${server.requests.length}, the Hub ${hub.requests.length}; none with a body or user data`);

    // The downloads against the library in Node.
    const node = await nodeSide;
    expect(config).toEqual(JSON.parse(JSON.stringify(node.files.config)));
    const mine = parseSafetensors(adapter, 'download').all();
    const ref = parseSafetensors(node.files.weights, 'node').all();
    expect([...mine.keys()].sort()).toEqual([...ref.keys()].sort());
    let adapterDiff = 0;
    for (const [k, t] of ref) {
      expect(mine.get(k)!.shape, k).toEqual(t.shape);
      adapterDiff = Math.max(adapterDiff, maxDiff(mine.get(k)!.data, t.data));
    }
    node.model.dispose();
    // The downloaded files on a fresh base give the page's predictions.
    A.manualSeed(0);
    const base = await loadPretrainedText(spec, folderSource(BERT), { label: 'hf:tiny/bert', numClasses: 2 });
    loadAdapter(base.model, { config: byName['adapter_config.json']!.toString('utf8'), weights: adapter });
    const reloaded = await classifySentences({ trainer: new Trainer(base.model, { epochs: 1, logger: () => {} }), tokenizer: base.tokenizer, classes: done.classes, options: OPTIONS }, tries);
    const predictionDiff = Math.max(...reloaded.map((p, i) => maxDiff(p, pagePredictions[i]!)));
    base.model.dispose();

    // AdaBN on the same photos in Node gives the downloaded statistics; the weights are untouched.
    const digits = getModelSpec(DIGITS_RESNET14.id);
    if (!isImageModelSpec(digits)) throw new Error('digits_resnet14 is not an image model');
    const pre = { imageSize: 28, mean: [digits.mean[0]], std: [digits.std[0]], channels: 1, cropPct: digits.cropPct, interpolation: digits.interpolation, augment: false as const };
    const inputs = photos.map((p) => evalTransform({ data: p.gray, channels: 1, height: 28, width: 28 }, pre));
    const ds = new TensorDataset(inputs, photos.map(() => 0), [1, 28, 28], 'node-photos');
    const model = await fromPretrained(DIGITS_RESNET14.id, { weights: WEIGHTS }) as ClassifierModel;
    const nodeReport = await adaptToPhotos(model, ds, 32);
    const downloaded = parseSafetensors(adaBytes, 'adabn download').all();
    const original = parseSafetensors(readFileSync(WEIGHTS), 'embedded').all();
    let statDiff = 0;
    for (const [k, t] of model.stateDict()) {
      const got = downloaded.get(k)!;
      if (/running_(mean|var)$/.test(k)) statDiff = Math.max(statDiff, maxDiff(got.data, await t.data()));
      else if (!k.endsWith('num_batches_tracked')) expect(maxDiff(got.data, original.get(k)!.data), k).toBe(0);
    }
    model.dispose();
    console.log(`node: the same LoRA job's adapter within ${adapterDiff.toExponential(2)} of the download; the downloaded adapter on the base predicts within ` +
      `${predictionDiff.toExponential(2)} of the page; AdaBN statistics within ${statDiff.toExponential(2)}, ${nodeReport.changedPredictions} predictions changed (page ${report.changedPredictions})`);
    expect(predictionDiff).toBeLessThan(1e-4);
    expect(adapterDiff).toBeLessThan(1e-3);
    expect(statDiff).toBeLessThan(1e-3);
    expect(nodeReport.changedPredictions).toBe(report.changedPredictions);
  });
});
