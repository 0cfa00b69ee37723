// Builds the package in the current directory.
//
// A library (no arguments): `tsc -p tsconfig.build.json` writes one .js, .d.ts and their maps
// per source file into dist/. Imports of the other @tl/* packages stay imports, so a process
// that loads several packages runs one copy of each, hence one GPU engine. tsc resolves those
// imports to the dependencies' dist/*.d.ts (turbo builds dependencies first). Then the browser
// entry is bundled for the browser platform, without writing it, so a Node import reachable
// from it fails the build, and every emitted module that runs code on import (a registration
// call, a bare import) must be listed in package.json "sideEffects", or bundlers would drop it;
// every package the output imports must be declared in package.json, or a strict install
// (pnpm, or npm without hoisting luck) fails with ERR_MODULE_NOT_FOUND.
//
// A command (`--bin <entry>`): src/<entry>.ts is bundled by esbuild into dist/<entry>.js with a
// shebang; every package it depends on (the @tl/* ones included) stays an import, and one it
// imports without declaring fails the build.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { relative } from 'node:path';

const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const declared = ['dependencies', 'peerDependencies', 'optionalDependencies'].flatMap((k) => Object.keys(pkg[k] ?? {}));
// `@tl/tensor/x` and `sharp/lib/x` are the same packages as `@tl/tensor` and `sharp`.
const external = declared.flatMap((d) => [d, `${d}/*`]);

const [flag, bin] = process.argv.slice(2);

if (flag === '--bin') {
  rmSync('dist', { recursive: true, force: true });
  const { metafile } = await build({
    entryPoints: [`src/${bin}.ts`],
    outfile: `dist/${bin}.js`,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external,
    sourcemap: true,
    tsconfigRaw: {},
    logLevel: 'warning',
    banner: { js: '#!/usr/bin/env node' },
    metafile: true,
  });
  // An undeclared package would be inlined from wherever node_modules has it: for a @tl/*
  // package, a second engine.
  const inlined = Object.keys(metafile.inputs).filter((p) => !p.startsWith('src/'));
  if (inlined.length > 0) throw new Error(`${pkg.name}: dist/${bin}.js would inline ${inlined.join(', ')}; declare the package in package.json dependencies`);
} else if (flag === undefined) {
  // Built beside dist/ and swapped in at the end, so a process reading dist/ (another build's
  // compiler, a running test) never finds it half written.
  const out = `dist.tmp-${process.pid}`;
  try {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', out], { stdio: 'inherit' });
    checkSideEffects(out);
    await checkImports(out);
    if (existsSync(`${out}/browser.js`)) {
      await build({
        entryPoints: [`${out}/browser.js`],
        bundle: true,
        write: false,
        format: 'esm',
        platform: 'browser',
        external,
        logLevel: 'warning',
      });
    }
    rmSync('dist', { recursive: true, force: true });
    renameSync(out, 'dist');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
} else {
  throw new Error(`build-package: unknown argument ${flag}; expected none (a library) or --bin <entry>`);
}

/** Top-level statements that run on import, found in tsc's output (one statement per line at
 * column 0): calls like `registerGpuProvider(…);` and imports for effect like `import './x.js';`.
 * Each such module must be listed as dist/x.js and as src/x.ts (Vite and esbuild in the
 * workspace compile the sources through the "browser-source" condition). */
function checkSideEffects(out) {
  if (pkg.sideEffects === undefined || pkg.sideEffects === true) return;
  const listed = new Set(Array.isArray(pkg.sideEffects) ? pkg.sideEffects : []);
  const runsOnImport = /^(?:[A-Za-z_$][\w$.]*\(|import ['"])/m;
  const files = readdirSync(out, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.js')).map((f) => f.split('\\').join('/'));
  const needed = files.filter((f) => runsOnImport.test(readFileSync(`${out}/${f}`, 'utf8'))).flatMap((f) => [`./dist/${f}`, `./src/${f.replace(/\.js$/, '.ts')}`]);
  const unlisted = needed.filter((f) => !listed.has(f));
  if (unlisted.length > 0) {
    throw new Error(`${pkg.name}: ${unlisted.join(', ')} run code on import; add them to package.json "sideEffects" (it lists ${[...listed].join(', ') || 'none'})`);
  }
}

/** Packages imported by the emitted modules that package.json does not declare (esbuild parses
 * the modules and reports each bare import; nothing is written). */
async function checkImports(out) {
  const files = readdirSync(out, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.js'));
  const imported = new Map();
  await build({
    entryPoints: files.map((f) => `${out}/${f}`),
    bundle: true,
    write: false,
    outdir: `${out}/.check`,
    format: 'esm',
    platform: 'node',
    logLevel: 'warning',
    plugins: [{
      name: 'record-packages',
      setup(b) {
        b.onResolve({ filter: /^[^./]/ }, (args) => {
          imported.set(args.path, relative(out, args.importer));
          return { path: args.path, external: true };
        });
      },
    }],
  });
  const undeclared = [...imported].filter(([spec]) => {
    const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
    return !(spec.startsWith('node:') || builtinModules.includes(name) || declared.includes(name));
  });
  if (undeclared.length > 0) {
    const list = undeclared.map(([spec, by]) => `${spec} (imported by dist/${by})`).join(', ');
    throw new Error(`${pkg.name}: ${list} not declared in package.json dependencies or peerDependencies`);
  }
}
