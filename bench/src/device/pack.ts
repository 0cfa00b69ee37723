/**
 * Packs `bench:models` for a machine that has a GPU but no Node, no pnpm and no registry (the
 * device machine of bench/README.md's real-GPU section): this machine's node binary, one
 * esbuild bundle of the benchmark, and the native parts of Dawn and onnxruntime-node for
 * linux-x64, as two xz archives in bench/.device (gitignored). The device tool moves at most
 * 64 MiB with the repository, so onnxruntime (12 MB packed) travels in a second call:
 *
 *   core.tar.xz  bin/node, models.mjs, node_modules/webgpu          (about 27 MB)
 *   ort.tar.xz   node_modules/onnxruntime-node, onnxruntime-common  (about 13 MB)
 *
 * Both unpack into bench/.device, where the bundle finds bench/ one folder up (harness.ts's
 * BENCH_DIR) and its two native packages in node_modules. bench/scripts/device-run.sh unpacks
 * and runs them.
 *
 *   pnpm bench:device-pack      (after pnpm build)
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { BENCH_DIR } from '../harness.js';

if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.error(`bench:device-pack packs linux-x64 binaries for the device machine; this is ${process.platform}-${process.arch}`);
  process.exit(2);
}

const require = createRequire(join(BENCH_DIR, 'package.json'));
/** A package's folder, found the way the benchmark finds it (some export no package.json). */
function pkgDir(name: string, from = require): string {
  for (let d = dirname(from.resolve(name)); d !== dirname(d); d = dirname(d)) {
    const manifest = join(d, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === name) return d;
  }
  throw new Error(`no package.json named ${name} above ${from.resolve(name)}`);
}
const OUT_DIR = join(BENCH_DIR, '.device');
const stage = mkdtempSync(join(os.tmpdir(), 'tl-device-pack-'));
const mb = (file: string): string => `${(statSync(file).size / 1e6).toFixed(1)} MB`;

function copyInto(root: string, from: string, rel: string): void {
  const to = join(root, rel);
  mkdirSync(dirname(to), { recursive: true });
  cpSync(join(from, rel), to, { recursive: true });
}

/** A native module without its symbol tables: dawn.node loses a fifth of its size. */
function stripped(file: string): void {
  try {
    execFileSync('strip', ['--strip-unneeded', file], { stdio: 'pipe' });
  } catch (e) {
    console.error(`strip ${file} failed, packing it whole: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
  }
}

function archive(name: string, root: string): void {
  const file = join(OUT_DIR, name);
  const tmp = `${file}.tmp-${process.pid}`;
  execFileSync('tar', ['-C', root, '-cJf', tmp, '.'], { stdio: 'inherit', env: { ...process.env, XZ_OPT: '-9 -T0' } });
  renameSync(tmp, file);
  console.error(`${file}: ${mb(file)}`);
}

try {
  mkdirSync(OUT_DIR, { recursive: true });
  const core = join(stage, 'core');
  const ort = join(stage, 'ort');

  mkdirSync(join(core, 'bin'), { recursive: true });
  copyFileSync(process.execPath, join(core, 'bin', 'node'));
  stripped(join(core, 'bin', 'node'));

  const esbuild = await import('esbuild');
  await esbuild.build({
    entryPoints: [join(BENCH_DIR, 'src', 'device', 'entry.ts')],
    outfile: join(core, 'models.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // Native packages travel as files; esbuild is only asked for when gradients are missing,
    // which the entry rules out.
    external: ['webgpu', 'onnxruntime-node', 'esbuild'],
    // CommonJS dependencies inside an ES module bundle call require().
    banner: { js: "import { createRequire as __tlCreateRequire } from 'node:module'; const require = __tlCreateRequire(import.meta.url);" },
    logLevel: 'warning',
  });

  const tensorRequire = createRequire(join(pkgDir('@tl/tensor'), 'package.json'));
  const webgpu = pkgDir('webgpu', tensorRequire);
  for (const rel of ['package.json', 'index.js', 'LICENSE.md', 'dist/linux-x64']) copyInto(join(core, 'node_modules', 'webgpu'), webgpu, rel);
  stripped(join(core, 'node_modules', 'webgpu', 'dist', 'linux-x64', 'dawn.node'));

  const ortNode = pkgDir('onnxruntime-node');
  const ortDst = join(ort, 'node_modules', 'onnxruntime-node');
  for (const rel of ['package.json', 'dist', 'bin/napi-v6/linux/x64']) copyInto(ortDst, ortNode, rel);
  for (const f of readdirSync(join(ortDst, 'dist'))) if (!f.endsWith('.js')) rmSync(join(ortDst, 'dist', f));
  const common = pkgDir('onnxruntime-common', createRequire(join(ortNode, 'package.json')));
  for (const rel of ['package.json', 'dist/cjs', 'dist/esm']) copyInto(join(ort, 'node_modules', 'onnxruntime-common'), common, rel);

  archive('core.tar.xz', core);
  archive('ort.tar.xz', ort);
  if (!existsSync(join(BENCH_DIR, '..', '.gl'))) {
    console.error('no .gl/ in the repository root: the device machine may lack a Vulkan loader; bench/README.md says how to fetch it');
  }
} finally {
  rmSync(stage, { recursive: true, force: true });
}
