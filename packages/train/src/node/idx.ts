/** IDX files from disk (gzipped or not), as an image data set. */
import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { imageArraysDataset, type ImageArraysOptions } from '../data/arrays.js';
import type { TensorDataset } from '../data/dataset.js';
import { parseIdx, type IdxArray } from '../data/idx.js';

export async function readIdx(path: string): Promise<IdxArray> {
  let bytes: Uint8Array = await readFile(path);
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
  return parseIdx(bytes, path);
}

export async function idxDataset(imagesPath: string, labelsPath: string, opts: ImageArraysOptions = {}): Promise<TensorDataset> {
  const [imgs, labs] = await Promise.all([readIdx(imagesPath), readIdx(labelsPath)]);
  if (imgs.shape[0] !== labs.shape[0]) throw new Error(`${imagesPath} has ${imgs.shape[0]} images but ${labelsPath} ${labs.shape[0]} labels`);
  if (!(imgs.data instanceof Uint8Array)) throw new Error(`${imagesPath}: expected unsigned-byte images`);
  return imageArraysDataset(imgs.data, imgs.shape, labs.data, { ...opts, fingerprint: opts.fingerprint ?? `idx:${imagesPath}` });
}
