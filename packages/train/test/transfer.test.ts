/**
 * Real transfer: the CIFAR-10 ResNet-20 of data/pretrained fine-tuned on Fashion-MNIST (20
 * labels per class, padded to 32x32, 3 channels) against the same network from scratch with
 * the same budget (epochs, Adam at 3e-3, cosine), and a frozen backbone whose linear head
 * trains on cached features for 16x the epochs (still the cheapest arm: one pass of the
 * backbone), on 2,000 test images. data/fashion-mnist holds just what it reads: the first
 * 6,000 training images (the pool for the 20 per class) and the first 2,000 test images.
 * TL_TRANSFER_EPOCHS sets the budget; the README has the table at 2-8 epochs beside
 * PyTorch's (fixtures/transfer_reference.py, same recipe).
 */
import { describe, expect, it, beforeAll } from 'vitest';
import * as A from '@tl/autograd';
import { CifarResNet, loadSafetensors } from '@tl/models';
import { adam, cosine, idxDataset, MemoryStore, takePerClass, Trainer, Subset, type EpochLogs } from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';
import { repoData } from '../../../test-data.js';

const EPOCHS = Number(process.env.TL_TRANSFER_EPOCHS ?? 2);
const CIFAR = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], channels: 3, imageSize: 32 };

beforeAll(setup);

async function pretrained(): Promise<CifarResNet> {
  const m = new CifarResNet({ depth: 20 });
  m.loadStateDict((await loadSafetensors(repoData('pretrained/cifar10-resnet20.safetensors'))).tensors);
  return m;
}

describe('transfer from CIFAR-10 to Fashion-MNIST with 20 labels per class', () => {
  it(`fine-tuning beats training from scratch with the same budget by 15 points, and so do cached features (${EPOCHS} epochs)`, async () => {
    const fm = (split: 'train' | 't10k', limit?: number) => idxDataset(
      repoData(`fashion-mnist/${split}-images-idx3-ubyte.gz`), repoData(`fashion-mnist/${split}-labels-idx1-ubyte.gz`), { ...CIFAR, limit });
    const train = takePerClass(await fm('train', 6000), 20, 1);
    const testAll = await fm('t10k');
    const test = new Subset(testAll, [...Array(2000).keys()], 'first2000');
    const results: Record<string, { acc: number; history: EpochLogs[]; seconds: number }> = {};
    const run = async (name: string, model: CifarResNet, opts: { lr: number; epochs: number; cache?: boolean }) => {
      A.manualSeed(7);
      const t0 = performance.now();
      const trainer = new Trainer(model, {
        optimizer: adam({ lr: opts.lr }), schedule: cosine(), epochs: opts.epochs, batchSize: 16, seed: 3,
        cacheFeatures: opts.cache, featureStore: opts.cache ? new MemoryStore() : undefined, logger: () => {},
        onEvent: (e) => e.type === 'epochEnd' && console.log(`${name} epoch ${e.epoch + 1}: loss ${e.logs.trainLoss.toFixed(3)} acc ${(100 * (e.logs.trainAccuracy ?? 0)).toFixed(1)}% ${e.logs.seconds.toFixed(1)} s`),
      });
      const history = await trainer.fit(train);
      const r = await trainer.evaluate(test);
      results[name] = { acc: r.accuracy!, history, seconds: (performance.now() - t0) / 1000 };
      model.dispose();
    };
    await run('fine-tune', (await pretrained()).resetClassifier(10), { lr: 3e-3, epochs: EPOCHS });
    A.manualSeed(11);
    await run('scratch', new CifarResNet({ depth: 20, numClasses: 10 }), { lr: 3e-3, epochs: EPOCHS });
    const frozen = (await pretrained()).resetClassifier(10);
    frozen.freeze().unfreeze('linear');
    await run('features', frozen, { lr: 1e-2, epochs: EPOCHS * 16, cache: true });
    for (const [k, v] of Object.entries(results)) console.log(`${k}: ${(100 * v.acc).toFixed(1)}% on 2,000 test images (${v.seconds.toFixed(0)} s)`);
    expect(results.features!.history.every((h) => h.cachedFeatures)).toBe(true);
    // Transfer pays most when the budget is small: at 2-3 epochs (26-39 steps) fine-tuning leads
    // scratch by 22-23 points here (PyTorch, same recipe: 17-24) and the frozen features beat it
    // too; by 8 epochs scratch has caught up to within 12 points, in PyTorch as well.
    const smallBudget = EPOCHS <= 3;
    expect(results['fine-tune']!.acc - results.scratch!.acc).toBeGreaterThanOrEqual(smallBudget ? 0.15 : 0.05);
    expect(results['fine-tune']!.acc).toBeGreaterThan(0.65);
    if (smallBudget) expect(results.features!.acc).toBeGreaterThan(results.scratch!.acc);
    expect(results.features!.acc).toBeGreaterThan(0.5);
  }, 1_200_000);
});
