/**
 * fromPretrained's Node part (registered by node.ts): a weights source as bytes from a path, an
 * http(s) URL, or the Hub through huggingface_hub's cache; text models through
 * fromPretrainedText.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFile, writeFile, rename, mkdir } from 'node:fs/promises';
import { hubDownload, type HubOptions } from './hub/hub-node.js';
import { DEFAULT_WEIGHTS_FILE, parseWeightRef } from './hub/ref.js';
import type { PretrainedPlatform, WeightsReadOptions, WeightsSource } from './pretrained.js';
import { fromPretrainedText } from './pretrained-text-node.js';

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

/** The Hub client's options, with the platform-neutral endpoint and progress folded in. */
function hubOptions(o: WeightsReadOptions): HubOptions {
  const progress = o.onProgress;
  return {
    ...o.hub,
    endpoint: o.hub?.endpoint ?? o.endpoint,
    onProgress: o.hub?.onProgress ?? (progress && ((p) => progress(p.received, p.total))),
  };
}

/** A path, URL or `hf:` reference as a string; Blobs and OPFS are the caller's to handle. */
function reference(source: WeightsSource, what: string): string {
  if (source instanceof Blob) throw new TypeError(`${what}: expected a path, a URL or hf:org/name, got a Blob`);
  const s = String(source);
  if (s.startsWith('opfs:')) throw new TypeError(`${s}: OPFS is the browser's file system; in Node pass a path, a URL or hf:org/name`);
  return s;
}

export const nodePretrainedPlatform: PretrainedPlatform = {
  async readWeights(source, opts) {
    if (source instanceof Blob) {
      const name = source instanceof File && source.name !== '' ? source.name : 'blob';
      return { bytes: new Uint8Array(await source.arrayBuffer()), source: name, fromCache: false };
    }
    const s = reference(source, 'weights');
    return { bytes: new Uint8Array(await readFile(await resolveWeights(s, hubOptions(opts)))), source: s, fromCache: false };
  },
  loadText: (id, weights, opts) => fromPretrainedText(id, { weights: reference(weights, `fromPretrainedText("${id}")`), numClasses: opts.numClasses, hub: hubOptions(opts) }),
};
