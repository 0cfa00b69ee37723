/**
 * The generation panel: a causal LM or T5 (hf:, a folder URL, or the user's save_pretrained
 * files), a prompt, greedy search or sampling, and the generated text growing in the page token
 * by token as the worker streams it.
 */
import type { GenerateFromWorker, GenerateSettings, GenerateToWorker, GenerativeModelChoice } from './protocol-generate.js';

/** What the browser tests read. */
export interface GeneratePanelState {
  loaded: Extract<GenerateFromWorker, { type: 'gen-loaded' }> | null;
  /** Token ids as they arrived, and whether the run has ended. */
  streamed: number[];
  done: Extract<GenerateFromWorker, { type: 'gen-done' }> | null;
  error: string | null;
}

const MARKUP = `
  <h2>Generate text (causal LM or T5)</h2>
  <p class="muted">A Llama, GPT-2 or T5 checkpoint as <code>save_pretrained</code> writes it; tokens appear as the model chooses them.</p>
  <label><input type="radio" name="gen-model" value="url" checked /> <code>hf:org/name</code> or a folder URL
    <input id="gen-model-url" type="text" size="36" placeholder="hf:roneneldan/TinyStories-1M" /></label>
  <label><input type="radio" name="gen-model" value="files" /> My files (config.json, tokenizer.json, model.safetensors)
    <input id="gen-model-files" type="file" multiple accept=".json,.safetensors" /></label>
  <div class="row"><button id="gen-load" type="button">Load</button> <span id="gen-status" class="muted"></span></div>
  <label>Prompt <textarea id="gen-prompt" rows="2" cols="60">Once upon a time</textarea></label>
  <div class="row">
    <label>new tokens <input id="gen-max" type="number" min="1" value="40" /></label>
    <label><input id="gen-sample" type="checkbox" /> sample</label>
    <label>temperature <input id="gen-temperature" type="number" min="0.05" step="0.05" value="1" /></label>
    <label>top-p <input id="gen-top-p" type="number" min="0.05" max="1" step="0.05" value="0.9" /></label>
    <label>seed <input id="gen-seed" type="number" value="0" /></label>
  </div>
  <div class="row"><button id="gen-run" type="button" class="primary" disabled>Generate</button></div>
  <pre id="gen-output" aria-live="polite"></pre>`;

function picked(files: FileList | null): GenerativeModelChoice {
  const byName = new Map([...(files ?? [])].map((f) => [f.name, f]));
  const missing = ['config.json', 'tokenizer.json', 'model.safetensors'].filter((n) => !byName.has(n));
  if (missing.length) throw new Error(`pick the checkpoint's ${missing.join(', ')} (got ${[...byName.keys()].join(', ') || 'no files'})`);
  const tokenizerConfig = byName.get('tokenizer_config.json');
  return { kind: 'files', config: byName.get('config.json')!, tokenizer: byName.get('tokenizer.json')!, weights: byName.get('model.safetensors')!, ...(tokenizerConfig ? { tokenizerConfig } : {}) };
}

export function mountGeneratePanel(host: HTMLElement, worker: Worker, send: (m: GenerateToWorker) => void, hub: string | null): GeneratePanelState {
  host.innerHTML = MARKUP;
  const $ = <T extends HTMLElement>(id: string): T => host.querySelector<T>(`#${id}`)!;
  const state: GeneratePanelState = { loaded: null, streamed: [], done: null, error: null };
  const status = $('gen-status');
  const output = $<HTMLPreElement>('gen-output');
  const runButton = $<HTMLButtonElement>('gen-run');
  let active = false;
  const num = (id: string): number => Number($<HTMLInputElement>(id).value);

  $('gen-load').addEventListener('click', () => {
    try {
      const useFiles = host.querySelector<HTMLInputElement>('input[name="gen-model"]:checked')?.value === 'files';
      const model: GenerativeModelChoice = useFiles ? picked($<HTMLInputElement>('gen-model-files').files) : { kind: 'url', ref: $<HTMLInputElement>('gen-model-url').value, ...(hub ? { endpoint: hub } : {}) };
      state.loaded = null;
      state.error = null;
      runButton.disabled = true;
      active = true;
      status.textContent = 'loading…';
      send({ type: 'gen-load', model });
    } catch (e) {
      state.error = (e as Error).message;
      status.textContent = state.error;
    }
  });

  runButton.addEventListener('click', () => {
    const settings: GenerateSettings = {
      maxNewTokens: num('gen-max'), sample: $<HTMLInputElement>('gen-sample').checked, temperature: num('gen-temperature'), topP: num('gen-top-p'), seed: num('gen-seed'),
    };
    state.streamed = [];
    state.done = null;
    state.error = null;
    output.textContent = '';
    runButton.disabled = true;
    active = true;
    status.textContent = 'generating…';
    send({ type: 'gen-run', text: $<HTMLTextAreaElement>('gen-prompt').value, settings });
  });

  worker.addEventListener('message', (e: MessageEvent<GenerateFromWorker | { type: 'error'; message: string; during: string } | { type: 'stage'; text: string }>) => {
    const m = e.data;
    if (m.type === 'gen-loaded') {
      state.loaded = m;
      active = false;
      runButton.disabled = false;
      status.textContent = `${m.modelType} (${m.kind === 'seq2seq' ? 'generates a target from the prompt' : 'continues the prompt'}), ${m.parameters.toLocaleString('en')} parameters${m.context ? `, context ${m.context} tokens` : ''}`;
    } else if (m.type === 'gen-token') {
      state.streamed.push(m.token);
      output.textContent = m.text;
    } else if (m.type === 'gen-done') {
      state.done = m;
      active = false;
      runButton.disabled = false;
      output.textContent = m.text;
      status.textContent = `${m.tokens.length} tokens in ${m.seconds.toFixed(1)} s (${(m.tokens.length / Math.max(m.seconds, 1e-3)).toFixed(1)} tokens/s)`;
    } else if (m.type === 'error' && m.during.startsWith('gen-')) {
      state.error = m.message;
      active = false;
      runButton.disabled = state.loaded === null;
      status.textContent = m.message;
    } else if (m.type === 'stage' && active) {
      status.textContent = m.text;
    }
  });
  return state;
}
