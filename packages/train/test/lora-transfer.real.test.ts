/**
 * LoRA against full fine-tuning and a frozen backbone on a real pretrained base, same task and
 * budget: the CIFAR-10 ResNet-20 of data/pretrained transferred to Fashion-MNIST with 20 labels
 * per class (the recipe of transfer.test.ts: batch 16, Adam, cosine, seed 3), scored on 2,000
 * test images. LoRA adapts every 3x3 convolution of the residual blocks (r = 4) and trains a new
 * head; a second LoRA arm also trains the BatchNorms (their affine parameters, and so their
 * batch statistics, as PEFT users add them to modules_to_save). Measured per arm: trainable
 * parameters, the optimizer's state, the step time and the accuracy; the LoRA arm's accuracy
 * after merging must be the unmerged one's. TL_LORA_EPOCHS sets the budget (default 4).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { adapterFiles, CifarResNet, loadSafetensors, lora, type LoraModel } from '@tl/models';
import { adam, cosine, idxDataset, Subset, takePerClass, Trainer, type Dataset } from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';
import { repoData } from '../../../test-data.js';

const EPOCHS = Number(process.env.TL_LORA_EPOCHS ?? 4);
const CIFAR = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], channels: 3, imageSize: 32 };

beforeAll(setup);

async function pretrained(): Promise<CifarResNet> {
  const m = new CifarResNet({ depth: 20 });
  m.loadStateDict((await loadSafetensors(repoData('pretrained/cifar10-resnet20.safetensors'))).tensors);
  return m.resetClassifier(10);
}

interface Arm {
  name: string;
  trainable: number;
  /** Trainable tensors: Adam keeps a step count for each. */
  tensors: number;
  total: number;
  optimizerBytes: number;
  stepMs: number;
  accuracy: number;
  adapterBytes?: number;
}

describe(`LoRA on ResNet-20, CIFAR-10 to Fashion-MNIST with 20 labels per class (${EPOCHS} epochs)`, () => {
  it('trains a fraction of the parameters with a fraction of the optimizer state; merged equals unmerged', async () => {
    const fm = (split: 'train' | 't10k', limit?: number) => idxDataset(
      repoData(`fashion-mnist/${split}-images-idx3-ubyte.gz`), repoData(`fashion-mnist/${split}-labels-idx1-ubyte.gz`), { ...CIFAR, limit });
    const train = takePerClass(await fm('train', 6000), 20, 1);
    const test: Dataset = new Subset(await fm('t10k'), [...Array(2000).keys()], 'first2000');
    const arms: Arm[] = [];
    const run = async (name: string, model: CifarResNet, lr: number, lm?: LoraModel): Promise<Trainer> => {
      A.manualSeed(7);
      const trainer = new Trainer(model, { optimizer: adam({ lr }), schedule: cosine(), epochs: EPOCHS, batchSize: 16, seed: 3, logger: () => {} });
      const history = await trainer.fit(train);
      // The first epoch compiles the pipelines; the later ones time the steady state.
      const steady = history.slice(1);
      const steps = Math.ceil(train.length / 16) * steady.length;
      const state = await trainer.optimizer.stateDict();
      const arm: Arm = {
        name, trainable: model.numParameters({ trainable: true }), tensors: model.parameters({ trainable: true }).length, total: model.numParameters(),
        optimizerBytes: Object.values(state.tensors).reduce((a, t) => a + t.byteLength, 0),
        stepMs: (1000 * steady.reduce((a, h) => a + h.seconds, 0)) / steps,
        accuracy: (await trainer.evaluate(test)).accuracy!,
        adapterBytes: lm ? (await adapterFiles(lm)).weights.byteLength : undefined,
      };
      arms.push(arm);
      console.log(`${name}: ${arm.trainable} of ${arm.total} trainable, optimizer ${arm.optimizerBytes} B, ${arm.stepMs.toFixed(0)} ms/step, ${(100 * arm.accuracy).toFixed(1)}%${lm ? `, adapter ${arm.adapterBytes} B` : ''}`);
      return trainer;
    };

    const full = await pretrained();
    await run('full fine-tuning', full, 3e-3);
    full.dispose();

    const frozen = await pretrained();
    frozen.freeze().unfreeze('linear');
    await run('frozen backbone + head', frozen, 1e-2);
    frozen.dispose();

    const targets = 'layer\\d\\.\\d+\\.conv[12]';
    const lm1 = lora(await pretrained(), { r: 4, alpha: 8, targetModules: targets, modulesToSave: ['linear'] });
    const t1 = await run('LoRA r=4 + head', lm1.model as CifarResNet, 1e-2, lm1);
    const before = arms.at(-1)!.accuracy;
    lm1.mergeAndUnload();
    const merged = (await t1.evaluate(test)).accuracy!;
    console.log(`LoRA merged: ${(100 * merged).toFixed(2)}% (unmerged ${(100 * before).toFixed(2)}%)`);
    expect(Math.abs(merged - before)).toBeLessThanOrEqual(1 / 2000);
    lm1.model.dispose();

    const lm2 = lora(await pretrained(), { r: 4, alpha: 8, targetModules: targets, modulesToSave: ['linear', 'bn1', 'bn2'] });
    await run('LoRA r=4 + head + BatchNorm', lm2.model as CifarResNet, 1e-2, lm2);
    lm2.model.dispose();

    console.log(['| arm | trainable parameters | optimizer state | step | accuracy (2,000 test images) |', '| --- | --- | --- | --- | --- |',
      ...arms.map((a) => `| ${a.name} | ${a.trainable.toLocaleString('en')} (${((100 * a.trainable) / a.total).toFixed(1)}%) | ${(a.optimizerBytes / 1024).toFixed(1)} KiB | ${a.stepMs.toFixed(0)} ms | ${(100 * a.accuracy).toFixed(1)}% |`)].join('\n'));
    const [f, h, l] = arms as [Arm, Arm, Arm, Arm];
    // Adam keeps two float32 moments per trainable element and a step count per tensor, nothing for frozen ones.
    for (const a of arms) expect(a.optimizerBytes).toBe(8 * a.trainable + 4 * a.tensors);
    expect(l.trainable).toBeLessThan(f.trainable / 5);
    expect(l.trainable).toBeGreaterThan(h.trainable);
    expect(l.accuracy).toBeGreaterThan(0.5);
  }, 3_600_000);
});
