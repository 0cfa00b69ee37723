/**
 * Rotary position embeddings in transformers' convention (Llama, GPT-NeoX): frequencies
 * theta^(-2i/D) for the first half of the head dimension, repeated for the second half, and
 * rotate_half(x) = [-x₂, x₁]. The cos/sin tables are computed on the host in float64 from
 * integer positions, so cached decoding and a full forward see the same values.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';

/** cos and sin [..., D] for `positions` (shape `shape`, e.g. [T] or [B, 1, T]) and head dim D. */
export function rotaryTables(positions: ArrayLike<number>, shape: readonly number[], headDim: number, theta: number): { cos: Tensor; sin: Tensor } {
  if (headDim % 2 !== 0) throw new RangeError(`rotary embeddings need an even head dimension, got ${headDim}`);
  const half = headDim / 2;
  const n = positions.length;
  const cos = new Float32Array(n * headDim);
  const sin = new Float32Array(n * headDim);
  for (let p = 0; p < n; p++) {
    for (let i = 0; i < half; i++) {
      // As transformers: inv_freq in float32, then position · inv_freq in float32.
      const invFreq = Math.fround(1 / Math.pow(theta, (2 * i) / headDim));
      const angle = Math.fround(positions[p]! * invFreq);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[p * headDim + i] = c;
      cos[p * headDim + half + i] = c;
      sin[p * headDim + i] = s;
      sin[p * headDim + half + i] = s;
    }
  }
  const full = [...shape, headDim];
  return { cos: A.tensor(cos, { shape: full }), sin: A.tensor(sin, { shape: full }) };
}

/** x · cos + rotate_half(x) · sin, x [..., T, D] with cos/sin broadcasting to it. */
export function applyRotary(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const d = x.shape[x.rank - 1]!;
  const half = d / 2;
  const rotated = A.cat([A.neg(x.slice(-1, half, d)), x.slice(-1, 0, half)], -1);
  return A.add(A.mul(x, cos), A.mul(rotated, sin));
}
