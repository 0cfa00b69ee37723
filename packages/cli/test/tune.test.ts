/**
 * `tl tune` as a user runs it (the built CLI): one training step of a tiny model plus an
 * extra product, the table it prints, and the store file it writes in a temporary cache
 * folder; a second run finds every choice stored.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawnNode } from './spawn-node.js';

const TL = new URL('../dist/tl.js', import.meta.url).pathname;
const cache = mkdtempSync(join(tmpdir(), 'tl-tune-'));

async function tl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await spawnNode([TL, ...args], { encoding: 'utf8', env: { ...process.env, CI: '1', TL_CACHE: cache }, timeout: 120_000 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

describe('tl tune', () => {
  const args = ['tune', '--model', 'cifar_resnet20', '--batch-size', '2', '--image-size', '32', '--shapes', '33x20x12'];

  it('measures the shape classes of a training step and stores the choices', async () => {
    const r = await tl(args);
    expect(r.code, r.err).toBe(0);
    const file = join(cache, 'autotune.json');
    expect(r.out).toContain(`choices in ${file}`);
    expect(r.out).toMatch(/\| shape class +\| choice +\| median ms per candidate +\|/);
    expect(r.out).toMatch(/\| matmul NN vv M64 N16 K32 B1 +\| (reg|reg4|wg32|wg64) +\| reg [\d.]+, reg4 [\d.]+, wg32 [\d.]+, wg64 [\d.]+ +\|/);
    // The fc layer forward ([2, 64] x [64, 10]), its two backward products, --shapes, and the
    // 3x3 stride-1 convolutions (16 channels at 32 px, 32 at 16, 64 at 8) and input gradients.
    expect(r.out).toMatch(/[1-9]\d* shape classes measured, 0 already stored/);
    expect(r.out).toContain('matmul NN vv M64 N16 K32 B1');
    expect(r.out).toMatch(/\| conv3x3 forward f32 N2 C16 O16 H32 W32 +\| (direct|winograd2x2|winograd4x4) +\| direct [\d.]+, winograd2x2 [\d.]+, winograd4x4 [\d.]+ +\|/);
    expect(r.out).toContain('conv3x3 inputGrad f32 N2 C64 O64 H8 W8');
    expect(existsSync(file)).toBe(true);
    const stored = JSON.parse(readFileSync(file, 'utf8')) as { version: number; adapters: Record<string, Record<string, { variant: string; ms: Record<string, number> }>> };
    expect(stored.version).toBe(1);
    const [entries] = Object.values(stored.adapters);
    expect(Object.keys(entries!).length).toBeGreaterThanOrEqual(3);
    for (const [cls, e] of Object.entries(entries!)) {
      const family = cls.startsWith('conv3x3') ? ['direct', 'winograd2x2', 'winograd4x4'] : ['reg', 'reg4', 'wg32', 'wg64'];
      expect(family).toContain(e.variant);
      expect(Object.keys(e.ms).sort()).toEqual(family);
    }
  });

  it('finds them stored on the next run, and reports JSON', async () => {
    const r = await tl([...args, '--json']);
    expect(r.code, r.err).toBe(0);
    const report = JSON.parse(r.out) as { store: string; rows: { shapeClass: string; ms: unknown }[] };
    expect(report.store).toBe(join(cache, 'autotune.json'));
    expect(report.rows.length).toBeGreaterThanOrEqual(3);
    expect(report.rows.every((row) => row.ms === null)).toBe(true);
  });

  it('rejects bad flags before starting the GPU', async () => {
    expect((await tl(['tune'])).err).toMatch(/give --model <id> or --shapes/);
    expect((await tl(['tune', '--shapes', '3x4'])).err).toMatch(/--shapes: "3x4" is not MxKxN/);
    expect((await tl(['tune', '--model', 'nope'])).err).toMatch(/--model: unknown model "nope"/);
    expect((await tl(['tune', '--shapes', '3x4x5', '--batch-size', '2'])).err).toMatch(/give --model too/);
  });
});
