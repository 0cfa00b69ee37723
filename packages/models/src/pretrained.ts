/**
 * `fromPretrained`, the same on both platforms: the model from the registry, its checkpoint
 * loaded strictly, the head resized. Only turning a weights source into bytes differs (a file,
 * the Hub client and its cache in Node; fetch, the Cache API, Files and OPFS in the browser), so
 * each entry registers that part (node.ts, browser.ts), as it does the file IO of Module.save.
 */
import type { HubOptions } from './hub/hub-node.js';
import { ClassifierModel } from './nn/classifier.js';
import { StateDictError, type Module, type StateDict } from './nn/module.js';
import { checkNumClasses, type PretrainedText } from './pretrained-text.js';
import { getModelSpec, isTextModelSpec, type CreateModelOptions, type TextClassifier } from './registry.js';
import { parseSafetensors } from './safetensors.js';

/**
 * A safetensors file: a path (Node), an http(s) URL, `hf:org/name[@revision][/file]`,
 * `opfs:path/in/opfs` (browser), or a File or Blob.
 */
export type WeightsSource = string | URL | Blob;

export interface WeightsBytes {
  bytes: Uint8Array;
  /** Where the bytes came from (a path, URL or file name), for messages. */
  source: string;
  /** Whether the browser's Cache API answered, so nothing was downloaded. */
  fromCache: boolean;
}

export interface WeightsReadOptions {
  /** Hub endpoint for `hf:` references (default https://huggingface.co; in Node also HF_ENDPOINT). */
  endpoint?: string;
  /** Browser: the Cache API cache (default `tl-weights-v1`); false turns caching off. */
  cache?: string | false;
  /** Bytes received so far, and the total when the server said. */
  onProgress?: (loaded: number, total: number | null) => void;
  signal?: AbortSignal;
  /** Node: the Hub client's token, cache folder and offline mode. */
  hub?: HubOptions;
}

/** What a platform supplies: bytes for a weights source, and the text-model loader. */
export interface PretrainedPlatform {
  readWeights(source: WeightsSource, opts: WeightsReadOptions): Promise<WeightsBytes>;
  loadText(id: string, weights: WeightsSource, opts: WeightsReadOptions & { numClasses?: number }): Promise<PretrainedText>;
}

let platform: PretrainedPlatform | null = null;

export function registerPretrainedPlatform(p: PretrainedPlatform): void {
  platform = p;
}

function current(): PretrainedPlatform {
  if (!platform) throw new Error('fromPretrained needs the node or browser entry of @tl/models (import "@tl/models", not one of its files)');
  return platform;
}

export interface WeightsInfo {
  source: string;
  bytes: number;
  tensors: number;
  fromCache: boolean;
}

export interface PretrainedOptions extends WeightsReadOptions {
  weights?: WeightsSource;
  /** A head with this many classes (the checkpoint's head is dropped when it differs). */
  numClasses?: number;
  /** A newly initialised head even when `numClasses` equals the checkpoint's: the target
   * classes are other classes than the source task's (digits 5-9 after pretraining on 0-4). */
  newHead?: boolean;
  /** Input size to build the model for (a ViT resamples the checkpoint's position embedding). */
  imgSize?: CreateModelOptions['imgSize'];
  /** Called once the weights are read: where from, their size and whether the cache answered. */
  onWeights?: (info: WeightsInfo) => void;
}

/** What fromPretrained returns: typed, so that it goes straight into a Trainer. */
export type PretrainedModel = ClassifierModel | TextClassifier;

function imageClassifier(id: string, model: Module): ClassifierModel {
  if (model instanceof ClassifierModel) return model;
  model.dispose();
  throw new Error(`fromPretrained: ${id} builds a ${model.constructor.name}, expected a classifier (ClassifierModel) or a text model`);
}

/**
 * The model `id` with weights loaded strictly. When `numClasses` differs from the checkpoint's
 * head, the backbone loads strictly and the head is new (as timm's `pretrained=True,
 * num_classes=N`). Without `weights` the model is freshly initialised. Text models load through
 * fromPretrainedText (their config.json, key map and tokenizer); this returns the model alone.
 */
export async function fromPretrained(id: string, opts: PretrainedOptions = {}): Promise<PretrainedModel> {
  const spec = getModelSpec(id);
  const { weights, numClasses, imgSize } = opts;
  checkNumClasses(numClasses, 'fromPretrained');
  const fresh = weights === undefined || weights === '';
  if (isTextModelSpec(spec)) return fresh ? spec.create({ numClasses, imgSize }) : (await current().loadText(id, weights, opts)).model;
  if (fresh) return imageClassifier(id, spec.create({ numClasses, imgSize }));
  const read = await current().readWeights(weights, opts);
  const file = parseSafetensors(read.bytes, read.source);
  const tensors = file.all();
  opts.onWeights?.({ source: read.source, bytes: read.bytes.byteLength, tensors: tensors.size, fromCache: read.fromCache });
  const model = imageClassifier(id, spec.create({ imgSize }));
  try {
    const ckptClasses = tensors.get(`${model.classifierPath}.weight`)?.shape[0];
    if (ckptClasses !== undefined && ckptClasses !== model.numClasses) model.resetClassifier(ckptClasses);
    model.loadStateDict(tensors as StateDict, { strict: true });
  } catch (e) {
    model.dispose();
    if (e instanceof StateDictError) throw new StateDictError(`${read.source}: ${e.message}`, e.missing, e.unexpected, e.mismatched);
    throw e;
  }
  const n = numClasses ?? model.numClasses;
  if (opts.newHead || n !== model.numClasses) model.resetClassifier(n);
  return model;
}
