/** (a) The kernel suite's core cases in a real browser page agree with the CPU references. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundlePage, launchChromium, serveStatic, type Browser, type StaticServer } from './harness.js';
import type { CaseResult } from './kernels-page.js';

let dir: string;
let server: StaticServer;
let browser: Browser;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tl-kernels-page-'));
  await bundlePage(new URL('./kernels-page.ts', import.meta.url), join(dir, 'page.js'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><meta charset="utf-8"><title>kernels</title><script type="module" src="page.js"></script>');
  [server, browser] = await Promise.all([serveStatic(dir), launchChromium()]);
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('kernels in the browser (navigator.gpu)', () => {
  it('every core case agrees with its float64 CPU reference', async () => {
    const page = await browser.context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    if (process.env.TL_VERBOSE) page.on('console', (m) => console.log(m.text()));
    await page.goto(`${server.url}${process.env.TL_VERBOSE ? '?verbose' : ''}`);
    try {
      await page.waitForFunction(() => window.__kernels !== undefined, null, { timeout: 180_000 });
    } catch (e) {
      throw new Error(`${(e as Error).message} (at case: ${await page.evaluate(() => window.__kernelsProgress)})`);
    }
    const r = await page.evaluate(() => window.__kernels!);
    if ('error' in r) throw new Error(`the kernel page failed: ${r.error}`);
    console.log(`kernels in Chromium on ${r.adapter} (${r.core ? 'core' : 'compatibility'} feature level${r.fallback ? ', software fallback' : ''}, shader-f16 ${r.f16 ? 'present: float16 cases run' : 'absent'}): ${r.results.filter((c: CaseResult) => c.ok).length}/${r.results.length} cases in ${r.seconds.toFixed(1)} s`);
    const bad = r.results.filter((c: CaseResult) => !c.ok).map((c: CaseResult) => `${c.name}: ${c.detail}`);
    expect(errors).toEqual([]);
    expect(bad).toEqual([]);
    expect(r.results.length).toBeGreaterThanOrEqual(50);
  });
});
