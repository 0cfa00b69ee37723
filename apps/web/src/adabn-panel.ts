/**
 * The AdaBN panel: the model chosen in section 1 (the embedded default or loaded weights) meets
 * the user's own unlabelled photos; the worker re-estimates its BatchNorm statistics on them and
 * the panel shows what changed (layers, statistics, predictions per photo). The adapted weights
 * download as safetensors. The photos go to the worker and nowhere else.
 */
import { dropZone, saveFile } from './page-files.js';
import type { FromWorker, ModelChoice, ToWorker } from './protocol.js';
import type { AdaptFromWorker } from './protocol-adapt.js';

type AdaBNDone = Extract<AdaptFromWorker, { type: 'adabn-done' }>;

/** What the browser tests read. */
export interface AdaBNPanelState {
  running: boolean;
  done: AdaBNDone | null;
  error: string | null;
  exported: number | null;
}

const MARKUP = `
  <h2>AdaBN on your own photos</h2>
  <p class="muted">Re-estimates the BatchNorm statistics of the model chosen under "1. Model" on unlabelled photos of the domain it will serve (your camera, your lighting).
    No label is needed and the photos stay in this page and its worker.</p>
  <div class="row"><input id="adabn-files" type="file" accept="image/*" multiple /> <span id="adabn-count" class="muted">0 photos</span>
    <button id="adabn-clear" type="button">Clear</button></div>
  <div id="adabn-drop" class="drop">drop photos here</div>
  <div id="adabn-thumbs" class="thumbs"></div>
  <div class="row">
    <label>batch <input id="adabn-batch" type="number" min="1" value="32" /></label>
    <button id="adabn-run" type="button" class="primary">Adapt BatchNorm</button>
    <button id="adabn-download" type="button" disabled>Download adapted .safetensors</button>
    <span id="adabn-status" class="muted"></span>
  </div>
  <div id="adabn-result"></div>`;

const top = (p: readonly number[]): number => p.indexOf(Math.max(...p));

export function mountAdaBNPanel(host: HTMLElement, worker: Worker, send: (m: ToWorker) => void, modelChoice: () => ModelChoice): AdaBNPanelState {
  host.innerHTML = MARKUP;
  const el = <T extends HTMLElement = HTMLInputElement>(id: string): T => host.querySelector<T>(`#${id}`)!;
  const state: AdaBNPanelState = { running: false, done: null, error: null, exported: null };
  const status = (text: string, bad = false): void => {
    el('adabn-status').textContent = text;
    el('adabn-status').className = bad ? 'bad' : 'muted';
  };
  let photos: File[] = [];
  const add = (files: File[]): void => {
    const images = files.filter((f) => f.type.startsWith('image/'));
    if (images.length < files.length) status(`skipped ${files.length - images.length} files that are not images (${files.filter((f) => !f.type.startsWith('image/')).map((f) => f.name).join(', ')})`, true);
    photos.push(...images);
    for (const f of images) {
      const img = document.createElement('img');
      img.src = URL.createObjectURL(f);
      el('adabn-thumbs').append(img);
    }
    el('adabn-count').textContent = `${photos.length} photos`;
  };
  el('adabn-files').addEventListener('change', () => add([...(el('adabn-files').files ?? [])]));
  dropZone(el('adabn-drop'), add);
  el('adabn-clear').addEventListener('click', () => {
    photos = [];
    el('adabn-thumbs').innerHTML = '';
    el('adabn-count').textContent = '0 photos';
  });

  el('adabn-run').addEventListener('click', () => {
    let msg: ToWorker;
    try {
      if (photos.length === 0) throw new Error('add some photos first (picker or drop)');
      const batch = Number(el('adabn-batch').value);
      if (!Number.isInteger(batch) || batch < 1) throw new Error(`batch: ${JSON.stringify(el('adabn-batch').value)} is not a positive integer`);
      msg = { type: 'adabn', model: modelChoice(), photos: photos.map((f) => ({ blob: f, name: f.name })), batchSize: batch };
    } catch (e) {
      status((e as Error).message, true);
      return;
    }
    Object.assign(state, { running: true, done: null, error: null, exported: null });
    el<HTMLButtonElement>('adabn-run').disabled = true;
    el<HTMLButtonElement>('adabn-download').disabled = true;
    el('adabn-result').textContent = '';
    status('adapting…');
    send(msg);
  });
  el('adabn-download').addEventListener('click', () => send({ type: 'adabn-export' }));

  const showResult = (m: AdaBNDone): void => {
    const r = m.report;
    const rows = m.names.map((_, i) => {
      const [b, a] = [top(r.before[i]!), top(r.after[i]!)];
      return `<tr class="${a === b ? '' : 'changed'}"><td></td><td>${m.classes[b]} (${(100 * r.before[i]![b]!).toFixed(1)}%)</td><td>${m.classes[a]} (${(100 * r.after[i]![a]!).toFixed(1)}%)</td></tr>`;
    });
    el('adabn-result').innerHTML = `<div><b id="adabn-changed-layers">${r.changedLayers}</b> of ${r.layers} BatchNorm layers updated from ${r.samples} photos (${r.batches} batches, ${r.seconds.toFixed(1)} s):
      running means moved by ${r.meanShift.toFixed(4)} on average, variances by a factor e^${r.logVarShift.toFixed(3)}.</div>
      <div class="big">Predictions changed on <span id="adabn-changed-predictions">${r.changedPredictions}</span> of ${r.before.length} photos</div>
      <table class="adabn-table"><tr><th>photo</th><th>before</th><th>after AdaBN</th></tr>${rows.join('')}</table>`;
    // File names are the user's; set as text, never parsed as markup.
    el('adabn-result').querySelectorAll('tr td:first-child').forEach((td, i) => (td.textContent = m.names[i]!));
  };

  worker.addEventListener('message', (e: MessageEvent<FromWorker>) => {
    const m = e.data;
    if (m.type === 'adabn-done') {
      Object.assign(state, { running: false, done: m });
      el<HTMLButtonElement>('adabn-run').disabled = false;
      el<HTMLButtonElement>('adabn-download').disabled = false;
      status(`Done: ${m.model}.`);
      showResult(m);
    } else if (m.type === 'adabn-exported') {
      state.exported = m.bytes.byteLength;
      saveFile(m.bytes, m.name);
    } else if (m.type === 'error' && m.during.startsWith('adabn')) {
      Object.assign(state, { running: false, error: m.message });
      el<HTMLButtonElement>('adabn-run').disabled = false;
      status(m.message, true);
    }
  });
  return state;
}
