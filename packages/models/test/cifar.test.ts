/**
 * The real CIFAR-10 ResNets of data/pretrained against PyTorch: logits on 50 JPEGs (fixture
 * from fixtures/make_cifar_fixtures.py) and accuracy on the 500 test JPEGs of data/ (50 per
 * class). test/cifar.real.test.ts (`pnpm test:real`) checks all 2,000 of ../shared/data.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { parseSafetensors } from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';
import { repoData } from '../../../test-data.js';
import { countCorrect, loadImages, pretrainedCifar } from './cifar-accuracy.js';

const IMAGES = repoData('cifar10-test');
// PyTorch 1.13 on the same 500 JPEGs: make_cifar_fixtures.py --count data/cifar10-test.
const PYTORCH_CORRECT = { 20: 399, 56: 415 };

beforeAll(setup);

describe('pretrained CIFAR-10 ResNets reproduce PyTorch', () => {
  const fixture = parseSafetensors(readFileSync(new URL('../fixtures/cifar_resnet_logits.safetensors', import.meta.url)));
  const files = JSON.parse(fixture.metadata.files!) as string[];

  for (const depth of [20, 56] as const) {
    it(`ResNet-${depth}: logits on 50 JPEGs within 1e-3 of PyTorch, accuracy on 500`, async () => {
      const m = await pretrainedCifar(depth);
      const x = A.tensor(await loadImages(IMAGES, files), { shape: [files.length, 3, 32, 32] });
      const logits = A.noGrad(() => m.forward(x));
      const got = await logits.data();
      const want = fixture.get(`logits${depth}`).data;
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
      expect(worst).toBeLessThan(1e-3);

      const { correct, total } = await countCorrect(m, IMAGES);
      expect(total).toBe(500);
      console.log(`ResNet-${depth}: ${correct}/${total} correct (PyTorch: ${PYTORCH_CORRECT[depth]}); max |logit diff| ${worst.toExponential(2)}`);
      expect(Math.abs(correct - PYTORCH_CORRECT[depth])).toBeLessThanOrEqual(2);
      m.dispose();
    }, 600_000);
  }
});
