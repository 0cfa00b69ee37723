/**
 * The Llama architecture with Hugging Face transformers' module names (LlamaForCausalLM:
 * `model.embed_tokens`, `model.layers.{i}.{input_layernorm, self_attn.{q,k,v,o}_proj,
 * post_attention_layernorm, mlp.{gate,up,down}_proj}`, `model.norm`, `lm_head`), from a
 * config.json object: RMS norm, rotary position embeddings, a SwiGLU MLP and grouped-query
 * attention. With tie_word_embeddings the head is the embedding matrix and has no key of its
 * own, as `save_pretrained` writes such a model.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import type { EncoderInput, GenerativeModel } from '../generate/types.js';
import { KeyValueCache } from '../generate/kv-cache.js';
import { causalMask, mergeHeads, scaledDotProductAttention, splitHeads } from '../nn/attention.js';
import { Embedding, Linear, ModuleList } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { RMSNorm } from '../nn/rms-norm.js';
import { applyRotary, rotaryTables } from '../nn/rotary.js';
import { checkInputIds, hfActivation, initTransformerWeights } from './text-common.js';

/** The fields of a Llama config.json that shape the network; others are ignored. */
export interface LlamaConfig {
  vocab_size?: number;
  hidden_size?: number;
  intermediate_size?: number;
  num_hidden_layers?: number;
  num_attention_heads?: number;
  num_key_value_heads?: number | null;
  head_dim?: number | null;
  hidden_act?: string;
  max_position_embeddings?: number;
  rms_norm_eps?: number;
  rope_theta?: number;
  rope_scaling?: unknown;
  attention_bias?: boolean;
  mlp_bias?: boolean;
  attention_dropout?: number;
  tie_word_embeddings?: boolean;
  initializer_range?: number;
  bos_token_id?: number | null;
  eos_token_id?: number | number[] | null;
  pad_token_id?: number | null;
  [key: string]: unknown;
}

export interface ResolvedLlamaConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  hiddenAct: string;
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  attentionBias: boolean;
  mlpBias: boolean;
  attentionDropout: number;
  tieWordEmbeddings: boolean;
  initializerRange: number;
  eosTokenId: number[];
  bosTokenId: number | null;
  padTokenId: number | null;
}

/** transformers' LlamaConfig defaults (Llama-2-7B's shape) under the given config. */
export function resolveLlamaConfig(c: LlamaConfig): ResolvedLlamaConfig {
  const hiddenSize = c.hidden_size ?? 4096;
  const numHeads = c.num_attention_heads ?? 32;
  if (c.rope_scaling !== undefined && c.rope_scaling !== null) {
    throw new RangeError(`rope_scaling ${JSON.stringify(c.rope_scaling)} is not supported; only plain rotary embeddings (rope_scaling null)`);
  }
  const eos = c.eos_token_id ?? 2;
  const r: ResolvedLlamaConfig = {
    vocabSize: c.vocab_size ?? 32000,
    hiddenSize,
    intermediateSize: c.intermediate_size ?? 11008,
    numLayers: c.num_hidden_layers ?? 32,
    numHeads,
    numKeyValueHeads: c.num_key_value_heads ?? numHeads,
    headDim: c.head_dim ?? hiddenSize / numHeads,
    hiddenAct: c.hidden_act ?? 'silu',
    maxPositions: c.max_position_embeddings ?? 2048,
    rmsNormEps: c.rms_norm_eps ?? 1e-6,
    ropeTheta: c.rope_theta ?? 10000,
    attentionBias: c.attention_bias ?? false,
    mlpBias: c.mlp_bias ?? false,
    attentionDropout: c.attention_dropout ?? 0,
    tieWordEmbeddings: c.tie_word_embeddings ?? false,
    initializerRange: c.initializer_range ?? 0.02,
    eosTokenId: Array.isArray(eos) ? eos : [eos],
    bosTokenId: c.bos_token_id === undefined ? 1 : c.bos_token_id,
    padTokenId: c.pad_token_id ?? null,
  };
  if (!Number.isInteger(r.headDim) || r.headDim % 2 !== 0) throw new RangeError(`head_dim (${r.headDim}) must be an even integer (hidden_size ${hiddenSize} / num_attention_heads ${numHeads})`);
  if (r.numHeads % r.numKeyValueHeads !== 0) throw new RangeError(`num_attention_heads (${r.numHeads}) must be a multiple of num_key_value_heads (${r.numKeyValueHeads})`);
  hfActivation(r.hiddenAct);
  return r;
}

/** Keys and values [B, H_kv, T, D] repeated for each of the `groups` query heads sharing them -> [B, H, T, D]. */
export function repeatKv(x: Tensor, groups: number): Tensor {
  if (groups === 1) return x;
  const [b, h, t, d] = x.shape as [number, number, number, number];
  return x.reshape(b, h, 1, t, d).expand(b, h, groups, t, d).reshape(b, h * groups, t, d);
}

/** Per-forward state the layers share: rotary tables, the additive mask and the cache. */
export interface LlamaStep {
  cos: Tensor;
  sin: Tensor;
  mask: Tensor;
  cache: KeyValueCache | null;
}

export class LlamaAttention extends Module {
  readonly qProj: Linear;
  readonly kProj: Linear;
  readonly vProj: Linear;
  readonly oProj: Linear;
  constructor(readonly config: ResolvedLlamaConfig, readonly layerIdx: number) {
    super();
    const { hiddenSize: e, numHeads: h, numKeyValueHeads: kv, headDim: d, attentionBias: bias } = config;
    this.qProj = this.module('q_proj', new Linear(e, h * d, { bias }));
    this.kProj = this.module('k_proj', new Linear(e, kv * d, { bias }));
    this.vProj = this.module('v_proj', new Linear(e, kv * d, { bias }));
    this.oProj = this.module('o_proj', new Linear(h * d, e, { bias }));
  }
  forward(x: Tensor, step: LlamaStep): Tensor {
    const c = this.config;
    const q = applyRotary(splitHeads(this.qProj.forward(x), c.numHeads), step.cos, step.sin);
    let k = applyRotary(splitHeads(this.kProj.forward(x), c.numKeyValueHeads), step.cos, step.sin);
    let v = splitHeads(this.vProj.forward(x), c.numKeyValueHeads);
    if (step.cache) [k, v] = step.cache.update(this.layerIdx, k, v);
    const groups = c.numHeads / c.numKeyValueHeads;
    const ctx = scaledDotProductAttention(q, repeatKv(k, groups), repeatKv(v, groups), { mask: step.mask, dropout: c.attentionDropout, training: this.training });
    return this.oProj.forward(mergeHeads(ctx));
  }
}

export class LlamaMLP extends Module {
  readonly gateProj: Linear;
  readonly upProj: Linear;
  readonly downProj: Linear;
  private readonly act: (x: Tensor) => Tensor;
  constructor(config: ResolvedLlamaConfig) {
    super();
    const { hiddenSize: e, intermediateSize: f, mlpBias: bias } = config;
    this.gateProj = this.module('gate_proj', new Linear(e, f, { bias }));
    this.upProj = this.module('up_proj', new Linear(e, f, { bias }));
    this.downProj = this.module('down_proj', new Linear(f, e, { bias }));
    this.act = hfActivation(config.hiddenAct);
  }
  forward(x: Tensor): Tensor {
    return this.downProj.forward(A.mul(this.act(this.gateProj.forward(x)), this.upProj.forward(x)));
  }
}

export class LlamaDecoderLayer extends Module {
  readonly inputLayernorm: RMSNorm;
  readonly selfAttn: LlamaAttention;
  readonly postAttentionLayernorm: RMSNorm;
  readonly mlp: LlamaMLP;
  constructor(config: ResolvedLlamaConfig, layerIdx: number) {
    super();
    this.selfAttn = this.module('self_attn', new LlamaAttention(config, layerIdx));
    this.mlp = this.module('mlp', new LlamaMLP(config));
    this.inputLayernorm = this.module('input_layernorm', new RMSNorm(config.hiddenSize, config.rmsNormEps));
    this.postAttentionLayernorm = this.module('post_attention_layernorm', new RMSNorm(config.hiddenSize, config.rmsNormEps));
  }
  forward(x: Tensor, step: LlamaStep): Tensor {
    const h = A.add(x, this.selfAttn.forward(this.inputLayernorm.forward(x), step));
    return A.add(h, this.mlp.forward(this.postAttentionLayernorm.forward(h)));
  }
}

export class LlamaModel extends Module {
  readonly embedTokens: Embedding;
  readonly layers: ModuleList<LlamaDecoderLayer>;
  readonly norm: RMSNorm;
  constructor(readonly config: ResolvedLlamaConfig) {
    super();
    this.embedTokens = this.module('embed_tokens', new Embedding(config.vocabSize, config.hiddenSize));
    this.layers = this.module('layers', new ModuleList(Array.from({ length: config.numLayers }, (_, i) => new LlamaDecoderLayer(config, i))));
    this.norm = this.module('norm', new RMSNorm(config.hiddenSize, config.rmsNormEps));
  }
  /** The final hidden state [B, T, E] for the step's rotary tables, mask and cache. */
  forward(inputIds: Tensor, step: LlamaStep): Tensor {
    let x = this.embedTokens.forward(inputIds);
    for (const layer of this.layers) x = layer.forward(x, step);
    return this.norm.forward(x);
  }
}

/** transformers' LlamaForCausalLM: next-token logits [B, T, V]. */
export class LlamaForCausalLM extends Module implements GenerativeModel<KeyValueCache> {
  readonly model: LlamaModel;
  /** The untied head; null when tied to model.embed_tokens. */
  readonly lmHead: Linear | null;
  readonly config: ResolvedLlamaConfig;
  readonly acceptsTokenTypeIds = false;

  constructor(config: LlamaConfig = {}) {
    super();
    this.config = resolveLlamaConfig(config);
    this.model = this.module('model', new LlamaModel(this.config));
    this.lmHead = this.config.tieWordEmbeddings ? null : this.module('lm_head', new Linear(this.config.hiddenSize, this.config.vocabSize, { bias: false }));
    initTransformerWeights(this, this.config.initializerRange);
  }

  get vocabSize(): number {
    return this.config.vocabSize;
  }

  get maxPositions(): number | null {
    return this.config.maxPositions;
  }

  private logits(hidden: Tensor): Tensor {
    return this.lmHead ? this.lmHead.forward(hidden) : A.linear(hidden, this.model.embedTokens.weight);
  }

  /** Logits [B, T, V] from inputIds int32 [B, T]; causal, and padded keys masked by attentionMask [B, T]. */
  forward(inputIds: Tensor, attentionMask?: Tensor | null): Tensor {
    const [, t] = checkInputIds(this.constructor.name, inputIds, this.config.maxPositions, ['attentionMask', attentionMask]);
    const { cos, sin } = rotaryTables(Array.from({ length: t }, (_, i) => i), [t], this.config.headDim, this.config.ropeTheta);
    const mask = causalMask(t, attentionMask);
    return this.logits(this.model.forward(inputIds, { cos, sin, mask, cache: null }));
  }

  newCache(batch: number, encoder?: EncoderInput): KeyValueCache {
    if (encoder) throw new TypeError('LlamaForCausalLM is decoder-only: the prompt is decoded, not encoded (pass no encoder input)');
    return new KeyValueCache(this.config.numLayers, batch);
  }

  forwardCached(ids: Tensor, cache: KeyValueCache, mask?: ArrayLike<number> | null): Tensor {
    const [b, t] = checkInputIds(this.constructor.name, ids, this.config.maxPositions);
    if (b !== cache.batch) throw new RangeError(`${this.constructor.name}: ${b} rows of ids for a cache of ${cache.batch}`);
    if (cache.length + t > this.config.maxPositions) throw new RangeError(`${this.constructor.name}: ${cache.length + t} positions exceed max_position_embeddings (${this.config.maxPositions})`);
    const s = cache.step(t, mask);
    const { cos, sin } = rotaryTables(s.positions, [b, 1, t], this.config.headDim, this.config.ropeTheta);
    return this.logits(this.model.forward(ids, { cos, sin, mask: s.mask, cache }));
  }

  reorderCache(cache: KeyValueCache, beamIndices: Int32Array): KeyValueCache {
    return cache.reorder(beamIndices);
  }

  disposeCache(cache: KeyValueCache): void {
    cache.dispose();
  }

  blockOrder(): string[] {
    return ['model.embed_tokens', ...Array.from({ length: this.config.numLayers }, (_, i) => `model.layers.${i}`), 'model.norm', ...(this.lmHead ? ['lm_head'] : [])];
  }
}
