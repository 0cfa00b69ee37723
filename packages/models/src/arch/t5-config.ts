/** T5's config.json (t5-small and the v1.1 / flan variants) with transformers' defaults. */
import { hfActivation } from './text-common.js';

/** The fields of a T5 config.json that shape the network; others are ignored. */
export interface T5Config {
  vocab_size?: number;
  d_model?: number;
  d_kv?: number;
  d_ff?: number;
  num_layers?: number;
  num_decoder_layers?: number | null;
  num_heads?: number;
  relative_attention_num_buckets?: number;
  relative_attention_max_distance?: number;
  dropout_rate?: number;
  layer_norm_epsilon?: number;
  initializer_factor?: number;
  feed_forward_proj?: string;
  tie_word_embeddings?: boolean;
  pad_token_id?: number;
  eos_token_id?: number;
  decoder_start_token_id?: number | null;
  classifier_dropout?: number;
  num_labels?: number;
  id2label?: Record<string, string>;
  [key: string]: unknown;
}

export interface ResolvedT5Config {
  vocabSize: number;
  dModel: number;
  dKv: number;
  dFf: number;
  numLayers: number;
  numDecoderLayers: number;
  numHeads: number;
  numBuckets: number;
  maxDistance: number;
  dropoutRate: number;
  layerNormEps: number;
  initializerFactor: number;
  /** The activation of the feed-forward block (transformers' dense_act_fn). */
  denseAct: string;
  /** v1.1 / flan: act(wi_0 x) · wi_1 x instead of act(wi x). */
  gated: boolean;
  tieWordEmbeddings: boolean;
  padTokenId: number;
  eosTokenId: number;
  decoderStartTokenId: number;
  classifierDropout: number;
}

function positiveInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`T5 config: ${name} must be a positive integer, got ${v}`);
  return v;
}

/** transformers' T5Config defaults (t5-small's shape) under the given config. */
export function resolveT5Config(c: T5Config): ResolvedT5Config {
  const proj = c.feed_forward_proj ?? 'relu';
  const parts = proj.split('-');
  if (parts.length > 2 || (parts.length === 2 && parts[0] !== 'gated')) {
    throw new RangeError(`feed_forward_proj "${proj}" is not "{ACT}" or "gated-{ACT}" (e.g. "relu", "gated-gelu")`);
  }
  // transformers reads "gated-gelu" as the tanh approximation, for the v1.1 checkpoints.
  const denseAct = proj === 'gated-gelu' ? 'gelu_new' : parts[parts.length - 1]!;
  hfActivation(denseAct);
  const numLayers = positiveInt(c.num_layers ?? 6, 'num_layers');
  const pad = c.pad_token_id ?? 0;
  const r: ResolvedT5Config = {
    vocabSize: positiveInt(c.vocab_size ?? 32128, 'vocab_size'),
    dModel: positiveInt(c.d_model ?? 512, 'd_model'),
    dKv: positiveInt(c.d_kv ?? 64, 'd_kv'),
    dFf: positiveInt(c.d_ff ?? 2048, 'd_ff'),
    numLayers,
    numDecoderLayers: c.num_decoder_layers ?? numLayers,
    numHeads: positiveInt(c.num_heads ?? 8, 'num_heads'),
    numBuckets: positiveInt(c.relative_attention_num_buckets ?? 32, 'relative_attention_num_buckets'),
    maxDistance: positiveInt(c.relative_attention_max_distance ?? 128, 'relative_attention_max_distance'),
    dropoutRate: c.dropout_rate ?? 0.1,
    layerNormEps: c.layer_norm_epsilon ?? 1e-6,
    initializerFactor: c.initializer_factor ?? 1,
    denseAct,
    gated: parts.length === 2,
    tieWordEmbeddings: c.tie_word_embeddings ?? true,
    padTokenId: pad,
    eosTokenId: c.eos_token_id ?? 1,
    decoderStartTokenId: c.decoder_start_token_id ?? pad,
    classifierDropout: c.classifier_dropout ?? 0,
  };
  if (!Number.isInteger(r.numDecoderLayers) || r.numDecoderLayers < 0) throw new RangeError(`T5 config: num_decoder_layers must be a non-negative integer, got ${r.numDecoderLayers}`);
  if (r.numBuckets < 4) throw new RangeError(`T5 config: relative_attention_num_buckets must be at least 4 (half of them exact, in both directions), got ${r.numBuckets}`);
  return r;
}

/**
 * transformers' _relative_position_bucket: the bucket of key position minus query position.
 * Half the buckets (per direction when bidirectional) hold exact offsets; the rest grow
 * logarithmically up to maxDistance. The logarithm is rounded as PyTorch computes it in
 * float32, so a bucket boundary falls where it does there.
 */
export function relativePositionBucket(relative: number, bidirectional: boolean, numBuckets: number, maxDistance: number): number {
  let buckets = numBuckets;
  let out = 0;
  let n: number;
  if (bidirectional) {
    buckets = Math.floor(buckets / 2);
    if (relative > 0) out += buckets;
    n = Math.abs(relative);
  } else {
    n = -Math.min(relative, 0);
  }
  const maxExact = Math.floor(buckets / 2);
  if (n < maxExact) return out + n;
  const f = Math.fround;
  const ratio = f(f(Math.log(f(n / maxExact))) / f(Math.log(maxDistance / maxExact)));
  const large = maxExact + Math.trunc(f(ratio * (buckets - maxExact)));
  return out + Math.min(large, buckets - 1);
}

/** Buckets [q, k] (row-major) of query positions `queryStart..queryStart+q-1` against keys 0..k-1. */
export function relativeBuckets(queryStart: number, q: number, k: number, bidirectional: boolean, numBuckets: number, maxDistance: number): Int32Array {
  const out = new Int32Array(q * k);
  for (let i = 0; i < q; i++) for (let j = 0; j < k; j++) out[i * k + j] = relativePositionBucket(j - (queryStart + i), bidirectional, numBuckets, maxDistance);
  return out;
}
