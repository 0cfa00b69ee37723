/**
 * The real CIFAR-10 ResNets on an image folder of CIFAR-10 test JPEGs, preprocessed as
 * PyTorch does in fixtures/make_cifar_fixtures.py: shared by test/cifar.test.ts (data/) and
 * test/cifar.real.test.ts (../shared/data).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import * as A from '@tl/autograd';
import { CifarResNet, loadSafetensors } from '../src/node.js';
import { repoData } from '../../../test-data.js';

export const CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

/** `files` (`<class>/NNNN.jpg` under `folder`) as one normalised NCHW batch. */
export async function loadImages(folder: string, files: string[]): Promise<Float32Array> {
  const out = new Float32Array(files.length * 3 * 32 * 32);
  await Promise.all(files.map(async (f, n) => {
    const { data, info } = await sharp(join(folder, f)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    if (info.width !== 32 || info.height !== 32 || info.channels !== 3) throw new Error(`${f}: ${info.width}x${info.height}x${info.channels}, expected 32x32x3`);
    for (let i = 0; i < 1024; i++) {
      for (let c = 0; c < 3; c++) out[n * 3072 + c * 1024 + i] = (data[i * 3 + c]! / 255 - MEAN[c]!) / STD[c]!;
    }
  }));
  return out;
}

/** The pretrained network of data/pretrained, strictly loaded, in eval mode. */
export async function pretrainedCifar(depth: 20 | 56): Promise<CifarResNet> {
  const m = new CifarResNet({ depth });
  const { tensors } = await loadSafetensors(repoData(`pretrained/cifar10-resnet${depth}.safetensors`));
  m.loadStateDict(tensors, { strict: true });
  return m.eval();
}

/** How many JPEGs of the folder the network puts in their own class, and how many there are. */
export async function countCorrect(m: CifarResNet, folder: string): Promise<{ correct: number; total: number }> {
  const all = CLASSES.flatMap((c) => readdirSync(join(folder, c)).filter((f) => f.endsWith('.jpg')).sort().map((f) => `${c}/${f}`));
  let correct = 0;
  for (let start = 0; start < all.length; start += 250) {
    const batch = all.slice(start, start + 250);
    const input = A.tensor(await loadImages(folder, batch), { shape: [batch.length, 3, 32, 32] });
    const idx = A.tidy(() => A.argmax(A.noGrad(() => m.forward(input)), 1));
    const p = await idx.data();
    batch.forEach((f, i) => (correct += CLASSES[p[i]!] === f.split('/')[0] ? 1 : 0));
    idx.dispose();
    input.dispose();
  }
  return { correct, total: all.length };
}
