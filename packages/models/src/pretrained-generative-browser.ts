/**
 * Models that generate text, in the browser: a causal LM (Llama, GPT-2) or T5 from the Hub, a
 * base URL or the user's picked save_pretrained files, chosen by config.json's model_type and
 * loaded strictly by the same loaders as fromPretrainedCausalLM / fromPretrainedSeq2Seq in Node.
 */
import type { FetchWeightsOptions } from './fetch-cached.js';
import { loadPretrainedCausalLM, type PretrainedCausalLM } from './pretrained-causal-lm.js';
import { loadPretrainedSeq2Seq, type PretrainedSeq2Seq } from './pretrained-seq2seq.js';
import { parseJSON, type NamedText } from './pretrained-text.js';
import { browserTextSource, type PickedTextFiles } from './pretrained-text-browser.js';

export interface GenerativeBrowserOptions extends FetchWeightsOptions {
  /** `hf:org/name[@revision]`, the URL of a save_pretrained folder, or its picked files. */
  weights: string | URL | PickedTextFiles;
}

export type PretrainedGenerativeBrowser = ({ kind: 'causal-lm' } & PretrainedCausalLM) | ({ kind: 'seq2seq' } & PretrainedSeq2Seq);

/** A causal LM, or T5 when config.json's model_type is "t5", with its tokenizer. */
export async function fromPretrainedGenerativeBrowser(opts: GenerativeBrowserOptions): Promise<PretrainedGenerativeBrowser> {
  const { source, label } = browserTextSource(opts?.weights, opts ?? {}, 'fromPretrainedGenerativeBrowser', 'hf:org/name');
  // config.json is read once here to choose the loader, which reads it again from this copy.
  const config = await source.config();
  const json = parseJSON<{ model_type?: unknown }>(config, 'config.json');
  const once = { ...source, config: async (): Promise<NamedText> => config };
  if (json?.model_type === 't5') return { kind: 'seq2seq', ...(await loadPretrainedSeq2Seq(once, { label })) };
  return { kind: 'causal-lm', ...(await loadPretrainedCausalLM(null, once, { label })) };
}
