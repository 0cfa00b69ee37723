// Bundles a package's entries (src/<entry>.ts -> dist/<entry>.js) with esbuild. The
// workspace's own packages are bundled from source (their "source" export condition), so a
// built entry runs without building its dependencies first; npm dependencies stay external.
// The browser entry is built for the browser platform, so any Node import in it fails.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';

const entries = process.argv.slice(2);
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const deps = [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})];
const external = [...deps.filter((d) => !d.startsWith('@tl/')), 'webgpu', 'sharp'];

for (const entry of entries) {
  const browser = entry === 'browser';
  await build({
    entryPoints: [`src/${entry}.ts`],
    outfile: `dist/${entry}.js`,
    bundle: true,
    format: 'esm',
    platform: browser ? 'browser' : 'node',
    target: browser ? 'es2022' : 'node20',
    external: browser ? [] : external,
    conditions: browser ? ['browser-source', 'browser'] : ['source', 'node'],
    sourcemap: true,
    // The tsconfig path aliases point at the Node entries (for typechecking); bundles resolve
    // through package.json exports instead, so the browser entry gets browser code.
    tsconfigRaw: {},
    logLevel: 'warning',
    banner: entry === 'tl' ? { js: "#!/usr/bin/env node\nimport { createRequire as __tlCreateRequire } from 'node:module'; const require = __tlCreateRequire(import.meta.url);" } : undefined,
  });
}
