/** The fields of a Wav2Vec2 config.json (transformers' Wav2Vec2Config) that shape the network,
 * with transformers' defaults, which are facebook/wav2vec2-base's shape. */
import { hfActivation } from './text-common.js';

export interface Wav2Vec2Config {
  conv_dim?: number[];
  conv_stride?: number[];
  conv_kernel?: number[];
  conv_bias?: boolean;
  /** 'group' (base: one GroupNorm on the first conv) or 'layer' (large-lv60: a LayerNorm on every conv). */
  feat_extract_norm?: string;
  feat_extract_activation?: string;
  hidden_size?: number;
  num_hidden_layers?: number;
  num_attention_heads?: number;
  intermediate_size?: number;
  hidden_act?: string;
  hidden_dropout?: number;
  activation_dropout?: number;
  attention_dropout?: number;
  feat_proj_dropout?: number;
  final_dropout?: number;
  layerdrop?: number;
  layer_norm_eps?: number;
  initializer_range?: number;
  num_conv_pos_embeddings?: number;
  num_conv_pos_embedding_groups?: number;
  /** Pre-norm layers and a final LayerNorm (large-lv60) instead of base's post-norm layers. */
  do_stable_layer_norm?: boolean;
  apply_spec_augment?: boolean;
  mask_time_prob?: number;
  mask_time_length?: number;
  mask_time_min_masks?: number;
  /** SpecAugment over hidden channels: spans of mask_feature_length channels zeroed across all frames in training. */
  mask_feature_prob?: number;
  mask_feature_length?: number;
  mask_feature_min_masks?: number;
  classifier_proj_size?: number;
  use_weighted_layer_sum?: boolean;
  vocab_size?: number;
  num_labels?: number;
  id2label?: Record<string, string>;
  [key: string]: unknown;
}

export interface ResolvedWav2Vec2Config {
  convDim: number[];
  convStride: number[];
  convKernel: number[];
  convBias: boolean;
  featExtractNorm: 'group' | 'layer';
  featExtractActivation: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  hiddenAct: string;
  hiddenDropout: number;
  activationDropout: number;
  attentionDropout: number;
  featProjDropout: number;
  finalDropout: number;
  layerdrop: number;
  layerNormEps: number;
  initializerRange: number;
  numConvPosEmbeddings: number;
  numConvPosEmbeddingGroups: number;
  doStableLayerNorm: boolean;
  maskTimeProb: number;
  maskTimeLength: number;
  maskTimeMinMasks: number;
  maskFeatureProb: number;
  maskFeatureLength: number;
  maskFeatureMinMasks: number;
  classifierProjSize: number;
  vocabSize: number;
}

const positiveInts = (name: string, xs: number[]): number[] => {
  if (!Array.isArray(xs) || xs.length === 0 || xs.some((x) => !Number.isInteger(x) || x < 1)) {
    throw new RangeError(`${name} must be a non-empty list of positive integers, got ${JSON.stringify(xs)}`);
  }
  return xs;
};

export function resolveWav2Vec2Config(c: Wav2Vec2Config): ResolvedWav2Vec2Config {
  const d = Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined && v !== null)) as Wav2Vec2Config;
  const norm = d.feat_extract_norm ?? 'group';
  if (norm !== 'group' && norm !== 'layer') throw new RangeError(`feat_extract_norm must be "group" or "layer", got "${norm}"`);
  if (d.use_weighted_layer_sum) throw new RangeError('use_weighted_layer_sum is not supported (the heads read the last hidden state)');
  const r: ResolvedWav2Vec2Config = {
    convDim: positiveInts('conv_dim', d.conv_dim ?? [512, 512, 512, 512, 512, 512, 512]),
    convStride: positiveInts('conv_stride', d.conv_stride ?? [5, 2, 2, 2, 2, 2, 2]),
    convKernel: positiveInts('conv_kernel', d.conv_kernel ?? [10, 3, 3, 3, 3, 2, 2]),
    convBias: d.conv_bias ?? false,
    featExtractNorm: norm,
    featExtractActivation: d.feat_extract_activation ?? 'gelu',
    hiddenSize: d.hidden_size ?? 768,
    numLayers: d.num_hidden_layers ?? 12,
    numHeads: d.num_attention_heads ?? 12,
    intermediateSize: d.intermediate_size ?? 3072,
    hiddenAct: d.hidden_act ?? 'gelu',
    hiddenDropout: d.hidden_dropout ?? 0.1,
    activationDropout: d.activation_dropout ?? 0.1,
    attentionDropout: d.attention_dropout ?? 0.1,
    featProjDropout: d.feat_proj_dropout ?? 0,
    finalDropout: d.final_dropout ?? 0.1,
    layerdrop: d.layerdrop ?? 0.1,
    layerNormEps: d.layer_norm_eps ?? 1e-5,
    initializerRange: d.initializer_range ?? 0.02,
    numConvPosEmbeddings: d.num_conv_pos_embeddings ?? 128,
    numConvPosEmbeddingGroups: d.num_conv_pos_embedding_groups ?? 16,
    doStableLayerNorm: d.do_stable_layer_norm ?? false,
    maskTimeProb: d.apply_spec_augment === false ? 0 : (d.mask_time_prob ?? 0.05),
    maskTimeLength: d.mask_time_length ?? 10,
    maskTimeMinMasks: d.mask_time_min_masks ?? 2,
    maskFeatureProb: d.apply_spec_augment === false ? 0 : (d.mask_feature_prob ?? 0),
    maskFeatureLength: d.mask_feature_length ?? 10,
    maskFeatureMinMasks: d.mask_feature_min_masks ?? 0,
    classifierProjSize: d.classifier_proj_size ?? 256,
    vocabSize: d.vocab_size ?? 32,
  };
  if (r.convDim.length !== r.convStride.length || r.convDim.length !== r.convKernel.length) {
    throw new RangeError(`conv_dim (${r.convDim.length}), conv_stride (${r.convStride.length}) and conv_kernel (${r.convKernel.length}) must have the same length`);
  }
  if (r.hiddenSize % r.numHeads !== 0) throw new RangeError(`hidden_size (${r.hiddenSize}) must be divisible by num_attention_heads (${r.numHeads})`);
  if (r.hiddenSize % r.numConvPosEmbeddingGroups !== 0) {
    throw new RangeError(`hidden_size (${r.hiddenSize}) must be divisible by num_conv_pos_embedding_groups (${r.numConvPosEmbeddingGroups})`);
  }
  for (const [name, v] of [['mask_time_prob', r.maskTimeProb], ['mask_feature_prob', r.maskFeatureProb]] as const) {
    if (!(v >= 0 && v <= 1)) throw new RangeError(`${name} must be a probability in [0, 1], got ${v}`);
  }
  for (const [name, v] of [['mask_time_length', r.maskTimeLength], ['mask_feature_length', r.maskFeatureLength]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  }
  hfActivation(r.hiddenAct);
  hfActivation(r.featExtractActivation);
  return r;
}

/** Samples of the feature encoder's output for an input of `samples` (its conv arithmetic, no padding). */
export function featureFrames(config: ResolvedWav2Vec2Config, samples: number): number {
  let t = samples;
  config.convKernel.forEach((k, i) => (t = Math.floor((t - k) / config.convStride[i]!) + 1));
  return t;
}
