/** The benchmarked kernels, their inputs (canonical layout: row-major, NCHW) and FLOP counts. */
import { Rng } from '@tl/tensor';

export type Family = 'matmul' | 'conv' | 'softmax';

/** a [m, k] by b [k, n]. */
export interface MatmulCase {
  kernel: 'matmul';
  m: number;
  k: number;
  n: number;
}

/** x [m, k] by a weight [n, k] in PyTorch's [out, in] layout, read transposed (x · wᵀ), as
 * every Linear layer runs. */
export interface LinearCase {
  kernel: 'linear';
  m: number;
  k: number;
  n: number;
}

export interface ConvCase {
  kernel: 'conv2d' | 'depthwise';
  n: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  kh: number;
  kw: number;
  pad: number;
  groups: number;
}

export interface SoftmaxCase {
  kernel: 'softmax';
  rows: number;
  cols: number;
}

export type CaseSpec = MatmulCase | LinearCase | ConvCase | SoftmaxCase;

export interface Case {
  spec: CaseSpec;
  family: Family;
  /** Human-readable shape, also the JSON `shape` field. */
  shape: string;
  /** Floating-point operations of one call (multiply and add counted separately). */
  flops: number;
  /** Inputs in canonical layout: [a, b] for matmul, [x, w] for linear ([n, k]) and conv, [x] for softmax. */
  inputs: Float32Array[];
  /** Shape of the output in canonical layout. */
  outShape: number[];
}

/** Nominal operations per softmax element: max, subtract, exp, sum, scale. */
const SOFTMAX_FLOPS_PER_ELEMENT = 5;

export function caseSpecs(): CaseSpec[] {
  const conv = { n: 8, cin: 64, h: 56, w: 56, cout: 64, kh: 3, kw: 3, pad: 1 };
  return [
    { kernel: 'matmul', m: 256, k: 256, n: 256 },
    { kernel: 'matmul', m: 512, k: 512, n: 512 },
    { kernel: 'matmul', m: 1024, k: 1024, n: 1024 },
    { kernel: 'matmul', m: 4096, k: 1024, n: 1024 },
    // A classifier head at batch 2 (EfficientNet-B0's), and BERT-base's MLP on 128 tokens.
    { kernel: 'linear', m: 2, k: 1280, n: 1000 },
    { kernel: 'linear', m: 128, k: 768, n: 3072 },
    { kernel: 'conv2d', ...conv, groups: 1 },
    // MobileNetV2's expansion at 56 px: the pointwise kernel.
    { kernel: 'conv2d', n: 8, cin: 24, h: 56, w: 56, cout: 144, kh: 1, kw: 1, pad: 0, groups: 1 },
    { kernel: 'depthwise', ...conv, groups: 64 },
    { kernel: 'softmax', rows: 4096, cols: 1000 },
  ];
}

export function familyOf(spec: CaseSpec): Family {
  return spec.kernel === 'matmul' || spec.kernel === 'linear' ? 'matmul' : spec.kernel === 'softmax' ? 'softmax' : 'conv';
}

/** Deterministic uniform values in [-1, 1) (mulberry32), so every run sees the same data. */
export function uniform(length: number, seed: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length }, () => r.next() * 2 - 1);
}

export function buildCase(spec: CaseSpec, seed: number): Case {
  switch (spec.kernel) {
    case 'matmul':
    case 'linear': {
      const { m, k, n } = spec;
      return {
        spec,
        family: 'matmul',
        shape: m === k && k === n ? `${m}x${m}x${m}` : `M${m} K${k} N${n}`,
        flops: 2 * m * k * n,
        inputs: [uniform(m * k, seed), uniform(k * n, seed + 1)],
        outShape: [m, n],
      };
    }
    case 'conv2d':
    case 'depthwise': {
      const { n, cin, h, w, cout, kh, kw, pad, groups } = spec;
      const oh = h + 2 * pad - kh + 1;
      const ow = w + 2 * pad - kw + 1;
      // Scaled like a He-initialised layer so outputs stay O(1).
      const wScale = Math.sqrt(3 / ((cin / groups) * kh * kw));
      const weights = uniform(cout * (cin / groups) * kh * kw, seed + 1).map((v) => v * wScale);
      return {
        spec,
        family: 'conv',
        shape: `${n}x${cin}x${h}x${w} -> ${cout}, ${kh}x${kw} pad ${pad}${groups > 1 ? ` groups ${groups}` : ''}`,
        flops: 2 * n * cout * oh * ow * (cin / groups) * kh * kw,
        inputs: [uniform(n * cin * h * w, seed), weights],
        outShape: [n, cout, oh, ow],
      };
    }
    case 'softmax': {
      const { rows, cols } = spec;
      return {
        spec,
        family: 'softmax',
        shape: `${rows}x${cols}, last dim`,
        flops: SOFTMAX_FLOPS_PER_ELEMENT * rows * cols,
        // Logits spread like a classifier's, so exp() sees a realistic range.
        inputs: [uniform(rows * cols, seed).map((v) => v * 8)],
        outShape: [rows, cols],
      };
    }
  }
}
