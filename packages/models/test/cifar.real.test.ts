/**
 * `pnpm test:real`: the real CIFAR-10 ResNets on all 2,000 test JPEGs of ../shared/data (200
 * per class), against PyTorch's counts on the same files (make_cifar_fixtures.py --count
 * ../shared/data/cifar10-test; ../shared/data/README.md reports the same).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { setup } from '../../tensor/test/helpers.js';
import { sharedData } from '../../../test-data.js';
import { countCorrect, pretrainedCifar } from './cifar-accuracy.js';

const IMAGES = sharedData('cifar10-test');
const PYTORCH_CORRECT = { 20: 1627, 56: 1663 };

beforeAll(setup);

describe('pretrained CIFAR-10 ResNets on the 2,000 test JPEGs', () => {
  for (const depth of [20, 56] as const) {
    it(`ResNet-${depth} classifies as many as PyTorch, to within 3 images`, async () => {
      const m = await pretrainedCifar(depth);
      const { correct, total } = await countCorrect(m, IMAGES);
      expect(total).toBe(2000);
      console.log(`ResNet-${depth}: ${correct}/${total} correct (PyTorch: ${PYTORCH_CORRECT[depth]})`);
      expect(Math.abs(correct - PYTORCH_CORRECT[depth])).toBeLessThanOrEqual(3);
      m.dispose();
    }, 900_000);
  }
});
