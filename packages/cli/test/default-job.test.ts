/**
 * `tl train` with no arguments, shortened: the three arms log under their own names
 * ("from scratch", not "from"), and the run folder's report.html shows them side by side:
 * the table, curves with one line per arm, and each arm's confusion matrix, drawn in Chromium.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { spawnNode } from './spawn-node.js';

const TL = new URL('../dist/tl.js', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'tl-default-'));

describe('the default job', () => {
  it('logs each arm by name and writes a side-by-side report into its run folder', async () => {
    const out = join(work, 'default');
    const r = await spawnNode([TL, 'train', '--epochs', '1', '--labels-per-class', '2', '--test-per-class', '10', '--out', out], {
      cwd: work, encoding: 'utf8', env: { ...process.env, CI: '1' }, timeout: 300_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^from scratch epoch 1 /m);
    expect(r.stderr).toMatch(/^fine-tune epoch 1 /m);
    expect(r.stderr).toMatch(/^feature extraction epoch 1 /m);
    expect(r.stderr).not.toMatch(/^from epoch/m);
    expect(r.stderr).toContain(`run folder: ${out} (report.html`);
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect(results.arms.map((a: { arm: string }) => a.arm.split(' (')[0])).toEqual(['fine-tune all layers', 'feature extraction', 'from scratch']);
    expect(existsSync(join(out, 'report.html'))).toBe(true);

    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      await page.goto(`file://${join(out, 'report.html')}`);
      expect(await page.locator('#arms tbody tr').count()).toBe(3);
      for (const id of ['loss-chart', 'accuracy-chart']) expect(await page.locator(`#${id} path`).count(), id).toBe(3);
      for (const i of [0, 1, 2]) {
        const box = await page.locator(`#confusion-${i}`).boundingBox();
        expect(box, `confusion matrix of arm ${i}`).not.toBeNull();
        expect(box!.width).toBeGreaterThan(100);
      }
    } finally {
      await browser.close();
    }

    const again = await spawnNode([TL, 'train', '--epochs', '1', '--out', out], { cwd: work, encoding: 'utf8', env: { ...process.env, CI: '1' } });
    expect(again.status).toBe(2);
    expect(again.stderr).toMatch(/--out .*default already holds 2 files; pass --overwrite/);
  }, 300_000);
});
