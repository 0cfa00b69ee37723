/**
 * Test plumbing: a static file server on 127.0.0.1 (a secure context, so WebGPU, OPFS and the
 * Cache API are on) and Debian's Chromium driven by playwright-core, headless, with WebGPU on
 * Mesa's llvmpipe through ANGLE's GL backend (a compatibility adapter; 3-8x faster here than
 * the SwiftShader fallback Chrome offers for core requests).
 */
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve } from 'node:path';
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext } from 'playwright-core';

/**
 * Bundles a test page (or its worker) as the packages' browser entries are built: the
 * `browser-source` condition and no tsconfig paths (the tests' paths point at Node entries), so
 * a Node import anywhere on the way fails the build.
 */
export async function bundlePage(entry: URL, outfile: string): Promise<void> {
  await build({
    entryPoints: [fileURLToPath(entry)], outfile, bundle: true, format: 'esm', platform: 'browser', target: 'es2022',
    conditions: ['browser-source', 'browser'], tsconfigRaw: {}, logLevel: 'warning',
  });
}

export const CHROMIUM = process.env.TL_CHROMIUM ?? '/usr/bin/chromium';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
  '.json': 'application/json', '.map': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png',
  '.wasm': 'application/wasm', '.safetensors': 'application/octet-stream',
};

export interface StaticServer {
  url: string;
  /** Every request the server received, in order. */
  requests: { method: string; url: string }[];
  close(): Promise<void>;
}

/** Serves `root` (index.html for folders) on an ephemeral port of 127.0.0.1. */
export async function serveStatic(root: string): Promise<StaticServer> {
  const base = resolve(root);
  const requests: StaticServer['requests'] = [];
  const server: Server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '' });
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    let file = normalize(join(base, path));
    if (!file.startsWith(base)) {
      res.writeHead(403).end();
      return;
    }
    if (existsSync(file) && statSync(file).isDirectory()) file = join(file, 'index.html');
    if (!existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'content-length': statSync(file).size, 'cache-control': 'no-store' });
    createReadStream(file).pipe(res);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('no server address');
  return {
    url: `http://127.0.0.1:${addr.port}/`,
    requests,
    close: () => new Promise<void>((ok) => {
      server.closeAllConnections();
      server.close(() => ok());
    }),
  };
}

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Headless Chromium with WebGPU; `gpu: 'llvmpipe'` (default; TL_BROWSER_GPU=swiftshader picks Chrome's
 * core-level software adapter instead) or 'none' (WebGPU off); `extraArgs` go to Chromium as given (a file for the fake microphone). */
export async function launchChromium(opts: { gpu?: 'llvmpipe' | 'swiftshader' | 'none'; extraArgs?: readonly string[] } = {}): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install chromium, or set TL_CHROMIUM)`);
  const gpu = opts.gpu ?? (process.env.TL_BROWSER_GPU as 'llvmpipe' | 'swiftshader' | undefined) ?? 'llvmpipe';
  const profile = mkdtempSync(join(tmpdir(), 'tl-chromium-'));
  const args = [
    '--headless=new', '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
    // A synthetic camera, granted without a prompt (the app's webcam capture).
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    ...(gpu === 'none' ? [] : ['--enable-unsafe-webgpu']),
    ...(gpu === 'llvmpipe' ? ['--use-webgpu-adapter=opengles', '--use-angle=gl-egl'] : []),
    ...(opts.extraArgs ?? []),
  ];
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args, viewport: { width: 1280, height: 1000 },
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
