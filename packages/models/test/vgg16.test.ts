/**
 * Full-size VGG-16: classifier.0's weight ([4096, 25088], 411 MB) is over the adapter's
 * storage binding limit (128 MiB on lavapipe and on many browser GPUs), so its linear runs
 * in chunks of bound ranges.
 */
import { expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { setup } from '../../tensor/test/helpers.js';
import { VGG, VGG_LAYOUTS } from '../src/index.js';

it('full-size VGG-16 runs a forward on a 1x3x224x224 image', async () => {
  await setup();
  const model = new VGG({ cfg: VGG_LAYOUTS.vgg16 }).eval();
  const weight = model.namedParameters().find(([k]) => k === 'classifier.0.weight')![1];
  expect(weight.size * 4).toBeGreaterThan(A.engine().bindingLimit);
  const x = A.rand([1, 3, 224, 224], { seed: 3 });
  const y = A.noGrad(() => model.forward(x));
  expect([...y.shape]).toEqual([1, 1000]);
  const v = await y.data();
  expect(v.every(Number.isFinite)).toBe(true);
  expect(v.some((z) => z !== 0)).toBe(true);
  for (const t of [x, y]) t.dispose();
  model.dispose();
  A.engine().pool.trim();
});
