/**
 * The worker's side of the generation panel: the model loaded once (a causal LM or T5, through
 * @tl/models' browser entry), then generate() with greedy search or sampling, each token posted
 * to the page from generate()'s onToken as soon as it is chosen.
 */
import { fromPretrainedGenerativeBrowser, generate, type GenerativeModel, type PickedTextFiles, type PretrainedGenerativeBrowser } from '@tl/models';
import type { GenerateFromWorker, GenerateSettings, GenerateToWorker, GenerativeModelChoice } from './protocol-generate.js';

export interface GenerateDeps {
  post(m: GenerateFromWorker | { type: 'stage'; text: string; loaded?: number; total?: number | null }): void;
  /** Starts WebGPU; false when it is not available (the page was told). */
  start(): Promise<boolean>;
}

let loaded: PretrainedGenerativeBrowser | null = null;

function weightsOf(m: GenerativeModelChoice): string | PickedTextFiles {
  if (m.kind === 'files') return { config: m.config, tokenizer: m.tokenizer, weights: m.weights, ...(m.tokenizerConfig ? { tokenizerConfig: m.tokenizerConfig } : {}) };
  if (m.ref.trim() === '') throw new Error('enter a model: hf:org/name, or the URL of a folder with config.json, tokenizer.json and model.safetensors');
  return m.ref.trim();
}

/** config.json's eos_token_id (the first, when it lists several). */
function eosOf(config: Record<string, unknown>): number | undefined {
  const e = Array.isArray(config.eos_token_id) ? config.eos_token_id[0] : config.eos_token_id;
  return typeof e === 'number' ? e : undefined;
}

async function load(model: GenerativeModelChoice, d: GenerateDeps): Promise<void> {
  const weights = weightsOf(model);
  const label = typeof weights === 'string' ? weights : 'your files';
  loaded?.model.dispose();
  loaded = null;
  d.post({ type: 'stage', text: `loading ${label}` });
  loaded = await fromPretrainedGenerativeBrowser({
    weights, endpoint: model.kind === 'url' ? model.endpoint : undefined,
    onProgress: (bytes, total) => d.post({ type: 'stage', text: `downloading ${label}`, loaded: bytes, total }),
  });
  loaded.model.eval();
  d.post({
    type: 'gen-loaded', kind: loaded.kind, modelType: String(loaded.config.model_type ?? loaded.kind),
    parameters: loaded.model.numParameters(), context: loaded.model.maxPositions,
  });
}

async function run(text: string, s: GenerateSettings, d: GenerateDeps): Promise<void> {
  if (!loaded) throw new Error('load a model first');
  const { tokenizer, kind } = loaded;
  const prompt = tokenizer.encode(text, { truncation: false }).inputIds;
  const eos = kind === 'seq2seq' ? loaded.model.config.eosTokenId : eosOf(loaded.config);
  const pad = kind === 'seq2seq' ? loaded.model.config.padTokenId : undefined;
  const head = kind === 'causal-lm' ? tokenizer.decode(prompt, { skipSpecialTokens: true }) : '';
  // A causal LM's continuation is decoded with its prompt and the prompt's text cut off, so the
  // space between the two is the tokenizer's.
  const decode = (ids: number[]): string => {
    if (kind === 'seq2seq') return tokenizer.decode(ids, { skipSpecialTokens: true });
    const full = tokenizer.decode([...prompt, ...ids], { skipSpecialTokens: true });
    return full.startsWith(head) ? full.slice(head.length) : full;
  };
  const tokens: number[] = [];
  const t0 = performance.now();
  // Either kind serves generate(); its cache type is the model's own business.
  await generate(loaded.model as GenerativeModel<unknown>, [prompt], {
    maxNewTokens: s.maxNewTokens, ...(eos !== undefined ? { eosTokenId: eos } : {}), ...(pad !== undefined ? { padTokenId: pad } : {}),
    ...(s.sample ? { doSample: true, temperature: s.temperature, topP: s.topP, seed: s.seed } : {}),
    onToken: (next, step) => {
      tokens.push(next[0]!);
      d.post({ type: 'gen-token', token: next[0]!, step, text: decode(tokens) });
    },
  });
  d.post({ type: 'gen-done', tokens, text: decode(tokens), seconds: (performance.now() - t0) / 1000 });
}

export async function handleGenerate(msg: GenerateToWorker, d: GenerateDeps): Promise<void> {
  if (!(await d.start())) return;
  if (msg.type === 'gen-load') return load(msg.model, d);
  return run(msg.text, msg.settings, d);
}
