/**
 * transformers' GPT2LMHeadModel: GPT-2 (gpt2.ts) with the language-model head tied to the token
 * embedding. The head has no key of its own (`lm_head.weight` is `transformer.wte.weight`, and
 * `save_pretrained` writes it once), so the keys are those of the base model under `transformer.`.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { KeyValueCache } from '../generate/kv-cache.js';
import type { EncoderInput, GenerativeModel } from '../generate/types.js';
import { Module } from '../nn/module.js';
import { GPT2Model, initGPT2Weights, resolveGPT2Config, type GPT2Config, type ResolvedGPT2Config } from './gpt2.js';
import { checkInputIds } from './text-common.js';

export class GPT2LMHeadModel extends Module implements GenerativeModel<KeyValueCache> {
  readonly transformer: GPT2Model;
  readonly config: ResolvedGPT2Config;
  readonly acceptsTokenTypeIds = false;
  /** config.json's eos_token_id (gpt2: 50256, <|endoftext|>). */
  readonly eosTokenId: number[];

  constructor(config: GPT2Config = {}) {
    super();
    this.config = resolveGPT2Config(config);
    const eos = config.eos_token_id ?? 50256;
    this.eosTokenId = (Array.isArray(eos) ? eos : [eos]) as number[];
    this.transformer = this.module('transformer', new GPT2Model(this.config));
    initGPT2Weights(this, this.config);
  }

  get vocabSize(): number {
    return this.config.vocabSize;
  }

  get maxPositions(): number | null {
    return this.config.nPositions;
  }

  /** Logits [B, T, V] from inputIds int32 [B, T]; causal, and padded keys masked by attentionMask [B, T]. */
  forward(inputIds: Tensor, attentionMask?: Tensor | null): Tensor {
    return A.linear(this.transformer.forward(inputIds, attentionMask), this.transformer.wte.weight);
  }

  newCache(batch: number, encoder?: EncoderInput): KeyValueCache {
    if (encoder) throw new TypeError('GPT2LMHeadModel is decoder-only: the prompt is decoded, not encoded (pass no encoder input)');
    return new KeyValueCache(this.config.nLayer, batch);
  }

  forwardCached(ids: Tensor, cache: KeyValueCache, mask?: ArrayLike<number> | null): Tensor {
    const [b, t] = checkInputIds(this.constructor.name, ids, this.config.nPositions);
    if (b !== cache.batch) throw new RangeError(`${this.constructor.name}: ${b} rows of ids for a cache of ${cache.batch}`);
    if (cache.length + t > this.config.nPositions) throw new RangeError(`${this.constructor.name}: ${cache.length + t} positions exceed n_positions (${this.config.nPositions})`);
    const s = cache.step(t, mask);
    const positions = A.tensor(s.positions, { shape: [b, t], dtype: 'int32' });
    return A.linear(this.transformer.forwardAt(ids, positions, s.mask, cache), this.transformer.wte.weight);
  }

  reorderCache(cache: KeyValueCache, beamIndices: Int32Array): KeyValueCache {
    return cache.reorder(beamIndices);
  }

  disposeCache(cache: KeyValueCache): void {
    cache.dispose();
  }

  blockOrder(): string[] {
    return ['transformer.wte', 'transformer.wpe', ...Array.from({ length: this.config.nLayer }, (_, i) => `transformer.h.${i}`), 'transformer.ln_f'];
  }
}
