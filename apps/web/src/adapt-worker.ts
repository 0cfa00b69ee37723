/**
 * The worker's side of the private-adaptation panels: text LoRA (load the text model, train the
 * adapters and a head on the page's sentences, classify, export PEFT's files) and AdaBN (load an
 * image model, re-estimate its BatchNorm statistics on the page's photos, export the weights).
 * worker.ts routes these messages here and lends its device start, model choice and preprocessing.
 */
import { fromPretrained, fromPretrainedTextBrowser, listModels, serializeSafetensors, type ClassifierModel, type ImageModelSpec, type PickedTextFiles, type WeightsSource } from '@tl/models';
import { BrowserImageDataset, type Preprocess } from '@tl/train';
import { adaptToPhotos } from './adabn-job.js';
import { exportTensors } from './job.js';
import type { FromWorker, ModelChoice } from './protocol.js';
import type { AdaptToWorker, TextModelChoice } from './protocol-adapt.js';
import { classifySentences, trainTextLora, type TextLoraRun } from './text-lora-job.js';

export interface AdaptDeps {
  post(m: FromWorker, transfer?: Transferable[]): void;
  /** Starts WebGPU; false when it is not available (the page was told). */
  start(): Promise<boolean>;
  weightsOf(choice: ModelChoice): { spec: ImageModelSpec; src: WeightsSource | null; label: string };
  preprocessOf(spec: ImageModelSpec, augment: boolean): Preprocess;
}

let loraRun: TextLoraRun | null = null;
let adapted: { model: ClassifierModel; spec: ImageModelSpec; label: string; photos: number } | null = null;

const transferable = (b: Uint8Array): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

function textWeights(m: TextModelChoice): string | PickedTextFiles {
  if (m.kind === 'files') return { config: m.config, tokenizer: m.tokenizer, weights: m.weights, ...(m.tokenizerConfig ? { tokenizerConfig: m.tokenizerConfig } : {}) };
  if (m.ref.trim() === '') throw new Error('enter a text model: hf:org/name, or the URL of a folder with config.json, tokenizer.json and model.safetensors');
  return m.ref.trim();
}

async function loraTrain(msg: Extract<AdaptToWorker, { type: 'lora-train' }>, d: AdaptDeps): Promise<void> {
  const weights = textWeights(msg.model);
  const label = typeof weights === 'string' ? weights : `${msg.model.arch} from your files`;
  loraRun?.model.dispose();
  loraRun = null;
  d.post({ type: 'stage', text: `loading ${label}` });
  const run = await trainTextLora(
    (numClasses) => fromPretrainedTextBrowser(msg.model.arch, {
      weights, numClasses, endpoint: msg.model.kind === 'url' ? msg.model.endpoint : undefined,
      onProgress: (loaded, total) => d.post({ type: 'stage', text: `downloading ${label}`, loaded, total }),
    }),
    msg.rows,
    { ...msg.options, baseModel: msg.options.baseModel ?? (typeof weights === 'string' ? weights : null) },
    { onEvent: (event) => d.post({ type: 'event', event }), logger: (line) => d.post({ type: 'log', line }) },
  );
  loraRun = run;
  d.post({
    type: 'lora-done', classes: run.classes, history: run.history, evaluation: run.evaluation,
    trainableParams: run.trainableParams, totalParams: run.totalParams, adaptedModules: [...run.lm.layers.keys()],
    adapterBytes: run.files.weights.byteLength, configBytes: new TextEncoder().encode(JSON.stringify(run.files.config, null, 2)).byteLength, seconds: run.seconds,
  });
}

async function adabn(msg: Extract<AdaptToWorker, { type: 'adabn' }>, d: AdaptDeps): Promise<void> {
  if (msg.photos.length === 0) throw new Error('add some photos first (picker or drop): AdaBN estimates statistics from them');
  if (!Number.isInteger(msg.batchSize) || msg.batchSize < 1) throw new RangeError(`the batch size must be a positive integer, got ${msg.batchSize}`);
  const { spec, src, label } = d.weightsOf(msg.model);
  if (src === null) throw new Error('AdaBN adapts pretrained weights; a randomly initialised model has nothing to adapt (give a weights URL, file or OPFS path)');
  adapted?.model.dispose();
  adapted = null;
  d.post({ type: 'stage', text: `loading weights: ${label}` });
  const model = await fromPretrained(spec.id, { weights: src, endpoint: msg.model.kind === 'url' ? msg.model.endpoint : undefined }) as ClassifierModel;
  try {
    const photos = new BrowserImageDataset(msg.photos.map((p) => ({ source: p.blob, label: 0, name: p.name })), ['unlabelled'], d.preprocessOf(spec, false), `adabn:${Date.now()}`);
    d.post({ type: 'stage', text: `AdaBN: re-estimating the BatchNorm statistics of ${spec.id} on ${photos.length} photos` });
    const report = await adaptToPhotos(model, photos, msg.batchSize);
    adapted = { model, spec, label, photos: photos.length };
    const classes = spec.labels && spec.labels.length === model.numClasses ? [...spec.labels] : Array.from({ length: model.numClasses }, (_, k) => `class ${k}`);
    d.post({ type: 'adabn-done', report, classes, model: `${spec.id} (${label})`, names: msg.photos.map((p) => p.name) });
  } catch (e) {
    model.dispose();
    throw e;
  }
}

export async function handleAdapt(msg: AdaptToWorker, d: AdaptDeps): Promise<void> {
  if (!(await d.start())) return;
  switch (msg.type) {
    case 'lora-models':
      d.post({ type: 'lora-models', models: listModels('text').map((m) => ({ id: m.id, description: m.description })) });
      return;
    case 'lora-train':
      return loraTrain(msg, d);
    case 'lora-predict': {
      if (!loraRun) throw new Error('train the LoRA adapters first');
      d.post({ type: 'lora-predictions', id: msg.id, probs: await classifySentences(loraRun, msg.texts) });
      return;
    }
    case 'lora-export': {
      if (!loraRun) throw new Error('train the LoRA adapters first');
      const weights = transferable(loraRun.files.weights);
      d.post({ type: 'lora-exported', config: JSON.stringify(loraRun.files.config, null, 2), weights }, [weights]);
      return;
    }
    case 'adabn':
      return adabn(msg, d);
    case 'adabn-export': {
      if (!adapted) throw new Error('run AdaBN on your photos first');
      const bytes = transferable(serializeSafetensors(await exportTensors(adapted.model), {
        format: 'pt', architecture: adapted.spec.id, base_weights: adapted.label, adaptation: `AdaBN on ${adapted.photos} unlabelled photos in the browser (apps/web)`,
      }));
      d.post({ type: 'adabn-exported', bytes, name: `${adapted.spec.id}-adabn.safetensors` }, [bytes]);
      return;
    }
  }
}
