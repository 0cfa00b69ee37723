/**
 * Messages of the generation panel between the page and the worker: load a causal LM or T5, then
 * generate from a prompt with every new token streamed back as it is chosen.
 */

/** A save_pretrained checkpoint: `hf:org/name` or a folder URL, or the user's own files. */
export type GenerativeModelChoice =
  | { kind: 'url'; ref: string; /** Hub endpoint for `hf:` references. */ endpoint?: string }
  | { kind: 'files'; config: Blob; tokenizer: Blob; weights: Blob; tokenizerConfig?: Blob };

export interface GenerateSettings {
  maxNewTokens: number;
  /** Sample (with temperature, top-p and the seed) instead of greedy search. */
  sample: boolean;
  temperature: number;
  topP: number;
  seed: number;
}

export type GenerateToWorker =
  | { type: 'gen-load'; model: GenerativeModelChoice }
  | { type: 'gen-run'; text: string; settings: GenerateSettings };

export type GenerateFromWorker =
  | { type: 'gen-loaded'; kind: 'causal-lm' | 'seq2seq'; modelType: string; parameters: number; context: number | null }
  /** One new token; `text` is everything generated so far, decoded (so spaces fall where the tokenizer puts them). */
  | { type: 'gen-token'; token: number; step: number; text: string }
  | { type: 'gen-done'; tokens: number[]; text: string; seconds: number };

const TYPES: ReadonlySet<string> = new Set<GenerateToWorker['type']>(['gen-load', 'gen-run']);

export function isGenerateRequest(m: { type: string }): m is GenerateToWorker {
  return TYPES.has(m.type);
}
