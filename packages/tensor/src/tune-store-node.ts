/** The autotune store in Node: one JSON file per user, shared by every process. */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TuneEntry, TuneStore } from './tune.js';

interface TuneFile {
  version: 1;
  adapters: Record<string, Record<string, TuneEntry>>;
}

/** $TL_CACHE/autotune.json, else $XDG_CACHE_HOME/tl/autotune.json (~/.cache when unset),
 * the convention the Hub cache follows for huggingface. Read on each use, so a process that
 * sets TL_CACHE before `init` is honoured. */
export function autotuneFilePath(): string {
  const env = process.env;
  if (env.TL_CACHE) return join(env.TL_CACHE, 'autotune.json');
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'tl', 'autotune.json');
}

async function readTuneFile(path: string): Promise<TuneFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, adapters: {} };
    throw err;
  }
  const parsed = JSON.parse(text) as Partial<TuneFile>;
  if (parsed.version !== 1 || typeof parsed.adapters !== 'object' || parsed.adapters === null) {
    throw new Error(`${path} is not an autotune file of version 1`);
  }
  return parsed as TuneFile;
}

export const nodeTuneStore: TuneStore = {
  get location() {
    return autotuneFilePath();
  },
  async load(adapter) {
    return (await readTuneFile(autotuneFilePath())).adapters[adapter] ?? {};
  },
  async save(adapter, entries) {
    const path = autotuneFilePath();
    await mkdir(dirname(path), { recursive: true });
    // Re-read just before writing, so choices another process saved meanwhile survive; the
    // rename makes the write atomic, so a reader never sees half a file.
    const file = await readTuneFile(path).catch((): TuneFile => ({ version: 1, adapters: {} }));
    file.adapters[adapter] = { ...file.adapters[adapter], ...entries };
    const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
    await writeFile(tmp, `${JSON.stringify(file, null, 1)}\n`);
    await rename(tmp, path);
  },
};
