/** The toy task and model the trainer tests share. */
import * as A from '@tl/autograd';
import { CifarResNet } from '@tl/models';
import { TensorDataset } from '../src/index.js';
import { rng } from '../../tensor/test/helpers.js';

/** Two classes of 8x8 single-channel images: a bright left half or a bright right half, noisy. */
export function toyData(n: number, seed: number): TensorDataset {
  const r = rng(seed);
  const inputs: Float32Array[] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = i % 2;
    const x = new Float32Array(64);
    for (let k = 0; k < 64; k++) x[k] = ((k % 8 < 4) === (c === 0) ? 1 : -1) * 0.5 + (r() - 0.5);
    inputs.push(x);
    labels.push(c);
  }
  return new TensorDataset(inputs, labels, [1, 8, 8], `toy${n}-${seed}`, ['left', 'right']);
}

export const model = (): CifarResNet => {
  A.manualSeed(1);
  return new CifarResNet({ depth: 8, inChannels: 1, numClasses: 2, widths: [4, 8, 8] });
};

