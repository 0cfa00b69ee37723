/**
 * `tl adapt` and `tl train --teacher` as a user runs them: the built CLI on the pretrained CIFAR
 * ResNet-20 of data/pretrained and a tiny image folder. AdaBN writes DIR/model.safetensors in one
 * piece with new BatchNorm statistics and the same weights, and says in one line when the model
 * has no BatchNorm; a tiny teacher run is distilled into a student whose results.json records the
 * teacher, temperature and alpha, and whose report.html gives its trainable parameters.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors } from '@tl/models';
import { writeTinyImages } from './tiny-images.js';
import { spawnNode } from './spawn-node.js';

const PKG = fileURLToPath(new URL('..', import.meta.url));
const TL = join(PKG, 'dist/tl.js');
const WEIGHTS = fileURLToPath(new URL('../../../data/pretrained/cifar10-resnet20.safetensors', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'tl-adapt-cli-'));

/** Runs a command without blocking this worker (its test runner talks to it meanwhile). */
function run(args: string[], cwd: string): Promise<{ code: number; out: string; err: string }> {
  return new Promise((done, fail) => {
    execFile(process.execPath, args, { cwd, encoding: 'utf8', env: { ...process.env, CI: '1' }, timeout: 300_000, maxBuffer: 1 << 24 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') fail(error);
      else done({ code: error ? (error.code as number) : 0, out: stdout, err: stderr.split('\n').filter((l) => l && !l.startsWith('Warning: max')).join('\n') });
    });
  });
}
const tl = (args: string[]): Promise<{ code: number; out: string; err: string }> => run([TL, ...args], work);

const ZEROS_CONVNEXT = `
import { writeFileSync } from 'node:fs';
import * as A from '@tl/autograd';
import { fromPretrained, serializeSafetensors } from '@tl/models';
await A.init();
const m = await fromPretrained('convnext_tiny', { numClasses: 2 });
writeFileSync(process.argv[1], serializeSafetensors(new Map([...m.stateDict()].map(([k, t]) => [k, { dtype: 'F32', shape: t.shape, data: new Float32Array(t.size) }]))));
process.exit(0);
`;

const tensors = (path: string) => parseSafetensors(readFileSync(path), path);

beforeAll(async () => {
  await writeTinyImages(join(work, 'tiny'));
  const b = await spawnNode(['../../scripts/build-package.mjs', '--bin', 'tl'], { cwd: PKG, encoding: 'utf8' });
  expect(b.status, b.stderr).toBe(0);
}, 300_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('tl adapt', () => {
  it('re-estimates the BatchNorm statistics on unlabelled images and writes DIR/model.safetensors in one piece', async () => {
    const r = await tl(['adapt', '--model', 'cifar_resnet20', '--weights', WEIGHTS, '--data', 'tiny', '--out', 'adapted']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/AdaBN: re-estimated the statistics of 19 BatchNorm layers of cifar_resnet20 on 12 images of tiny \(1 batches of up to \d+\); wrote .*adapted\/model\.safetensors/);
    // Written under a temporary name and renamed: nothing else is left in the folder.
    expect(readdirSync(join(work, 'adapted'))).toEqual(['model.safetensors']);
    const [before, after] = [tensors(WEIGHTS), tensors(join(work, 'adapted', 'model.safetensors'))];
    expect(after.keys()).toEqual(expect.arrayContaining(before.keys()));
    for (const key of ['bn1.running_mean', 'layer3.2.bn2.running_var']) expect([...after.get(key).data]).not.toEqual([...before.get(key).data]);
    for (const key of ['conv1.weight', 'layer3.2.bn2.weight', 'linear.bias']) expect([...after.get(key).data]).toEqual([...before.get(key).data]);
    const again = await tl(['adapt', '--model', 'cifar_resnet20', '--weights', WEIGHTS, '--data', 'tiny', '--out', 'adapted']);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/--out adapted already holds 1 files; pass --overwrite to replace it/);
  });

  it('says in one line that a model without BatchNorm has nothing to re-estimate', async () => {
    // A ConvNeXt (LayerNorm only) with zero weights: only its key names and shapes matter here.
    // Built in a child process, so that the test worker stays responsive meanwhile.
    const made = await run(['--input-type=module', '-e', ZEROS_CONVNEXT, join(work, 'convnext.safetensors')], PKG);
    expect(made.code, made.err).toBe(0);
    const r = await tl(['adapt', '--model', 'convnext_tiny', '--weights', 'convnext.safetensors', '--data', 'tiny', '--out', 'cnx']);
    expect(r.code).toBe(2);
    expect(r.err).toBe('error: tl adapt: convnext_tiny has no BatchNorm layer, so AdaBN has no statistics to re-estimate; fine-tune it on labelled target data instead');
  }, 120_000);
});

describe('tl train --teacher', () => {
  it('distils a teacher run into a student; results.json records the teacher, temperature and alpha', async () => {
    const teacher = await tl(['train', '--model', 'cifar_resnet20', '--weights', WEIGHTS, '--data', 'tiny', '--epochs', '1', '--batch-size', '6', '--out', 'teacher']);
    expect(teacher.code, teacher.err).toBe(0);
    const student = await tl(['train', '--model', 'cifar_resnet20', '--data', 'tiny', '--teacher', 'teacher', '--temperature', '3', '--alpha', '0.7', '--epochs', '1', '--batch-size', '6', '--out', 'student']);
    expect(student.code, student.err).toBe(0);
    expect(student.err).toMatch(/distilling from cifar_resnet20 \(teacher, [\d,]+ parameters\): temperature 3, alpha 0\.7, its outputs cached per image/);
    const results = JSON.parse(readFileSync(join(work, 'student', 'results.json'), 'utf8'));
    expect(results.distillation).toEqual({ teacher: 'teacher', teacherModel: 'cifar_resnet20', temperature: 3, alpha: 0.7, cached: true });
    // Every run's report gives its trainable and total parameters (here all of them train; no adapter).
    const n = (v: number): string => v.toLocaleString('en');
    const report = readFileSync(join(work, 'student', 'report.html'), 'utf8');
    expect(results.parameters.trainable).toBe(results.parameters.total);
    expect(report).toContain(`<h2>Parameters</h2><p>${n(results.parameters.trainable)} trainable of ${n(results.parameters.total)} (100.00%)</p>`);
    const metrics = readFileSync(join(work, 'student', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.type === 'epoch');
    expect(Number.isFinite(metrics[0].metrics.trainDistillLoss)).toBe(true);
    const wrong = await tl(['train', '--model', 'cifar_resnet20', '--data', 'tiny', '--teacher', 'teacher', '--alpha', '1.5', '--out', 'bad']);
    expect(wrong.code).toBe(2);
    expect(wrong.err).toBe('error: --alpha must be a weight in [0, 1], got 1.5');
  }, 300_000);
});
