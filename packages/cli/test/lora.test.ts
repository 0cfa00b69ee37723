/**
 * `tl train --lora` as a user runs it: the built CLI on the tiny BERT of
 * packages/models/fixtures/hub_text and synthetic sentences whose label follows from their words.
 * The run folder holds PEFT's two files (keys and config as PEFT writes them) beside a merged
 * model.safetensors that eval reads as any run; results.json and report.html give the trainable
 * parameters and the adapter's size; contradictory or malformed --lora values get one line.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyImages } from './tiny-images.js';
import { spawnNode } from './spawn-node.js';

const PKG = fileURLToPath(new URL('..', import.meta.url));
const TL = join(PKG, 'dist/tl.js');
const HUB = fileURLToPath(new URL('../../models/fixtures/hub_text/', import.meta.url));
const WEIGHTS = fileURLToPath(new URL('../../../data/pretrained/cifar10-resnet20.safetensors', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'tl-lora-cli-'));
const run = join(work, 'run');

async function tl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await spawnNode([TL, ...args], { cwd: work, encoding: 'utf8', env: { ...process.env, CI: '1' }, timeout: 300_000 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr.split('\n').filter((l) => !l.startsWith('Warning: max')).join('\n') };
}

function sentences(n: number, seed: number): string {
  const groups = { pos: ['the', 'and', 'in', 'on', 'over'], neg: ['to', 'is', 'it', 'he', 'set'] };
  let s = seed;
  const rand = (k: number): number => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s % k;
  };
  const rows = Array.from({ length: n }, (_, i) => {
    const label = i % 2 ? 'neg' : 'pos';
    return `${Array.from({ length: 2 + rand(5) }, () => groups[label][rand(5)]).join(' ')},${label}`;
  });
  return `text,label\n${rows.join('\n')}\n`;
}

function safetensorsKeys(path: string): string[] {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  return Object.keys(JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'))).filter((k) => k !== '__metadata__');
}

beforeAll(async () => {
  await writeTinyImages(join(work, 'tiny'));
  const b = await spawnNode(['../../scripts/build-package.mjs', '--bin', 'tl'], { cwd: PKG, encoding: 'utf8' });
  expect(b.status, b.stderr).toBe(0);
  writeFileSync(join(work, 'train.csv'), sentences(160, 7));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('tl train --lora', () => {
  it('writes PEFT adapter files and a merged model that eval reads; trainable parameters and adapter bytes reported', async () => {
    const r = await tl(['train', '--model', 'bert', '--weights', join(HUB, 'bert'), '--data', 'train.csv', '--lora', 'r=2,alpha=4,targets=query,value',
      '--epochs', '3', '--lr', '2e-2', '--batch-size', '16', '--out', run]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/trainable \(LoRA adapters and the head\)/);
    const config = JSON.parse(readFileSync(join(run, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({
      peft_type: 'LORA', task_type: 'SEQ_CLS', r: 2, lora_alpha: 4, lora_dropout: 0, target_modules: ['query', 'value'],
      modules_to_save: ['classifier'], fan_in_fan_out: false, bias: 'none', inference_mode: true, base_model_name_or_path: join(HUB, 'bert'),
    });
    const keys = safetensorsKeys(join(run, 'adapter_model.safetensors')).sort();
    const layers = [0, 1].flatMap((i) => ['query', 'value'].flatMap((m) => ['A', 'B'].map((ab) => `base_model.model.bert.encoder.layer.${i}.attention.self.${m}.lora_${ab}.weight`)));
    expect(keys).toEqual([...layers, 'base_model.model.classifier.bias', 'base_model.model.classifier.weight'].sort());
    expect(safetensorsKeys(join(run, 'model.safetensors')).filter((k) => k.includes('lora_'))).toEqual([]);
    const results = JSON.parse(readFileSync(join(run, 'results.json'), 'utf8'));
    expect(results.parameters.trainable).toBeLessThan(results.parameters.total / 10);
    // 2 layers x 2 modules x (A [2, 8] + B [8, 2]) + the head (8 x 2 + 2).
    expect(results.parameters.trainable).toBe(2 * 2 * 32 + 18);
    expect(results.adapter.bytes).toBe(statSync(join(run, 'adapter_model.safetensors')).size);
    expect(readFileSync(join(run, 'report.html'), 'utf8')).toMatch(new RegExp(`${results.parameters.trainable} trainable of .*LoRA adapter \\(adapter_model.safetensors\\) ${results.adapter.bytes.toLocaleString('en')} bytes`));
    const e = await tl(['eval', '--run', run, '--json']);
    expect(e.code, e.err).toBe(0);
    expect(JSON.parse(e.out).accuracy).toBeCloseTo(results.validation.accuracy, 6);
  });

  it('--resume continues a LoRA run from its checkpoint, adapters included', async () => {
    const before = readFileSync(join(run, 'adapter_model.safetensors'));
    const keys = safetensorsKeys(join(run, 'adapter_model.safetensors')).sort();
    const r = await tl(['train', '--resume', run, '--epochs', '4']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/resumed from .* at epoch 4/);
    const epochs = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.type === 'epoch');
    expect(epochs.map((e) => e.epoch)).toEqual([0, 1, 2, 3]);
    expect(safetensorsKeys(join(run, 'adapter_model.safetensors')).sort()).toEqual(keys);
    expect(readFileSync(join(run, 'adapter_model.safetensors')).equals(before)).toBe(false);
  });

  it('an image run: LoRA on convolutions; eval --model --weights --adapter scores the base with the adapter as the merged run', async () => {
    const out = join(work, 'image-run');
    const r = await tl(['train', '--model', 'cifar_resnet20', '--weights', WEIGHTS, '--data', 'tiny', '--val-split', '0.5', '--lora', 'r=2,alpha=4,targets=conv1,conv2',
      '--epochs', '1', '--batch-size', '6', '--out', out]);
    expect(r.code, r.err).toBe(0);
    const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ task_type: null, target_modules: ['conv1', 'conv2'], modules_to_save: ['linear'], base_model_name_or_path: WEIGHTS });
    expect(safetensorsKeys(join(out, 'adapter_model.safetensors'))).toContain('base_model.model.layer3.2.conv2.lora_A.weight');
    const adapted = await tl(['eval', '--model', 'cifar_resnet20', '--weights', WEIGHTS, '--adapter', out, '--data', 'tiny', '--json']);
    const merged = await tl(['eval', '--run', out, '--data', 'tiny', '--json']);
    expect(adapted.code, adapted.err).toBe(0);
    expect(merged.code, merged.err).toBe(0);
    expect(JSON.parse(adapted.out).accuracy).toBeCloseTo(JSON.parse(merged.out).accuracy, 6);
    const wrong = await tl(['eval', '--model', 'cifar_resnet20', '--weights', WEIGHTS, '--adapter', run, '--data', 'tiny']);
    expect(wrong.code).toBe(2);
    expect(wrong.err).toMatch(/--adapter .*target module "query" matches no module of CifarResNet/);
  });

  it('refuses a target that matches no module with the nearest names, a malformed value, and --freeze beside it', async () => {
    const base = ['train', '--model', 'bert', '--weights', join(HUB, 'bert'), '--data', 'train.csv', '--epochs', '1', '--out', join(work, 'bad')];
    const miss = await tl([...base, '--lora', 'r=2,targets=quer']);
    expect(miss.code).toBe(2);
    expect(miss.err).toMatch(/--lora: target module "quer" matches no module of BertForSequenceClassification; the nearest names are .*query/);
    const key = await tl([...base, '--lora', 'rank=2,targets=query']);
    expect(key.code).toBe(2);
    expect(key.err).toMatch(/--lora rank=2,targets=query: unknown key "rank"/);
    const none = await tl([...base, '--lora', 'r=2,alpha=4']);
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/--lora r=2,alpha=4: no targets/);
    const freeze = await tl([...base, '--lora', 'targets=query', '--freeze', 'backbone']);
    expect(freeze.code).toBe(2);
    expect(freeze.err).toMatch(/--lora freezes the base itself .* leave out --freeze backbone/);
  });
});
