import { afterAll, beforeAll, expect } from 'vitest';
import { engine, host, init, Rng, roundHalf, tensor, type HostTensor, type Tensor } from '../src/node.js';

export async function setup(): Promise<void> {
  await init();
}

/** A small seeded generator for test inputs (mulberry32). */
/** Sets up the device with its storage binding limit lowered to `bytes` for the file's tests
 * (the paths that split tensors over the limit, on small shapes), and restores it after. */
export function withBindingLimit(bytes: number): void {
  beforeAll(async () => {
    await setup();
    engine().setBindingLimit(bytes);
  });
  afterAll(() => engine().setBindingLimit(null));
}

export function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

/** Uniform values in [lo, hi), rounded to float32 so the reference sees the kernel's inputs. */
export function randHost(shape: number[], seed: number, lo = -1, hi = 1): HostTensor {
  const r = rng(seed);
  const h = host(shape);
  for (let i = 0; i < h.data.length; i++) h.data[i] = Math.fround(lo + (hi - lo) * r());
  return h;
}

export function toGpu(h: HostTensor, dtype: 'float32' | 'int32' = 'float32'): Tensor {
  return tensor(dtype === 'int32' ? Int32Array.from(h.data) : Float32Array.from(h.data), { shape: h.shape, dtype });
}

/** The host tensor rounded to binary16, as a float16 tensor holds it. */
export function halfHost(h: HostTensor): HostTensor {
  return host(h.shape, [...h.data].map(roundHalf));
}

/** A float16 tensor of the host values (rounded to nearest even on upload). */
export function toHalf(h: HostTensor): Tensor {
  return tensor(Float32Array.from(h.data), { shape: h.shape, dtype: 'float16' });
}

/** Asserts |got - want| <= atol + rtol * |want| elementwise, reporting the worst element. */
export async function expectClose(got: Tensor, want: HostTensor, rtol = 1e-5, atol = 1e-6): Promise<void> {
  expect([...got.shape]).toEqual(want.shape);
  const g = await got.data();
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < want.data.length; i++) {
    const w = want.data[i]!;
    const v = g[i]!;
    if (Number.isNaN(w) && Number.isNaN(v)) continue;
    if (w === v) continue;
    const excess = Math.abs(v - w) - (atol + rtol * Math.abs(w));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    expect.fail(`element ${worst} of [${want.shape}]: got ${g[worst]}, want ${want.data[worst]} (rtol ${rtol}, atol ${atol})`);
  }
}

/** The host tensor permuted as `t.permute(dims)` would view it, materialised. */
export function permuteHost(h: HostTensor, dims: number[]): HostTensor {
  const shape = dims.map((d) => h.shape[d]!);
  const out = host(shape);
  const inStrides = h.shape.map((_, d) => h.shape.slice(d + 1).reduce((a, b) => a * b, 1));
  for (let i = 0; i < out.data.length; i++) {
    let r = i;
    let off = 0;
    for (let k = shape.length - 1; k >= 0; k--) {
      off += (r % shape[k]!) * inStrides[dims[k]!]!;
      r = Math.floor(r / shape[k]!);
    }
    out.data[i] = h.data[off]!;
  }
  return out;
}
