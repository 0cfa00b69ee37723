/**
 * Downloads kept in the Cache API, shared by the weights and text-model loaders of the browser
 * entry (this module is not re-exported: its options and error are, through weights-browser.ts).
 */

export const WEIGHTS_CACHE = 'tl-weights-v1';

export interface FetchWeightsOptions {
  /** Cache API cache name (default `tl-weights-v1`); false turns caching off. */
  cache?: string | false;
  /** Hub endpoint for `hf:` references (default https://huggingface.co). */
  endpoint?: string;
  onProgress?: (loaded: number, total: number | null) => void;
  signal?: AbortSignal;
}

export class WeightsError extends Error {
  override name = 'WeightsError';
}

export interface Fetched {
  bytes: Uint8Array;
  url: string;
  fromCache: boolean;
  /** The Hub's X-Repo-Commit: the commit a branch or tag resolved to (null elsewhere). */
  commit: string | null;
}

const COMMIT_HEADER = 'x-repo-commit';

async function readBody(res: Response, source: string, onProgress: FetchWeightsOptions['onProgress']): Promise<Uint8Array> {
  const len = Number(res.headers.get('content-length'));
  const total = Number.isFinite(len) && len > 0 ? len : null;
  if (!res.body || !onProgress) return new Uint8Array(await res.arrayBuffer());
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    onProgress(loaded, total);
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

export async function openCache(name: string | false | undefined): Promise<Cache | null> {
  if (name === false || typeof caches === 'undefined') return null;
  try {
    return await caches.open(name ?? WEIGHTS_CACHE);
  } catch {
    return null; // e.g. an insecure context, or storage turned off
  }
}

function commitOf(res: Response): string | null {
  const c = res.headers.get(COMMIT_HEADER);
  return c !== null && /^[0-9a-f]{40}$/.test(c) ? c : null;
}

/**
 * The bytes at `url`, from the Cache API when it has them, else downloaded and cached; null when
 * the server answers 404. `rememberAbsence` caches that answer too, for a file a checkpoint may
 * lack (tokenizer_config.json), so that a second load makes no request either.
 */
export async function fetchCached(url: string, o: FetchWeightsOptions, rememberAbsence = false): Promise<Fetched | null> {
  const cache = await openCache(o.cache);
  const hit = await cache?.match(url);
  if (hit) return hit.status === 404 ? null : { bytes: await readBody(hit, url, o.onProgress), url, fromCache: true, commit: commitOf(hit) };
  let res: Response;
  try {
    res = await fetch(url, { signal: o.signal, mode: 'cors', credentials: 'omit' });
  } catch (e) {
    if (o.signal?.aborted) throw e;
    throw new WeightsError(`cannot download ${url}: ${(e as Error).message} (offline, or the server does not allow cross-origin requests)`);
  }
  if (res.status === 404) {
    if (cache && rememberAbsence) await cache.put(url, new Response(null, { status: 404 })).catch(() => {});
    return null;
  }
  if (!res.ok) throw new WeightsError(`${url}: HTTP ${res.status} ${res.statusText}${res.status === 401 || res.status === 403 ? ' (a gated or private repository needs a token; download the file and drop it on the page instead)' : ''}`);
  const bytes = await readBody(res, url, o.onProgress);
  const commit = commitOf(res);
  if (cache) {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) };
    // Kept so that a cached config.json still pins the files after it to its commit.
    if (commit !== null) headers[COMMIT_HEADER] = commit;
    await cache.put(url, new Response(bytes as Uint8Array<ArrayBuffer>, { headers })).catch(() => {});
  }
  return { bytes, url, fromCache: false, commit };
}
