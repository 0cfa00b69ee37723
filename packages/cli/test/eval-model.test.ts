/**
 * `tl eval` / `tl predict` on a pretrained checkpoint without training, and `tl models`:
 * the CIFAR-10 ResNet-20 on the repository's 500 CIFAR-10 JPEGs scores what PyTorch does
 * (399 correct: packages/models/test/cifar.test.ts), with classes matched by name.
 */
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoData } from '../../../test-data.js';
import { spawnNode } from './spawn-node.js';

const TL = new URL('../dist/tl.js', import.meta.url).pathname;
const WEIGHTS = repoData('pretrained/cifar10-resnet20.safetensors');
const IMAGES = repoData('cifar10-test');
const work = mkdtempSync(join(tmpdir(), 'tl-eval-'));

async function tl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await spawnNode([TL, ...args], { cwd: work, encoding: 'utf8', env: { ...process.env, CI: '1' }, timeout: 300_000 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

describe('a pretrained checkpoint, scored without training', () => {
  it('tl eval --model cifar_resnet20 --weights ... --json: 399/500 as PyTorch, per-class figures by name', async () => {
    const r = await tl(['eval', '--model', 'cifar_resnet20', '--weights', WEIGHTS, '--data', IMAGES, '--json']);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.correct).toBe(399);
    expect(j.total).toBe(500);
    expect(j.accuracy).toBeCloseTo(0.798, 6);
    expect(j.classMapping).toMatch(/matched by name to cifar_resnet20's known labels \(10 of 10 present\)/);
    expect(j.perClass.map((c: { class: string }) => c.class)).toEqual(['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']);
    expect(j.perClass.every((c: { support: number }) => c.support === 50)).toBe(true);
  }, 300_000);

  it('a folder of two of the classes, or of one, is scored over the classes present', async () => {
    const sub = join(work, 'cats-and-dogs');
    for (const c of ['cat', 'dog']) cpSync(join(IMAGES, c), join(sub, c), { recursive: true });
    const two = await tl(['eval', '--model', 'cifar_resnet20', '--weights', WEIGHTS, '--data', sub, '--json']);
    expect(two.code, two.err).toBe(0);
    const j = JSON.parse(two.out);
    expect(j.total).toBe(100);
    expect(j.perClass.map((c: { class: string }) => c.class)).toEqual(['cat', 'dog']);
    expect(Number.isFinite(j.loss)).toBe(true);
    expect(j.macroF1).toBeLessThanOrEqual(1);
    const one = join(work, 'cats');
    cpSync(join(IMAGES, 'cat'), join(one, 'cat'), { recursive: true });
    const r = await tl(['eval', '--model', 'cifar_resnet20', '--weights', WEIGHTS, '--data', one]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/accuracy [\d.]+% \(\d+\/50\).*over 1 classes/);
  }, 300_000);

  it('tl predict --model names the class', async () => {
    const r = await tl(['predict', '--model', 'cifar_resnet20', '--weights', WEIGHTS, '--json', join(IMAGES, 'cat', '0000.jpg')]);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out)[0].topk.map((t: { label: string }) => t.label)).toContain('cat');
  }, 300_000);

  it('tl models lists every architecture with its input, parameters and checkpoints (--json too)', async () => {
    const r = await tl(['models', '--json']);
    expect(r.code, r.err).toBe(0);
    const rows = JSON.parse(r.out) as { id: string; task: string; inputSize: number | null; parameters: number; checkpoints: string[] }[];
    expect(rows.find((m) => m.id === 'cifar_resnet20')).toMatchObject({ task: 'image', inputSize: 32, parameters: 269_722, checkpoints: ['akamaster/pytorch_resnet_cifar10'] });
    expect(rows.find((m) => m.id === 'resnet18')).toMatchObject({ parameters: 11_689_512, checkpoints: ['torchvision', 'timm'] });
    expect(rows.find((m) => m.id === 'bert')).toMatchObject({ task: 'text', inputSize: null, checkpoints: ['transformers'] });
    expect(rows.every((m) => m.parameters > 0)).toBe(true);
    const table = await tl(['models']);
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/cifar_resnet20 +\| image +\| 3x32x32 +\| 270k/);
  }, 120_000);
});
