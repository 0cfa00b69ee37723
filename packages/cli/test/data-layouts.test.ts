/**
 * `tl train --data` on the layouts people have and on bad images, through the built CLI: a
 * Hugging Face imagefolder (train/validation/test) holding a corrupt, a truncated, an empty and a
 * 50-megapixel image trains, lists those four in the run folder's skipped-images.tsv and says so;
 * a CSV list with a BOM and CRLF trains with --class-weights balanced; what can be known before
 * training (an empty class folder, a validation label training never saw) is one line, exit 2,
 * and nothing written.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { repoData } from '../../../test-data.js';
import { writeTinyImages } from './tiny-images.js';
import { spawnNode } from './spawn-node.js';

const TL = new URL('../dist/tl.js', import.meta.url).pathname;
const WEIGHTS = repoData('pretrained/cifar10-resnet20.safetensors');
const work = mkdtempSync(join(tmpdir(), 'tl-layouts-'));
const p = (...s: string[]): string => join(work, ...s);

/** stdout and stderr (progress lines go to stderr). */
async function tl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await spawnNode([TL, ...args], {
    cwd: work, encoding: 'utf8', timeout: 300_000,
    env: { ...process.env, CI: '1', HF_HOME: p('hf'), HF_HUB_OFFLINE: '1', TL_DEBUG: '' },
  });
  const err = r.stderr.split('\n').filter((l) => l && !l.startsWith('Warning: max')).join('\n');
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}`, err };
}

const TRAIN = ['train', '--model', 'cifar_resnet20', '--weights', WEIGHTS, '--epochs', '1', '--batch-size', '4', '--image-size', '16', '--workers', '1'];

beforeAll(async () => {
  await writeTinyImages(p('hf', 'train'));
  await writeTinyImages(p('hf', 'validation'));
  await writeTinyImages(p('hf', 'test'));
  const good = readFileSync(p('hf', 'train', 'red', '0.png'));
  writeFileSync(p('hf', 'train', 'red', 'truncated.png'), good.subarray(0, good.length >> 1));
  writeFileSync(p('hf', 'train', 'red', 'empty.png'), '');
  writeFileSync(p('hf', 'train', 'blue', 'corrupt.png'), 'not a PNG');
  await sharp({ create: { width: 8000, height: 6250, channels: 3, background: '#3040d0' } }).png({ compressionLevel: 1 }).toFile(p('hf', 'train', 'blue', 'huge.png'));
  // A CSV list (BOM, CRLF, a quoted path) of an imbalanced set.
  await writeTinyImages(p('list'));
  const rows = ['\uFEFFpath,label', ...readdirSync(p('list', 'red')).map((f) => `"red/${f}",red`), 'blue/0.png,blue', 'blue/1.png,blue'];
  writeFileSync(p('list', 'train.csv'), rows.join('\r\n') + '\r\n');
  // Bad layouts.
  await writeTinyImages(p('empty-class'));
  mkdirSync(p('empty-class', 'green'));
  await writeTinyImages(p('unseen', 'train'));
  await writeTinyImages(p('unseen', 'validation'));
  mkdirSync(p('unseen', 'validation', 'purple'));
  copyFileSync(p('unseen', 'train', 'red', '0.png'), p('unseen', 'validation', 'purple', '0.png'));
}, 60_000);

describe('tl train --data layouts', () => {
  it('a Hugging Face imagefolder with bad images: trained, the four skipped and listed in the run folder', async () => {
    const r = await tl([...TRAIN, '--data', 'hf', '--out', 'run-hf']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/--data hf: Hugging Face imagefolder \(train, validation, test\)/);
    expect(r.out).toMatch(/its test split \(12 images\) is not used in training/);
    expect(r.out).toMatch(/16 training and 12 validation images/);
    expect(r.out).toMatch(/4 images skipped \(1 empty, 1 truncated, 1 corrupt, 1 huge\); listed in .*run-hf\/skipped-images\.tsv/);
    const tsv = readFileSync(p('run-hf', 'skipped-images.tsv'), 'utf8').trim().split('\n');
    expect(tsv[0]).toBe('kind\tpath\treason');
    expect(tsv.slice(1).map((l) => l.split('\t')[0]).sort()).toEqual(['corrupt', 'empty', 'huge', 'truncated']);
    expect(tsv.join('\n')).toMatch(/huge\t.*huge\.png\t8000 x 6250 pixels \(50\.0 megapixels\) is over the limit/);
    expect(existsSync(p('run-hf', 'model.safetensors'))).toBe(true);
  }, 300_000);

  it('tl eval --data on a split layout scores its test split, not the training images', async () => {
    const r = await tl(['eval', '--run', 'run-hf', '--data', 'hf', '--json']);
    expect(r.code, r.err).toBe(0);
    const report = JSON.parse(r.out.slice(r.out.indexOf('{'), r.out.lastIndexOf('}') + 1));
    expect(report.data).toBe('the test split of hf');
    expect(report.total).toBe(12);
  }, 300_000);

  it('a CSV list with a BOM and CRLF, --class-weights balanced', async () => {
    const r = await tl([...TRAIN, '--data', 'list/train.csv', '--val-split', '0', '--class-weights', 'balanced', '--cache-mb', '0', '--out', 'run-csv']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/--data list\/train\.csv: CSV list/);
    // 8 images: 6 red, 2 blue; classes sorted (blue, red): 8 / (2 * 2) and 8 / (2 * 6).
    expect(r.out).toMatch(/class weights \(balanced\): blue 2\.000, red 0\.667/);
  }, 300_000);

  const fails: [string, string[], RegExp][] = [
    ['an empty class folder', ['--data', 'empty-class'], /class folder empty-class\/green has no images/],
    ['a validation label training never saw', ['--data', 'unseen'], /unseen\/validation \(the validation split\): the label "purple" .* is not a training class; training has blue, red/],
    ['--val beside a validation split', ['--data', 'hf', '--val', 'unseen/validation'], /--data hf has a validation split of its own; leave out --val/],
    ['--class-weights even', ['--data', 'hf', '--class-weights', 'even'], /--class-weights even is not one of balanced/],
    ['--cache-mb -1', ['--data', 'hf', '--cache-mb', '-1'], /--cache-mb must be a number of megabytes of at least 0, got -1/],
    ['--workers 1.5', ['--data', 'hf', '--workers', '1.5'], /--workers must be a whole number of threads/],
  ];
  for (const [name, args, msg] of fails) {
    it(`${name}: one line, exit 2, no run folder`, async () => {
      const r = await tl([...TRAIN, ...args, '--out', 'run-bad']);
      expect(r.err.split('\n'), r.err).toHaveLength(1);
      expect(r.err).toMatch(/^error: /);
      expect(r.err).toMatch(msg);
      expect(r.code).toBe(2);
      expect(existsSync(p('run-bad'))).toBe(false);
    }, 120_000);
  }
});
