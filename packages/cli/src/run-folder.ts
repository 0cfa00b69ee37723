/**
 * Run folders: the output path is checked before anything is loaded, the folder is written
 * only once the run has been validated, and each file goes to a temporary name that is then
 * renamed, so a failed or interrupted command never leaves an existing run half-replaced.
 */
import { accessSync, constants, existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { CliError } from './errors.js';

/** The files a run writes; `--overwrite` removes these and nothing else. */
export const RUN_FILES = ['config.json', 'train_config.json', 'metrics.jsonl', 'model.safetensors', 'report.html', 'checkpoint', 'cache', 'tokenizer.json', 'tokenizer_config.json', 'skipped-images.tsv'];

const code = (e: unknown): string => (e as NodeJS.ErrnoException).code ?? (e as Error).message;

function nearestExisting(p: string): string {
  let cur = p;
  while (!existsSync(cur) && dirname(cur) !== cur) cur = dirname(cur);
  return cur;
}

/** A folder can hold new files: a temporary folder made and removed in it proves it. */
async function probe(dir: string, flag: string, out: string): Promise<void> {
  try {
    accessSync(dir, constants.W_OK);
    await rmdir(await mkdtemp(join(dir, '.tl-probe-')));
  } catch (e) {
    throw new CliError(`${flag} ${out}: cannot write in ${dir} (${code(e)}); choose a folder you can write to`, 2);
  }
}

export function isRunFolder(dir: string): boolean {
  return existsSync(join(dir, 'config.json')) || existsSync(join(dir, 'train_config.json'));
}

/**
 * Checks that `out` can become the run folder: a new path under a writable folder, an empty
 * folder, or (with `overwrite`) a folder to replace. Writes nothing.
 */
export async function checkOut(out: string, flag: string, overwrite: boolean): Promise<void> {
  const dir = resolve(out);
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new CliError(`${flag} ${out} is a file; expected a folder for the run (a new or empty one)`, 2);
    const entries = readdirSync(dir);
    if (entries.length && !overwrite) {
      const what = isRunFolder(dir) ? 'a run' : `${entries.length} files`;
      throw new CliError(`${flag} ${out} already holds ${what}; pass --overwrite to replace it${isRunFolder(dir) ? `, --resume ${out} to continue it` : ''}, or choose another folder`, 2);
    }
    await probe(dir, flag, out);
    return;
  }
  const base = nearestExisting(dir);
  if (!statSync(base).isDirectory()) throw new CliError(`${flag} ${out}: ${base} is a file, so no folder can be made below it`, 2);
  await probe(base, flag, out);
}

/** Creates `dir` level by level: Node's recursive mkdir loops forever under /proc. */
export async function makeOut(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let cur = resolve(dir); !existsSync(cur); cur = dirname(cur)) missing.unshift(cur);
  for (const d of missing) {
    try {
      await mkdir(d);
    } catch (e) {
      throw new CliError(`cannot create ${d} (${code(e)})`, 2);
    }
  }
}

/** Makes the run folder once the run is validated; with `overwrite`, the old run's files go first. */
export async function prepareRunFolder(dir: string, overwrite: boolean): Promise<void> {
  await makeOut(dir);
  if (overwrite) for (const f of RUN_FILES) await rm(join(dir, f), { recursive: true, force: true });
}

/** Writes a file under a temporary name, then renames it over `path`. */
export async function writeAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/** `runs/<model>-<yyyymmdd>-<hhmmss>`, the default run folder: a new one each run. */
export function freshRunFolder(prefix: string, now = new Date()): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  const stamp = `${now.getFullYear()}${p(now.getMonth() + 1)}${p(now.getDate())}-${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}`;
  let dir = join('runs', `${prefix}-${stamp}`);
  for (let i = 2; existsSync(dir); i++) dir = join('runs', `${prefix}-${stamp}-${i}`);
  return dir;
}
