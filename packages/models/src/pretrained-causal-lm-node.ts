/** Causal LMs from the Hugging Face Hub or a `save_pretrained` folder, in Node. */
import type { HubOptions } from './hub/hub-node.js';
import { loadPretrainedCausalLM, type PretrainedCausalLM } from './pretrained-causal-lm.js';
import { textCheckpointSource } from './pretrained-text-node.js';

export interface CausalLMPretrainedOptions {
  /** `hf:org/name[@revision]`, a folder with config.json, tokenizer.json and model.safetensors, or that model.safetensors. */
  weights: string;
  hub?: HubOptions;
}

/** A causal LM (`id` llama or gpt2, or null to follow config.json's model_type) loaded strictly, with its tokenizer. */
export async function fromPretrainedCausalLM(id: string | null, opts: CausalLMPretrainedOptions): Promise<PretrainedCausalLM> {
  if (typeof opts?.weights !== 'string' || opts.weights === '') throw new TypeError(`fromPretrainedCausalLM(${JSON.stringify(id)}): weights must name a checkpoint (hf:org/name or a local folder)`);
  return loadPretrainedCausalLM(id, await textCheckpointSource(opts.weights, opts.hub ?? {}), { label: opts.weights });
}
