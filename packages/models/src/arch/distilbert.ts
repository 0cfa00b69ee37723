/**
 * DistilBERT with Hugging Face transformers' module names (`distilbert.embeddings`,
 * `distilbert.transformer.layer.{i}.attention.{q_lin,k_lin,v_lin,out_lin}`, `sa_layer_norm`,
 * `ffn.lin1/lin2`, `output_layer_norm`, `pre_classifier`, `classifier`), from a config.json object.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { mergeHeads, paddingMask, scaledDotProductAttention, splitHeads } from '../nn/attention.js';
import { runBlocks, supportsGradientCheckpointing } from '../nn/checkpointing.js';
import { ClassifierModel } from '../nn/classifier.js';
import { Embedding, LayerNorm, Linear, ModuleList } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { SequenceClassifierOptions } from './bert.js';
import { checkInputIds, encoderBlocks, firstToken, hfActivation, initTransformerWeights, numLabelsOf } from './text-common.js';

/** The fields of a DistilBERT config.json that shape the network; others are ignored. */
export interface DistilBertConfig {
  vocab_size?: number;
  dim?: number;
  n_layers?: number;
  n_heads?: number;
  hidden_dim?: number;
  activation?: string;
  dropout?: number;
  attention_dropout?: number;
  seq_classif_dropout?: number;
  max_position_embeddings?: number;
  sinusoidal_pos_embds?: boolean;
  initializer_range?: number;
  pad_token_id?: number;
  num_labels?: number;
  id2label?: Record<string, string>;
  [key: string]: unknown;
}

export interface ResolvedDistilBertConfig {
  vocabSize: number;
  dim: number;
  numLayers: number;
  numHeads: number;
  hiddenDim: number;
  activation: string;
  dropout: number;
  attentionDropout: number;
  seqClassifDropout: number;
  maxPositions: number;
  initializerRange: number;
  padTokenId: number;
}

/** DistilBERT's LayerNorms all use this eps (not configurable in transformers). */
const EPS = 1e-12;

/** transformers' DistilBertConfig defaults (distilbert-base-uncased's shape) under the given config. */
export function resolveDistilBertConfig(c: DistilBertConfig): ResolvedDistilBertConfig {
  if (c.sinusoidal_pos_embds) throw new RangeError('DistilBERT with sinusoidal_pos_embds is not supported');
  const r: ResolvedDistilBertConfig = {
    vocabSize: c.vocab_size ?? 30522,
    dim: c.dim ?? 768,
    numLayers: c.n_layers ?? 6,
    numHeads: c.n_heads ?? 12,
    hiddenDim: c.hidden_dim ?? 3072,
    activation: c.activation ?? 'gelu',
    dropout: c.dropout ?? 0.1,
    attentionDropout: c.attention_dropout ?? 0.1,
    seqClassifDropout: c.seq_classif_dropout ?? 0.2,
    maxPositions: c.max_position_embeddings ?? 512,
    initializerRange: c.initializer_range ?? 0.02,
    padTokenId: c.pad_token_id ?? 0,
  };
  if (r.dim % r.numHeads !== 0) throw new RangeError(`dim (${r.dim}) must be divisible by n_heads (${r.numHeads})`);
  hfActivation(r.activation);
  return r;
}

export class DistilBertEmbeddings extends Module {
  readonly wordEmbeddings: Embedding;
  readonly positionEmbeddings: Embedding;
  readonly layerNorm: LayerNorm;
  constructor(readonly config: ResolvedDistilBertConfig) {
    super();
    this.wordEmbeddings = this.module('word_embeddings', new Embedding(config.vocabSize, config.dim, { paddingIdx: config.padTokenId }));
    this.positionEmbeddings = this.module('position_embeddings', new Embedding(config.maxPositions, config.dim));
    this.layerNorm = this.module('LayerNorm', new LayerNorm(config.dim, { eps: EPS }));
  }
  forward(inputIds: Tensor): Tensor {
    const e = A.add(this.wordEmbeddings.forward(inputIds), this.positionEmbeddings.forward(A.arange(inputIds.shape[1]!)));
    return A.dropout(this.layerNorm.forward(e), this.config.dropout, this.training);
  }
}

export class DistilBertSelfAttention extends Module {
  readonly qLin: Linear;
  readonly kLin: Linear;
  readonly vLin: Linear;
  readonly outLin: Linear;
  constructor(readonly config: ResolvedDistilBertConfig) {
    super();
    const d = config.dim;
    this.qLin = this.module('q_lin', new Linear(d, d));
    this.kLin = this.module('k_lin', new Linear(d, d));
    this.vLin = this.module('v_lin', new Linear(d, d));
    this.outLin = this.module('out_lin', new Linear(d, d));
  }
  forward(x: Tensor, mask: Tensor | null): Tensor {
    const h = this.config.numHeads;
    const ctx = scaledDotProductAttention(splitHeads(this.qLin.forward(x), h), splitHeads(this.kLin.forward(x), h), splitHeads(this.vLin.forward(x), h), {
      mask,
      dropout: this.config.attentionDropout,
      training: this.training,
    });
    return this.outLin.forward(mergeHeads(ctx));
  }
}

export class DistilBertFFN extends Module {
  readonly lin1: Linear;
  readonly lin2: Linear;
  private readonly act: (x: Tensor) => Tensor;
  constructor(readonly config: ResolvedDistilBertConfig) {
    super();
    this.lin1 = this.module('lin1', new Linear(config.dim, config.hiddenDim));
    this.lin2 = this.module('lin2', new Linear(config.hiddenDim, config.dim));
    this.act = hfActivation(config.activation);
  }
  forward(x: Tensor): Tensor {
    return A.dropout(this.lin2.forward(this.act(this.lin1.forward(x))), this.config.dropout, this.training);
  }
}

export class DistilBertBlock extends Module {
  readonly attention: DistilBertSelfAttention;
  readonly saLayerNorm: LayerNorm;
  readonly ffn: DistilBertFFN;
  readonly outputLayerNorm: LayerNorm;
  constructor(config: ResolvedDistilBertConfig) {
    super();
    this.attention = this.module('attention', new DistilBertSelfAttention(config));
    this.saLayerNorm = this.module('sa_layer_norm', new LayerNorm(config.dim, { eps: EPS }));
    this.ffn = this.module('ffn', new DistilBertFFN(config));
    this.outputLayerNorm = this.module('output_layer_norm', new LayerNorm(config.dim, { eps: EPS }));
  }
  forward(x: Tensor, mask: Tensor | null): Tensor {
    const a = this.saLayerNorm.forward(A.add(this.attention.forward(x, mask), x));
    return this.outputLayerNorm.forward(A.add(this.ffn.forward(a), a));
  }
}

export class DistilBertTransformer extends Module {
  readonly layer: ModuleList<DistilBertBlock>;
  constructor(config: ResolvedDistilBertConfig) {
    super();
    this.layer = this.module('layer', new ModuleList(Array.from({ length: config.numLayers }, () => new DistilBertBlock(config))));
    supportsGradientCheckpointing(this);
  }
  forward(x: Tensor, mask: Tensor | null): Tensor {
    return runBlocks(this, this.layer, x, (l, y) => l.forward(y, mask));
  }
}

export class DistilBertModel extends Module {
  readonly embeddings: DistilBertEmbeddings;
  readonly transformer: DistilBertTransformer;
  constructor(readonly config: ResolvedDistilBertConfig) {
    super();
    this.embeddings = this.module('embeddings', new DistilBertEmbeddings(config));
    this.transformer = this.module('transformer', new DistilBertTransformer(config));
  }
  /** The last hidden state [B, T, dim]. attentionMask [B, T]: 1 for tokens, 0 for padding. */
  forward(inputIds: Tensor, attentionMask?: Tensor | null): Tensor {
    checkInputIds(this.constructor.name, inputIds, this.config.maxPositions, ['attentionMask', attentionMask]);
    return this.transformer.forward(this.embeddings.forward(inputIds), attentionMask ? paddingMask(attentionMask) : null);
  }
}

/** transformers' DistilBertForSequenceClassification: first token -> pre_classifier -> ReLU ->
 * dropout -> classifier. */
export class DistilBertForSequenceClassification extends ClassifierModel {
  readonly classifierPath = 'classifier';
  readonly distilbert: DistilBertModel;
  readonly preClassifier: Linear;
  classifier: Linear;
  readonly config: ResolvedDistilBertConfig;
  constructor(config: DistilBertConfig = {}, opts: SequenceClassifierOptions = {}) {
    super();
    this.config = resolveDistilBertConfig(config);
    this.distilbert = this.module('distilbert', new DistilBertModel(this.config));
    this.preClassifier = this.module('pre_classifier', new Linear(this.config.dim, this.config.dim));
    this.classifier = this.module('classifier', new Linear(this.config.dim, numLabelsOf(config, opts.numLabels)));
    initTransformerWeights(this, this.config.initializerRange);
  }

  /** relu(pre_classifier(first token)) [B, dim]. */
  forwardFeatures(inputIds: Tensor, attentionMask?: Tensor | null): Tensor {
    return A.relu(this.preClassifier.forward(firstToken(this.distilbert.forward(inputIds, attentionMask))));
  }

  forwardHead(features: Tensor): Tensor {
    return this.classifier.forward(A.dropout(features, this.config.seqClassifDropout, this.training));
  }

  /** Logits [B, numLabels] from inputIds int32 [B, T] and optionally the attention mask. */
  forward(inputIds: Tensor, attentionMask?: Tensor | null): Tensor {
    return this.forwardHead(this.forwardFeatures(inputIds, attentionMask));
  }

  blockOrder(): string[] {
    return [...encoderBlocks('distilbert', this.config.numLayers, 'transformer.layer'), 'pre_classifier', 'classifier'];
  }

  protected override onChildReplaced(name: string, m: Module): void {
    if (name !== 'classifier' || !(m instanceof Linear)) super.onChildReplaced(name, m);
    this.classifier = m as Linear;
  }
}
