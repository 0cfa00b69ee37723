/**
 * T5 with Hugging Face transformers' module names (`shared`, `encoder.block.{i}.layer.0.SelfAttention.{q,k,v,o}`,
 * `…layer.0.SelfAttention.relative_attention_bias` in block 0 of each stack, `decoder.block.{i}.layer.1.EncDecAttention`,
 * `….DenseReluDense.{wi | wi_0, wi_1, wo}`, `layer_norm`, `final_layer_norm`, `lm_head`), from a config.json object:
 * t5-small's ReLU feed-forward with a head tied to the embeddings, and the v1.1 / flan gated GELU
 * with an untied head. Attention is unscaled (T5 folds 1/sqrt(d_kv) into the initialisation) and
 * positions enter only as a learned bias per relative-position bucket, shared by a stack's layers.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import type { EncoderInput, GenerativeModel } from '../generate/types.js';
import { KeyValueCache } from '../generate/kv-cache.js';
import { causalMask, mergeHeads, paddingMask, scaledDotProductAttention, splitHeads } from '../nn/attention.js';
import { ClassifierModel } from '../nn/classifier.js';
import { Embedding, Linear, ModuleList } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { RMSNorm } from '../nn/rms-norm.js';
import { relativeBuckets, resolveT5Config, type ResolvedT5Config, type T5Config } from './t5-config.js';
import { hfActivation, numLabelsOf } from './text-common.js';

export * from './t5-config.js';

/** Per-forward state a stack's layers share. */
interface T5Step {
  /** Relative-position bias plus the additive mask, [B or 1, H, q, k]. */
  bias: Tensor;
  /** Decoder only: the encoder output and its additive padding mask. */
  encoder?: { hidden: Tensor; mask: Tensor | null };
  cache?: T5Cache | null;
}

/** What a T5 decoder remembers while generating: its own keys and values, and the encoder's output. */
export interface T5Cache {
  self: KeyValueCache;
  /** Encoder output [B, S, E]. */
  encoderHidden: Tensor;
  /** Additive mask of the encoder's padding [B, 1, 1, S], or null. */
  encoderMask: Tensor | null;
  /** Per decoder layer, the cross-attention keys and values [B, H, S, D], computed on first use. */
  cross: ([Tensor, Tensor] | null)[];
}

export class T5Attention extends Module {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  readonly relativeAttentionBias: Embedding | null;
  constructor(readonly config: ResolvedT5Config, readonly isDecoder: boolean, hasRelativeBias: boolean, readonly layerIdx: number) {
    super();
    const inner = config.numHeads * config.dKv;
    this.q = this.module('q', new Linear(config.dModel, inner, { bias: false }));
    this.k = this.module('k', new Linear(config.dModel, inner, { bias: false }));
    this.v = this.module('v', new Linear(config.dModel, inner, { bias: false }));
    this.o = this.module('o', new Linear(inner, config.dModel, { bias: false }));
    this.relativeAttentionBias = hasRelativeBias ? this.module('relative_attention_bias', new Embedding(config.numBuckets, config.numHeads)) : null;
  }

  /** The learned bias [1, H, q, k] of queries at positions queryStart.. against keys 0..k-1. */
  positionBias(queryStart: number, q: number, k: number): Tensor {
    if (!this.relativeAttentionBias) throw new Error(`T5Attention: layer ${this.layerIdx} has no relative_attention_bias (only block 0 of a stack does)`);
    const c = this.config;
    const buckets = A.tensor(relativeBuckets(queryStart, q, k, !this.isDecoder, c.numBuckets, c.maxDistance), { shape: [q, k], dtype: 'int32' });
    const values = this.relativeAttentionBias.forward(buckets);
    buckets.dispose();
    return values.permute(2, 0, 1).reshape(1, c.numHeads, q, k);
  }

  /** x [B, T, E] -> [B, T, E]; keys and values from `kv` (cross-attention) or from x, appended to the cache. */
  forward(x: Tensor, bias: Tensor | null, kv: { hidden: Tensor } | [Tensor, Tensor] | null, cache: KeyValueCache | null): Tensor {
    const h = this.config.numHeads;
    const q = splitHeads(this.q.forward(x), h);
    let k: Tensor;
    let v: Tensor;
    if (Array.isArray(kv)) {
      [k, v] = kv;
    } else {
      const src = kv ? kv.hidden : x;
      k = splitHeads(this.k.forward(src), h);
      v = splitHeads(this.v.forward(src), h);
      if (cache) [k, v] = cache.update(this.layerIdx, k, v);
    }
    const ctx = scaledDotProductAttention(q, k, v, { mask: bias, scale: 1, dropout: this.config.dropoutRate, training: this.training });
    return this.o.forward(mergeHeads(ctx));
  }
}

/** T5DenseActDense (`wi`, `wo`) or, gated, T5DenseGatedActDense (`wi_0`, `wi_1`, `wo`). */
export class T5DenseReluDense extends Module {
  readonly wi: Linear | null;
  readonly wi0: Linear | null;
  readonly wi1: Linear | null;
  readonly wo: Linear;
  private readonly act: (x: Tensor) => Tensor;
  constructor(readonly config: ResolvedT5Config) {
    super();
    const { dModel: e, dFf: f, gated } = config;
    this.wi = gated ? null : this.module('wi', new Linear(e, f, { bias: false }));
    this.wi0 = gated ? this.module('wi_0', new Linear(e, f, { bias: false })) : null;
    this.wi1 = gated ? this.module('wi_1', new Linear(e, f, { bias: false })) : null;
    this.wo = this.module('wo', new Linear(f, e, { bias: false }));
    this.act = hfActivation(config.denseAct);
  }
  forward(x: Tensor): Tensor {
    const hidden = this.wi ? this.act(this.wi.forward(x)) : A.mul(this.act(this.wi0!.forward(x)), this.wi1!.forward(x));
    return this.wo.forward(A.dropout(hidden, this.config.dropoutRate, this.training));
  }
}

/** x + dropout(f(layer_norm(x))): every sublayer of a T5 block. */
abstract class T5Sublayer extends Module {
  readonly layerNorm: RMSNorm;
  constructor(readonly config: ResolvedT5Config) {
    super();
    this.layerNorm = this.module('layer_norm', new RMSNorm(config.dModel, config.layerNormEps));
  }
  protected residual(x: Tensor, y: Tensor): Tensor {
    return A.add(x, A.dropout(y, this.config.dropoutRate, this.training));
  }
}

export class T5LayerSelfAttention extends T5Sublayer {
  readonly SelfAttention: T5Attention;
  constructor(config: ResolvedT5Config, isDecoder: boolean, hasRelativeBias: boolean, layerIdx: number) {
    super(config);
    this.SelfAttention = this.module('SelfAttention', new T5Attention(config, isDecoder, hasRelativeBias, layerIdx));
  }
  forward(x: Tensor, step: T5Step): Tensor {
    return this.residual(x, this.SelfAttention.forward(this.layerNorm.forward(x), step.bias, null, step.cache?.self ?? null));
  }
}

export class T5LayerCrossAttention extends T5Sublayer {
  readonly EncDecAttention: T5Attention;
  constructor(config: ResolvedT5Config, readonly layerIdx: number) {
    super(config);
    this.EncDecAttention = this.module('EncDecAttention', new T5Attention(config, true, false, layerIdx));
  }
  forward(x: Tensor, step: T5Step): Tensor {
    const cache = step.cache;
    let kv: { hidden: Tensor } | [Tensor, Tensor] = { hidden: step.encoder!.hidden };
    if (cache) {
      // The encoder output does not change while decoding: project it once per layer.
      const h = this.config.numHeads;
      const att = this.EncDecAttention;
      cache.cross[this.layerIdx] ??= [A.keep(splitHeads(att.k.forward(cache.encoderHidden), h).contiguous()), A.keep(splitHeads(att.v.forward(cache.encoderHidden), h).contiguous())];
      kv = cache.cross[this.layerIdx]!;
    }
    return this.residual(x, this.EncDecAttention.forward(this.layerNorm.forward(x), step.encoder!.mask, kv, null));
  }
}

export class T5LayerFF extends T5Sublayer {
  readonly DenseReluDense: T5DenseReluDense;
  constructor(config: ResolvedT5Config) {
    super(config);
    this.DenseReluDense = this.module('DenseReluDense', new T5DenseReluDense(config));
  }
  forward(x: Tensor): Tensor {
    return this.residual(x, this.DenseReluDense.forward(this.layerNorm.forward(x)));
  }
}

export class T5Block extends Module {
  readonly layer: ModuleList;
  constructor(config: ResolvedT5Config, readonly isDecoder: boolean, layerIdx: number) {
    super();
    const layers: Module[] = [new T5LayerSelfAttention(config, isDecoder, layerIdx === 0, layerIdx)];
    if (isDecoder) layers.push(new T5LayerCrossAttention(config, layerIdx));
    layers.push(new T5LayerFF(config));
    this.layer = this.module('layer', new ModuleList(layers));
  }
  forward(x: Tensor, step: T5Step): Tensor {
    const [self, ...rest] = [...this.layer];
    let y = (self as T5LayerSelfAttention).forward(x, step);
    if (this.isDecoder) y = (rest[0] as T5LayerCrossAttention).forward(y, step);
    return (rest[rest.length - 1] as T5LayerFF).forward(y);
  }
}

/**
 * T5Stack: the encoder or the decoder. The token embedding is the model's `shared` table, held
 * here without registering it, so that its one parameter keeps the name `shared.weight`.
 */
export class T5Stack extends Module {
  readonly block: ModuleList<T5Block>;
  readonly finalLayerNorm: RMSNorm;
  constructor(readonly config: ResolvedT5Config, readonly isDecoder: boolean, private readonly embedTokens: Embedding) {
    super();
    const n = isDecoder ? config.numDecoderLayers : config.numLayers;
    this.block = this.module('block', new ModuleList(Array.from({ length: n }, (_, i) => new T5Block(config, isDecoder, i))));
    this.finalLayerNorm = this.module('final_layer_norm', new RMSNorm(config.dModel, config.layerNormEps));
  }

  private get relativeBias(): T5Attention {
    return (this.block.items[0]!.layer.items[0] as T5LayerSelfAttention).SelfAttention;
  }

  private run(inputIds: Tensor, step: T5Step): Tensor {
    let x = A.dropout(this.embedTokens.forward(inputIds), this.config.dropoutRate, this.training);
    for (const b of this.block) x = b.forward(x, step);
    return A.dropout(this.finalLayerNorm.forward(x), this.config.dropoutRate, this.training);
  }

  /**
   * The last hidden state [B, T, E] of inputIds int32 [B, T]. attentionMask [B, T] (1 = token)
   * masks padded keys; the decoder is causal and attends to `encoder` (its output and additive mask).
   */
  forward(inputIds: Tensor, attentionMask: Tensor | null, encoder?: { hidden: Tensor; mask: Tensor | null }): Tensor {
    const t = inputIds.shape[1]!;
    if (this.block.length === 0) throw new RangeError(`T5Stack: the ${this.isDecoder ? 'decoder' : 'encoder'} has no layers`);
    const mask = this.isDecoder ? causalMask(t, attentionMask) : attentionMask ? paddingMask(attentionMask) : null;
    const position = this.relativeBias.positionBias(0, t, t);
    const bias = mask ? A.add(position, mask) : position;
    return this.run(inputIds, { bias, encoder });
  }

  /** Decoder only: the next t tokens against the cache (their keys and values appended to it). */
  forwardCached(ids: Tensor, cache: T5Cache, mask?: ArrayLike<number> | null): Tensor {
    const t = ids.shape[1]!;
    const past = cache.self.length;
    const s = cache.self.step(t, mask);
    const bias = A.add(this.relativeBias.positionBias(past, t, past + t), s.mask);
    return this.run(ids, { bias, encoder: { hidden: cache.encoderHidden, mask: cache.encoderMask }, cache });
  }
}

/** transformers' T5 `_init_weights`: each weight's std from the widths it mixes (initializer_factor 1). */
function initT5Weights(model: Module, c: ResolvedT5Config): void {
  const f = c.initializerFactor;
  const std = (name: string, m: Module): number | null => {
    if (m instanceof Embedding) return name.endsWith('relative_attention_bias') ? f * c.dModel ** -0.5 : f;
    if (!(m instanceof Linear)) return null;
    const leaf = name.slice(name.lastIndexOf('.') + 1);
    if (leaf === 'q') return f * (c.dModel * c.dKv) ** -0.5;
    if (leaf === 'k' || leaf === 'v' || leaf === 'wi' || leaf === 'wi_0' || leaf === 'wi_1') return f * c.dModel ** -0.5;
    if (leaf === 'o') return f * (c.numHeads * c.dKv) ** -0.5;
    if (leaf === 'wo') return f * c.dFf ** -0.5;
    // lm_head and a classification head.
    return f * (name === 'lm_head' ? 1 : c.dModel ** -0.5);
  };
  A.noGrad(() => A.tidy(() => {
    for (const [name, m] of model.namedModules()) {
      const s = std(name, m);
      if (s !== null) {
        const w = (m as Linear | Embedding).weight;
        A.assign(w, A.randn(w.shape, { std: s }));
        if (m instanceof Linear && m.bias) A.assign(m.bias, 0);
      } else if (m instanceof RMSNorm) {
        A.assign(m.weight, f);
      }
    }
  }));
}

/** Checks token ids int32 [B, T] and a mask [B, T]. */
function checkIds(model: string, what: string, ids: Tensor, mask?: Tensor | null): [number, number] {
  if (ids.dtype !== 'int32' || ids.rank !== 2) throw new TypeError(`${model}: ${what} must be an int32 tensor [batch, seq], got ${ids.dtype} [${ids.shape.join(', ')}]`);
  const [b, t] = ids.shape as [number, number];
  if (mask && (mask.rank !== 2 || mask.shape[0] !== b || mask.shape[1] !== t)) throw new RangeError(`${model}: the mask of ${what} must be [${b}, ${t}], got [${mask.shape.join(', ')}]`);
  return [b, t];
}

/**
 * transformers' `_shift_right`: decoder inputs from labels int32 [B, T], the start token first
 * and each label one place later, ignored labels (-100) read as padding.
 */
export function shiftRight(labels: Tensor, decoderStartTokenId: number, padTokenId: number): Tensor {
  const [b, t] = checkIds('shiftRight', 'labels', labels);
  const start = A.full([b, 1], decoderStartTokenId, 'int32');
  const shifted = t > 1 ? A.cat([start, labels.slice(1, 0, t - 1)], 1) : start;
  const out = A.map([shifted, padTokenId], ([v, p]) => `select(${v}, ${p}, ${v} == -100.0)`, { dtype: 'int32', label: 'shiftRight' });
  start.dispose();
  if (shifted !== start) shifted.dispose();
  return out;
}

/** transformers' T5ForConditionalGeneration: logits [B, T, V] of the decoder given the encoded input. */
export class T5ForConditionalGeneration extends Module implements GenerativeModel<T5Cache> {
  readonly shared: Embedding;
  readonly encoder: T5Stack;
  readonly decoder: T5Stack;
  /** The untied head; null when tied to `shared`. */
  readonly lmHead: Linear | null;
  readonly config: ResolvedT5Config;
  readonly maxPositions = null;

  constructor(config: T5Config = {}) {
    super();
    this.config = resolveT5Config(config);
    const c = this.config;
    if (c.numDecoderLayers < 1) throw new RangeError('T5ForConditionalGeneration: num_decoder_layers must be at least 1');
    this.shared = this.module('shared', new Embedding(c.vocabSize, c.dModel));
    this.encoder = this.module('encoder', new T5Stack(c, false, this.shared));
    this.decoder = this.module('decoder', new T5Stack(c, true, this.shared));
    this.lmHead = c.tieWordEmbeddings ? null : this.module('lm_head', new Linear(c.dModel, c.vocabSize, { bias: false }));
    initT5Weights(this, c);
  }

  get vocabSize(): number {
    return this.config.vocabSize;
  }

  get decoderStartTokenId(): number {
    return this.config.decoderStartTokenId;
  }

  /** The decoder output [B, T, E] -> logits; a tied head rescales by d_model^-0.5 first, as transformers does. */
  private logits(hidden: Tensor): Tensor {
    if (this.lmHead) return this.lmHead.forward(hidden);
    return A.linear(A.mul(hidden, this.config.dModel ** -0.5), this.shared.weight);
  }

  /** The encoder output [B, S, E] of inputIds int32 [B, S] (attentionMask: 1 = token). */
  encode(inputIds: Tensor, attentionMask?: Tensor | null): Tensor {
    checkIds(this.constructor.name, 'inputIds', inputIds, attentionMask);
    return this.encoder.forward(inputIds, attentionMask ?? null);
  }

  /**
   * Logits [B, T, V] from the encoder input (inputIds [B, S], attentionMask) and the decoder
   * input (decoderInputIds [B, T], e.g. shiftRight(labels), and its mask).
   */
  forward(inputIds: Tensor, attentionMask?: Tensor | null, decoderInputIds?: Tensor, decoderAttentionMask?: Tensor | null): Tensor {
    if (!decoderInputIds) throw new TypeError(`${this.constructor.name}: forward needs decoderInputIds (e.g. shiftRight(labels, …)) besides the encoder input`);
    attentionMask ??= null;
    const [b] = checkIds(this.constructor.name, 'inputIds', inputIds, attentionMask);
    const [bd] = checkIds(this.constructor.name, 'decoderInputIds', decoderInputIds, decoderAttentionMask);
    if (b !== bd) throw new RangeError(`${this.constructor.name}: ${b} encoder rows but ${bd} decoder rows`);
    const hidden = this.encoder.forward(inputIds, attentionMask);
    const encoderMask = attentionMask ? paddingMask(attentionMask) : null;
    return this.logits(this.decoder.forward(decoderInputIds, decoderAttentionMask ?? null, { hidden, mask: encoderMask }));
  }

  /** transformers' loss from `labels` [B, T] (-100 ignored): mean cross-entropy of the teacher-forced logits. */
  loss(inputIds: Tensor, attentionMask: Tensor | null, labels: Tensor): { loss: Tensor; logits: Tensor } {
    const decoderInputIds = shiftRight(labels, this.config.decoderStartTokenId, this.config.padTokenId);
    const logits = this.forward(inputIds, attentionMask, decoderInputIds);
    decoderInputIds.dispose();
    const [b, t, v] = logits.shape as [number, number, number];
    const loss = A.crossEntropy(logits.reshape(b * t, v), labels.reshape(b * t), { ignoreIndex: -100 });
    return { loss, logits };
  }

  newCache(batch: number, encoder?: EncoderInput): T5Cache {
    if (!encoder) throw new TypeError(`${this.constructor.name} is an encoder-decoder: newCache needs the encoder input (the prompt ids)`);
    const [b] = checkIds(this.constructor.name, 'inputIds', encoder.inputIds, encoder.attentionMask);
    if (b !== batch) throw new RangeError(`${this.constructor.name}: ${b} prompt rows for a cache of ${batch}`);
    const mask = encoder.attentionMask ?? null;
    const hidden = A.noGrad(() => A.keep(this.encoder.forward(encoder.inputIds, mask)));
    const encoderMask = mask ? A.keep(paddingMask(mask)) : null;
    return { self: new KeyValueCache(this.config.numDecoderLayers, batch), encoderHidden: hidden, encoderMask, cross: new Array<[Tensor, Tensor] | null>(this.config.numDecoderLayers).fill(null) };
  }

  forwardCached(ids: Tensor, cache: T5Cache, mask?: ArrayLike<number> | null): Tensor {
    const [b] = checkIds(this.constructor.name, 'ids', ids);
    if (b !== cache.self.batch) throw new RangeError(`${this.constructor.name}: ${b} rows of ids for a cache of ${cache.self.batch}`);
    return this.logits(this.decoder.forwardCached(ids, cache, mask));
  }

  reorderCache(cache: T5Cache, beamIndices: Int32Array): T5Cache {
    const idx = A.tensor(beamIndices, { dtype: 'int32' });
    const pick = (t: Tensor): Tensor => A.keep(A.indexSelect(t, 0, idx));
    const out: T5Cache = {
      self: cache.self.reorder(beamIndices),
      encoderHidden: pick(cache.encoderHidden),
      encoderMask: cache.encoderMask ? pick(cache.encoderMask) : null,
      cross: cache.cross.map((kv) => (kv ? [pick(kv[0]), pick(kv[1])] : null)),
    };
    idx.dispose();
    disposeOuter(cache);
    return out;
  }

  disposeCache(cache: T5Cache): void {
    cache.self.dispose();
    disposeOuter(cache);
  }

  blockOrder(): string[] {
    const c = this.config;
    return [
      'shared',
      ...Array.from({ length: c.numLayers }, (_, i) => `encoder.block.${i}`),
      'encoder.final_layer_norm',
      ...Array.from({ length: c.numDecoderLayers }, (_, i) => `decoder.block.${i}`),
      'decoder.final_layer_norm',
      ...(this.lmHead ? ['lm_head'] : []),
    ];
  }
}

/** The cache's tensors other than the self-attention cache. */
function disposeOuter(cache: T5Cache): void {
  cache.encoderHidden.dispose();
  cache.encoderMask?.dispose();
  for (const kv of cache.cross) kv?.forEach((t) => t.dispose());
}

export interface T5EncoderClassifierOptions {
  /** Outputs of the head; default config.num_labels (or the size of id2label, else 2). */
  numLabels?: number;
}

/**
 * T5's encoder (transformers' T5EncoderModel keys: `shared`, `encoder.*`) as a text classifier:
 * the final hidden states averaged over the tokens the attention mask keeps, then dropout and a
 * linear `classifier`.
 */
export class T5EncoderForSequenceClassification extends ClassifierModel {
  readonly classifierPath = 'classifier';
  readonly shared: Embedding;
  readonly encoder: T5Stack;
  classifier: Linear;
  readonly config: ResolvedT5Config;
  readonly acceptsTokenTypeIds = false;

  constructor(config: T5Config = {}, opts: T5EncoderClassifierOptions = {}) {
    super();
    this.config = resolveT5Config(config);
    const c = this.config;
    this.shared = this.module('shared', new Embedding(c.vocabSize, c.dModel));
    this.encoder = this.module('encoder', new T5Stack(c, false, this.shared));
    this.classifier = this.module('classifier', new Linear(c.dModel, numLabelsOf(config, opts.numLabels)));
    initT5Weights(this, c);
  }

  /** The encoder's final hidden states mean-pooled over the kept tokens: [B, E]. */
  forwardFeatures(inputIds: Tensor, attentionMask?: Tensor | null): Tensor {
    const [b, t] = checkIds(this.constructor.name, 'inputIds', inputIds, attentionMask);
    const hidden = this.encoder.forward(inputIds, attentionMask ?? null);
    if (!attentionMask) return A.mean(hidden, 1);
    const keep = A.map([attentionMask], ([m]) => `select(0.0, 1.0, ${m} != 0.0)`, { label: 'keep' }).reshape(b, t, 1);
    const count = A.map([A.sum(keep, 1)], ([n]) => `max(${n}, 1.0)`, { label: 'count' });
    return A.div(A.sum(A.mul(hidden, keep), 1), count);
  }

  forwardHead(features: Tensor): Tensor {
    return this.classifier.forward(A.dropout(features, this.config.classifierDropout, this.training));
  }

  /** Logits [B, numLabels] from inputIds int32 [B, T] and optionally the attention mask. */
  forward(inputIds: Tensor, attentionMask?: Tensor | null): Tensor {
    return this.forwardHead(this.forwardFeatures(inputIds, attentionMask));
  }

  blockOrder(): string[] {
    return ['shared', ...Array.from({ length: this.config.numLayers }, (_, i) => `encoder.block.${i}`), 'encoder.final_layer_norm', 'classifier'];
  }

  protected override onChildReplaced(name: string, m: Module): void {
    if (name !== 'classifier' || !(m instanceof Linear)) super.onChildReplaced(name, m);
    this.classifier = m as Linear;
  }
}
