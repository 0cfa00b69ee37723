/**
 * The real CIFAR-10 ResNets of ../shared/data against PyTorch: logits on 50 JPEGs (fixture
 * from fixtures/make_cifar_fixtures.py) and accuracy on all 2,000 test JPEGs.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { CifarResNet, loadSafetensors, parseSafetensors } from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';

const DATA = new URL('../../../../shared/data/', import.meta.url).pathname;
const CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

beforeAll(setup);

async function loadImages(files: string[]): Promise<Float32Array> {
  const out = new Float32Array(files.length * 3 * 32 * 32);
  await Promise.all(files.map(async (f, n) => {
    const { data, info } = await sharp(join(DATA, 'cifar10-test', f)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    if (info.width !== 32 || info.height !== 32 || info.channels !== 3) throw new Error(`${f}: ${info.width}x${info.height}x${info.channels}`);
    for (let i = 0; i < 1024; i++) {
      for (let c = 0; c < 3; c++) out[n * 3072 + c * 1024 + i] = (data[i * 3 + c]! / 255 - MEAN[c]!) / STD[c]!;
    }
  }));
  return out;
}

async function model(depth: 20 | 56): Promise<CifarResNet> {
  const m = new CifarResNet({ depth });
  const { tensors } = await loadSafetensors(join(DATA, 'pretrained', `cifar10-resnet${depth}.safetensors`));
  m.loadStateDict(tensors, { strict: true });
  return m.eval();
}

describe('pretrained CIFAR-10 ResNets reproduce PyTorch', () => {
  const fixture = parseSafetensors(readFileSync(new URL('../fixtures/cifar_resnet_logits.safetensors', import.meta.url)));
  const files = JSON.parse(fixture.metadata.files!) as string[];

  for (const depth of [20, 56] as const) {
    it(`ResNet-${depth}: logits on 50 JPEGs within 1e-3 of PyTorch, accuracy on 2,000`, async () => {
      const m = await model(depth);
      const x = A.tensor(await loadImages(files), { shape: [files.length, 3, 32, 32] });
      const logits = A.noGrad(() => m.forward(x));
      const got = await logits.data();
      const want = fixture.get(`logits${depth}`).data;
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
      expect(worst).toBeLessThan(1e-3);

      const all = CLASSES.flatMap((c) => readdirSync(join(DATA, 'cifar10-test', c)).filter((f) => f.endsWith('.jpg')).sort().map((f) => `${c}/${f}`));
      expect(all.length).toBe(2000);
      let correct = 0;
      for (let start = 0; start < all.length; start += 250) {
        const batch = all.slice(start, start + 250);
        const input = A.tensor(await loadImages(batch), { shape: [batch.length, 3, 32, 32] });
        const idx = A.tidy(() => A.argmax(A.noGrad(() => m.forward(input)), 1));
        const p = await idx.data();
        batch.forEach((f, i) => (correct += CLASSES[p[i]!] === f.split('/')[0] ? 1 : 0));
        idx.dispose();
        input.dispose();
      }
      const expected = depth === 20 ? 1627 : 1663;
      console.log(`ResNet-${depth}: ${correct}/2000 correct (PyTorch: ${expected}); max |logit diff| ${worst.toExponential(2)}`);
      expect(Math.abs(correct - expected)).toBeLessThanOrEqual(3);
      m.dispose();
    }, 900_000);
  }
});
