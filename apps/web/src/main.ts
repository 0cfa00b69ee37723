/**
 * The page: model, data and strategy choices, live charts, predictions and export. All GPU
 * work happens in the worker (src/worker.ts); this file only draws and posts messages, so
 * the page stays responsive while a model trains.
 */
import type { TrainerEvent } from '@tl/train';
import speechWeightsUrl from '../../../packages/cli/assets/speech-w2v2-tiny.safetensors?url';
import { mountAdaBNPanel } from './adabn-panel.js';
import { mountGeneratePanel } from './generate-panel.js';
import { LineChart } from './charts.js';
import { mountLoraPanel } from './lora-panel.js';
import { dropZone, saveFile } from './page-files.js';
import type { DataChoice, FromWorker, ModelChoice, ToWorker, TrainRequest } from './protocol.js';
import { mountSpeechPanel } from './speech-panel.js';
import { STRATEGIES, type Strategy } from './strategies.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el as T;
};
const input = (id: string): HTMLInputElement => $<HTMLInputElement>(id);
const radio = (name: string): string => (document.querySelector(`input[name="${name}"]:checked`) as HTMLInputElement).value;

/** State the browser tests read. */
interface PageState {
  ready: boolean;
  unsupported: string | null;
  adapter: unknown;
  training: boolean;
  done: Extract<FromWorker, { type: 'done' }> | null;
  error: string | null;
  events: number;
  epochs: { epoch: number; trainLoss: number; trainAccuracy?: number; valAccuracy?: number }[];
  predictions: Extract<FromWorker, { type: 'predictions' }>['results'] | null;
  exported: number | null;
}
const state: PageState = { ready: false, unsupported: null, adapter: null, training: false, done: null, error: null, events: 0, epochs: [], predictions: null, exported: null };
(window as unknown as { __tl: PageState }).__tl = state;

const log = (line: string): void => {
  const el = $('log');
  el.textContent += `${line}\n`;
  el.scrollTop = el.scrollHeight;
};

// WebGPU availability -------------------------------------------------------------------

const HOW_TO_ENABLE =
  'Use Chrome or Edge 113+ (on Linux start it with --enable-unsafe-webgpu, or enable chrome://flags/#enable-unsafe-webgpu), ' +
  'Safari 26+, or Firefox 141+ on Windows (elsewhere set dom.webgpu.enabled in about:config). ' +
  'The page must come from https:// or http://localhost.';

function banner(kind: 'pending' | 'ok' | 'bad', html: string): void {
  const el = $('gpu-status');
  el.className = `banner ${kind}`;
  el.innerHTML = html;
}

if (!('gpu' in navigator)) {
  state.unsupported = 'no navigator.gpu';
  banner('bad', `<b>This browser has no WebGPU</b>${window.isSecureContext ? '' : ' (and this page is not a secure context)'}. ${HOW_TO_ENABLE}`);
}

// Worker --------------------------------------------------------------------------------

const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'tl-trainer' });
const send = (m: ToWorker): void => worker.postMessage(m);
let predictSeq = 0;
const pendingPredictions = new Map<number, (r: Extract<FromWorker, { type: 'predictions' }>['results']) => void>();

worker.onerror = (e) => {
  state.error = e.message || 'the worker failed to start';
  banner('bad', `The training worker failed: ${e.message}`);
};

worker.onmessage = (e: MessageEvent<FromWorker>) => {
  const m = e.data;
  switch (m.type) {
    case 'ready': {
      state.ready = true;
      state.adapter = m.adapter;
      const a = m.adapter;
      banner('ok', `WebGPU ready in a worker: ${a.description}, <b>${a.featureLevel}</b> feature level${a.fallback ? ' (software fallback adapter: slow)' : ''}, buffers up to ${a.maxBufferMB} MiB.`);
      embeddedArch = m.embedded;
      fillArchitectures(m.models);
      $<HTMLButtonElement>('train').disabled = false;
      break;
    }
    case 'unsupported':
      state.unsupported = m.message;
      banner('bad', `<b>WebGPU is not available here.</b> ${escapeHtml(m.message)} ${HOW_TO_ENABLE}`);
      break;
    case 'log':
      log(m.line);
      break;
    case 'stage':
      $('status').textContent = m.loaded !== undefined ? `${m.text}: ${(m.loaded / 2 ** 20).toFixed(1)}${m.total ? ` of ${(m.total / 2 ** 20).toFixed(1)}` : ''} MiB` : `${m.text}…`;
      if (m.loaded === undefined) log(m.text);
      break;
    case 'event':
      onTrainerEvent(m.event);
      break;
    case 'done':
      onDone(m);
      break;
    case 'predictions':
      pendingPredictions.get(m.id)?.(m.results);
      pendingPredictions.delete(m.id);
      break;
    case 'exported': {
      state.exported = m.bytes.byteLength;
      saveFile(m.bytes, m.name);
      $('export-status').textContent = `${m.name}: ${(m.bytes.byteLength / 1024).toFixed(0)} KiB`;
      break;
    }
    case 'saved':
      $('export-status').textContent = `saved to ${m.where}; load it again with "From the browser's private storage"`;
      break;
    case 'error':
      state.error = m.message;
      log(`error while ${m.during}: ${m.message}`);
      $('status').textContent = `Error: ${m.message}`;
      $('status').className = 'bad';
      if (m.during === 'train') setTraining(false);
      break;
  }
};
send({ type: 'init' });

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

let embeddedArch = '';

function fillArchitectures(models: { id: string; description: string; inputSize: number; channels: number }[]): void {
  const sel = $<HTMLSelectElement>('model-arch');
  sel.innerHTML = '';
  // The embedded default's architecture first: a file exported here loads back with it.
  for (const m of [...models].sort((a, b) => Number(b.id === embeddedArch) - Number(a.id === embeddedArch))) {
    const o = document.createElement('option');
    o.value = m.id;
    o.textContent = `${m.id} — ${m.description} (${m.channels}x${m.inputSize}x${m.inputSize})`;
    sel.append(o);
  }
}

// Strategies ----------------------------------------------------------------------------

for (const [key, s] of Object.entries(STRATEGIES)) {
  const l = document.createElement('label');
  l.className = 'strategy';
  l.innerHTML = `<input type="radio" name="strategy" value="${key}" ${key === 'fine-tune' ? 'checked' : ''} /> <b>${s.label}</b> <span class="muted">${s.help}; default lr ${s.lr}</span>`;
  $('strategies').append(l);
}

// Model: URL, file, drop ------------------------------------------------------------------

let droppedModel: File | null = null;
dropZone($('model-drop'), (files) => {
  droppedModel = files[0]!;
  $('model-drop').textContent = `${droppedModel.name} (${(droppedModel.size / 2 ** 20).toFixed(1)} MiB)`;
  (document.querySelector('input[name="model"][value="file"]') as HTMLInputElement).checked = true;
});
input('model-file').addEventListener('change', () => {
  (document.querySelector('input[name="model"][value="file"]') as HTMLInputElement).checked = true;
});
input('model-url').addEventListener('input', () => {
  (document.querySelector('input[name="model"][value="url"]') as HTMLInputElement).checked = true;
});

/** `?hub=<url>`: a Hub mirror for `hf:` references (the tests serve one on 127.0.0.1). */
const HUB = new URLSearchParams(location.search).get('hub');

function modelChoice(): ModelChoice {
  const arch = $<HTMLSelectElement>('model-arch').value || embeddedArch;
  switch (radio('model')) {
    case 'url':
      if (!input('model-url').value.trim()) throw new Error('enter a weights URL (or an hf: reference)');
      return { kind: 'url', url: input('model-url').value.trim(), arch, ...(HUB ? { endpoint: HUB } : {}) };
    case 'file': {
      const f = input('model-file').files?.[0] ?? droppedModel;
      if (!f) throw new Error('choose or drop a .safetensors file');
      return { kind: 'file', file: f, name: f.name, arch };
    }
    case 'opfs':
      return { kind: 'opfs', path: input('model-opfs').value.trim(), arch };
    default:
      return { kind: 'embedded' };
  }
}

// Data: classes of images -------------------------------------------------------------------

interface ClassCard {
  name: HTMLInputElement;
  images: Blob[];
  thumbs: HTMLElement;
  count: HTMLElement;
}
const classCards: ClassCard[] = [];

function addImages(card: ClassCard, blobs: Blob[]): void {
  for (const b of blobs) {
    if (!b.type.startsWith('image/')) continue;
    card.images.push(b);
    const img = document.createElement('img');
    img.src = URL.createObjectURL(b);
    card.thumbs.append(img);
  }
  card.count.textContent = `${card.images.length} images`;
  (document.querySelector('input[name="data"][value="images"]') as HTMLInputElement).checked = true;
}

function addClass(name = `class ${classCards.length + 1}`): ClassCard {
  const div = document.createElement('div');
  div.className = 'class-card';
  div.innerHTML = `<div class="row"><input class="class-name" type="text" size="14" /> <input class="class-files" type="file" accept="image/*" multiple />
    <button type="button" class="class-webcam">Webcam</button> <span class="muted count">0 images</span></div>
    <div class="drop">drop images of this class here</div><div class="thumbs"></div>`;
  $('classes').append(div);
  const card: ClassCard = {
    name: div.querySelector('.class-name')!, images: [], thumbs: div.querySelector('.thumbs')!, count: div.querySelector('.count')!,
  };
  card.name.value = name;
  const files = div.querySelector('.class-files') as HTMLInputElement;
  files.addEventListener('change', () => addImages(card, [...(files.files ?? [])]));
  dropZone(div.querySelector('.drop')!, (fs) => addImages(card, fs));
  div.querySelector('.class-webcam')!.addEventListener('click', async () => {
    try {
      addImages(card, [await webcamSnapshot()]);
    } catch (e) {
      log(`webcam: ${(e as Error).message}`);
    }
  });
  classCards.push(card);
  return card;
}
addClass('class 1');
addClass('class 2');
$('add-class').addEventListener('click', () => addClass());

let stream: MediaStream | null = null;
async function webcamSnapshot(): Promise<Blob> {
  const video = $<HTMLVideoElement>('webcam');
  if (!stream) {
    if (!navigator.mediaDevices?.getUserMedia) throw new Error('this browser gives no camera access here');
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 } });
    video.srcObject = stream;
    video.hidden = false;
    await new Promise((ok) => (video.onloadeddata = ok));
  }
  const c = document.createElement('canvas');
  c.width = video.videoWidth;
  c.height = video.videoHeight;
  c.getContext('2d')!.drawImage(video, 0, 0);
  return new Promise((ok, fail) => c.toBlob((b) => (b ? ok(b) : fail(new Error('no frame'))), 'image/png'));
}

function dataChoice(): DataChoice {
  if (radio('data') === 'digits') {
    return { kind: 'digits', labelsPerClass: Number(input('labels-per-class').value), testPerClass: Number(input('test-per-class').value) };
  }
  const classes = classCards.map((c) => ({ name: c.name.value.trim() || 'unnamed', images: c.images })).filter((c) => c.images.length > 0);
  if (classes.length < 2) throw new Error('add images to at least two classes');
  return { kind: 'images', classes, valSplit: Number(input('val-split').value), augment: input('augment').checked };
}

// Training and charts -------------------------------------------------------------------------

const lossChart = new LineChart($<HTMLCanvasElement>('chart-loss'), { title: 'Loss', xLabel: 'epoch' });
const accChart = new LineChart($<HTMLCanvasElement>('chart-acc'), { title: 'Accuracy', xLabel: 'epoch', yMin: 0, yMax: 1, format: (v) => `${Math.round(v * 100)}%` });
const stepLoss = lossChart.add('train (step)', '#9db7ea');
const epochLoss = lossChart.add('train (epoch)', '#2f6fdf', { dots: true });
const valLoss = lossChart.add('validation', '#e07b22', { dots: true, dashed: true });
const stepAcc = accChart.add('train (step)', '#a8d5b5');
const epochAcc = accChart.add('train (epoch)', '#17803d', { dots: true });
const valAcc = accChart.add('validation', '#e07b22', { dots: true, dashed: true });
let epochsTotal = 1;

function setTraining(on: boolean): void {
  state.training = on;
  $<HTMLButtonElement>('train').disabled = on || !state.ready;
  $<HTMLButtonElement>('stop').disabled = !on;
  $<HTMLButtonElement>('export').disabled = on || !state.done;
  $<HTMLButtonElement>('save-opfs').disabled = on || !state.done;
}

function onTrainerEvent(e: TrainerEvent): void {
  state.events++;
  if (e.type === 'epochBegin') {
    epochsTotal = e.epochs;
    $('status').textContent = `epoch ${e.epoch + 1} of ${e.epochs}${e.cached ? ' (cached backbone features)' : ''}`;
  } else if (e.type === 'step') {
    const x = e.epoch + e.step / e.steps;
    lossChart.push(stepLoss, x, e.loss);
    if (e.accuracy !== null) accChart.push(stepAcc, x, e.accuracy);
    $<HTMLProgressElement>('progress').value = x / epochsTotal;
    $('status').textContent = `epoch ${e.epoch + 1} of ${epochsTotal}, step ${e.step}/${e.steps}: loss ${e.loss.toFixed(4)}, ${e.samplesPerSec.toFixed(0)} images/s`;
  } else {
    const l = e.logs;
    const x = l.epoch + 1;
    state.epochs.push({ epoch: l.epoch, trainLoss: l.trainLoss, trainAccuracy: l.trainAccuracy, valAccuracy: l.valAccuracy });
    lossChart.push(epochLoss, x, l.trainLoss);
    if (l.valLoss !== undefined) lossChart.push(valLoss, x, l.valLoss);
    if (l.trainAccuracy !== undefined) accChart.push(epochAcc, x, l.trainAccuracy);
    if (l.valAccuracy !== undefined) accChart.push(valAcc, x, l.valAccuracy);
    log(`epoch ${x}: loss ${l.trainLoss.toFixed(4)}${l.trainAccuracy !== undefined ? `, accuracy ${(100 * l.trainAccuracy).toFixed(1)}%` : ''}` +
      `${l.valAccuracy !== undefined ? `, validation ${(100 * l.valAccuracy).toFixed(1)}%` : ''} (${l.seconds.toFixed(1)} s${l.cachedFeatures ? ', cached features' : ''})`);
  }
}

function onDone(m: Extract<FromWorker, { type: 'done' }>): void {
  state.done = m;
  setTraining(false);
  $<HTMLProgressElement>('progress').value = 1;
  const last = m.history.at(-1);
  const parts = [`<div>Trained in ${m.seconds.toFixed(1)} s: ${m.history.length} epochs, ${m.trainableParams.toLocaleString('en')} of ${m.totalParams.toLocaleString('en')} parameters trainable.</div>`];
  if (m.test) parts.push(`<div class="big">Test accuracy ${(100 * m.test.accuracy).toFixed(1)}% <span class="muted">(${m.test.correct}/${m.test.total}, loss ${m.test.loss.toFixed(3)})</span></div>`);
  else if (last?.valAccuracy !== undefined) parts.push(`<div class="big">Validation accuracy ${(100 * last.valAccuracy).toFixed(1)}%</div>`);
  else if (last?.trainAccuracy !== undefined) parts.push(`<div class="big">Training accuracy ${(100 * last.trainAccuracy).toFixed(1)}% <span class="muted">(no held-out images)</span></div>`);
  $('result').innerHTML = parts.join('');
  $('status').textContent = 'Done.';
  const box = $('previews');
  box.innerHTML = '';
  for (const p of m.previews) {
    const d = document.createElement('div');
    d.className = `preview ${p.label === p.predicted ? '' : 'wrong'}`;
    const c = document.createElement('canvas');
    c.width = p.width;
    c.height = p.height;
    c.getContext('2d')!.putImageData(new ImageData(new Uint8ClampedArray(p.pixels), p.width, p.height), 0, 0);
    d.append(c, `${m.classes[p.predicted]}${p.label === p.predicted ? '' : ` (is ${m.classes[p.label]})`}`);
    box.append(d);
  }
  classesForPrediction = m.classes;
}

$('train').addEventListener('click', () => {
  let req: TrainRequest;
  try {
    const lr = input('lr').value.trim();
    req = {
      type: 'train', model: modelChoice(), data: dataChoice(), strategy: radio('strategy') as Strategy,
      epochs: Number(input('epochs').value), batchSize: Number(input('batch').value), seed: Number(input('seed').value),
      ...(lr ? { lr: Number(lr) } : {}),
    };
    if (!Number.isInteger(req.epochs) || req.epochs < 1) throw new Error('epochs must be a positive integer');
    if (req.lr !== undefined && !(req.lr > 0)) throw new Error('the learning rate must be a positive number');
  } catch (e) {
    $('status').textContent = (e as Error).message;
    return;
  }
  state.done = null;
  state.error = null;
  state.epochs = [];
  $('status').className = 'muted';
  $('result').innerHTML = '';
  $('previews').innerHTML = '';
  lossChart.clear();
  accChart.clear();
  setTraining(true);
  send(req);
});
$('stop').addEventListener('click', () => {
  send({ type: 'stop' });
  $('status').textContent = 'stopping after this epoch…';
});

// Predictions -----------------------------------------------------------------------------

let classesForPrediction: string[] = [];
function classify(blobs: Blob[]): Promise<Extract<FromWorker, { type: 'predictions' }>['results']> {
  const id = ++predictSeq;
  return new Promise((ok) => {
    pendingPredictions.set(id, ok);
    send({ type: 'predict', id, images: blobs });
  });
}

async function showPredictions(blobs: Blob[]): Promise<void> {
  if (!state.done) {
    $('predictions').textContent = 'Train a model first.';
    return;
  }
  const results = await classify(blobs);
  state.predictions = results;
  const box = $('predictions');
  box.innerHTML = '';
  results.forEach((r, i) => {
    const row = document.createElement('div');
    row.className = 'prediction';
    const img = document.createElement('img');
    img.src = URL.createObjectURL(blobs[i]!);
    const bars = document.createElement('div');
    bars.className = 'bars';
    if (!r.probs) bars.textContent = r.error ?? 'failed';
    else {
      const order = r.probs.map((p, k) => [p, k] as const).sort((a, b) => b[0] - a[0]).slice(0, 5);
      for (const [p, k] of order) {
        const line = document.createElement('div');
        line.className = 'line';
        line.innerHTML = `<span>${escapeHtml(classesForPrediction[k] ?? String(k))}</span><div class="bar" style="width:${(100 * p).toFixed(1)}%"></div><span>${(100 * p).toFixed(1)}%</span>`;
        bars.append(line);
      }
    }
    row.append(img, bars);
    box.append(row);
  });
}

input('predict-file').addEventListener('change', () => void showPredictions([...(input('predict-file').files ?? [])]));
dropZone($('predict-drop'), (files) => void showPredictions(files));
$('predict-webcam').addEventListener('click', async () => {
  try {
    await showPredictions([await webcamSnapshot()]);
  } catch (e) {
    log(`webcam: ${(e as Error).message}`);
  }
});

const pad = $<HTMLCanvasElement>('pad');
const pctx = pad.getContext('2d')!;
const clearPad = (): void => {
  pctx.fillStyle = '#000';
  pctx.fillRect(0, 0, pad.width, pad.height);
};
clearPad();
let drawing = false;
pad.addEventListener('pointerdown', (e) => {
  drawing = true;
  pad.setPointerCapture(e.pointerId);
  pctx.beginPath();
  pctx.moveTo(e.offsetX, e.offsetY);
});
pad.addEventListener('pointermove', (e) => {
  if (!drawing) return;
  pctx.strokeStyle = '#fff';
  pctx.lineWidth = 12;
  pctx.lineCap = 'round';
  pctx.lineJoin = 'round';
  pctx.lineTo(e.offsetX, e.offsetY);
  pctx.stroke();
});
pad.addEventListener('pointerup', () => (drawing = false));
$('clear-pad').addEventListener('click', clearPad);
$('predict-pad').addEventListener('click', () => {
  pad.toBlob((b) => b && void showPredictions([b]), 'image/png');
});

// Export ------------------------------------------------------------------------------------

$('export').addEventListener('click', () => send({ type: 'export' }));
$('save-opfs').addEventListener('click', () => send({ type: 'save-opfs', path: input('model-opfs').value.trim() || 'models/finetuned.safetensors' }));

// Private adaptation: text LoRA and AdaBN on the user's photos (their own panels and worker messages).

(window as unknown as { __tlAdapt: object }).__tlAdapt = {
  lora: mountLoraPanel($('lora-section'), worker, send, HUB),
  adabn: mountAdaBNPanel($('adabn-section'), worker, send, modelChoice),
};

// Speech: the user's own words, trained on this page (Web Audio lives here, not in workers).

mountSpeechPanel($('speech-section'), { weightsUrl: speechWeightsUrl });

// Generation: a causal LM or T5 streams its tokens into the page from the worker.

(window as unknown as { __tlGenerate: object }).__tlGenerate = mountGeneratePanel($('generate-section'), worker, send, HUB);
