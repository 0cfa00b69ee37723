/**
 * Audio in Chromium: a WAV file decoded in the page (Web Audio's decodeAudioData at the file's
 * own rate, then @tl/train's mixdown, torchaudio-exact resampling and pad/crop) gives Node's
 * clip of the same file to 1e-4; a bad file is named. The microphone, Chromium's fake capture
 * device playing a WAV tone, records one-second clips; the speech panel records takes of two
 * words, fine-tunes the shipped backbone on them and classifies a new take.
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readClip } from '../../../packages/train/src/node.js';
import { tone, wav } from '../../../packages/train/test/wav-files.js';
import { bundlePage, launchChromium, serveStatic, type Browser, type StaticServer } from './harness.js';
import type { ClipResult } from './speech-page.js';

const WEIGHTS = fileURLToPath(new URL('../../../packages/cli/assets/speech-w2v2-tiny.safetensors', import.meta.url));
const MIC_HZ = 440;

let dir: string;
let server: StaticServer;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tl-speech-page-'));
  await bundlePage(new URL('./speech-page.ts', import.meta.url), join(dir, 'page.js'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><meta charset="utf-8"><title>speech</title><body><script type="module" src="page.js"></script></body>');
  copyFileSync(WEIGHTS, join(dir, 'speech-w2v2-tiny.safetensors'));
  // The fake microphone plays this file in a loop.
  const mic = join(dir, 'mic.wav');
  writeFileSync(mic, wav([tone(44100, 44100, MIC_HZ, 0.4)], 44100));
  [server, browser] = await Promise.all([serveStatic(dir), launchChromium({ extraArgs: [`--use-file-for-fake-audio-capture=${mic}`] })]);
  page = await browser.context.newPage();
  await page.goto(server.url);
  await page.waitForFunction(() => window.__speech !== undefined, null, { timeout: 60_000 });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const ok = (r: ClipResult | { error: string }): ClipResult => {
  if ('error' in r) throw new Error(r.error);
  return r;
};

async function decodeInPage(bytes: Uint8Array, length: number): Promise<ClipResult | { error: string }> {
  return page.evaluate(([b64, n]) => window.__speech!.decode(b64, n), [Buffer.from(bytes).toString('base64'), length] as const);
}

describe('audio in the browser', () => {
  const cases = [
    { name: 'stereo 44.1 kHz, shorter than the clip (padded)', rate: 44100, channels: [tone(30870, 44100, 523), tone(30870, 44100, 1200, 0.3)], length: 16000 },
    { name: 'mono 8 kHz, longer than the clip (cut)', rate: 8000, channels: [tone(12000, 8000, 300, 0.7)], length: 16000 },
    { name: 'mono 16 kHz (no resampling)', rate: 16000, channels: [tone(9000, 16000, 2000, 0.2)], length: 8000 },
  ];
  for (const c of cases) {
    it(`a WAV file decoded in the page equals Node's decoding: ${c.name}`, async () => {
      const bytes = wav(c.channels, c.rate);
      const path = join(dir, 'clip.wav');
      writeFileSync(path, bytes);
      const node = await readClip(path, { length: c.length });
      const got = ok(await decodeInPage(bytes, c.length));
      expect([got.rate, got.channels, got.browserResampled]).toEqual([c.rate, c.channels.length, false]);
      expect(got.clip.length).toBe(c.length);
      let worst = 0;
      got.clip.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - node.clip[i]!))));
      expect(worst).toBeLessThan(1e-4);
      expect(Math.max(...got.clip.map(Math.abs))).toBeGreaterThan(0.1);
    });
  }

  it('a file that is not audio, and an empty one, are named', async () => {
    const bad = await decodeInPage(new TextEncoder().encode('not audio at all'), 16000);
    expect('error' in bad && bad.error).toMatch(/BrowserAudioError: audio: not a readable audio file/);
    const empty = await decodeInPage(new Uint8Array(0), 16000);
    expect('error' in empty && empty.error).toMatch(/empty file, not audio/);
  });

  it('the fake microphone records a one-second clip of its tone at 16 kHz', async () => {
    const r = ok(await page.evaluate(() => window.__speech!.record()));
    expect(r.clip.length).toBe(16000);
    expect([r.rate, r.browserResampled]).toEqual([48000, true]);
    const tail = r.clip.slice(4000);
    const rms = Math.sqrt(tail.reduce((s, v) => s + v * v, 0) / tail.length);
    expect(rms).toBeGreaterThan(0.05);
    // The tone's period in samples: zero crossings of the second half at 2·440 per second.
    let crossings = 0;
    for (let i = 8001; i < 16000; i++) if (Math.sign(r.clip[i]!) !== Math.sign(r.clip[i - 1]!)) crossings++;
    expect(Math.abs(crossings - MIC_HZ) / MIC_HZ).toBeLessThan(0.1);
  });

  it('the speech panel records takes of two words, fine-tunes the shipped backbone and classifies a new take', async () => {
    const idle = () => page.waitForFunction(() => document.getElementById('speech-section')!.dataset.busy === 'false', null, { timeout: 240_000 });
    const click = async (selector: string, nth = 0): Promise<void> => {
      await page.locator(selector).nth(nth).click();
      await idle();
      const error = await page.evaluate(() => window.__speech!.state.error);
      if (error) throw new Error(`${selector}: ${error}`);
    };
    for (const k of [0, 1]) for (let take = 0; take < 2; take++) await click('.speech-record', k);
    expect(await page.evaluate(() => window.__speech!.state.takes)).toEqual([2, 2]);
    await click('.speech-train');
    await click('.speech-classify');
    const state = await page.evaluate(() => window.__speech!.state);
    expect(state.trained).toBe(true);
    expect(['yes', 'no']).toContain(state.prediction!.label);
    expect(state.prediction!.probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    expect(await page.locator('.speech-result').textContent()).toMatch(/yes \d+\.\d% · no \d+\.\d%/);
  });
});
