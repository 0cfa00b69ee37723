/**
 * Step time of the four arms of lora-transfer.real.test.ts (full fine-tuning, frozen backbone +
 * head, LoRA r=4 + head, LoRA + head + BatchNorm) on the ResNet-20, measured interleaved: each
 * round times a few steps of every arm in turn, so a machine whose load changes (cores shared
 * with other work) slows every arm alike; the median step of each arm is reported. One step is
 * forward, cross-entropy, backward and Adam on a batch of 16 32x32 images, read back.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { CifarResNet, loadSafetensors, lora } from '@tl/models';
import { adam, type Optimizer } from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';
import { repoData } from '../../../test-data.js';

const ROUNDS = Number(process.env.TL_LORA_ROUNDS ?? 4);
const STEPS = 3;

beforeAll(setup);

async function pretrained(): Promise<CifarResNet> {
  const m = new CifarResNet({ depth: 20 });
  m.loadStateDict((await loadSafetensors(repoData('pretrained/cifar10-resnet20.safetensors'))).tensors);
  return m.resetClassifier(10).train();
}

const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

describe('LoRA step time on ResNet-20, interleaved with the other arms', () => {
  it('gives each arm its median step; a frozen backbone steps fastest', async () => {
    const targets = 'layer\\d\\.\\d+\\.conv[12]';
    const frozen = await pretrained();
    frozen.freeze().unfreeze('linear');
    const arms: [string, CifarResNet][] = [
      ['full fine-tuning', await pretrained()],
      ['frozen backbone + head', frozen],
      ['LoRA r=4 + head', lora(await pretrained(), { r: 4, alpha: 8, targetModules: targets, modulesToSave: ['linear'] }).model as CifarResNet],
      ['LoRA r=4 + head + BatchNorm', lora(await pretrained(), { r: 4, alpha: 8, targetModules: targets, modulesToSave: ['linear', 'bn1', 'bn2'] }).model as CifarResNet],
    ];
    const opts: Optimizer[] = arms.map(([, m]) => adam({ lr: 1e-3 }).create([{ params: m.parameters({ trainable: true }) }]));
    const x = A.randn([16, 3, 32, 32], { seed: 1 });
    const labels = Int32Array.from({ length: 16 }, (_, i) => i % 10);
    const step = async (i: number): Promise<number> => {
      const t0 = performance.now();
      const loss = A.tidy(() => {
        const l = A.crossEntropy(arms[i]![1].forward(x), labels);
        A.backward(l);
        opts[i]!.step();
        opts[i]!.zeroGrad();
        return A.keep(l);
      });
      await loss.data();
      loss.dispose();
      return performance.now() - t0;
    };
    for (let i = 0; i < arms.length; i++) for (let s = 0; s < 2; s++) await step(i);
    const times: number[][] = arms.map(() => []);
    for (let r = 0; r < ROUNDS; r++) for (let i = 0; i < arms.length; i++) for (let s = 0; s < STEPS; s++) times[i]!.push(await step(i));
    const ms = times.map(median);
    console.log(['| arm | median step (interleaved) |', '| --- | --- |', ...arms.map(([n], i) => `| ${n} | ${ms[i]!.toFixed(0)} ms |`)].join('\n'));
    expect(Math.min(...ms)).toBe(ms[1]);
    for (const [, m] of arms) m.dispose();
  }, 1_800_000);
});
