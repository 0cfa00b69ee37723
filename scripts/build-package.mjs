// Bundles a package's entries (src/<entry>.ts -> dist/<entry>.js) with esbuild. Dependencies
// stay external so the workspace packages and `webgpu` resolve at run time; the browser
// entry is built for the browser platform, so any Node import in it fails the build.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';

const entries = process.argv.slice(2);
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const external = [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})];

for (const entry of entries) {
  const browser = entry === 'browser';
  await build({
    entryPoints: [`src/${entry}.ts`],
    outfile: `dist/${entry}.js`,
    bundle: true,
    format: 'esm',
    platform: browser ? 'browser' : 'node',
    target: browser ? 'es2022' : 'node20',
    external: browser ? external.filter((d) => d !== 'webgpu') : external,
    conditions: browser ? ['browser'] : ['node'],
    sourcemap: true,
    logLevel: 'warning',
    banner: entry === 'tl' ? { js: '#!/usr/bin/env node' } : undefined,
  });
}
