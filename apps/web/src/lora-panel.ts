/**
 * The text LoRA panel: a text model (hf:, a folder URL, or the user's files), the user's
 * labelled sentences (typed, .txt per label, or a CSV/TSV), LoRA options, training in the
 * worker, the trainable share and adapter size, trying sentences, and PEFT's two files as
 * downloads. The sentences go to the worker and nowhere else.
 */
import { parseLabelledTable, sentenceLines, type LabelledSentence } from './labelled-text.js';
import { dropZone, saveFile } from './page-files.js';
import type { FromWorker, ToWorker } from './protocol.js';
import type { LoraDone, TextModelChoice } from './protocol-adapt.js';
import { DEFAULT_TEXT_LORA, parseTargets, type TextLoraOptions } from './text-lora-job.js';

/** What the browser tests read. */
export interface LoraPanelState {
  training: boolean;
  done: LoraDone | null;
  error: string | null;
  predictions: number[][] | null;
  exported: { configBytes: number; weightsBytes: number } | null;
}

const MARKUP = `
  <h2>Text LoRA on your own sentences</h2>
  <p class="muted">Your sentences stay in this page and its worker: only the model's public files are downloaded.</p>
  <label><input type="radio" name="lora-model" value="url" checked /> Text model <code>hf:org/name</code> or a folder URL
    <input id="lora-model-url" type="text" size="36" placeholder="hf:google-bert/bert-base-uncased" /></label>
  <label><input type="radio" name="lora-model" value="files" /> My files (config.json, tokenizer.json, model.safetensors)
    <input id="lora-model-files" type="file" multiple accept=".json,.safetensors" /> or a folder <input id="lora-model-folder" type="file" webkitdirectory /></label>
  <label>Architecture <select id="lora-arch"></select></label>
  <div id="lora-labels"></div>
  <div class="row">
    <button id="lora-add-label" type="button">Add a label</button>
    <label>or a CSV/TSV with <code>text</code> and <code>label</code> columns <input id="lora-table" type="file" accept=".csv,.tsv,.tab,.txt" /></label>
  </div>
  <div class="row">
    <label>r <input id="lora-r" type="number" min="1" value="${DEFAULT_TEXT_LORA.r}" /></label>
    <label>alpha <input id="lora-alpha" type="number" min="1" value="${DEFAULT_TEXT_LORA.alpha}" /></label>
    <label>dropout <input id="lora-dropout" type="number" min="0" max="0.9" step="0.05" value="${DEFAULT_TEXT_LORA.dropout}" /></label>
    <label>targets <input id="lora-targets" type="text" size="14" value="${DEFAULT_TEXT_LORA.targets.join(', ')}" /></label>
  </div>
  <div class="row">
    <label>epochs <input id="lora-epochs" type="number" min="1" value="${DEFAULT_TEXT_LORA.epochs}" /></label>
    <label>learning rate <input id="lora-lr" type="text" size="6" value="${DEFAULT_TEXT_LORA.lr}" /></label>
    <label>batch <input id="lora-batch" type="number" min="1" value="${DEFAULT_TEXT_LORA.batchSize}" /></label>
    <label>max tokens <input id="lora-max-length" type="number" min="3" value="${DEFAULT_TEXT_LORA.maxLength}" /></label>
    <label>validation split <input id="lora-val-split" type="number" min="0" max="0.5" step="0.05" value="${DEFAULT_TEXT_LORA.valSplit}" /></label>
    <label>seed <input id="lora-seed" type="number" value="${DEFAULT_TEXT_LORA.seed}" /></label>
  </div>
  <div class="row"><button id="lora-train" type="button" class="primary">Train LoRA</button> <span id="lora-status" class="muted"></span></div>
  <div id="lora-result"></div>
  <label>Try sentences (one per line) <textarea id="lora-try" rows="3" cols="60"></textarea></label>
  <div class="row"><button id="lora-classify" type="button" disabled>Classify</button>
    <button id="lora-download" type="button" disabled>Download adapter_config.json + adapter_model.safetensors</button></div>
  <div id="lora-predictions"></div>`;

interface LabelCard {
  name: HTMLInputElement;
  text: HTMLTextAreaElement;
}

export function mountLoraPanel(host: HTMLElement, worker: Worker, send: (m: ToWorker) => void, hub: string | null): LoraPanelState {
  host.innerHTML = MARKUP;
  const el = <T extends HTMLElement = HTMLInputElement>(id: string): T => host.querySelector<T>(`#${id}`)!;
  const state: LoraPanelState = { training: false, done: null, error: null, predictions: null, exported: null };
  const status = (text: string, bad = false): void => {
    el('lora-status').textContent = text;
    el('lora-status').className = bad ? 'bad' : 'muted';
  };
  const cards: LabelCard[] = [];
  const addLabel = (name: string, sentences: string[] = []): LabelCard => {
    const div = document.createElement('div');
    div.className = 'class-card';
    div.innerHTML = `<div class="row"><input class="label-name" type="text" size="14" /> <input class="label-file" type="file" accept=".txt,text/plain" />
      <span class="muted">one sentence per line</span></div><textarea class="label-text" rows="4" cols="60"></textarea><div class="drop">drop a .txt of this label here</div>`;
    el('lora-labels').append(div);
    const card: LabelCard = { name: div.querySelector('.label-name')!, text: div.querySelector('.label-text')! };
    card.name.value = name;
    card.text.value = sentences.join('\n');
    const append = async (files: File[]): Promise<void> => {
      const lines = (await Promise.all(files.map((f) => f.text()))).flatMap(sentenceLines);
      card.text.value = [...sentenceLines(card.text.value), ...lines].join('\n');
    };
    const file = div.querySelector<HTMLInputElement>('.label-file')!;
    file.addEventListener('change', () => void append([...(file.files ?? [])]));
    dropZone(div.querySelector('.drop')!, (fs) => void append(fs));
    cards.push(card);
    return card;
  };
  addLabel('positive');
  addLabel('negative');
  el('lora-add-label').addEventListener('click', () => addLabel(`label ${cards.length + 1}`));

  el('lora-table').addEventListener('change', async () => {
    const f = el('lora-table').files?.[0];
    if (!f) return;
    try {
      const rows = parseLabelledTable(await f.text(), f.name);
      for (const label of [...new Set(rows.map((r) => r.label))]) {
        const lines = rows.filter((r) => r.label === label).map((r) => r.text);
        const card = cards.find((c) => c.name.value.trim() === label) ?? cards.find((c) => sentenceLines(c.text.value).length === 0) ?? addLabel(label);
        card.name.value = label;
        card.text.value = [...sentenceLines(card.text.value), ...lines].join('\n');
      }
      status(`${f.name}: ${rows.length} sentences read`);
    } catch (e) {
      status((e as Error).message, true);
    }
  });
  el('lora-model-url').addEventListener('input', () => (host.querySelector<HTMLInputElement>('input[name="lora-model"][value="url"]')!.checked = true));
  for (const id of ['lora-model-files', 'lora-model-folder']) {
    el(id).addEventListener('change', () => (host.querySelector<HTMLInputElement>('input[name="lora-model"][value="files"]')!.checked = true));
  }

  const number = (id: string, what: string): number => {
    const raw = el(id).value.trim();
    const v = Number(raw);
    if (raw === '' || !Number.isFinite(v)) throw new Error(`${what}: ${JSON.stringify(raw)} is not a number`);
    return v;
  };
  const options = (): TextLoraOptions => ({
    r: number('lora-r', 'r'), alpha: number('lora-alpha', 'alpha'), dropout: number('lora-dropout', 'dropout'), targets: parseTargets(el('lora-targets').value),
    epochs: number('lora-epochs', 'epochs'), lr: number('lora-lr', 'learning rate'), batchSize: number('lora-batch', 'batch'),
    maxLength: number('lora-max-length', 'max tokens'), valSplit: number('lora-val-split', 'validation split'), seed: number('lora-seed', 'seed'), baseModel: null,
  });
  const model = (): TextModelChoice => {
    const arch = el<HTMLSelectElement>('lora-arch').value;
    if (host.querySelector<HTMLInputElement>('input[name="lora-model"]:checked')!.value === 'url') {
      const ref = el('lora-model-url').value.trim();
      if (ref === '') throw new Error('enter a text model: hf:org/name, or the URL of a folder with config.json, tokenizer.json and model.safetensors');
      return { kind: 'url', arch, ref, ...(hub ? { endpoint: hub } : {}) };
    }
    const files = [...(el('lora-model-files').files ?? []), ...(el('lora-model-folder').files ?? [])];
    const pick = (name: string): File | undefined => files.find((f) => f.name === name);
    const [config, tokenizer, weights] = [pick('config.json'), pick('tokenizer.json'), pick('model.safetensors')];
    const missing = [['config.json', config], ['tokenizer.json', tokenizer], ['model.safetensors', weights]].filter(([, f]) => !f).map(([n]) => n);
    if (missing.length) throw new Error(`the picked files lack ${missing.join(', ')} (got ${files.map((f) => f.name).join(', ') || 'none'})`);
    const tokenizerConfig = pick('tokenizer_config.json');
    return { kind: 'files', arch, config: config!, tokenizer: tokenizer!, weights: weights!, ...(tokenizerConfig ? { tokenizerConfig } : {}) };
  };
  const rows = (): LabelledSentence[] => cards.flatMap((c) => {
    const label = c.name.value.trim();
    const lines = sentenceLines(c.text.value);
    if (lines.length > 0 && label === '') throw new Error(`a label card with ${lines.length} sentences has no label name`);
    return lines.map((text) => ({ text, label }));
  });

  el('lora-train').addEventListener('click', () => {
    let msg: ToWorker;
    try {
      msg = { type: 'lora-train', model: model(), rows: rows(), options: options() };
    } catch (e) {
      status((e as Error).message, true);
      return;
    }
    Object.assign(state, { training: true, done: null, error: null, predictions: null, exported: null });
    el<HTMLButtonElement>('lora-train').disabled = true;
    el<HTMLButtonElement>('lora-classify').disabled = true;
    el<HTMLButtonElement>('lora-download').disabled = true;
    el('lora-result').textContent = '';
    status('starting…');
    send(msg);
  });

  let seq = 0;
  el('lora-classify').addEventListener('click', () => {
    const texts = sentenceLines(el<HTMLTextAreaElement>('lora-try').value);
    if (texts.length === 0) {
      status('write a sentence to classify', true);
      return;
    }
    state.predictions = null;
    send({ type: 'lora-predict', id: ++seq, texts });
  });
  el('lora-download').addEventListener('click', () => send({ type: 'lora-export' }));

  const showResult = (m: LoraDone): void => {
    const ev = m.evaluation;
    const share = (100 * m.trainableParams) / m.totalParams;
    el('lora-result').innerHTML = `<div>Trainable parameters: <b id="lora-trainable">${m.trainableParams.toLocaleString('en')}</b> of <span id="lora-total">${m.totalParams.toLocaleString('en')}</span> (${share.toFixed(2)}%),
      adapters on ${m.adaptedModules.length} modules.</div>
      <div>Adapter size: <b id="lora-adapter-bytes">${m.adapterBytes.toLocaleString('en')}</b> bytes (adapter_model.safetensors) + ${m.configBytes.toLocaleString('en')} bytes (adapter_config.json).</div>
      <div class="big">${ev.on === 'validation' ? 'Validation' : 'Training'} accuracy ${(100 * ev.accuracy).toFixed(1)}% <span class="muted">(${ev.correct}/${ev.total}, loss ${ev.loss.toFixed(3)}, ${m.seconds.toFixed(1)} s)</span></div>`;
  };

  worker.addEventListener('message', (e: MessageEvent<FromWorker>) => {
    const m = e.data;
    if (m.type === 'lora-models') {
      const sel = el<HTMLSelectElement>('lora-arch');
      sel.innerHTML = '';
      for (const t of m.models) sel.append(new Option(`${t.id} — ${t.description}`, t.id));
    } else if (m.type === 'event' && state.training && m.event.type === 'epochEnd') {
      const l = m.event.logs;
      status(`epoch ${l.epoch + 1}: loss ${l.trainLoss.toFixed(4)}${l.valAccuracy !== undefined ? `, validation ${(100 * l.valAccuracy).toFixed(1)}%` : ''}`);
    } else if (m.type === 'lora-done') {
      Object.assign(state, { training: false, done: m });
      el<HTMLButtonElement>('lora-train').disabled = false;
      el<HTMLButtonElement>('lora-classify').disabled = false;
      el<HTMLButtonElement>('lora-download').disabled = false;
      status('Done.');
      showResult(m);
    } else if (m.type === 'lora-predictions') {
      state.predictions = m.probs;
      const classes = state.done?.classes ?? [];
      const texts = sentenceLines(el<HTMLTextAreaElement>('lora-try').value);
      const box = el('lora-predictions');
      box.innerHTML = '';
      m.probs.forEach((p, i) => {
        const best = p.indexOf(Math.max(...p));
        const line = document.createElement('div');
        line.textContent = `${classes[best] ?? best} (${(100 * p[best]!).toFixed(1)}%): ${texts[i] ?? ''}`;
        box.append(line);
      });
    } else if (m.type === 'lora-exported') {
      state.exported = { configBytes: m.config.length, weightsBytes: m.weights.byteLength };
      saveFile(m.config, 'adapter_config.json', 'application/json');
      saveFile(m.weights, 'adapter_model.safetensors');
    } else if (m.type === 'error' && m.during.startsWith('lora-')) {
      Object.assign(state, { training: false, error: m.message });
      el<HTMLButtonElement>('lora-train').disabled = false;
      status(m.message, true);
    }
  });
  send({ type: 'lora-models' });
  return state;
}
