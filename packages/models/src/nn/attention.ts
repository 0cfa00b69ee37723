/**
 * Attention: the scaled dot-product core shared by the text architectures, the additive masks
 * they build from padding and causality, and torch.nn.MultiheadAttention with its key names
 * (`in_proj_weight` [3E, E], `in_proj_bias`, `out_proj.weight` / `out_proj.bias`).
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { Linear } from './layers.js';
import { Module } from './module.js';

/**
 * What masked scores get added: float32's lowest value (transformers' `finfo.min`). Finite, so a
 * row with every key masked gives uniform weights instead of NaN.
 */
export const MASK_MIN = -3.4028234663852886e38;

/** [B, T] attention mask (nonzero = token, 0 = padding; int32 or float32) -> additive [B, 1, 1, T]. */
export function paddingMask(attentionMask: Tensor): Tensor {
  if (attentionMask.rank !== 2) throw new RangeError(`attention mask must be [batch, seq], got shape [${attentionMask.shape.join(', ')}]`);
  const [b, t] = attentionMask.shape as [number, number];
  const m = attentionMask.reshape(b, 1, 1, t);
  const out = A.map([m, MASK_MIN], ([v, min]) => `select(${min}, 0.0, ${v} != 0.0)`, { label: 'paddingMask' });
  m.dispose();
  return out;
}

/**
 * Additive causal mask: [T, T] (query i sees keys j <= i), or [B, 1, T, T] when combined with a
 * [B, T] attention mask (padded keys masked too). One value per position, so masks never sum
 * to -inf.
 */
export function causalMask(t: number, attentionMask?: Tensor | null): Tensor {
  const rows = A.arange(t).reshape(t, 1);
  const cols = A.arange(t).reshape(1, t);
  let out: Tensor;
  if (attentionMask) {
    if (attentionMask.rank !== 2 || attentionMask.shape[1] !== t) {
      throw new RangeError(`attention mask must be [batch, ${t}], got shape [${attentionMask.shape.join(', ')}]`);
    }
    const m = attentionMask.reshape(attentionMask.shape[0]!, 1, 1, t);
    out = A.map([rows, cols, m, MASK_MIN], ([i, j, v, min]) => `select(${min}, 0.0, ${i} >= ${j} && ${v} != 0.0)`, { label: 'causalMask' });
    m.dispose();
  } else {
    out = A.map([rows, cols, MASK_MIN], ([i, j, min]) => `select(${min}, 0.0, ${i} >= ${j})`, { label: 'causalMask' });
  }
  rows.dispose();
  cols.dispose();
  return out;
}

/** scores * scale + mask in one pass (and one pass back); the mask broadcasts to the scores. */
function scaleAndMask(scores: Tensor, scale: number, mask: Tensor | null): Tensor {
  if (mask) {
    const shape = A.broadcastShapes(scores.shape, mask.shape);
    if (shape.length !== scores.rank || shape.some((d, i) => d !== scores.shape[i])) {
      throw new RangeError(`attention mask of shape [${mask.shape.join(', ')}] does not broadcast to the scores [${scores.shape.join(', ')}]`);
    }
  }
  const y = mask
    ? A.map([scores, scale, mask], ([x, s, m]) => `${x} * ${s} + ${m}`, { label: 'scaleAndMask' })
    : A.map([scores, scale], ([x, s]) => `${x} * ${s}`, { label: 'scale' });
  return A.record('scaleAndMask', y, [scores, mask], (g, _s, needs) => [
    needs[0] ? A.map([g, scale], ([u, s]) => `${u} * ${s}`, { label: 'scaleBackward' }) : null,
    needs[1] && mask ? A.sumToShape(A.detach(g), mask.shape) : null,
  ]);
}

export interface AttentionOptions {
  /** Additive mask broadcastable to the scores [..., Tq, Tk]: 0 keeps, MASK_MIN drops. */
  mask?: Tensor | null;
  /** Dropout on the attention probabilities (applied in training only). */
  dropout?: number;
  training?: boolean;
  /** Multiplies q·k; 1/sqrt(head dim) when omitted. */
  scale?: number;
}

/** softmax(q kᵀ · scale + mask) with dropout: q [..., Tq, D], k [..., Tk, D] -> [..., Tq, Tk]. */
export function attentionProbabilities(q: Tensor, k: Tensor, opts: AttentionOptions = {}): Tensor {
  const d = q.shape[q.rank - 1]!;
  if (k.shape[k.rank - 1] !== d) throw new RangeError(`attention: q has head dim ${d} but k has ${k.shape[k.rank - 1]}`);
  const scores = A.matmul(q, k.transpose(-1, -2));
  const p = A.softmax(scaleAndMask(scores, opts.scale ?? 1 / Math.sqrt(d), opts.mask ?? null), -1);
  return A.dropout(p, opts.dropout ?? 0, opts.training ?? false);
}

/** Scaled dot-product attention: q [..., Tq, D], k and v [..., Tk, D(v)] -> [..., Tq, D(v)]. */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  return A.matmul(attentionProbabilities(q, k, opts), v);
}

/** [B, T, H·D] -> [B, H, T, D] (a view). */
export function splitHeads(x: Tensor, heads: number): Tensor {
  const [b, t, e] = x.shape as [number, number, number];
  if (x.rank !== 3 || e % heads !== 0) throw new RangeError(`splitHeads: expected [batch, seq, ${heads}·headDim], got [${x.shape.join(', ')}]`);
  return x.reshape(b, t, heads, e / heads).permute(0, 2, 1, 3);
}

/** [B, H, T, D] -> [B, T, H·D]. */
export function mergeHeads(x: Tensor): Tensor {
  const [b, h, t, d] = x.shape as [number, number, number, number];
  return x.permute(0, 2, 1, 3).reshape(b, t, h * d);
}

export interface MultiheadAttentionOptions {
  /** Dropout on the attention weights. */
  dropout?: number;
  bias?: boolean;
  /** Inputs and output are [batch, seq, embed] (PyTorch's default is [seq, batch, embed]). */
  batchFirst?: boolean;
}

export interface MultiheadAttentionForwardOptions {
  /** [B, S]: int32 nonzero = ignore that key (PyTorch's bool mask); float32 is added. */
  keyPaddingMask?: Tensor | null;
  /** [L, S] or [B·H, L, S]: int32 nonzero = not allowed (PyTorch's bool mask); float32 is added. */
  attnMask?: Tensor | null;
  /** Also return the attention weights (default true, as PyTorch). */
  needWeights?: boolean;
  /** Average the returned weights over heads ([B, L, S]); else [B, H, L, S]. */
  averageAttnWeights?: boolean;
}

/** An int32 (boolean) mask -> additive float; a float32 mask is already additive. */
function additive(mask: Tensor): Tensor {
  if (mask.dtype === 'float32') return mask;
  return A.map([mask, MASK_MIN], ([v, min]) => `select(0.0, ${min}, ${v} != 0.0)`, { label: 'boolMask' });
}

/** torch.nn.MultiheadAttention (embedding dims of query, key and value all equal). */
export class MultiheadAttention extends Module {
  readonly inProjWeight: Tensor;
  readonly inProjBias: Tensor | null;
  readonly outProj: Linear;
  readonly headDim: number;
  readonly dropout: number;
  readonly batchFirst: boolean;

  constructor(readonly embedDim: number, readonly numHeads: number, opts: MultiheadAttentionOptions = {}) {
    super();
    if (embedDim % numHeads !== 0) throw new RangeError(`MultiheadAttention: embedDim (${embedDim}) must be divisible by numHeads (${numHeads})`);
    this.headDim = embedDim / numHeads;
    this.dropout = opts.dropout ?? 0;
    this.batchFirst = opts.batchFirst ?? false;
    const bias = opts.bias ?? true;
    // PyTorch's _reset_parameters: Xavier-uniform projections, zero biases.
    const bound = Math.sqrt(6 / (embedDim + 3 * embedDim));
    this.inProjWeight = this.param('in_proj_weight', A.rand([3 * embedDim, embedDim], { low: -bound, high: bound }));
    this.inProjBias = bias ? this.param('in_proj_bias', A.zeros([3 * embedDim])) : null;
    this.outProj = this.module('out_proj', new Linear(embedDim, embedDim, { bias }));
    if (this.outProj.bias) A.noGrad(() => A.assign(this.outProj.bias!, 0));
  }

  /**
   * query [L, B, E] and key, value [S, B, E] ([B, ·, E] with batchFirst) -> [output, weights]:
   * the output as the query, the weights [B, L, S] (per head [B, H, L, S]) or null.
   */
  forward(query: Tensor, key: Tensor, value: Tensor, opts: MultiheadAttentionForwardOptions = {}): [Tensor, Tensor | null] {
    const e = this.embedDim;
    for (const [name, t] of [['query', query], ['key', key], ['value', value]] as const) {
      if (t.rank !== 3 || t.shape[2] !== e) throw new RangeError(`MultiheadAttention: ${name} must be 3-D with ${e} features, got [${t.shape.join(', ')}]`);
    }
    const bf = (t: Tensor): Tensor => (this.batchFirst ? t : t.transpose(0, 1));
    const [q, k, v] = [bf(query), bf(key), bf(value)];
    const [b, l] = q.shape as [number, number];
    const s = k.shape[1]!;
    const w = this.inProjWeight;
    const bias = this.inProjBias;
    let qp: Tensor;
    let kp: Tensor;
    let vp: Tensor;
    if (query === key && key === value) {
      // Self-attention: one projection of width 3E, split by views.
      const qkv = A.linear(q, w, bias);
      [qp, kp, vp] = [0, 1, 2].map((i) => qkv.slice(2, i * e, (i + 1) * e)) as [Tensor, Tensor, Tensor];
    } else {
      const proj = (x: Tensor, i: number): Tensor => A.linear(x, w.slice(0, i * e, (i + 1) * e), bias ? bias.slice(0, i * e, (i + 1) * e) : null);
      [qp, kp, vp] = [proj(q, 0), proj(k, 1), proj(v, 2)];
    }
    const h = this.numHeads;
    let mask: Tensor | null = null;
    if (opts.attnMask) {
      const m = opts.attnMask;
      const ok = m.rank === 2 ? m.shape[0] === l && m.shape[1] === s : m.rank === 3 && m.shape[0] === b * h && m.shape[1] === l && m.shape[2] === s;
      if (!ok) throw new RangeError(`MultiheadAttention: attnMask must be [${l}, ${s}] or [${b * h}, ${l}, ${s}], got [${m.shape.join(', ')}]`);
      mask = additive(m.rank === 2 ? m : m.reshape(b, h, l, s));
    }
    if (opts.keyPaddingMask) {
      const m = opts.keyPaddingMask;
      if (m.rank !== 2 || m.shape[0] !== b || m.shape[1] !== s) throw new RangeError(`MultiheadAttention: keyPaddingMask must be [${b}, ${s}], got [${m.shape.join(', ')}]`);
      const kpm = additive(m.reshape(b, 1, 1, s));
      mask = mask ? A.add(mask, kpm) : kpm;
    }
    const probs = attentionProbabilities(splitHeads(qp, h), splitHeads(kp, h), { mask, dropout: this.dropout, training: this.training });
    const out = this.outProj.forward(mergeHeads(A.matmul(probs, splitHeads(vp, h))));
    let weights: Tensor | null = null;
    if (opts.needWeights ?? true) weights = (opts.averageAttnWeights ?? true) ? A.mean(probs, 1) : probs;
    return [this.batchFirst ? out : out.transpose(0, 1), weights];
  }
}
