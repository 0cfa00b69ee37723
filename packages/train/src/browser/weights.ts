/**
 * Weights in the browser: from a URL (Hub references `hf:org/name[@rev][/file]` become
 * resolve URLs), kept in the Cache API so a second visit downloads nothing; from a local
 * File or Blob (file picker, drag and drop); or from OPFS (`opfs:path/in/opfs`).
 */
import { DEFAULT_WEIGHTS_FILE, parseHubRef, parseSafetensors, type SafetensorsFile } from '@tl/models';

export const WEIGHTS_CACHE = 'tl-weights-v1';
export const HUB_ENDPOINT = 'https://huggingface.co';

export type WeightsSource = string | URL | Blob;

export interface FetchWeightsOptions {
  /** Cache API cache name (default `tl-weights-v1`); false turns caching off. */
  cache?: string | false;
  /** Hub endpoint for `hf:` references (default https://huggingface.co). */
  endpoint?: string;
  onProgress?: (loaded: number, total: number | null) => void;
  signal?: AbortSignal;
}

export interface LoadedWeights {
  file: SafetensorsFile;
  bytes: Uint8Array;
  /** Where the bytes came from, for messages. */
  source: string;
  fromCache: boolean;
}

export class WeightsError extends Error {
  override name = 'WeightsError';
}

/** The resolve URL of a Hub reference (`hf:timm/resnet18.a1_in1k` → …/resolve/main/model.safetensors). */
export function hubResolveUrl(ref: string, endpoint = HUB_ENDPOINT): string {
  const r = parseHubRef(ref);
  const file = r.file ?? DEFAULT_WEIGHTS_FILE;
  return `${endpoint.replace(/\/+$/, '')}/${r.repo}/resolve/${encodeURIComponent(r.revision)}/${file.split('/').map(encodeURIComponent).join('/')}`;
}

async function readBody(res: Response, source: string, o: FetchWeightsOptions): Promise<Uint8Array> {
  const len = Number(res.headers.get('content-length'));
  const total = Number.isFinite(len) && len > 0 ? len : null;
  if (!res.body || !o.onProgress) return new Uint8Array(await res.arrayBuffer());
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    o.onProgress(loaded, total);
  }
  if (total !== null && loaded < total && !res.headers.get('content-encoding')) {
    throw new WeightsError(`${source}: the download stopped after ${loaded} of ${total} bytes`);
  }
  const out = new Uint8Array(loaded);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

async function openCache(name: string | false | undefined): Promise<Cache | null> {
  if (name === false || typeof caches === 'undefined') return null;
  try {
    return await caches.open(name ?? WEIGHTS_CACHE);
  } catch {
    return null; // e.g. an insecure context, or storage turned off
  }
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
export async function fetchWeightsBytes(src: WeightsSource, o: FetchWeightsOptions = {}): Promise<{ bytes: Uint8Array; source: string; fromCache: boolean }> {
  if (typeof src !== 'string' && !(src instanceof URL)) {
    const name = 'name' in src && typeof (src as File).name === 'string' ? (src as File).name : 'blob';
    return { bytes: new Uint8Array(await src.arrayBuffer()), source: name, fromCache: false };
  }
  const s = String(src);
  if (s.startsWith('opfs:')) return { bytes: await fromOpfs(s.slice(5)), source: s, fromCache: false };
  const url = s.startsWith('hf:') ? hubResolveUrl(s, o.endpoint) : new URL(s, globalThis.location?.href).href;
  const cache = await openCache(o.cache);
  const hit = await cache?.match(url);
  if (hit) return { bytes: await readBody(hit, url, o), source: url, fromCache: true };
  let res: Response;
  try {
    res = await fetch(url, { signal: o.signal, mode: 'cors', credentials: 'omit' });
  } catch (e) {
    throw new WeightsError(`cannot download ${url}: ${(e as Error).message} (offline, or the server does not allow cross-origin requests)`);
  }
  if (!res.ok) throw new WeightsError(`${url}: HTTP ${res.status} ${res.statusText}${res.status === 401 || res.status === 403 ? ' (a gated or private repository needs a token; download the file and drop it on the page instead)' : ''}`);
  const bytes = await readBody(res, url, o);
  if (cache) {
    await cache.put(url, new Response(bytes as Uint8Array<ArrayBuffer>, { headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) } })).catch(() => {});
  }
  return { bytes, source: url, fromCache: false };
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
