/**
 * Causal language models from Hugging Face checkpoints: config.json picks the architecture
 * (`model_type` llama or gpt2) and shapes it, tokenizer.json becomes the tokenizer, and
 * model.safetensors loads strictly through a key map. The map drops only what is no parameter
 * here: rotary `inv_freq` buffers of older Llama files, GPT-2's causal-mask buffers, and a tied
 * `lm_head.weight` (the embedding, written twice by some savers); a base GPT-2 file without the
 * `transformer.` prefix gets it. Nothing is newly initialised: a missing key is an error.
 */
import { GPT2LMHeadModel } from './arch/gpt2-lm.js';
import { LlamaForCausalLM } from './arch/llama.js';
import { checkVocabSize, loadTextCheckpointWith, type LoadedTextCheckpoint, type TextCheckpointSource } from './pretrained-text.js';
import type { HostArray } from './safetensors.js';
import type { DroppedKey, TensorSource, TextLoadReport } from './text-checkpoint.js';

export type CausalLM = LlamaForCausalLM | GPT2LMHeadModel;

/** config.json's `model_type` of the causal LMs here. */
export const CAUSAL_LM_TYPES = ['llama', 'gpt2'] as const;
export type CausalLMType = (typeof CAUSAL_LM_TYPES)[number];

/** A causal LM built from a config.json object (`model_type` llama or gpt2; `modelType` overrides it). */
export function causalLMFromConfig(config: Record<string, unknown>, modelType?: string): CausalLM {
  const type = modelType ?? config.model_type;
  if (type === 'llama') return new LlamaForCausalLM(config);
  if (type === 'gpt2') return new GPT2LMHeadModel(config);
  throw new RangeError(`model_type ${JSON.stringify(type)} is not a causal LM here; expected one of ${CAUSAL_LM_TYPES.join(', ')}`);
}

export function causalLMTypeOf(model: CausalLM): CausalLMType {
  return model instanceof LlamaForCausalLM ? 'llama' : 'gpt2';
}

const GPT2_ROOTS = ['wte', 'wpe', 'h', 'ln_f'];

/** Checkpoint keys -> model keys, and the keys left out with the reason. */
export function mapCausalLMKeys(modelType: CausalLMType, tied: boolean, checkpointKeys: Iterable<string>): { keys: Map<string, string>; renamed: [string, string][]; dropped: DroppedKey[] } {
  const keys = new Map<string, string>();
  const renamed: [string, string][] = [];
  const dropped: DroppedKey[] = [];
  for (const key of checkpointKeys) {
    let k = key;
    if (modelType === 'gpt2' && GPT2_ROOTS.includes(key.split('.', 1)[0]!)) k = `transformer.${key}`;
    let reason: string | null = null;
    if (k === 'lm_head.weight' && tied) reason = 'language-model head, tied to the token embedding';
    else if (modelType === 'llama' && /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/.test(k)) reason = 'rotary frequency buffer, computed from rope_theta';
    else if (modelType === 'gpt2' && /^transformer\.h\.\d+\.attn\.(bias|masked_bias)$/.test(k)) reason = 'causal-mask buffer, not a parameter';
    if (reason) {
      dropped.push({ key, reason });
      continue;
    }
    if (keys.has(k)) throw new RangeError(`the checkpoint keys "${keys.get(k)}" and "${key}" both map to ${k}`);
    keys.set(k, key);
    if (k !== key) renamed.push([key, k]);
  }
  return { keys, renamed, dropped };
}

/** Loads a checkpoint into a causal LM strictly (every parameter from the file, nothing else). */
export async function loadCausalLMCheckpoint(model: CausalLM, source: TensorSource): Promise<TextLoadReport> {
  const tied = model instanceof GPT2LMHeadModel || model.lmHead === null;
  const map = mapCausalLMKeys(causalLMTypeOf(model), tied, source.keys());
  const dict = new Map<string, HostArray>();
  for (const [k, ck] of map.keys) dict.set(k, await source.get(ck));
  model.loadStateDict(dict, { strict: true });
  return { renamed: map.renamed, dropped: map.dropped, newlyInitialized: [] };
}

export type PretrainedCausalLM = LoadedTextCheckpoint<CausalLM>;

/**
 * A causal LM with its checkpoint loaded strictly, and its tokenizer. `id` (llama, gpt2) must
 * agree with config.json's model_type when given; `label` names the checkpoint in errors.
 */
export function loadPretrainedCausalLM(id: string | null, source: TextCheckpointSource, opts: { label: string }): Promise<PretrainedCausalLM> {
  return loadTextCheckpointWith<CausalLM>(source, opts.label, {
    build: (config) => {
      if (id !== null && config.model_type !== undefined && config.model_type !== id) {
        throw new RangeError(`${opts.label}: config.json has model_type "${String(config.model_type)}", not "${id}"`);
      }
      return causalLMFromConfig(config, id ?? undefined);
    },
    checkTokenizer: (model, tokenizer) => checkVocabSize(tokenizer, model.vocabSize, opts.label),
    load: loadCausalLMCheckpoint,
  });
}
