/**
 * GPT-2 with Hugging Face transformers' module names (`transformer.wte`, `wpe`,
 * `h.{i}.{ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}`, `ln_f`, and `score` of
 * GPT2ForSequenceClassification), from a config.json object. Its projections are transformers'
 * Conv1D: weight [in, out], the transpose of a Linear's.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import * as T from '@tl/tensor';
import type { KeyValueCache } from '../generate/kv-cache.js';
import { causalMask, mergeHeads, scaledDotProductAttention, splitHeads } from '../nn/attention.js';
import { ClassifierModel } from '../nn/classifier.js';
import { Embedding, LayerNorm, Linear, ModuleList } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { SequenceClassifierOptions } from './bert.js';
import { checkInputIds, hfActivation, initTransformerWeights, numLabelsOf, tokenAt } from './text-common.js';

/** The fields of a GPT-2 config.json that shape the network; others are ignored. */
export interface GPT2Config {
  vocab_size?: number;
  n_positions?: number;
  n_embd?: number;
  n_layer?: number;
  n_head?: number;
  n_inner?: number | null;
  activation_function?: string;
  resid_pdrop?: number;
  embd_pdrop?: number;
  attn_pdrop?: number;
  layer_norm_epsilon?: number;
  initializer_range?: number;
  scale_attn_weights?: boolean;
  scale_attn_by_inverse_layer_idx?: boolean;
  pad_token_id?: number | null;
  num_labels?: number;
  id2label?: Record<string, string>;
  [key: string]: unknown;
}

export interface ResolvedGPT2Config {
  vocabSize: number;
  nPositions: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nInner: number;
  activation: string;
  residPdrop: number;
  embdPdrop: number;
  attnPdrop: number;
  layerNormEps: number;
  initializerRange: number;
  scaleAttnWeights: boolean;
  scaleAttnByInverseLayerIdx: boolean;
  padTokenId: number | null;
}

/** transformers' GPT2Config defaults (gpt2's shape) under the given config. */
export function resolveGPT2Config(c: GPT2Config): ResolvedGPT2Config {
  const nEmbd = c.n_embd ?? 768;
  const r: ResolvedGPT2Config = {
    vocabSize: c.vocab_size ?? 50257,
    nPositions: c.n_positions ?? 1024,
    nEmbd,
    nLayer: c.n_layer ?? 12,
    nHead: c.n_head ?? 12,
    nInner: c.n_inner ?? 4 * nEmbd,
    activation: c.activation_function ?? 'gelu_new',
    residPdrop: c.resid_pdrop ?? 0.1,
    embdPdrop: c.embd_pdrop ?? 0.1,
    attnPdrop: c.attn_pdrop ?? 0.1,
    layerNormEps: c.layer_norm_epsilon ?? 1e-5,
    initializerRange: c.initializer_range ?? 0.02,
    scaleAttnWeights: c.scale_attn_weights ?? true,
    scaleAttnByInverseLayerIdx: c.scale_attn_by_inverse_layer_idx ?? false,
    padTokenId: c.pad_token_id ?? null,
  };
  if (r.nEmbd % r.nHead !== 0) throw new RangeError(`n_embd (${r.nEmbd}) must be divisible by n_head (${r.nHead})`);
  hfActivation(r.activation);
  return r;
}

/**
 * x @ weight + bias with weight [in, out] (transformers' Conv1D). Forward is one matmul with the
 * bias fused; backward reads the saved operands through transposed views, so neither the weight
 * nor its gradient is ever copied into the other layout.
 */
export function conv1dProjection(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const [nx, nf] = weight.shape as [number, number];
  if (weight.rank !== 2 || x.shape[x.rank - 1] !== nx) {
    throw new RangeError(`conv1dProjection: input [${x.shape.join(', ')}] does not fit weight [${weight.shape.join(', ')}] ([in, out])`);
  }
  const y = T.matmul(x, weight, bias ? { bias } : {});
  const gx = A.needsGrad(x);
  const gw = A.needsGrad(weight);
  return A.record('conv1d', y, [x, weight, bias], (g, s, needs) => {
    const xs = gw ? s[0]! : null;
    const ws = gx ? s[gw ? 1 : 0]! : null;
    const g2 = g.reshape(-1, nf);
    let dw: Tensor | null = null;
    if (needs[1]) {
      const x2 = xs!.reshape(-1, nx);
      dw = T.matmul(x2.transpose(0, 1), g2);
      x2.dispose();
    }
    const res = [needs[0] ? T.matmul(g, ws!.transpose(0, 1)) : null, dw, needs[2] ? T.sum(g2, [0]) : null];
    g2.dispose();
    return res;
  }, [...(gw ? [x] : []), ...(gx ? [weight] : [])]);
}

/** transformers' Conv1D: `weight` [nx, nf], `bias` [nf]. */
export class Conv1D extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(readonly nf: number, readonly nx: number) {
    super();
    this.weight = this.param('weight', A.randn([nx, nf], { std: 0.02 }));
    this.bias = this.param('bias', A.zeros([nf]));
  }
  forward(x: Tensor): Tensor {
    return conv1dProjection(x, this.weight, this.bias);
  }
}

export class GPT2Attention extends Module {
  readonly cAttn: Conv1D;
  readonly cProj: Conv1D;
  constructor(readonly config: ResolvedGPT2Config, readonly layerIdx: number) {
    super();
    this.cAttn = this.module('c_attn', new Conv1D(3 * config.nEmbd, config.nEmbd));
    this.cProj = this.module('c_proj', new Conv1D(config.nEmbd, config.nEmbd));
  }
  /** x [B, T, E], mask additive (causal, and padding) -> [B, T, E]; with a cache, the keys and values of earlier steps are attended to as well. */
  forward(x: Tensor, mask: Tensor, cache?: KeyValueCache | null): Tensor {
    const c = this.config;
    const e = c.nEmbd;
    const qkv = this.cAttn.forward(x);
    let [q, k, v] = [0, 1, 2].map((i) => splitHeads(qkv.slice(2, i * e, (i + 1) * e), c.nHead)) as [Tensor, Tensor, Tensor];
    if (cache) [k, v] = cache.update(this.layerIdx, k, v);
    let scale = c.scaleAttnWeights ? 1 / Math.sqrt(e / c.nHead) : 1;
    if (c.scaleAttnByInverseLayerIdx) scale /= this.layerIdx + 1;
    const ctx = scaledDotProductAttention(q, k, v, { mask, scale, dropout: c.attnPdrop, training: this.training });
    return A.dropout(this.cProj.forward(mergeHeads(ctx)), c.residPdrop, this.training);
  }
}

export class GPT2MLP extends Module {
  readonly cFc: Conv1D;
  readonly cProj: Conv1D;
  private readonly act: (x: Tensor) => Tensor;
  constructor(readonly config: ResolvedGPT2Config) {
    super();
    this.cFc = this.module('c_fc', new Conv1D(config.nInner, config.nEmbd));
    this.cProj = this.module('c_proj', new Conv1D(config.nEmbd, config.nInner));
    this.act = hfActivation(config.activation);
  }
  forward(x: Tensor): Tensor {
    return A.dropout(this.cProj.forward(this.act(this.cFc.forward(x))), this.config.residPdrop, this.training);
  }
}

export class GPT2Block extends Module {
  readonly ln1: LayerNorm;
  readonly attn: GPT2Attention;
  readonly ln2: LayerNorm;
  readonly mlp: GPT2MLP;
  constructor(config: ResolvedGPT2Config, layerIdx: number) {
    super();
    this.ln1 = this.module('ln_1', new LayerNorm(config.nEmbd, { eps: config.layerNormEps }));
    this.attn = this.module('attn', new GPT2Attention(config, layerIdx));
    this.ln2 = this.module('ln_2', new LayerNorm(config.nEmbd, { eps: config.layerNormEps }));
    this.mlp = this.module('mlp', new GPT2MLP(config));
  }
  forward(x: Tensor, mask: Tensor, cache?: KeyValueCache | null): Tensor {
    const h = A.add(x, this.attn.forward(this.ln1.forward(x), mask, cache));
    return A.add(h, this.mlp.forward(this.ln2.forward(h)));
  }
}

export class GPT2Model extends Module {
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly h: ModuleList<GPT2Block>;
  readonly lnF: LayerNorm;
  constructor(readonly config: ResolvedGPT2Config) {
    super();
    this.wte = this.module('wte', new Embedding(config.vocabSize, config.nEmbd));
    this.wpe = this.module('wpe', new Embedding(config.nPositions, config.nEmbd));
    this.h = this.module('h', new ModuleList(Array.from({ length: config.nLayer }, (_, i) => new GPT2Block(config, i))));
    this.lnF = this.module('ln_f', new LayerNorm(config.nEmbd, { eps: config.layerNormEps }));
  }
  /** The final hidden state [B, T, E]; causal, and padded keys masked by attentionMask [B, T]. */
  forward(inputIds: Tensor, attentionMask?: Tensor | null): Tensor {
    const [, t] = checkInputIds(this.constructor.name, inputIds, this.config.nPositions, ['attentionMask', attentionMask]);
    return this.forwardAt(inputIds, A.arange(t), causalMask(t, attentionMask), null);
  }

  /** The final hidden state [B, T, E] at position ids `positions` ([T] or [B, T]) under an additive mask, appending to `cache` when given. */
  forwardAt(inputIds: Tensor, positions: Tensor, mask: Tensor, cache: KeyValueCache | null): Tensor {
    let x = A.dropout(A.add(this.wte.forward(inputIds), this.wpe.forward(positions)), this.config.embdPdrop, this.training);
    for (const block of this.h) x = block.forward(x, mask, cache);
    return this.lnF.forward(x);
  }
}

/** transformers' GPT-2 initialisation; the residual projections' std is scaled by 1/sqrt(2 · n_layer). */
export function initGPT2Weights(model: Module, config: ResolvedGPT2Config): void {
  const std = config.initializerRange;
  const projStd = std / Math.sqrt(2 * config.nLayer);
  initTransformerWeights(model, std, (m, name) => {
    if (m instanceof Conv1D) {
      A.assign(m.weight, A.randn(m.weight.shape, { std: name.endsWith('c_proj') ? projStd : std }));
      A.assign(m.bias, 0);
    }
  });
}

/**
 * transformers' GPT2ForSequenceClassification: `score` (no bias) on the last token. With
 * config.pad_token_id that is the last token that is not padding, as transformers picks it;
 * without one (GPT-2's own config has none), the last token the attention mask keeps, else
 * the last position.
 */
export class GPT2ForSequenceClassification extends ClassifierModel {
  readonly classifierPath = 'score';
  readonly transformer: GPT2Model;
  score: Linear;
  readonly config: ResolvedGPT2Config;
  constructor(config: GPT2Config = {}, opts: SequenceClassifierOptions = {}) {
    super();
    this.config = resolveGPT2Config(config);
    this.transformer = this.module('transformer', new GPT2Model(this.config));
    this.score = this.module('score', new Linear(this.config.nEmbd, numLabelsOf(config, opts.numLabels), { bias: false }));
    initGPT2Weights(this, this.config);
  }

  /** The hidden state [B, E] of each sequence's last token. */
  forwardFeatures(inputIds: Tensor, attentionMask?: Tensor | null): Tensor {
    const hidden = this.transformer.forward(inputIds, attentionMask);
    const t = inputIds.shape[1]!;
    const pad = this.config.padTokenId;
    const keep = pad !== null ? A.ne(inputIds, pad) : attentionMask ? A.ne(attentionMask, 0) : null;
    if (!keep) return hidden.select(1, t - 1);
    // The rightmost kept position: argmax of position · keep (0 when nothing is kept).
    const pos = A.arange(t);
    const weighted = A.mul(keep, pos);
    const last = A.argmax(weighted, -1);
    for (const x of [keep, pos, weighted]) x.dispose();
    return tokenAt(hidden, last);
  }

  forwardHead(features: Tensor): Tensor {
    return this.score.forward(features);
  }

  /** Logits [B, numLabels] from inputIds int32 [B, T] and optionally the attention mask. */
  forward(inputIds: Tensor, attentionMask?: Tensor | null): Tensor {
    return this.forwardHead(this.forwardFeatures(inputIds, attentionMask));
  }

  blockOrder(): string[] {
    return ['transformer.wte', 'transformer.wpe', ...Array.from({ length: this.config.nLayer }, (_, i) => `transformer.h.${i}`), 'transformer.ln_f', 'score'];
  }

  protected override onChildReplaced(name: string, m: Module): void {
    if (name !== 'score' || !(m instanceof Linear)) super.onChildReplaced(name, m);
    this.score = m as Linear;
  }
}
