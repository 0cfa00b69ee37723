/** Builds a registered model and loads its weights from a path, a URL or the Hub. */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFile, rename, mkdir } from 'node:fs/promises';
import { ClassifierModel } from './nn/classifier.js';
import type { Module, StateDict } from './nn/module.js';
import { getModelSpec, isTextModelSpec, type CreateModelOptions } from './registry.js';
import { fromPretrainedText } from './pretrained-text-node.js';
import { hubDownload, type HubOptions } from './hub/hub-node.js';
import { DEFAULT_WEIGHTS_FILE, parseWeightRef } from './hub/ref.js';
import { loadSafetensors } from './safetensors-node.js';
import type { HostArray } from './safetensors.js';

export interface PretrainedOptions {
  /** A path, an http(s) URL or `hf:org/name[@revision][/file]`. */
  weights?: string;
  /** A new head with this many classes (the checkpoint's head is dropped when it differs). */
  numClasses?: number;
  /** Input size to build the model for (a ViT resamples the checkpoint's position embedding). */
  imgSize?: CreateModelOptions['imgSize'];
  hub?: HubOptions;
}

/** Resolves a weights reference to a local safetensors file (downloading if needed). */
export async function resolveWeights(ref: string, hub: HubOptions = {}): Promise<string> {
  const r = parseWeightRef(ref);
  if (r.kind === 'path') return r.path;
  if (r.kind === 'hub') return hubDownload(r, r.file ?? DEFAULT_WEIGHTS_FILE, hub);
  const res = await fetch(r.url);
  if (!res.ok) throw new Error(`cannot download ${r.url}: ${res.status} ${res.statusText}`);
  const dir = join(tmpdir(), 'tl-url-cache');
  await mkdir(dir, { recursive: true });
  const file = join(dir, encodeURIComponent(r.url));
  await writeFile(`${file}.incomplete`, new Uint8Array(await res.arrayBuffer()));
  await rename(`${file}.incomplete`, file);
  return file;
}

/**
 * The model `id` with weights loaded strictly. When `numClasses` differs from the
 * checkpoint's head, the backbone loads strictly and the head is new (as timm's
 * `pretrained=True, num_classes=N`). Text models load through fromPretrainedText (their
 * config.json, key map and tokenizer); this returns the model alone.
 */
export async function fromPretrained(id: string, opts: PretrainedOptions = {}): Promise<Module> {
  const spec = getModelSpec(id);
  if (isTextModelSpec(spec) && opts.weights) return (await fromPretrainedText(id, { weights: opts.weights, numClasses: opts.numClasses, hub: opts.hub })).model;
  if (!opts.weights) return spec.create({ numClasses: opts.numClasses, imgSize: opts.imgSize });
  const path = await resolveWeights(opts.weights, opts.hub);
  const { tensors } = await loadSafetensors(path);
  const model = spec.create({ imgSize: opts.imgSize });
  if (model instanceof ClassifierModel) {
    const ckptClasses = tensors.get(`${model.classifierPath}.weight`)?.shape[0];
    if (ckptClasses !== undefined && ckptClasses !== model.numClasses) model.resetClassifier(ckptClasses);
  }
  model.loadStateDict(tensors as StateDict, { strict: true });
  if (opts.numClasses !== undefined && model instanceof ClassifierModel && model.numClasses !== opts.numClasses) {
    model.resetClassifier(opts.numClasses);
  }
  return model;
}

export type { HostArray };
