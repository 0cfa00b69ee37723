/**
 * The packages as another project gets them: `pnpm pack` of each (workspace:* becomes a
 * version), `npm install` of the tarballs into an empty project outside the workspace, then the
 * README's "Using it" blocks run there by plain Node and, bundled by esbuild, by Chromium.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, transform } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, serveStatic } from '../../apps/web/test/harness.js';
import { readmeBlock, substitute } from './readme.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const README = join(ROOT, 'README.md');
/** The workspace's compiler, standing in for the one a consumer installs. */
const TSC = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const PACKAGES = ['tensor', 'autograd', 'models', 'train'];
/** The `tl` command: packed with the libraries and installed once webgpu is (it depends on it). */
const CLI = 'cli';
const WEIGHTS = join(ROOT, 'data/pretrained/cifar10-resnet20.safetensors');
const CIFAR = join(ROOT, 'data/cifar10-test');
const CLASSES = ['cat', 'dog'];
const PER_CLASS = 16;
/** The README's valSplit (0.25) of the images. */
const VAL_IMAGES = CLASSES.length * PER_CLASS * 0.25;

interface EpochLog {
  trainLoss: number;
  valLoss: number;
  valAccuracy: number;
}

/** Runs a command, and on failure throws with everything it printed. */
function run(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false' } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed with ${r.status ?? r.signal}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const npmInstall = (cwd: string, specs: string[]): string => run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...specs], cwd);

/** The first PER_CLASS images of each class, as `<dir>/<class>/<file>`. */
function copyImages(dir: string): Record<string, string[]> {
  const files: Record<string, string[]> = {};
  for (const c of CLASSES) {
    mkdirSync(join(dir, c), { recursive: true });
    files[c] = readdirSync(join(CIFAR, c)).filter((f) => f.endsWith('.jpg')).sort().slice(0, PER_CLASS);
    for (const f of files[c]) copyFileSync(join(CIFAR, c, f), join(dir, c, f));
  }
  return files;
}

/** The TypeScript of a README block as the JavaScript Node runs (types stripped, as tsx or tsc would). */
async function writeExample(file: string, ts: string): Promise<void> {
  writeFileSync(file, (await transform(ts, { loader: 'ts', format: 'esm', target: 'node20' })).code);
}

/** The reloaded model's accuracy is that of one of the trained epochs (the one kept). */
function checkRun(result: { history: EpochLog[]; accuracy: number }, epochs: number): void {
  expect(result.history).toHaveLength(epochs);
  for (const h of result.history) {
    expect(Number.isFinite(h.trainLoss) && Number.isFinite(h.valLoss)).toBe(true);
    expect(h.valAccuracy).toBeGreaterThanOrEqual(0);
  }
  expect(result.history.map((h) => h.valAccuracy)).toContain(result.accuracy);
}

describe('the packages installed from their tarballs by npm, outside the workspace', () => {
  let project: string;
  let app: string;
  let tarballFiles: string[];

  beforeAll(() => {
    for (const f of [WEIGHTS, CIFAR]) {
      if (!existsSync(f)) throw new Error(`${f} is missing; it is committed with the repository (git checkout -- data/)`);
    }
    project = mkdtempSync(join(tmpdir(), 'tl-consumer-'));
    run(process.execPath, [join(ROOT, 'scripts/build-workspace.mjs'), '@tl/cli'], ROOT);
    const tarballs = join(project, 'tarballs');
    for (const p of [...PACKAGES, CLI]) run('pnpm', ['pack', '--pack-destination', tarballs], join(ROOT, 'packages', p));
    app = join(project, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'tl-consumer', private: true, type: 'module' }, null, 2));
    tarballFiles = readdirSync(tarballs).map((f) => join(tarballs, f));
    npmInstall(app, tarballFiles.filter((f) => !f.includes(`tl-${CLI}-`)));
  });
  afterAll(() => {
    if (project) rmSync(project, { recursive: true, force: true });
  });

  it('each package resolves its @tl/* dependencies to the one installed copy, not a bundled one', () => {
    for (const p of PACKAGES) {
      expect(existsSync(join(app, 'node_modules/@tl', p, 'node_modules'))).toBe(false);
      const types = JSON.parse(readFileSync(join(app, 'node_modules/@tl', p, 'package.json'), 'utf8')).types as string;
      expect(existsSync(join(app, 'node_modules/@tl', p, types))).toBe(true);
    }
  });

  it('without the "webgpu" package, init() in Node says to install it', () => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', "import { init } from '@tl/tensor'; await init();"], { cwd: app, encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('`npm install webgpu`');
  });

  describe('with webgpu installed', () => {
    beforeAll(() => {
      const tensorPkg = JSON.parse(readFileSync(join(ROOT, 'packages/tensor/package.json'), 'utf8')) as { peerDependencies: Record<string, string> };
      npmInstall(app, [`webgpu@${tensorPkg.peerDependencies.webgpu}`]);
      copyFileSync(WEIGHTS, join(app, 'cifar10-resnet20.safetensors'));
      copyImages(join(app, 'images'));
    });

    it('the tl command of the installed @tl/cli runs: its help lists the commands and `tl doctor` runs a kernel', () => {
      npmInstall(app, tarballFiles);
      expect(existsSync(join(app, 'node_modules/@tl', CLI, 'node_modules/@tl'))).toBe(false);
      const tl = join(app, 'node_modules/.bin/tl');
      const help = run(tl, ['--help'], app);
      for (const command of ['train', 'eval', 'predict', 'doctor']) expect(help).toContain(`  ${command} `);
      const doctor = run(tl, ['doctor'], app);
      expect(doctor).toMatch(/^adapter: \S/m);
      expect(doctor).toContain('a test kernel ran: [1, 2] + 1 = [2, 3]');
    });

    it.each(PACKAGES)("the example in %s's README runs", async (p) => {
      await writeExample(join(app, `${p}-example.mjs`), readmeBlock(join(ROOT, 'packages', p, 'README.md'), 'example'));
      run(process.execPath, [`${p}-example.mjs`], app);
    });

    it("the packages' README examples typecheck against the shipped declarations", () => {
      const dir = join(app, 'typecheck');
      mkdirSync(dir);
      // Each block a module of its own, as a reader's file would be.
      for (const p of PACKAGES) writeFileSync(join(dir, `${p}.ts`), readmeBlock(join(ROOT, 'packages', p, 'README.md'), 'example'));
      writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
        compilerOptions: {
          target: 'es2022', module: 'esnext', moduleResolution: 'bundler', customConditions: ['node'], lib: ['es2023', 'dom'],
          types: [], strict: true, noEmit: true, skipLibCheck: false,
        },
        include: ['*.ts'],
      }));
      run(process.execPath, [TSC, '-p', dir], app);
    });

    it("Node: the README's example fine-tunes, saves, loads back and predicts", async () => {
      const report = "console.log('RESULT ' + JSON.stringify({ history, accuracy, width, predictions: outputs.length, classes }));";
      await writeExample(join(app, 'example.mjs'), `${readmeBlock(README, 'node')}\n${report}\n`);
      const out = run(process.execPath, ['example.mjs'], app);
      const result = JSON.parse(out.split('\n').find((l) => l.startsWith('RESULT '))!.slice(7)) as { history: EpochLog[]; accuracy: number; width: number; predictions: number; classes: string[] };
      checkRun(result, 2);
      expect(result.classes).toEqual(CLASSES);
      expect(result.width).toBe(CLASSES.length);
      expect(result.predictions).toBe(VAL_IMAGES * CLASSES.length);
      expect(existsSync(join(app, 'cats-dogs.safetensors'))).toBe(true);
    });

    it("browser: the README's example, bundled by esbuild, fine-tunes and loads back in Chromium", async () => {
      const site = join(app, 'site');
      const files = copyImages(join(site, 'images'));
      mkdirSync(join(site, 'models'));
      copyFileSync(WEIGHTS, join(site, 'models/cifar10-resnet20.safetensors'));
      const urls = Object.fromEntries(CLASSES.map((c) => [c, files[c]!.map((f) => `/images/${c}/${f}`)]));
      const code = substitute(readmeBlock(README, 'browser'), {
        "{ cat: ['/images/cat/0000.jpg', '/images/cat/0001.jpg'], dog: ['/images/dog/0000.jpg', '/images/dog/0001.jpg'] }": JSON.stringify(urls),
      });
      await build({
        stdin: { contents: `${code}\nObject.assign(globalThis, { __consumer: { history, accuracy } });\n`, loader: 'ts', resolveDir: app },
        bundle: true, format: 'esm', platform: 'browser', target: 'es2022', outfile: join(site, 'app.js'), logLevel: 'warning',
      });
      writeFileSync(join(site, 'index.html'), '<!doctype html><meta charset="utf-8"><script type="module" src="app.js"></script>\n');
      const server = await serveStatic(site);
      const browser = await launchChromium();
      try {
        const page = await browser.context.newPage();
        const failed = new Promise<never>((_, reject) => page.on('pageerror', (e) => reject(new Error(`the page threw: ${e.stack ?? e.message}`))));
        await page.goto(server.url);
        const done = page.waitForFunction(() => '__consumer' in globalThis, undefined, { timeout: 240_000, polling: 500 });
        await Promise.race([done, failed]);
        const result = await page.evaluate(() => (globalThis as unknown as { __consumer: { history: EpochLog[]; accuracy: number } }).__consumer);
        checkRun(result, 2);
      } finally {
        await browser.close();
        await server.close();
      }
    });
  });
});
