/**
 * A local HTTP server that speaks the Hub's file protocol for the Hub client's tests:
 * `/{org}/{name}/resolve/{revision}/{file}` answers small files itself (200, the blob's etag)
 * and redirects LFS files (*.safetensors) to a CDN path on another host name with the blob's
 * identity in X-Linked-* headers, as huggingface.co does; the CDN honours Range requests. A
 * renamed repo answers with a relative redirect to its new name. With `cors`, every answer
 * carries the CORS headers huggingface.co sends, so that a browser page can load from it.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeHub {
  /** The endpoint (HF_ENDPOINT). */
  url: string;
  /** Every request, in order. */
  requests: { method: string; url: string; headers: IncomingHttpHeaders }[];
  close(): Promise<void>;
}

export interface FakeHubOptions {
  /** The commit every repo is at (main and this hash resolve). */
  commit: string;
  /** Repos that answer 401 unless sent `Authorization: Bearer <token>`. */
  tokens?: Record<string, string>;
  /** Old repo id -> the id it was renamed to (as gpt2 -> openai-community/gpt2). */
  renamed?: Record<string, string>;
  /** Answer cross-origin requests (a page on another port), exposing the Hub's headers. */
  cors?: boolean;
  /** Headers that replace the protocol's on `resolve` answers (a hostile or broken server). */
  resolveHeaders?: Record<string, string>;
  /** The CDN closes the connection after this many body bytes of the first download (a cut-off transfer). */
  cutAfter?: number;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Serves `repos`: repo id ("org/name") -> file path in the repo -> bytes. */
export async function startFakeHub(repos: Record<string, Record<string, Uint8Array>>, opts: FakeHubOptions): Promise<FakeHub> {
  const blobs = new Map<string, Uint8Array>();
  for (const files of Object.values(repos)) for (const bytes of Object.values(files)) blobs.set(sha256(bytes), bytes);
  const requests: FakeHub['requests'] = [];
  let cutAfter = opts.cutAfter;
  const server = createServer((req, res) => {
    requests.push({ method: req.method!, url: req.url!, headers: req.headers });
    if (opts.cors) {
      res.setHeader('access-control-allow-origin', '*');
      res.setHeader('access-control-expose-headers', 'x-repo-commit, x-error-code, x-linked-etag, x-linked-size, etag, content-length');
    }
    const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
    const m = /^\/((?:[^/]+\/)?[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (m) {
      const [, repo, rev, file] = m as unknown as [string, string, string, string];
      const moved = opts.renamed?.[repo];
      if (moved !== undefined) {
        res.writeHead(307, { location: `/${moved}/resolve/${rev}/${file}` }).end();
        return;
      }
      const token = opts.tokens?.[repo];
      if (token !== undefined && req.headers.authorization !== `Bearer ${token}`) {
        res.writeHead(401).end();
        return;
      }
      const files = repos[repo];
      if (!files) {
        res.writeHead(404, { 'x-error-code': 'RepoNotFound' }).end();
        return;
      }
      if (rev !== 'main' && rev !== opts.commit) {
        res.writeHead(404, { 'x-error-code': 'RevisionNotFound' }).end();
        return;
      }
      const bytes = files[file];
      if (!bytes) {
        res.writeHead(404, { 'x-error-code': 'EntryNotFound', 'x-repo-commit': opts.commit }).end();
        return;
      }
      const etag = sha256(bytes);
      if (file.endsWith('.safetensors')) {
        const port = (server.address() as AddressInfo).port;
        res.writeHead(302, {
          location: `http://localhost:${port}/cdn/${etag}`,
          'x-repo-commit': opts.commit,
          'x-linked-etag': `"${etag}"`,
          'x-linked-size': String(bytes.length),
          etag: '"pointer-etag"',
          ...opts.resolveHeaders,
        }).end();
        return;
      }
      res.writeHead(200, { 'x-repo-commit': opts.commit, etag: `"${etag.slice(0, 40)}"`, 'content-length': String(bytes.length), ...opts.resolveHeaders });
      res.end(req.method === 'HEAD' ? undefined : bytes);
      return;
    }
    const blob = /^\/cdn\/([0-9a-f]{64})$/.exec(path);
    const bytes = blob ? blobs.get(blob[1]!) : undefined;
    if (bytes) {
      const range = /bytes=(\d+)-/.exec(req.headers.range ?? '');
      const body = bytes.subarray(range ? Number(range[1]) : 0);
      res.writeHead(range ? 206 : 200, { 'content-length': String(body.length) });
      if (cutAfter !== undefined && req.method === 'GET') {
        const n = cutAfter;
        cutAfter = undefined;
        res.write(body.subarray(0, n), () => res.destroy());
        return;
      }
      res.end(body);
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
