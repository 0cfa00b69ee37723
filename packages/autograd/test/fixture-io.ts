/** Reading the PyTorch fixtures under ../fixtures: the file, a tensor on the GPU, the float64 expectation. */
import { readFileSync } from 'node:fs';
import * as A from '../src/index.js';
import type { HostTensor, Tensor } from '../src/index.js';
import { parseSafetensors, type SafetensorsFile } from '../../models/src/index.js';

export const loadFixture = (name: string): SafetensorsFile => parseSafetensors(readFileSync(new URL(`../fixtures/${name}.safetensors`, import.meta.url)));

export const gpu = (f: SafetensorsFile, key: string, grad = false): Tensor => {
  const h = f.get(key);
  const t = A.tensor(h.data, { shape: h.shape, dtype: h.dtype });
  t.requiresGrad = grad;
  return t;
};

export const want = (f: SafetensorsFile, key: string): HostTensor => ({ shape: [...f.get(key).shape], data: Float64Array.from(f.get(key).data) });
