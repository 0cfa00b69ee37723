/**
 * wav2vec 2.0 (Baevski et al. 2020) with Hugging Face transformers' module names
 * (`wav2vec2.feature_extractor.conv_layers.{i}.{conv,layer_norm}`, `wav2vec2.feature_projection`,
 * `wav2vec2.encoder.pos_conv_embed.conv.{weight_g,weight_v}`, `wav2vec2.encoder.layers.{i}`,
 * `wav2vec2.masked_spec_embed`), built from a config.json object: the convolutional feature
 * encoder over the raw 16 kHz waveform, its projection, the convolutional positional embedding
 * and the transformer, post-norm as wav2vec2-base or pre-norm as large-lv60
 * (do_stable_layer_norm). Heads: Wav2Vec2ForSequenceClassification (mean-pooled projector, then
 * classifier) and Wav2Vec2ForCTC (lm_head over frames).
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { mergeHeads, scaledDotProductAttention, splitHeads } from '../nn/attention.js';
import { ClassifierModel } from '../nn/classifier.js';
import { Conv1d, WeightNormConv1d } from '../nn/conv1d.js';
import { GroupNorm } from '../nn/group-norm.js';
import { LayerNorm, Linear, ModuleList } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { hfActivation, numLabelsOf } from './text-common.js';
import { resolveWav2Vec2Config, type ResolvedWav2Vec2Config, type Wav2Vec2Config } from './wav2vec2-config.js';

/** One conv of the feature encoder: conv, then (group norm on the first layer of base, layer
 * norm over channels on every layer of large-lv60), then the activation. */
export class Wav2Vec2ConvLayer extends Module {
  readonly conv: Conv1d;
  readonly layerNorm: GroupNorm | LayerNorm | null;
  private readonly act: (x: Tensor) => Tensor;
  constructor(c: ResolvedWav2Vec2Config, i: number) {
    super();
    const inC = i === 0 ? 1 : c.convDim[i - 1]!;
    const outC = c.convDim[i]!;
    this.conv = this.module('conv', new Conv1d(inC, outC, c.convKernel[i]!, { stride: c.convStride[i]!, bias: c.convBias }));
    if (c.featExtractNorm === 'layer') this.layerNorm = this.module('layer_norm', new LayerNorm(outC));
    else this.layerNorm = i === 0 ? this.module('layer_norm', new GroupNorm(outC, outC)) : null;
    this.act = hfActivation(c.featExtractActivation);
  }
  /** [B, C, T] -> [B, C', T']. */
  forward(x: Tensor): Tensor {
    let y = this.conv.forward(x);
    if (this.layerNorm instanceof LayerNorm) y = this.layerNorm.forward(y.transpose(1, 2)).transpose(1, 2);
    else if (this.layerNorm) y = this.layerNorm.forward(y);
    return this.act(y);
  }
}

export class Wav2Vec2FeatureEncoder extends Module {
  readonly convLayers: ModuleList<Wav2Vec2ConvLayer>;
  constructor(c: ResolvedWav2Vec2Config) {
    super();
    this.convLayers = this.module('conv_layers', new ModuleList(c.convDim.map((_, i) => new Wav2Vec2ConvLayer(c, i))));
  }
  /** Waveforms [B, T] -> features [B, C, T']. */
  forward(waveform: Tensor): Tensor {
    let y = waveform.reshape(waveform.shape[0]!, 1, waveform.shape[1]!);
    for (const l of this.convLayers) y = l.forward(y);
    return y;
  }
}

export class Wav2Vec2FeatureProjection extends Module {
  readonly layerNorm: LayerNorm;
  readonly projection: Linear;
  constructor(readonly config: ResolvedWav2Vec2Config) {
    super();
    const inC = config.convDim.at(-1)!;
    this.layerNorm = this.module('layer_norm', new LayerNorm(inC, { eps: config.layerNormEps }));
    this.projection = this.module('projection', new Linear(inC, config.hiddenSize));
  }
  /** [B, T', C] -> [B, T', E]. */
  forward(features: Tensor): Tensor {
    return A.dropout(this.projection.forward(this.layerNorm.forward(features)), this.config.featProjDropout, this.training);
  }
}

/** A grouped conv over time, "same" length (an even kernel's extra last frame dropped), then GELU. */
export class Wav2Vec2PositionalConvEmbedding extends Module {
  readonly conv: WeightNormConv1d;
  constructor(c: ResolvedWav2Vec2Config) {
    super();
    const k = c.numConvPosEmbeddings;
    this.conv = this.module('conv', new WeightNormConv1d(c.hiddenSize, c.hiddenSize, k, 2, { padding: k >> 1, groups: c.numConvPosEmbeddingGroups }));
  }
  /** [B, T, E] -> [B, T, E]. */
  forward(hidden: Tensor): Tensor {
    const t = hidden.shape[1]!;
    const y = this.conv.forward(hidden.transpose(1, 2));
    return A.gelu(y.slice(2, 0, t)).transpose(1, 2);
  }
}

export class Wav2Vec2Attention extends Module {
  readonly qProj: Linear;
  readonly kProj: Linear;
  readonly vProj: Linear;
  readonly outProj: Linear;
  constructor(readonly config: ResolvedWav2Vec2Config) {
    super();
    const e = config.hiddenSize;
    this.qProj = this.module('q_proj', new Linear(e, e));
    this.kProj = this.module('k_proj', new Linear(e, e));
    this.vProj = this.module('v_proj', new Linear(e, e));
    this.outProj = this.module('out_proj', new Linear(e, e));
  }
  forward(x: Tensor): Tensor {
    const h = this.config.numHeads;
    const ctx = scaledDotProductAttention(splitHeads(this.qProj.forward(x), h), splitHeads(this.kProj.forward(x), h), splitHeads(this.vProj.forward(x), h), {
      dropout: this.config.attentionDropout,
      training: this.training,
    });
    return this.outProj.forward(mergeHeads(ctx));
  }
}

export class Wav2Vec2FeedForward extends Module {
  readonly intermediateDense: Linear;
  readonly outputDense: Linear;
  private readonly act: (x: Tensor) => Tensor;
  constructor(readonly config: ResolvedWav2Vec2Config) {
    super();
    this.intermediateDense = this.module('intermediate_dense', new Linear(config.hiddenSize, config.intermediateSize));
    this.outputDense = this.module('output_dense', new Linear(config.intermediateSize, config.hiddenSize));
    this.act = hfActivation(config.hiddenAct);
  }
  forward(x: Tensor): Tensor {
    const c = this.config;
    const mid = A.dropout(this.act(this.intermediateDense.forward(x)), c.activationDropout, this.training);
    return A.dropout(this.outputDense.forward(mid), c.hiddenDropout, this.training);
  }
}

/** A transformer layer: post-norm (base) or pre-norm (do_stable_layer_norm). */
export class Wav2Vec2EncoderLayer extends Module {
  readonly attention: Wav2Vec2Attention;
  readonly layerNorm: LayerNorm;
  readonly feedForward: Wav2Vec2FeedForward;
  readonly finalLayerNorm: LayerNorm;
  constructor(readonly config: ResolvedWav2Vec2Config) {
    super();
    const eps = config.layerNormEps;
    this.attention = this.module('attention', new Wav2Vec2Attention(config));
    this.layerNorm = this.module('layer_norm', new LayerNorm(config.hiddenSize, { eps }));
    this.feedForward = this.module('feed_forward', new Wav2Vec2FeedForward(config));
    this.finalLayerNorm = this.module('final_layer_norm', new LayerNorm(config.hiddenSize, { eps }));
  }
  forward(x: Tensor): Tensor {
    const p = this.config.hiddenDropout;
    if (this.config.doStableLayerNorm) {
      const a = A.add(x, A.dropout(this.attention.forward(this.layerNorm.forward(x)), p, this.training));
      return A.add(a, this.feedForward.forward(this.finalLayerNorm.forward(a)));
    }
    const a = this.layerNorm.forward(A.add(x, A.dropout(this.attention.forward(x), p, this.training)));
    return this.finalLayerNorm.forward(A.add(a, this.feedForward.forward(a)));
  }
}

export class Wav2Vec2Encoder extends Module {
  readonly posConvEmbed: Wav2Vec2PositionalConvEmbedding;
  readonly layerNorm: LayerNorm;
  readonly layers: ModuleList<Wav2Vec2EncoderLayer>;
  /** Draws LayerDrop's skips, seeded so a run repeats. */
  rng = new A.Rng(0);
  constructor(readonly config: ResolvedWav2Vec2Config) {
    super();
    this.posConvEmbed = this.module('pos_conv_embed', new Wav2Vec2PositionalConvEmbedding(config));
    this.layerNorm = this.module('layer_norm', new LayerNorm(config.hiddenSize, { eps: config.layerNormEps }));
    this.layers = this.module('layers', new ModuleList(Array.from({ length: config.numLayers }, () => new Wav2Vec2EncoderLayer(config))));
  }
  /** [B, T', E] -> the last hidden state [B, T', E]. */
  forward(hidden: Tensor): Tensor {
    const c = this.config;
    let h = A.add(hidden, this.posConvEmbed.forward(hidden));
    if (!c.doStableLayerNorm) h = this.layerNorm.forward(h);
    h = A.dropout(h, c.hiddenDropout, this.training);
    for (const l of this.layers) {
      // LayerDrop (Fan et al. 2019): in training each layer is skipped with probability layerdrop.
      if (this.training && c.layerdrop > 0 && this.rng.next() < c.layerdrop) continue;
      h = l.forward(h);
    }
    return c.doStableLayerNorm ? this.layerNorm.forward(h) : h;
  }
}

/**
 * transformers' `_compute_mask_indices` for one batch without padding: per sequence,
 * int(prob · T / length + u) spans (u ~ U(0, 1), at least `minMasks`) of `length` positions
 * whose starts are drawn without replacement. [B, T] of 0/1. `axis` says whether the positions
 * are frames (mask_time_*) or hidden channels (mask_feature_*), for the error.
 */
export function specAugmentMask(rng: A.Rng, batch: number, frames: number, prob: number, length: number, minMasks: number, axis: 'time' | 'feature' = 'time'): Float32Array {
  if (length > frames) {
    throw new RangeError(axis === 'time'
      ? `SpecAugment: mask_time_length (${length}) exceeds the ${frames} frames of the input; use a longer clip or a smaller mask_time_length`
      : `SpecAugment: mask_feature_length (${length}) exceeds the ${frames} hidden channels; use a smaller mask_feature_length`);
  }
  const mask = new Float32Array(batch * frames);
  const starts = frames - (length - 1);
  for (let b = 0; b < batch; b++) {
    let n = Math.max(Math.floor((prob * frames) / length + rng.next()), minMasks);
    n = Math.min(n, Math.floor(frames / length), starts);
    const picked = rng.shuffle(Array.from({ length: starts }, (_, i) => i)).slice(0, n);
    for (const s of picked) mask.fill(1, b * frames + s, b * frames + s + length);
  }
  return mask;
}

export class Wav2Vec2Model extends Module {
  readonly featureExtractor: Wav2Vec2FeatureEncoder;
  readonly featureProjection: Wav2Vec2FeatureProjection;
  readonly encoder: Wav2Vec2Encoder;
  /** What SpecAugment puts in place of masked frames in training. */
  readonly maskedSpecEmbed: Tensor;
  /** Draws SpecAugment's spans, seeded so a run repeats. */
  rng = new A.Rng(1);
  constructor(readonly config: ResolvedWav2Vec2Config) {
    super();
    this.featureExtractor = this.module('feature_extractor', new Wav2Vec2FeatureEncoder(config));
    this.featureProjection = this.module('feature_projection', new Wav2Vec2FeatureProjection(config));
    this.encoder = this.module('encoder', new Wav2Vec2Encoder(config));
    this.maskedSpecEmbed = this.param('masked_spec_embed', A.rand([config.hiddenSize]));
  }
  /** Waveforms float32 [B, samples] (zero mean, unit variance per clip) -> the last hidden state [B, frames, E]. */
  forward(waveform: Tensor): Tensor {
    if (waveform.dtype !== 'float32' || waveform.rank !== 2) {
      throw new TypeError(`${this.constructor.name}: input must be float32 waveforms [batch, samples], got ${waveform.dtype} [${waveform.shape.join(', ')}]`);
    }
    const receptive = this.config.convKernel.reduce((r, k, i) => r + (k - 1) * this.config.convStride.slice(0, i).reduce((p, s) => p * s, 1), 1);
    if (waveform.shape[1]! < receptive) throw new RangeError(`${this.constructor.name}: a clip needs at least ${receptive} samples, got ${waveform.shape[1]}`);
    const features = this.featureExtractor.forward(waveform).transpose(1, 2);
    return this.encoder.forward(this.maskHiddenStates(this.featureProjection.forward(features)));
  }
  /** SpecAugment in training (transformers' `_mask_hidden_states`): spans of frames replaced by
   * masked_spec_embed, then spans of hidden channels zeroed across every frame. [B, T, E]. */
  maskHiddenStates(hidden: Tensor): Tensor {
    const c = this.config;
    if (!this.training) return hidden;
    const [b, t, e] = hidden.shape as [number, number, number];
    let h = hidden;
    if (c.maskTimeProb > 0) {
      const m = A.tensor(specAugmentMask(this.rng, b, t, c.maskTimeProb, c.maskTimeLength, c.maskTimeMinMasks), { shape: [b, t, 1] });
      h = A.add(A.mul(h, A.sub(1, m)), A.mul(m, this.maskedSpecEmbed));
    }
    if (c.maskFeatureProb > 0) {
      const keep = specAugmentMask(this.rng, b, e, c.maskFeatureProb, c.maskFeatureLength, c.maskFeatureMinMasks, 'feature').map((v) => 1 - v);
      h = A.mul(h, A.tensor(keep, { shape: [b, 1, e] }));
    }
    return h;
  }
  /** Stops the convolutional feature encoder's training (transformers' freeze_feature_encoder),
   * as the wav2vec 2.0 paper fine-tunes. */
  freezeFeatureEncoder(): this {
    this.freeze('feature_extractor');
    return this;
  }
}

/** transformers' `_init_weights` for Wav2Vec2: N(0, range²) Linears, Kaiming-normal convs, the
 * positional conv from N(0, 2/√(k·C)) with g at its norm, the projection from U(±1/√C). */
function initWav2Vec2Weights(model: Module, c: ResolvedWav2Vec2Config): void {
  A.noGrad(() => A.tidy(() => {
    const projections = new Set<Module>();
    for (const [, m] of model.namedModules()) {
      if (projections.has(m)) continue;
      if (m instanceof Wav2Vec2PositionalConvEmbedding) {
        const conv = m.conv;
        A.assign(conv.weightV, A.randn(conv.weightV.shape, { std: 2 * Math.sqrt(1 / (conv.kernelSize * conv.inChannels)) }));
        A.assign(conv.weightG, conv.norm(conv.weightV));
        if (conv.bias) A.assign(conv.bias, 0);
      } else if (m instanceof Wav2Vec2FeatureProjection) {
        const k = 1 / Math.sqrt(m.projection.inFeatures);
        A.assign(m.projection.weight, A.rand(m.projection.weight.shape, { low: -k, high: k }));
        A.assign(m.projection.bias!, A.rand(m.projection.bias!.shape, { low: -k, high: k }));
        projections.add(m.projection);
      } else if (m instanceof Conv1d) {
        const fanIn = m.weight.shape[1]! * m.weight.shape[2]!;
        A.assign(m.weight, A.randn(m.weight.shape, { std: Math.sqrt(2 / fanIn) }));
        if (m.bias) {
          const k = 1 / Math.sqrt(fanIn);
          A.assign(m.bias, A.rand(m.bias.shape, { low: -k, high: k }));
        }
      } else if (m instanceof Linear) {
        A.assign(m.weight, A.randn(m.weight.shape, { std: c.initializerRange }));
        if (m.bias) A.assign(m.bias, 0);
      } else if (m instanceof LayerNorm || m instanceof GroupNorm) {
        if (m.weight) A.assign(m.weight, 1);
        if (m.bias) A.assign(m.bias, 0);
      }
    }
  }));
}

export interface Wav2Vec2HeadOptions {
  /** Outputs of the head (default config.num_labels, or the size of id2label, else 2; CTC: vocab_size). */
  numLabels?: number;
}

/** transformers' Wav2Vec2ForSequenceClassification: projector over every frame, mean over time, classifier. */
export class Wav2Vec2ForSequenceClassification extends ClassifierModel {
  readonly classifierPath = 'classifier';
  readonly wav2vec2: Wav2Vec2Model;
  readonly projector: Linear;
  classifier: Linear;
  readonly config: ResolvedWav2Vec2Config;
  constructor(config: Wav2Vec2Config = {}, opts: Wav2Vec2HeadOptions = {}) {
    super();
    this.config = resolveWav2Vec2Config(config);
    this.wav2vec2 = this.module('wav2vec2', new Wav2Vec2Model(this.config));
    this.projector = this.module('projector', new Linear(this.config.hiddenSize, this.config.classifierProjSize));
    this.classifier = this.module('classifier', new Linear(this.config.classifierProjSize, numLabelsOf(config, opts.numLabels)));
    initWav2Vec2Weights(this, this.config);
  }
  /** The mean of the projected frames [B, classifier_proj_size]; the projector is linear, so
   * this equals transformers' projection-then-mean. */
  forwardFeatures(waveform: Tensor): Tensor {
    return A.mean(this.projector.forward(this.wav2vec2.forward(waveform)), 1);
  }
  forwardHead(features: Tensor): Tensor {
    return this.classifier.forward(features);
  }
  /** Logits [B, numLabels] from waveforms float32 [B, samples]. */
  forward(waveform: Tensor): Tensor {
    return this.forwardHead(this.forwardFeatures(waveform));
  }
  freezeFeatureEncoder(): this {
    this.wav2vec2.freezeFeatureEncoder();
    return this;
  }
  blockOrder(): string[] {
    return [
      'wav2vec2.feature_extractor',
      'wav2vec2.feature_projection',
      'wav2vec2.masked_spec_embed',
      'wav2vec2.encoder.pos_conv_embed',
      'wav2vec2.encoder.layer_norm',
      ...Array.from({ length: this.config.numLayers }, (_, i) => `wav2vec2.encoder.layers.${i}`),
      'projector',
      'classifier',
    ];
  }
  protected override onChildReplaced(name: string, m: Module): void {
    if (name !== 'classifier' || !(m instanceof Linear)) super.onChildReplaced(name, m);
    this.classifier = m as Linear;
  }
}

/** transformers' Wav2Vec2ForCTC: dropout, then lm_head over every frame. */
export class Wav2Vec2ForCTC extends Module {
  readonly wav2vec2: Wav2Vec2Model;
  readonly lmHead: Linear;
  readonly config: ResolvedWav2Vec2Config;
  constructor(config: Wav2Vec2Config = {}, opts: Wav2Vec2HeadOptions = {}) {
    super();
    this.config = resolveWav2Vec2Config(config);
    this.wav2vec2 = this.module('wav2vec2', new Wav2Vec2Model(this.config));
    this.lmHead = this.module('lm_head', new Linear(this.config.hiddenSize, opts.numLabels ?? this.config.vocabSize));
    initWav2Vec2Weights(this, this.config);
  }
  /** Per-frame logits [B, frames, vocab] from waveforms float32 [B, samples]. */
  forward(waveform: Tensor): Tensor {
    return this.lmHead.forward(A.dropout(this.wav2vec2.forward(waveform), this.config.finalDropout, this.training));
  }
  freezeFeatureEncoder(): this {
    this.wav2vec2.freezeFeatureEncoder();
    return this;
  }
}
