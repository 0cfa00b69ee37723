/**
 * The `tl` command end to end, as a user runs it: the built CLI in a temporary folder, a
 * tiny image folder, the CIFAR ResNet-20 weights in data/pretrained; every file of the run folder,
 * --resume, predict --json, inspect, export, the error cases, and report.html in Chromium.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { spawnNode } from './spawn-node.js';

const TL = new URL('../dist/tl.js', import.meta.url).pathname;
const WEIGHTS = new URL('../../../data/pretrained/cifar10-resnet20.safetensors', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'tl-cli-'));
const data = join(work, 'shapes');
const run = join(work, 'run');

async function tl(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  const r = await spawnNode([TL, ...args], { cwd: work, encoding: 'utf8', env: { ...process.env, CI: '1', ...env }, timeout: 600_000 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr.split('\n').filter((l) => !l.startsWith('Warning: max')).join('\n') };
}

beforeAll(async () => {
  // Three classes of 32x32 images: red squares, green circles, blue stripes, with jitter.
  const shapes = ['red', 'green', 'blue'];
  for (const [c, name] of shapes.entries()) {
    mkdirSync(join(data, name), { recursive: true });
    for (let i = 0; i < 8; i++) {
      const px = Buffer.alloc(32 * 32 * 3);
      for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) {
        const on = c === 0 ? Math.abs(x - 16) < 6 + (i % 3) && Math.abs(y - 16) < 6 : c === 1 ? (x - 16) ** 2 + (y - 16) ** 2 < (7 + (i % 3)) ** 2 : (x + i) % 8 < 4;
        px[(y * 32 + x) * 3 + c] = on ? 220 : 30;
        px[(y * 32 + x) * 3 + ((c + 1) % 3)] = 20 + ((x * 7 + y * 3 + i * 11) % 40);
      }
      await sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(join(data, name, `${i}.png`));
    }
  }
  writeFileSync(join(data, 'green', 'broken.png'), 'not an image');
}, 60_000);

describe('tl train and the run folder', () => {
  it('fine-tunes cifar_resnet20 on an image folder and writes every file of the run folder', async () => {
    const r = await tl(['train', '--model', 'cifar_resnet20', '--weights', WEIGHTS, '--data', data, '--epochs', '1', '--batch-size', '8',
      '--freeze', 'backbone', '--val-split', '0.25', '--lr', '0.01', '--out', run]);
    expect(r.err).toContain('skipping sample');
    expect(r.err).toContain('broken.png');
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/"model": "cifar_resnet20"/);
    for (const f of ['model.safetensors', 'config.json', 'metrics.jsonl', 'report.html', 'checkpoint/model.safetensors', 'checkpoint/optimizer.safetensors', 'checkpoint/trainer.json']) {
      expect(existsSync(join(run, f)), f).toBe(true);
    }
    const metrics = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(metrics.some((m) => m.type === 'step')).toBe(true);
    expect(metrics.filter((m) => m.type === 'epoch')).toHaveLength(1);
    expect(JSON.parse(readFileSync(join(run, 'config.json'), 'utf8')).freeze).toBe('backbone');
  });

  it('--fp16 trains under autocast with loss scaling and logs the scale', async () => {
    const out = join(run, '..', 'fp16-run');
    const r = await tl(['train', '--model', 'cifar_resnet20', '--weights', WEIGHTS, '--data', data, '--epochs', '1', '--batch-size', '8',
      '--val-split', '0.25', '--lr', '0.01', '--fp16', '--out', out]);
    expect(r.code, r.err).toBe(0);
    const epoch = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).find((m) => m.type === 'epoch');
    expect(epoch.lossScale).toBe(2 ** 16);
    expect(epoch.skippedSteps).toBe(0);
    expect(Number.isFinite(epoch.valLoss)).toBe(true);
  });

  it('--resume continues from the checkpoint', async () => {
    const r = await tl(['train', '--resume', run, '--epochs', '2']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/resumed from .* at epoch 2/);
    const epochs = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.type === 'epoch');
    expect(epochs.map((e) => e.epoch)).toEqual([0, 1]);
  });

  it('predict --json, eval --json, inspect and export', async () => {
    const p = await tl(['predict', '--run', run, '--json', '--top-k', '2', '--logits', join(data, 'red', '0.png'), join(data, 'blue', '1.png')]);
    expect(p.code, p.err).toBe(0);
    const preds = JSON.parse(p.out);
    expect(preds).toHaveLength(2);
    for (const x of preds) {
      expect(Object.keys(x).sort()).toEqual(['file', 'index', 'label', 'logits', 'prob', 'topk']);
      expect(x.topk).toHaveLength(2);
      expect(x.logits).toHaveLength(3);
    }
    const e = await tl(['eval', '--run', run, '--json']);
    expect(e.code, e.err).toBe(0);
    const ev = JSON.parse(e.out);
    expect(Object.keys(ev)).toEqual(expect.arrayContaining(['accuracy', 'correct', 'total', 'loss', 'perClass']));
    const i = await tl(['inspect', WEIGHTS]);
    expect(i.code, i.err).toBe(0);
    expect(i.out).toMatch(/97 tensors/);
    expect(i.out).toMatch(/matches: cifar_resnet20/);
    const x = await tl(['export', '--run', run, '--out', join(work, 'exported')]);
    expect(x.code, x.err).toBe(0);
    const cfg = JSON.parse(readFileSync(join(work, 'exported', 'config.json'), 'utf8'));
    expect(cfg.id2label).toEqual({ 0: 'blue', 1: 'green', 2: 'red' });
  });

  it('report.html renders its charts in Chromium', async () => {
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      await page.goto(`file://${join(run, 'report.html')}`);
      const shot = join(work, 'report.png');
      await page.screenshot({ path: shot, fullPage: true });
      for (const id of ['loss-chart', 'accuracy-chart', 'lr-chart', 'confusion']) {
        const box = await page.locator(`#${id}`).boundingBox();
        expect(box, id).not.toBeNull();
        const { data: px, info } = await sharp(shot).extract({ left: Math.round(box!.x), top: Math.round(box!.y), width: Math.round(box!.width), height: Math.round(box!.height) }).raw().toBuffer({ resolveWithObject: true });
        let colored = 0;
        for (let k = 0; k < px.length; k += info.channels) if (Math.max(px[k]!, px[k + 1]!, px[k + 2]!) - Math.min(px[k]!, px[k + 1]!, px[k + 2]!) > 40) colored++;
        expect(colored, `${id} has plotted colour`).toBeGreaterThan(30);
      }
    } finally {
      await browser.close();
    }
  });
});

describe('every mistake gets one line and a non-zero exit', () => {
  const cases: [string, string[], RegExp, number][] = [
    ['unknown model', ['train', '--model', 'resnet99', '--data', 'x'], /unknown model "resnet99".*known models: .*resnet18/, 2],
    ['wrong flag', ['train', '--lrr', '0.1'], /unknown flag --lrr; did you mean --lr\?/, 2],
    ['bad choice', ['train', '--model', 'resnet18', '--data', 'x', '--optimizer', 'adamm'], /did you mean adam\?/, 2],
    ['missing data', ['train', '--model', 'cifar_resnet20', '--data', '/nonexistent'], /--data \/nonexistent does not exist/, 2],
    ['weights that do not fit', ['train', '--model', 'resnet18', '--weights', WEIGHTS, '--data', data, '--epochs', '1'], /do not fit resnet18: conv1.weight is \[16, 3, 3, 3\] in the checkpoint, resnet18 expects \[64, 3, 7, 7\]/, 2],
    ['unknown command', ['trian'], /did you mean `tl train`/, 2],
  ];
  for (const [name, args, msg, code] of cases) {
    it(name, async () => {
      const r = await tl(args);
      expect(r.code).toBe(code);
      expect(r.err).toMatch(msg);
      expect(r.err).not.toMatch(/\n\s+at /);
    });
  }
  it('an empty class folder and a folder without classes', async () => {
    const empty = join(work, 'empty');
    mkdirSync(join(empty, 'a'), { recursive: true });
    mkdirSync(join(empty, 'b'), { recursive: true });
    writeFileSync(join(empty, 'b', 'x.png'), '');
    let r = await tl(['train', '--model', 'cifar_resnet20', '--data', empty]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/class folder .*a has no images/);
    const none = join(work, 'none');
    mkdirSync(none, { recursive: true });
    r = await tl(['train', '--model', 'cifar_resnet20', '--data', none]);
    expect(r.err).toMatch(/has no class sub-folders/);
  });
  it('no GPU adapter says what to install', async () => {
    const r = await tl(['doctor'], { VK_ICD_FILENAMES: '/nonexistent.json', VK_DRIVER_FILES: '/nonexistent.json' });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/mesa-vulkan-drivers/);
  });
});
