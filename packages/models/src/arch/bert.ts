/**
 * BERT with Hugging Face transformers' module names (`bert.embeddings.word_embeddings`,
 * `bert.encoder.layer.{i}.attention.self.query`, `bert.pooler.dense`, `classifier` …), built
 * from a config.json object. RoBERTa (arch/roberta.ts) reuses the encoder.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { mergeHeads, paddingMask, scaledDotProductAttention, splitHeads } from '../nn/attention.js';
import { runBlocks, supportsGradientCheckpointing } from '../nn/checkpointing.js';
import { ClassifierModel } from '../nn/classifier.js';
import { Embedding, LayerNorm, Linear, ModuleList } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { checkInputIds, encoderBlocks, firstToken, hfActivation, initTransformerWeights, numLabelsOf } from './text-common.js';

/** The fields of a BERT config.json that shape the network; others are ignored. */
export interface BertConfig {
  vocab_size?: number;
  hidden_size?: number;
  num_hidden_layers?: number;
  num_attention_heads?: number;
  intermediate_size?: number;
  hidden_act?: string;
  hidden_dropout_prob?: number;
  attention_probs_dropout_prob?: number;
  max_position_embeddings?: number;
  type_vocab_size?: number;
  layer_norm_eps?: number;
  initializer_range?: number;
  pad_token_id?: number;
  position_embedding_type?: string;
  classifier_dropout?: number | null;
  num_labels?: number;
  id2label?: Record<string, string>;
  [key: string]: unknown;
}

/** A config with every field the modules read. */
export interface ResolvedBertConfig {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  hiddenAct: string;
  hiddenDropout: number;
  attentionDropout: number;
  maxPositions: number;
  typeVocabSize: number;
  layerNormEps: number;
  initializerRange: number;
  padTokenId: number;
  classifierDropout: number;
}

/** transformers' BertConfig defaults under the given config (bert-base-uncased's shape). */
export function resolveBertConfig(c: BertConfig, defaults: Partial<BertConfig> = {}): ResolvedBertConfig {
  const d = { ...defaults, ...Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined)) } as BertConfig;
  if ((d.position_embedding_type ?? 'absolute') !== 'absolute') {
    throw new RangeError(`position_embedding_type "${d.position_embedding_type}" is not supported (only "absolute")`);
  }
  const r: ResolvedBertConfig = {
    vocabSize: d.vocab_size ?? 30522,
    hiddenSize: d.hidden_size ?? 768,
    numLayers: d.num_hidden_layers ?? 12,
    numHeads: d.num_attention_heads ?? 12,
    intermediateSize: d.intermediate_size ?? 3072,
    hiddenAct: d.hidden_act ?? 'gelu',
    hiddenDropout: d.hidden_dropout_prob ?? 0.1,
    attentionDropout: d.attention_probs_dropout_prob ?? 0.1,
    maxPositions: d.max_position_embeddings ?? 512,
    typeVocabSize: d.type_vocab_size ?? 2,
    layerNormEps: d.layer_norm_eps ?? 1e-12,
    initializerRange: d.initializer_range ?? 0.02,
    padTokenId: d.pad_token_id ?? 0,
    classifierDropout: d.classifier_dropout ?? d.hidden_dropout_prob ?? 0.1,
  };
  if (r.hiddenSize % r.numHeads !== 0) throw new RangeError(`hidden_size (${r.hiddenSize}) must be divisible by num_attention_heads (${r.numHeads})`);
  hfActivation(r.hiddenAct);
  return r;
}

export class BertEmbeddings extends Module {
  readonly wordEmbeddings: Embedding;
  readonly positionEmbeddings: Embedding;
  readonly tokenTypeEmbeddings: Embedding;
  readonly layerNorm: LayerNorm;

  /**
   * `paddingPositions`: RoBERTa's position ids, counted over non-padding tokens from
   * padding_idx + 1 (padding tokens get padding_idx), instead of 0..T-1.
   */
  constructor(readonly config: ResolvedBertConfig, readonly paddingPositions = false) {
    super();
    const c = config;
    this.wordEmbeddings = this.module('word_embeddings', new Embedding(c.vocabSize, c.hiddenSize, { paddingIdx: c.padTokenId }));
    this.positionEmbeddings = this.module('position_embeddings', new Embedding(c.maxPositions, c.hiddenSize, paddingPositions ? { paddingIdx: c.padTokenId } : {}));
    this.tokenTypeEmbeddings = this.module('token_type_embeddings', new Embedding(c.typeVocabSize, c.hiddenSize));
    this.layerNorm = this.module('LayerNorm', new LayerNorm(c.hiddenSize, { eps: c.layerNormEps }));
  }

  /** inputIds and tokenTypeIds int32 [B, T] -> [B, T, E]. Token type 0 when not given. */
  forward(inputIds: Tensor, tokenTypeIds?: Tensor | null): Tensor {
    const t = inputIds.shape[1]!;
    const pad = this.config.padTokenId;
    const maxPos = this.config.maxPositions;
    if (this.paddingPositions && t + pad >= maxPos) {
      throw new RangeError(`sequence length ${t} needs positions up to ${t + pad}, beyond max_position_embeddings (${maxPos})`);
    }
    const positionIds = this.paddingPositions ? paddingPositionIds(inputIds, pad) : A.arange(t);
    const types = tokenTypeIds ? this.tokenTypeEmbeddings.forward(tokenTypeIds) : this.tokenTypeEmbeddings.weight.select(0, 0);
    const e = A.add(A.add(this.wordEmbeddings.forward(inputIds), types), this.positionEmbeddings.forward(positionIds));
    return A.dropout(this.layerNorm.forward(e), this.config.hiddenDropout, this.training);
  }
}

/** transformers' create_position_ids_from_input_ids: padding_idx + the running count of
 * non-padding tokens, padding_idx at padding. The count is a product with a triangle of ones. */
function paddingPositionIds(inputIds: Tensor, pad: number): Tensor {
  const t = inputIds.shape[1]!;
  const keep = A.ne(inputIds, pad);
  const rows = A.arange(t).reshape(t, 1);
  const cols = A.arange(t).reshape(1, t);
  const upper = A.map([rows, cols], ([i, j]) => `select(0.0, 1.0, ${i} <= ${j})`, { label: 'triangle' });
  const count = A.matmul(keep, upper);
  const ids = A.map([count, keep, pad], ([n, k, p]) => `${n} * ${k} + ${p}`, { dtype: 'int32', label: 'positionIds' });
  for (const x of [keep, rows, cols, upper, count]) x.dispose();
  return ids;
}

export class BertSelfAttention extends Module {
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;
  constructor(readonly config: ResolvedBertConfig) {
    super();
    const e = config.hiddenSize;
    this.query = this.module('query', new Linear(e, e));
    this.key = this.module('key', new Linear(e, e));
    this.value = this.module('value', new Linear(e, e));
  }
  /** x [B, T, E], mask additive [B, 1, 1, T] or null -> [B, T, E]. */
  forward(x: Tensor, mask: Tensor | null): Tensor {
    const h = this.config.numHeads;
    const ctx = scaledDotProductAttention(splitHeads(this.query.forward(x), h), splitHeads(this.key.forward(x), h), splitHeads(this.value.forward(x), h), {
      mask,
      dropout: this.config.attentionDropout,
      training: this.training,
    });
    return mergeHeads(ctx);
  }
}

/** BertSelfOutput and BertOutput: LayerNorm(dropout(dense(x)) + residual). */
export class BertResidualOutput extends Module {
  readonly dense: Linear;
  readonly layerNorm: LayerNorm;
  constructor(readonly config: ResolvedBertConfig, inFeatures: number) {
    super();
    this.dense = this.module('dense', new Linear(inFeatures, config.hiddenSize));
    this.layerNorm = this.module('LayerNorm', new LayerNorm(config.hiddenSize, { eps: config.layerNormEps }));
  }
  forward(x: Tensor, residual: Tensor): Tensor {
    return this.layerNorm.forward(A.add(A.dropout(this.dense.forward(x), this.config.hiddenDropout, this.training), residual));
  }
}

export class BertAttention extends Module {
  readonly self: BertSelfAttention;
  readonly output: BertResidualOutput;
  constructor(config: ResolvedBertConfig) {
    super();
    this.self = this.module('self', new BertSelfAttention(config));
    this.output = this.module('output', new BertResidualOutput(config, config.hiddenSize));
  }
  forward(x: Tensor, mask: Tensor | null): Tensor {
    return this.output.forward(this.self.forward(x, mask), x);
  }
}

export class BertIntermediate extends Module {
  readonly dense: Linear;
  private readonly act: (x: Tensor) => Tensor;
  constructor(config: ResolvedBertConfig) {
    super();
    this.dense = this.module('dense', new Linear(config.hiddenSize, config.intermediateSize));
    this.act = hfActivation(config.hiddenAct);
  }
  forward(x: Tensor): Tensor {
    return this.act(this.dense.forward(x));
  }
}

export class BertLayer extends Module {
  readonly attention: BertAttention;
  readonly intermediate: BertIntermediate;
  readonly output: BertResidualOutput;
  constructor(config: ResolvedBertConfig) {
    super();
    this.attention = this.module('attention', new BertAttention(config));
    this.intermediate = this.module('intermediate', new BertIntermediate(config));
    this.output = this.module('output', new BertResidualOutput(config, config.intermediateSize));
  }
  forward(x: Tensor, mask: Tensor | null): Tensor {
    const a = this.attention.forward(x, mask);
    return this.output.forward(this.intermediate.forward(a), a);
  }
}

export class BertEncoder extends Module {
  readonly layer: ModuleList<BertLayer>;
  constructor(config: ResolvedBertConfig) {
    super();
    this.layer = this.module('layer', new ModuleList(Array.from({ length: config.numLayers }, () => new BertLayer(config))));
    supportsGradientCheckpointing(this);
  }
  forward(x: Tensor, mask: Tensor | null): Tensor {
    return runBlocks(this, this.layer, x, (l, y) => l.forward(y, mask));
  }
}

export class BertPooler extends Module {
  readonly dense: Linear;
  constructor(config: ResolvedBertConfig) {
    super();
    this.dense = this.module('dense', new Linear(config.hiddenSize, config.hiddenSize));
  }
  /** tanh(dense(first token)): [B, T, E] -> [B, E]. */
  forward(hidden: Tensor): Tensor {
    return A.tanh(this.dense.forward(firstToken(hidden)));
  }
}

export interface BertModelOptions {
  /** The pooler (BERT's next-sentence head input); RoBERTa's classifier has none. */
  addPoolingLayer?: boolean;
  /** RoBERTa's position ids (see BertEmbeddings). */
  paddingPositions?: boolean;
}

export class BertModel extends Module {
  readonly embeddings: BertEmbeddings;
  readonly encoder: BertEncoder;
  readonly pooler: BertPooler | null;
  readonly config: ResolvedBertConfig;
  constructor(config: ResolvedBertConfig, opts: BertModelOptions = {}) {
    super();
    this.config = config;
    this.embeddings = this.module('embeddings', new BertEmbeddings(config, opts.paddingPositions ?? false));
    this.encoder = this.module('encoder', new BertEncoder(config));
    this.pooler = (opts.addPoolingLayer ?? true) ? this.module('pooler', new BertPooler(config)) : null;
  }
  /** The last hidden state [B, T, E]. attentionMask [B, T]: 1 for tokens, 0 for padding. */
  forward(inputIds: Tensor, attentionMask?: Tensor | null, tokenTypeIds?: Tensor | null): Tensor {
    checkInputIds(this.constructor.name, inputIds, this.config.maxPositions, ['attentionMask', attentionMask], ['tokenTypeIds', tokenTypeIds]);
    const mask = attentionMask ? paddingMask(attentionMask) : null;
    return this.encoder.forward(this.embeddings.forward(inputIds, tokenTypeIds), mask);
  }
}

export interface SequenceClassifierOptions {
  /** Outputs of the head; default config.num_labels (or the size of id2label, else 2). */
  numLabels?: number;
}

/** transformers' BertForSequenceClassification: pooled output -> dropout -> classifier. */
export class BertForSequenceClassification extends ClassifierModel {
  readonly classifierPath = 'classifier';
  readonly bert: BertModel;
  classifier: Linear;
  readonly config: ResolvedBertConfig;
  constructor(config: BertConfig = {}, opts: SequenceClassifierOptions = {}) {
    super();
    this.config = resolveBertConfig(config);
    this.bert = this.module('bert', new BertModel(this.config));
    this.classifier = this.module('classifier', new Linear(this.config.hiddenSize, numLabelsOf(config, opts.numLabels)));
    initTransformerWeights(this, this.config.initializerRange);
  }

  /** The pooled [CLS] features [B, E]. */
  forwardFeatures(inputIds: Tensor, attentionMask?: Tensor | null, tokenTypeIds?: Tensor | null): Tensor {
    return this.bert.pooler!.forward(this.bert.forward(inputIds, attentionMask, tokenTypeIds));
  }

  forwardHead(features: Tensor): Tensor {
    return this.classifier.forward(A.dropout(features, this.config.classifierDropout, this.training));
  }

  /** Logits [B, numLabels] from inputIds int32 [B, T] (and optionally the attention mask and token types). */
  forward(inputIds: Tensor, attentionMask?: Tensor | null, tokenTypeIds?: Tensor | null): Tensor {
    return this.forwardHead(this.forwardFeatures(inputIds, attentionMask, tokenTypeIds));
  }

  blockOrder(): string[] {
    return [...encoderBlocks('bert', this.config.numLayers, 'encoder.layer'), 'bert.pooler', 'classifier'];
  }

  protected override onChildReplaced(name: string, m: Module): void {
    if (name !== 'classifier' || !(m instanceof Linear)) super.onChildReplaced(name, m);
    this.classifier = m as Linear;
  }
}
