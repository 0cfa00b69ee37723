/**
 * Model-level gradient checkpointing: with it switched on, a training step of reduced BERT,
 * DistilBERT, ViT, ResNet and CIFAR ResNet configurations (dropout and BatchNorm in training mode) gives the
 * same logits, parameter gradients and running statistics as without, at a lower peak of live
 * bytes.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { setup } from '../../tensor/test/helpers.js';
import {
  BertForSequenceClassification,
  CifarResNet,
  DistilBertForSequenceClassification,
  isGradientCheckpointing,
  MobileNetV2,
  ResNet,
  VisionTransformer,
  type Module,
} from '../src/index.js';

beforeAll(setup);

interface StepResult {
  logits: Float32Array;
  grads: Map<string, Float32Array>;
  buffers: Map<string, Float32Array | Int32Array>;
  peakBytes: number;
}

/** One forward and backward of a fresh model (same seed, so the same weights) in training mode. */
async function step(make: () => Module & { forward(...xs: Tensor[]): Tensor }, inputs: () => Tensor[], checkpointing: boolean): Promise<StepResult> {
  A.manualSeed(3);
  const model = make().train();
  if (checkpointing) model.gradientCheckpointing();
  expect([...model.namedModules()].some(([, m]) => isGradientCheckpointing(m))).toBe(checkpointing);
  const xs = inputs();
  await A.sync();
  A.resetPeakMemory();
  const base = A.memory().peakBytes;
  A.manualSeed(5);
  const logits = A.tidy(() => {
    const y = model.forward(...xs);
    A.backward(A.sum(A.mul(y, A.randn(y.shape, { seed: 11 }))));
    return y;
  });
  await A.sync();
  const peakBytes = A.memory().peakBytes - base;
  const grads = new Map<string, Float32Array>();
  for (const [name, p] of model.namedParameters()) grads.set(name, (await p.grad!.data()) as Float32Array);
  const buffers = new Map<string, Float32Array | Int32Array>();
  for (const [name, b] of model.namedBuffers()) buffers.set(name, await b.data());
  const out = { logits: (await logits.data()) as Float32Array, grads, buffers, peakBytes };
  for (const t of [logits, ...xs]) t.dispose();
  model.dispose();
  return out;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

async function expectSameStep(make: () => Module & { forward(...xs: Tensor[]): Tensor }, inputs: () => Tensor[]): Promise<StepResult[]> {
  const plain = await step(make, inputs, false);
  const ckpt = await step(make, inputs, true);
  expect(maxDiff(ckpt.logits, plain.logits)).toBeLessThanOrEqual(1e-6);
  expect([...ckpt.grads.keys()]).toEqual([...plain.grads.keys()]);
  for (const [name, g] of plain.grads) expect(maxDiff(ckpt.grads.get(name)!, g), name).toBeLessThanOrEqual(1e-6);
  for (const [name, b] of plain.buffers) expect(maxDiff(ckpt.buffers.get(name)!, b), name).toBe(0);
  return [plain, ckpt];
}

const ids = (): Tensor[] => [A.tensor(Int32Array.from({ length: 2 * 12 }, (_, i) => (i * 7 + 3) % 50), { shape: [2, 12], dtype: 'int32' })];
const textConfig = { vocab_size: 50, max_position_embeddings: 16, hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1, num_labels: 3 };

describe('gradientCheckpointing', () => {
  it('BERT with dropout: same logits and gradients, lower peak', async () => {
    const make = () => new BertForSequenceClassification({ ...textConfig, hidden_size: 32, num_hidden_layers: 4, num_attention_heads: 2, intermediate_size: 64 });
    const [plain, ckpt] = await expectSameStep(make, ids);
    expect(ckpt!.peakBytes).toBeLessThan(plain!.peakBytes);
  });

  it('DistilBERT with dropout', async () => {
    await expectSameStep(() => new DistilBertForSequenceClassification({ ...textConfig, dim: 16, n_layers: 2, n_heads: 2, hidden_dim: 32, dropout: 0.1, attention_dropout: 0.1 }), ids);
  });

  it('ViT', async () => {
    await expectSameStep(() => new VisionTransformer({ imgSize: 16, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2, numClasses: 3 }), () => [A.randn([2, 3, 16, 16], { seed: 9 })]);
  });

  it('ResNet with BatchNorm in training: running statistics and batch counts updated once', async () => {
    const make = () => new ResNet({ layers: [2, 1, 1, 1], block: 'bottleneck', widths: [4, 4, 8, 8], numClasses: 3 });
    const [plain, ckpt] = await expectSameStep(make, () => [A.randn([2, 3, 32, 32], { seed: 9 })]);
    expect(plain!.buffers.get('layer1.0.bn1.num_batches_tracked')![0]).toBe(1);
    expect(ckpt!.peakBytes).toBeLessThan(plain!.peakBytes);
  });

  it('CIFAR ResNet (option-A shortcuts)', async () => {
    await expectSameStep(() => new CifarResNet({ depth: 8, widths: [4, 8, 8], numClasses: 3 }), () => [A.randn([2, 3, 16, 16], { seed: 9 })]);
  });

  it('refuses a model with no blocks to recompute, and switches off', () => {
    const m = new MobileNetV2({ numClasses: 2, widthMult: 0.25 });
    expect(() => m.gradientCheckpointing()).toThrow(/gradientCheckpointing: MobileNetV2 has no stack of blocks that can be recomputed/);
    expect(() => m.gradientCheckpointing(false)).not.toThrow();
    m.dispose();
    const r = new ResNet({ layers: [1, 1, 1, 1], block: 'basic', widths: [4, 4, 4, 4], numClasses: 2 }).gradientCheckpointing();
    expect(isGradientCheckpointing(r)).toBe(true);
    expect(isGradientCheckpointing(r.gradientCheckpointing(false))).toBe(false);
    r.dispose();
  });
});
