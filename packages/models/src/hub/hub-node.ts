/**
 * A Hugging Face Hub client for Node that shares huggingface_hub's cache: files live in
 * `<cache>/models--org--name/blobs/<etag>`, `snapshots/<commit>/<file>` links to the blob, and
 * `refs/<revision>` holds the commit. HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_HUB_OFFLINE and
 * HF_TOKEN mean what they mean there. Downloads go to `<blob>.incomplete`, resume from its
 * size with a Range request, and are renamed when complete.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, readlink, rename, rm, stat, symlink, writeFile, copyFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { DEFAULT_WEIGHTS_FILE, parseHubRef, repoFolderName, type HubRef } from './ref.js';

export interface HubOptions {
  cacheDir?: string;
  endpoint?: string;
  token?: string;
  offline?: boolean;
  /** Called as bytes arrive. */
  onProgress?: (p: { file: string; received: number; total: number | null }) => void;
  fetch?: typeof fetch;
}

export class HubError extends Error {
  override name = 'HubError';
  constructor(message: string, readonly status?: number) {
    super(message);
  }
}

function truthy(v: string | undefined): boolean {
  return v !== undefined && ['1', 'true', 'yes', 'on'].includes(v.toLowerCase());
}

/** Whether only the cache is used: `opts.offline`, else HF_HUB_OFFLINE. */
export function isHubOffline(opts: HubOptions = {}): boolean {
  return opts.offline ?? truthy(process.env.HF_HUB_OFFLINE);
}

export function hubCacheDir(opts: HubOptions = {}): string {
  if (opts.cacheDir) return opts.cacheDir;
  if (process.env.HF_HUB_CACHE) return process.env.HF_HUB_CACHE;
  const home = process.env.HF_HOME ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
  return join(home, 'hub');
}

function endpoint(opts: HubOptions): string {
  return (opts.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
}

function token(opts: HubOptions): string | undefined {
  return opts.token ?? process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN;
}

const COMMIT_RE = /^[0-9a-f]{40}$/;

/** Path of a cached file for `ref` (no network), or null. */
export async function cachedFile(ref: HubRef, file: string, opts: HubOptions = {}): Promise<string | null> {
  const root = join(hubCacheDir(opts), repoFolderName(ref.repo));
  let commit = ref.revision;
  if (!COMMIT_RE.test(commit)) {
    try {
      commit = (await readFile(join(root, 'refs', ref.revision), 'utf8')).trim();
    } catch {
      return null;
    }
  }
  const p = join(root, 'snapshots', commit, file);
  try {
    await stat(p);
    return p;
  } catch {
    return null;
  }
}

/**
 * Returns a local path for `file` of the Hub repo, downloading it into the shared cache
 * when it is missing or the revision moved.
 */
export async function hubDownload(refOrString: HubRef | string, fileArg?: string, opts: HubOptions = {}): Promise<string> {
  const ref = typeof refOrString === 'string' ? parseHubRef(refOrString) : refOrString;
  const file = fileArg ?? ref.file ?? DEFAULT_WEIGHTS_FILE;
  const offline = isHubOffline(opts);
  const cached = await cachedFile(ref, file, opts);
  if (offline) {
    if (cached) return cached;
    throw new HubError(`${ref.repo}@${ref.revision}/${file} is not in the Hub cache (${hubCacheDir(opts)}) and HF_HUB_OFFLINE is set`);
  }
  // A commit hash never moves: a cached copy is final.
  if (cached && COMMIT_RE.test(ref.revision)) return cached;
  const url = `${endpoint(opts)}/${ref.repo}/resolve/${encodeURIComponent(ref.revision)}/${file.split('/').map(encodeURIComponent).join('/')}`;
  const headers: Record<string, string> = { 'user-agent': 'tl/0.1' };
  const tok = token(opts);
  if (tok) headers.authorization = `Bearer ${tok}`;
  const f = opts.fetch ?? fetch;
  let head: Response;
  let headUrl = url;
  try {
    for (let hops = 0; ; hops++) {
      head = await f(headUrl, { method: 'HEAD', headers, redirect: 'manual' });
      // A renamed repo (gpt2 -> openai-community/gpt2) answers with a relative redirect on the
      // Hub itself, which huggingface_hub follows; an LFS file redirects to the CDN's host.
      const next = head.status >= 300 && head.status < 400 ? head.headers.get('location') : null;
      if (!next || /^[a-z][a-z0-9+.-]*:/i.test(next) || next.startsWith('//') || hops === 5) break;
      headUrl = new URL(next, headUrl).toString();
    }
  } catch (e) {
    if (cached) return cached;
    throw new HubError(`cannot reach ${endpoint(opts)} for ${ref.repo}: ${(e as Error).message}. Set HF_HUB_OFFLINE=1 to use the cache only.`);
  }
  checkStatus(head, ref, file);
  const commit = head.headers.get('x-repo-commit');
  const etag = normalizeEtag(head.headers.get('x-linked-etag') ?? head.headers.get('etag'));
  if (!commit || !etag) throw new HubError(`${url}: the server sent no X-Repo-Commit or ETag header; is HF_ENDPOINT a Hub?`);
  const size = Number(head.headers.get('x-linked-size') ?? head.headers.get('content-length') ?? NaN);
  const location = head.status >= 300 && head.status < 400 ? head.headers.get('location') : null;
  const root = join(hubCacheDir(opts), repoFolderName(ref.repo));
  const blob = join(root, 'blobs', etag);
  const snapshot = join(root, 'snapshots', commit, file);
  await mkdir(dirname(blob), { recursive: true });
  if (!(await exists(blob))) {
    const from = location ? new URL(location, headUrl).toString() : headUrl;
    // The CDN behind a redirect must not see the Hub token.
    const sameHost = new URL(from).host === new URL(url).host;
    await download(f, from, blob, file, sameHost ? headers : { 'user-agent': headers['user-agent']! }, Number.isFinite(size) ? size : null, opts);
  }
  await mkdir(dirname(snapshot), { recursive: true });
  await linkBlob(blob, snapshot);
  if (!COMMIT_RE.test(ref.revision)) {
    await mkdir(join(root, 'refs'), { recursive: true });
    await writeAtomic(join(root, 'refs', ref.revision), commit);
  }
  return snapshot;
}

function checkStatus(r: Response, ref: HubRef, file: string): void {
  if (r.ok || (r.status >= 300 && r.status < 400)) return;
  const what = `${ref.repo}@${ref.revision}/${file}`;
  if (r.status === 401 || r.status === 403) {
    throw new HubError(`${what}: access denied (${r.status}). The repo is private or gated: accept its terms on the Hub and set HF_TOKEN.`, r.status);
  }
  if (r.status === 404) {
    const code = r.headers.get('x-error-code');
    const why = code === 'RevisionNotFound' ? `revision "${ref.revision}" not found` : code === 'EntryNotFound' ? `file "${file}" not found in the repo` : 'repo or file not found';
    throw new HubError(`${what}: ${why} (404)`, 404);
  }
  throw new HubError(`${what}: the Hub answered ${r.status} ${r.statusText}`, r.status);
}

function normalizeEtag(e: string | null): string | null {
  if (!e) return null;
  return e.replace(/^W\//, '').replace(/"/g, '');
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

async function download(
  f: typeof fetch, url: string, blob: string, file: string, headers: Record<string, string>, total: number | null, opts: HubOptions,
): Promise<void> {
  const part = `${blob}.incomplete`;
  let have = 0;
  try {
    have = (await stat(part)).size;
  } catch {
    have = 0;
  }
  const h = { ...headers, ...(have > 0 ? { range: `bytes=${have}-` } : {}) };
  const res = await f(url, { headers: h, redirect: 'follow' });
  if (res.status === 416 && total !== null && have === total) {
    await rename(part, blob);
    return;
  }
  if (!res.ok || !res.body) throw new HubError(`download of ${file} failed: ${res.status} ${res.statusText}`, res.status);
  if (have > 0 && res.status !== 206) have = 0;
  const out = createWriteStream(part, { flags: have > 0 ? 'a' : 'w' });
  let received = have;
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      received += value.byteLength;
      if (!out.write(value)) await new Promise<void>((r) => out.once('drain', () => r()));
      opts.onProgress?.({ file, received, total });
    }
  } finally {
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }
  if (total !== null && received !== total) {
    throw new HubError(`download of ${file} stopped at ${received} of ${total} bytes; run again to resume`);
  }
  await rename(part, blob);
}

async function linkBlob(blob: string, snapshot: string): Promise<void> {
  const target = relative(dirname(snapshot), blob);
  try {
    if ((await readlink(snapshot)) === target) return;
  } catch {
    // not a link yet
  }
  await rm(snapshot, { force: true });
  try {
    await symlink(target, snapshot);
  } catch {
    // File systems without symlinks get a copy, as huggingface_hub does on Windows.
    await copyFile(blob, snapshot);
  }
}

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}
