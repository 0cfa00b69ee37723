/** T5 from the Hugging Face Hub or a `save_pretrained` folder, in Node. */
import type { HubOptions } from './hub/hub-node.js';
import { loadPretrainedSeq2Seq, type PretrainedSeq2Seq } from './pretrained-seq2seq.js';
import { textCheckpointSource } from './pretrained-text-node.js';

export interface Seq2SeqPretrainedOptions {
  /** `hf:org/name[@revision]`, a folder with config.json, tokenizer.json and model.safetensors, or that model.safetensors. */
  weights: string;
  hub?: HubOptions;
}

/** T5ForConditionalGeneration loaded strictly, with its tokenizer. */
export async function fromPretrainedSeq2Seq(opts: Seq2SeqPretrainedOptions): Promise<PretrainedSeq2Seq> {
  if (typeof opts?.weights !== 'string' || opts.weights === '') throw new TypeError('fromPretrainedSeq2Seq: weights must name a checkpoint (hf:org/name or a local folder)');
  return loadPretrainedSeq2Seq(await textCheckpointSource(opts.weights, opts.hub ?? {}), { label: opts.weights });
}
