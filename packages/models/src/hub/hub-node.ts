/**
 * A Hugging Face Hub client for Node that shares huggingface_hub's cache: files live in
 * `<cache>/models--org--name/blobs/<etag>`, `snapshots/<commit>/<file>` links to the blob, and
 * `refs/<revision>` holds the commit. HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_HUB_OFFLINE and
 * HF_TOKEN mean what they mean there. Downloads go to `<blob>.incomplete`, resume from its
 * size with a Range request, and are renamed when complete.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, readlink, rename, rm, stat, symlink, writeFile, copyFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
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

/**
 * Every cache path is built from names the server or a repo listing chose (the commit, the
 * ETag, file names), so each one is checked to resolve inside the cache before it is read or
 * written: a hostile HF_ENDPOINT must not be able to write anywhere else.
 */
function insideCache(cache: string, ...parts: string[]): string {
  const p = resolve(cache, ...parts);
  const rel = relative(resolve(cache), p);
  if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw new HubError(`the Hub cache path ${p} is outside the cache ${cache}; refusing to use it`);
  }
  return p;
}

/** A path inside the repo, as huggingface_hub accepts it: relative, `/`-separated, no `.`/`..`/empty segments. */
function checkRepoPath(what: string, p: string): void {
  const bad = p === '' || p.startsWith('/') || /[\\\0]/.test(p) || /^[A-Za-z]:/.test(p) || p.split('/').some((s) => s === '' || s === '.' || s === '..');
  if (bad) throw new HubError(`${what} ${JSON.stringify(p)} is not a safe path inside the repo; expected relative "/"-separated names without "." or ".." segments, backslashes or NUL`);
}

function checkCommit(commit: string, url: string): void {
  if (!COMMIT_RE.test(commit)) throw new HubError(`${url}: the server's X-Repo-Commit ${JSON.stringify(commit)} is not a commit hash; expected 40 hex digits`);
}

/**
 * The blob's file name. huggingface_hub names a blob by its ETag without quotes and `W/`;
 * the Hub's own ETags are hex digests, and other servers' are mostly hex or base64url with
 * dashes, all of which are kept as they are so the cache stays shared. RFC 9110 lets an ETag
 * hold nearly any printable character, though, including `/` and `.`: anything outside
 * [0-9A-Za-z_-] is hashed into a fixed-length hex name instead of refused, because the ETag is
 * only a content key (a valid, if odd, server must still work) and the name must never act
 * as a path.
 */
function blobName(etag: string): string {
  if (/^[0-9A-Za-z_-]{1,128}$/.test(etag)) return etag;
  return `etag-sha256-${createHash('sha256').update(etag).digest('hex')}`;
}

/** Path of a cached file for `ref` (no network), or null. */
export async function cachedFile(ref: HubRef, file: string, opts: HubOptions = {}): Promise<string | null> {
  checkRepoPath('the file', file);
  checkRepoPath('the revision', ref.revision);
  const cache = hubCacheDir(opts);
  const root = insideCache(cache, repoFolderName(ref.repo));
  let commit = ref.revision;
  if (!COMMIT_RE.test(commit)) {
    try {
      commit = (await readFile(insideCache(cache, root, 'refs', ref.revision), 'utf8')).trim();
    } catch {
      return null;
    }
    if (!COMMIT_RE.test(commit)) return null;
  }
  const p = insideCache(cache, root, 'snapshots', commit, file);
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
  checkRepoPath('the file', file);
  checkRepoPath('the revision', ref.revision);
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
  checkCommit(commit, url);
  const size = Number(head.headers.get('x-linked-size') ?? head.headers.get('content-length') ?? NaN);
  const location = head.status >= 300 && head.status < 400 ? head.headers.get('location') : null;
  const cache = hubCacheDir(opts);
  const root = insideCache(cache, repoFolderName(ref.repo));
  const blob = insideCache(cache, root, 'blobs', blobName(etag));
  const snapshot = insideCache(cache, root, 'snapshots', commit, file);
  const refFile = COMMIT_RE.test(ref.revision) ? null : insideCache(cache, root, 'refs', ref.revision);
  await mkdir(dirname(blob), { recursive: true });
  if (!(await exists(blob))) {
    const from = location ? new URL(location, headUrl).toString() : headUrl;
    // The CDN behind a redirect must not see the Hub token.
    const sameHost = new URL(from).host === new URL(url).host;
    await download(f, from, blob, file, sameHost ? headers : { 'user-agent': headers['user-agent']! }, Number.isFinite(size) ? size : null, opts);
  }
  await mkdir(dirname(snapshot), { recursive: true });
  await linkBlob(blob, snapshot);
  if (refFile !== null) {
    await mkdir(dirname(refFile), { recursive: true });
    await writeAtomic(refFile, commit);
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
  let res: Response;
  try {
    res = await f(url, { headers: h, redirect: 'follow' });
  } catch (e) {
    throw new HubError(`download of ${file} from ${new URL(url).host} failed: ${(e as Error).message}; run again to retry`);
  }
  if (res.status === 416 && total !== null && have === total) {
    await rename(part, blob);
    return;
  }
  if (!res.ok || !res.body) throw new HubError(`download of ${file} failed: ${res.status} ${res.statusText}`, res.status);
  if (have > 0 && res.status !== 206) have = 0;
  const out = createWriteStream(part, { flags: have > 0 ? 'a' : 'w' });
  let received = have;
  const reader = res.body.getReader();
  const of = total === null ? '' : ` of ${total}`;
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (e) {
        // undici reports a connection cut mid-body as `TypeError: terminated`.
        throw new HubError(`download of ${file} was interrupted at ${received}${of} bytes (${(e as Error).message}); run again to resume it`);
      }
      if (chunk.done) break;
      received += chunk.value.byteLength;
      if (!out.write(chunk.value)) await new Promise<void>((r) => out.once('drain', () => r()));
      opts.onProgress?.({ file, received, total });
    }
  } finally {
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }
  if (total !== null && received !== total) {
    throw new HubError(`download of ${file} was interrupted at ${received}${of} bytes; run again to resume it`);
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
  try {
    await writeFile(tmp, text);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw new HubError(`cannot write the Hub cache file ${path}: ${(e as Error).message}`);
  }
}
