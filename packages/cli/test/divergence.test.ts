/**
 * `tl train` on a run that diverges (lr 1e9) or starts from weights holding a NaN: exit code
 * non-zero, one error line that says where and what to change, no stack trace, and no model
 * or checkpoint with NaN weights left in the run folder.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeTinyImages } from './tiny-images.js';
import { spawnNode } from './spawn-node.js';

const TL = new URL('../dist/tl.js', import.meta.url).pathname;
const WEIGHTS = new URL('../../../data/pretrained/cifar10-resnet20.safetensors', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'tl-diverge-'));
const data = join(work, 'images');

async function tl(args: string[]): Promise<{ code: number; errors: string[]; err: string }> {
  const r = await spawnNode([TL, ...args], { cwd: work, encoding: 'utf8', env: { ...process.env, CI: '1' }, timeout: 300_000 });
  return { code: r.status ?? -1, errors: r.stderr.split('\n').filter((l) => l.startsWith('error:')), err: r.stderr };
}

function expectOneLineError(r: Awaited<ReturnType<typeof tl>>, pattern: RegExp): void {
  expect(r.code, r.err).not.toBe(0);
  expect(r.errors, r.err).toHaveLength(1);
  expect(r.errors[0]).toMatch(pattern);
  expect(r.err).not.toMatch(/^\s+at /m);
  expect(r.err).not.toContain('unexpected error');
}

beforeAll(() => writeTinyImages(data), 60_000);

describe('tl train on a diverging run', () => {
  it('--lr 1e9 stops in the first epoch with one line, exit code non-zero, and no NaN model written', async () => {
    const out = join(work, 'run-lr');
    const r = await tl(['train', '--model', 'cifar_resnet20', '--data', data, '--epochs', '3', '--batch-size', '4', '--lr', '1e9', '--out', out]);
    expectOneLineError(r, /^error: training diverged (in epoch 1, step \d+ of \d+|at the end of epoch 1): .*no checkpoint was written to .* before it\. Lower the learning rate/);
    expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
    expect(existsSync(join(out, 'checkpoint', 'model.safetensors'))).toBe(false);
  });

  it('--weights holding a NaN is refused before training, without naming a checkpoint', async () => {
    const bytes = readFileSync(WEIGHTS);
    const headerLen = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
    bytes.writeFloatLE(NaN, 8 + headerLen + header['conv1.weight']!.data_offsets[0]);
    const poisoned = join(work, 'nan.safetensors');
    writeFileSync(poisoned, bytes);
    const out = join(work, 'run-nan');
    const r = await tl(['train', '--model', 'cifar_resnet20', '--weights', poisoned, '--data', data, '--epochs', '1', '--batch-size', '4', '--out', out]);
    expectOneLineError(r, /^error: the model's weights are not finite before training: conv1\.weight holds 1 NaN or infinite value of 432; load weights without NaN or Inf/);
    expect(r.errors[0]).not.toContain('checkpoint');
    expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
  });
});
