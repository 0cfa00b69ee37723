/**
 * The key/value cache of a decoder's self-attention, as transformers' DynamicCache: per layer
 * the keys and values of every position seen so far ([B, H_kv, T, D]), and on the host which of
 * those positions are tokens (not left padding) and each row's next position id. The additive
 * mask of a step is built on the host from those flags, so decoding never reads the GPU back.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { MASK_MIN } from '../nn/attention.js';

/** What one forward step over t new tokens needs: their position ids and the attention mask. */
export interface CacheStep {
  /** Position id of each new token, row-major [B, t] (0 for padding). */
  positions: Int32Array;
  /** Additive mask [B, 1, t, past + t]: causal, and padded keys dropped. */
  mask: Tensor;
}

export class KeyValueCache {
  private keys: (Tensor | null)[];
  private values: (Tensor | null)[];
  /** Per row, 1 for a token and 0 for padding, for every cached position. */
  private kept: Uint8Array[];
  /** Per row, how many tokens (not padding) it has seen: the next position id. */
  private seen: Int32Array;

  constructor(readonly numLayers: number, readonly batch: number) {
    this.keys = new Array<Tensor | null>(numLayers).fill(null);
    this.values = new Array<Tensor | null>(numLayers).fill(null);
    this.kept = Array.from({ length: batch }, () => new Uint8Array(0));
    this.seen = new Int32Array(batch);
  }

  /** Positions cached so far. */
  get length(): number {
    return this.kept[0]?.length ?? 0;
  }

  /**
   * Registers t new tokens per row (mask row-major [B, t], default all tokens) and returns their
   * position ids and the step's attention mask. Call once per forward, before the layers.
   */
  step(t: number, mask?: ArrayLike<number> | null): CacheStep {
    const b = this.batch;
    if (mask && mask.length !== b * t) throw new RangeError(`cache step: mask has ${mask.length} values, expected ${b}·${t} = ${b * t}`);
    const past = this.length;
    const total = past + t;
    const positions = new Int32Array(b * t);
    const additive = new Float32Array(b * t * total);
    for (let r = 0; r < b; r++) {
      const kept = new Uint8Array(total);
      kept.set(this.kept[r]!);
      for (let i = 0; i < t; i++) {
        const on = mask ? mask[r * t + i] !== 0 : true;
        kept[past + i] = on ? 1 : 0;
        positions[r * t + i] = on ? this.seen[r]! : 0;
        if (on) this.seen[r]!++;
      }
      this.kept[r] = kept;
      for (let i = 0; i < t; i++) {
        const row = (r * t + i) * total;
        for (let j = 0; j < total; j++) if (j > past + i || kept[j] === 0) additive[row + j] = MASK_MIN;
      }
    }
    return { positions, mask: A.tensor(additive, { shape: [b, 1, t, total] }) };
  }

  /** Appends a layer's new keys and values [B, H_kv, t, D]; returns all of them [B, H_kv, past + t, D]. */
  update(layer: number, key: Tensor, value: Tensor): [Tensor, Tensor] {
    if (layer < 0 || layer >= this.numLayers) throw new RangeError(`cache: layer ${layer} out of range [0, ${this.numLayers})`);
    const oldK = this.keys[layer];
    const oldV = this.values[layer];
    // Kept: the cache outlives the tidy scope of the step that made it.
    const k = A.keep(oldK ? A.cat([oldK, key], 2) : key.contiguous());
    const v = A.keep(oldV ? A.cat([oldV, value], 2) : value.contiguous());
    oldK?.dispose();
    oldV?.dispose();
    this.keys[layer] = k;
    this.values[layer] = v;
    return [k, v];
  }

  /** A cache whose row i is row `indices[i]` of this one; this one is disposed. */
  reorder(indices: Int32Array): KeyValueCache {
    for (const i of indices) if (!(i >= 0 && i < this.batch)) throw new RangeError(`cache reorder: row ${i} out of range [0, ${this.batch})`);
    const out = new KeyValueCache(this.numLayers, indices.length);
    const idx = A.tensor(indices, { dtype: 'int32' });
    for (let l = 0; l < this.numLayers; l++) {
      out.keys[l] = this.keys[l] ? A.keep(A.indexSelect(this.keys[l]!, 0, idx)) : null;
      out.values[l] = this.values[l] ? A.keep(A.indexSelect(this.values[l]!, 0, idx)) : null;
    }
    idx.dispose();
    out.kept = Array.from(indices, (i) => this.kept[i]!.slice());
    out.seen = Int32Array.from(indices, (i) => this.seen[i]!);
    this.dispose();
    return out;
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t?.dispose();
    this.keys.fill(null);
    this.values.fill(null);
  }
}
