import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readlinkSync, existsSync, writeFileSync, mkdirSync, readdirSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cachedFile, hubDownload, HubError, parseHubRef, parseWeightRef, type HubRef } from '../src/node.js';
import { startFakeHub, type FakeHub } from './hub-server.js';

const COMMIT = 'a'.repeat(40);
const payload = new Uint8Array(200_000).map((_, i) => (i * 7) & 0xff);
const etag = createHash('sha256').update(payload).digest('hex');
let hub: FakeHub;
let requests: FakeHub['requests'];
let base = '';

beforeAll(async () => {
  const files = { 'model.safetensors': payload };
  hub = await startFakeHub({ 'org/model': files, 'org/private': files }, { commit: COMMIT, tokens: { 'org/private': 'secret' } });
  requests = hub.requests;
  base = hub.url;
});

afterAll(() => hub.close());

describe('weight references', () => {
  it('parses hf: references, URLs and paths', () => {
    expect(parseHubRef('hf:timm/resnet18.a1_in1k')).toEqual({ kind: 'hub', repo: 'timm/resnet18.a1_in1k', revision: 'main', file: undefined });
    expect(parseHubRef('hf:org/name@v1.2/sub/model.safetensors')).toEqual({ kind: 'hub', repo: 'org/name', revision: 'v1.2', file: 'sub/model.safetensors' });
    expect(parseHubRef('hf:bert-base-uncased')).toMatchObject({ repo: 'bert-base-uncased', file: undefined });
    expect(parseWeightRef('https://x.org/a.safetensors')).toEqual({ kind: 'url', url: 'https://x.org/a.safetensors' });
    expect(parseWeightRef('./w.safetensors')).toEqual({ kind: 'path', path: './w.safetensors' });
    expect(() => parseHubRef('hf:org/name/../x')).toThrow(/\.\./);
  });
});

describe('Hub client against a local server that speaks the protocol', () => {
  it('downloads into the huggingface_hub cache layout, then serves offline from it', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'tl-hub-'));
    const progress: number[] = [];
    const p = await hubDownload('hf:org/model', undefined, { cacheDir: cache, endpoint: base, onProgress: (e) => progress.push(e.received) });
    const root = join(cache, 'models--org--model');
    expect(p).toBe(join(root, 'snapshots', COMMIT, 'model.safetensors'));
    expect(readlinkSync(p)).toBe(`../../blobs/${etag}`);
    expect(readFileSync(join(root, 'refs', 'main'), 'utf8')).toBe(COMMIT);
    expect(new Uint8Array(readFileSync(p))).toEqual(payload);
    expect(progress.at(-1)).toBe(payload.length);
    const n = requests.length;
    expect(await hubDownload('hf:org/model', undefined, { cacheDir: cache, endpoint: base, offline: true })).toBe(p);
    expect(requests.length).toBe(n);
    expect(await hubDownload(`hf:org/model@${COMMIT}`, undefined, { cacheDir: cache, endpoint: base })).toBe(p);
    expect(requests.length).toBe(n);
  });

  it('resumes an interrupted download with a Range request', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'tl-hub-'));
    const blobs = join(cache, 'models--org--model', 'blobs');
    mkdirSync(blobs, { recursive: true });
    writeFileSync(join(blobs, `${etag}.incomplete`), payload.subarray(0, 50_000));
    const p = await hubDownload('hf:org/model', undefined, { cacheDir: cache, endpoint: base });
    expect(new Uint8Array(readFileSync(p))).toEqual(payload);
    expect(requests.at(-1)!.headers.range).toBe('bytes=50000-');
    expect(existsSync(join(blobs, `${etag}.incomplete`))).toBe(false);
  });

  it('sends HF_TOKEN to the Hub but not to the CDN it redirects to', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'tl-hub-'));
    process.env.HF_TOKEN = 'secret';
    try {
      await hubDownload('hf:org/private', undefined, { cacheDir: cache, endpoint: base });
    } finally {
      delete process.env.HF_TOKEN;
    }
    const head = requests.filter((r) => r.url.startsWith('/org/private')).at(-1)!;
    expect(head.headers.authorization).toBe('Bearer secret');
    expect(requests.at(-1)!.url).toMatch(/^\/cdn\//);
    expect(requests.at(-1)!.headers.authorization).toBeUndefined();
  });

  it('says what is wrong: 401, missing file, missing revision, offline cache miss', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'tl-hub-'));
    const err = async (ref: string, file?: string, offline = false): Promise<HubError> => {
      try {
        await hubDownload(ref, file, { cacheDir: cache, endpoint: base, offline });
      } catch (e) {
        return e as HubError;
      }
      throw new Error('no error');
    };
    expect((await err('hf:org/private')).message).toMatch(/private or gated.*HF_TOKEN/);
    expect((await err('hf:org/model', 'pytorch_model.bin')).message).toMatch(/file "pytorch_model.bin" not found/);
    expect((await err('hf:org/model@nope')).message).toMatch(/revision "nope" not found/);
    expect((await err('hf:org/other', undefined, true)).message).toMatch(/not in the Hub cache.*HF_HUB_OFFLINE/);
  });
});

/** Every path under `dir`, recursively, with each file's size (so a rewrite shows too). */
function listTree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .map((d) => join(d.parentPath, d.name))
    .map((p) => `${relative(dir, p)}:${lstatSync(p).isFile() ? lstatSync(p).size : 'dir'}`)
    .sort();
}

describe('Hub client against a hostile server', () => {
  const files = { 'config.json': new TextEncoder().encode('{"a":1}'), 'model.safetensors': payload };
  // The cache sits four folders deep, so "../../../../x" from its inside lands in `parent`,
  // where the test can see it, rather than somewhere shared under /tmp.
  const setup = (): { parent: string; cache: string; before: string[] } => {
    const parent = mkdtempSync(join(tmpdir(), 'tl-hub-hostile-'));
    const cache = join(parent, 'a', 'b', 'c', 'hub');
    mkdirSync(cache, { recursive: true });
    writeFileSync(join(parent, 'keep.txt'), 'x');
    return { parent, cache, before: listTree(parent) };
  };
  const outsideCache = (parent: string, cache: string): string[] =>
    listTree(parent).filter((p) => !p.startsWith(`${relative(parent, cache)}${sep}`));

  async function attempt(headers: Record<string, string>, ref: HubRef | string, file?: string): Promise<{ error: unknown; parent: string; cache: string; before: string[] }> {
    const s = setup();
    const server = await startFakeHub({ 'org/model': files }, { commit: COMMIT, resolveHeaders: headers });
    let error: unknown = null;
    try {
      await hubDownload(ref, file, { cacheDir: s.cache, endpoint: server.url });
    } catch (e) {
      error = e;
    } finally {
      await server.close();
    }
    return { error, ...s };
  }

  it('refuses an X-Repo-Commit that is not 40 hex digits and writes nothing outside the cache', async () => {
    for (const commit of ['../../../../tmp/x', 'A'.repeat(40), `${COMMIT}/..`]) {
      for (const file of ['config.json', 'model.safetensors']) {
        const r = await attempt({ 'x-repo-commit': commit }, 'hf:org/model', file);
        expect(r.error).toBeInstanceOf(HubError);
        expect((r.error as Error).message).toContain(`X-Repo-Commit ${JSON.stringify(commit)} is not a commit hash; expected 40 hex digits`);
        expect(outsideCache(r.parent, r.cache)).toEqual(r.before);
        expect(readdirSync(r.cache).filter((n) => n.includes('.tmp-'))).toEqual([]);
      }
    }
  });

  it('stores a blob whose ETag is a path under a hashed name inside the cache', async () => {
    const etagHeaders = { etag: '"../../../../tmp/y"', 'x-linked-etag': 'W/"../../../../tmp/y"' };
    for (const file of ['config.json', 'model.safetensors']) {
      const r = await attempt(etagHeaders, 'hf:org/model', file);
      expect(r.error).toBeNull();
      const blobs = readdirSync(join(r.cache, 'models--org--model', 'blobs'));
      expect(blobs).toEqual([`etag-sha256-${createHash('sha256').update('../../../../tmp/y').digest('hex')}`]);
      expect(new Uint8Array(readFileSync(join(r.cache, 'models--org--model', 'snapshots', COMMIT, file)))).toEqual(files[file as keyof typeof files]);
      expect(outsideCache(r.parent, r.cache)).toEqual(r.before);
    }
  });

  it('refuses file names and revisions that leave the repo snapshot', async () => {
    const bad = ['../../../../tmp/z', '/etc/passwd', 'a/../../x', 'a\\..\\x', 'a\0b', '', 'a//b', './a', 'C:/x'];
    for (const file of bad) {
      const r = await attempt({}, { kind: 'hub', repo: 'org/model', revision: 'main', file: undefined }, file);
      expect(r.error, file).toBeInstanceOf(HubError);
      expect((r.error as Error).message).toContain(`the file ${JSON.stringify(file)} is not a safe path inside the repo`);
      expect(outsideCache(r.parent, r.cache)).toEqual(r.before);
      expect(await cachedFile({ kind: 'hub', repo: 'org/model', revision: 'main', file: undefined }, file, { cacheDir: r.cache }).catch((e: Error) => e.name)).toBe('HubError');
    }
    for (const revision of ['..', '../../../../tmp/w', '.']) {
      const r = await attempt({}, { kind: 'hub', repo: 'org/model', revision, file: undefined }, 'config.json');
      expect((r.error as Error).message).toContain(`the revision ${JSON.stringify(revision)} is not a safe path`);
      expect(listTree(r.parent)).toEqual(r.before);
    }
  });

  it('turns a cut-off download into a HubError that says it will resume, then resumes it', async () => {
    const s = setup();
    const server = await startFakeHub({ 'org/model': files }, { commit: COMMIT, cutAfter: 70_000 });
    try {
      const opts = { cacheDir: s.cache, endpoint: server.url };
      const error = await hubDownload('hf:org/model', undefined, opts).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(HubError);
      expect((error as Error).message).toMatch(/^download of model\.safetensors was interrupted at \d+ of 200000 bytes \(.*\); run again to resume it$/);
      const blobs = join(s.cache, 'models--org--model', 'blobs');
      expect(readdirSync(blobs)).toEqual([`${etag}.incomplete`]);
      expect(readdirSync(s.cache).filter((n) => n.includes('.tmp-'))).toEqual([]);
      const p = await hubDownload('hf:org/model', undefined, opts);
      expect(new Uint8Array(readFileSync(p))).toEqual(payload);
      expect(server.requests.at(-1)!.headers.range).toMatch(/^bytes=[1-9]\d*-$/);
    } finally {
      await server.close();
    }
  });
});
