/**
 * RoBERTa with Hugging Face transformers' module names: BERT's encoder under `roberta.*` (no
 * pooler), position ids counted from padding_idx + 1 over non-padding tokens, and the
 * `classifier.dense` / `classifier.out_proj` head of RobertaForSequenceClassification.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { ClassifierModel } from '../nn/classifier.js';
import { Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { BertModel, resolveBertConfig, type BertConfig, type ResolvedBertConfig, type SequenceClassifierOptions } from './bert.js';
import { encoderBlocks, firstToken, initTransformerWeights, numLabelsOf } from './text-common.js';

export type RobertaConfig = BertConfig;

/** transformers' RobertaConfig defaults: BertConfig's, with RoBERTa's vocabulary size and padding id 1. */
export function resolveRobertaConfig(c: RobertaConfig): ResolvedBertConfig {
  return resolveBertConfig(c, { vocab_size: 50265, pad_token_id: 1 });
}

/** RobertaModel: BertModel with RoBERTa's position ids, and no pooler (as in RobertaForSequenceClassification). */
export class RobertaModel extends BertModel {
  constructor(config: ResolvedBertConfig, opts: { addPoolingLayer?: boolean } = {}) {
    super(config, { addPoolingLayer: opts.addPoolingLayer ?? false, paddingPositions: true });
  }
}

/** First token -> dropout -> dense -> tanh -> dropout -> out_proj. */
export class RobertaClassificationHead extends Module {
  readonly dense: Linear;
  outProj: Linear;
  constructor(readonly config: ResolvedBertConfig, numLabels: number) {
    super();
    this.dense = this.module('dense', new Linear(config.hiddenSize, config.hiddenSize));
    this.outProj = this.module('out_proj', new Linear(config.hiddenSize, numLabels));
  }
  /** tanh(dense(dropout(first token))) [B, E]: the input of out_proj. */
  features(hidden: Tensor): Tensor {
    return A.tanh(this.dense.forward(A.dropout(firstToken(hidden), this.config.classifierDropout, this.training)));
  }
  head(features: Tensor): Tensor {
    return this.outProj.forward(A.dropout(features, this.config.classifierDropout, this.training));
  }
  forward(hidden: Tensor): Tensor {
    return this.head(this.features(hidden));
  }
  protected override onChildReplaced(name: string, m: Module): void {
    if (name !== 'out_proj' || !(m instanceof Linear)) super.onChildReplaced(name, m);
    this.outProj = m as Linear;
  }
}

export class RobertaForSequenceClassification extends ClassifierModel {
  readonly classifierPath = 'classifier.out_proj';
  readonly roberta: RobertaModel;
  readonly classifier: RobertaClassificationHead;
  readonly config: ResolvedBertConfig;
  constructor(config: RobertaConfig = {}, opts: SequenceClassifierOptions = {}) {
    super();
    this.config = resolveRobertaConfig(config);
    this.roberta = this.module('roberta', new RobertaModel(this.config));
    this.classifier = this.module('classifier', new RobertaClassificationHead(this.config, numLabelsOf(config, opts.numLabels)));
    initTransformerWeights(this, this.config.initializerRange);
  }

  /** The head's hidden features [B, E] (the input of classifier.out_proj). */
  forwardFeatures(inputIds: Tensor, attentionMask?: Tensor | null, tokenTypeIds?: Tensor | null): Tensor {
    return this.classifier.features(this.roberta.forward(inputIds, attentionMask, tokenTypeIds));
  }

  forwardHead(features: Tensor): Tensor {
    return this.classifier.head(features);
  }

  /** Logits [B, numLabels] from inputIds int32 [B, T] (and optionally the attention mask and token types). */
  forward(inputIds: Tensor, attentionMask?: Tensor | null, tokenTypeIds?: Tensor | null): Tensor {
    return this.forwardHead(this.forwardFeatures(inputIds, attentionMask, tokenTypeIds));
  }

  blockOrder(): string[] {
    return [...encoderBlocks('roberta', this.config.numLayers, 'encoder.layer'), 'classifier'];
  }
}
