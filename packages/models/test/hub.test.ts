import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readlinkSync, existsSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hubDownload, HubError, parseHubRef, parseWeightRef } from '../src/node.js';
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
