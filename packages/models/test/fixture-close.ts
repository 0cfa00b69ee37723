/** GPU tensors against PyTorch's arrays from the fixture files, shared by the models tests. */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import type { HostArray } from '../src/index.js';
import { expectClose } from '../../tensor/test/helpers.js';

export const gpu = (h: HostArray): Tensor => A.tensor(h.data, { shape: h.shape, dtype: h.dtype });

/**
 * Within `rtol` relative to the fixture's scale: elements near zero are held to `rtol` of its
 * largest, plus `floor` for tensors whose exact values are zero (both sides hold rounding noise
 * there). The failure names `what`.
 */
export async function closeToFixture(got: Tensor, h: HostArray, what: string, floor = 0, rtol = 1e-4): Promise<void> {
  let max = 0;
  for (const v of h.data) max = Math.max(max, Math.abs(v));
  try {
    await expectClose(got, { shape: h.shape, data: Float64Array.from(h.data) }, rtol, rtol * max + floor);
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`);
  }
}
