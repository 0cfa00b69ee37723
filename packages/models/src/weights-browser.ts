/**
 * Weights in the browser: from a URL (Hub references `hf:org/name[@rev][/file]` become
 * resolve URLs), kept in the Cache API so a second visit downloads nothing; from a local
 * File or Blob (file picker, drag and drop); or from OPFS (`opfs:path/in/opfs`).
 */
import { DEFAULT_WEIGHTS_FILE, parseHubRef, type HubRef } from './hub/ref.js';
import { parseSafetensors, type SafetensorsFile } from './safetensors.js';
import { fetchCached, openCache, WeightsError, type FetchWeightsOptions } from './fetch-cached.js';
import type { WeightsBytes, WeightsSource } from './pretrained.js';

export { WEIGHTS_CACHE, WeightsError, type FetchWeightsOptions } from './fetch-cached.js';
export const HUB_ENDPOINT = 'https://huggingface.co';

export interface LoadedWeights {
  file: SafetensorsFile;
  bytes: Uint8Array;
  /** Where the bytes came from, for messages. */
  source: string;
  fromCache: boolean;
}

/** The resolve URL of a Hub reference (`hf:timm/resnet18.a1_in1k` → …/resolve/main/model.safetensors). */
export function hubResolveUrl(ref: string | HubRef, endpoint = HUB_ENDPOINT): string {
  const r = typeof ref === 'string' ? parseHubRef(ref) : ref;
  const file = r.file ?? DEFAULT_WEIGHTS_FILE;
  return `${endpoint.replace(/\/+$/, '')}/${r.repo}/resolve/${encodeURIComponent(r.revision)}/${file.split('/').map(encodeURIComponent).join('/')}`;
}

async function fromOpfs(path: string): Promise<Uint8Array> {
  if (typeof navigator === 'undefined' || !navigator.storage?.getDirectory) throw new WeightsError(`opfs:${path}: this browser has no origin private file system`);
  const parts = path.split('/').filter(Boolean);
  let dir = await navigator.storage.getDirectory();
  try {
    for (const p of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(p);
    const fh = await dir.getFileHandle(parts.at(-1) ?? '');
    return new Uint8Array(await (await fh.getFile()).arrayBuffer());
  } catch (e) {
    throw new WeightsError(`opfs:${path}: ${(e as DOMException).name === 'NotFoundError' ? 'no such file' : (e as Error).message}`);
  }
}

/** The bytes of a weights file from a URL, `hf:` reference, `opfs:` path, File or Blob. */
export async function fetchWeightsBytes(src: WeightsSource, o: FetchWeightsOptions = {}): Promise<WeightsBytes> {
  if (typeof src !== 'string' && !(src instanceof URL)) {
    const name = 'name' in src && typeof (src as File).name === 'string' ? (src as File).name : 'blob';
    return { bytes: new Uint8Array(await src.arrayBuffer()), source: name, fromCache: false };
  }
  const s = String(src);
  if (s.startsWith('opfs:')) return { bytes: await fromOpfs(s.slice(5)), source: s, fromCache: false };
  const url = s.startsWith('hf:') ? hubResolveUrl(s, o.endpoint) : new URL(s, globalThis.location?.href).href;
  const r = await fetchCached(url, o);
  if (!r) throw new WeightsError(`${url}: HTTP 404 Not Found`);
  return { bytes: r.bytes, source: url, fromCache: r.fromCache };
}

/** Downloads (or reads) and parses a safetensors file. */
export async function fetchWeights(src: WeightsSource, o: FetchWeightsOptions = {}): Promise<LoadedWeights> {
  const { bytes, source, fromCache } = await fetchWeightsBytes(src, o);
  return { file: parseSafetensors(bytes, source), bytes, source, fromCache };
}

/** Drops a URL (or `hf:` reference) from the weights cache. */
export async function evictWeights(src: string, o: Pick<FetchWeightsOptions, 'cache' | 'endpoint'> = {}): Promise<boolean> {
  const cache = await openCache(o.cache);
  if (!cache) return false;
  const url = src.startsWith('hf:') ? hubResolveUrl(src, o.endpoint) : new URL(src, globalThis.location?.href).href;
  return cache.delete(url);
}

/** Saves bytes (e.g. a fine-tuned model) to OPFS, for `opfs:` loading later. */
export async function saveToOpfs(path: string, bytes: Uint8Array): Promise<void> {
  if (typeof navigator === 'undefined' || !navigator.storage?.getDirectory) throw new WeightsError('this browser has no origin private file system');
  const parts = path.split('/').filter(Boolean);
  let dir = await navigator.storage.getDirectory();
  for (const p of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(p, { create: true });
  const fh = await dir.getFileHandle(parts.at(-1) ?? 'model.safetensors', { create: true });
  const w = await fh.createWritable();
  await w.write(bytes as Uint8Array<ArrayBuffer>);
  await w.close();
}
