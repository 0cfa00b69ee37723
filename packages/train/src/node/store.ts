import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { BlobStore } from '../store.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes the temporary files of earlier writes of `path` by processes that died mid-write
 * (`kill -9`), which would otherwise pile up a checkpoint's size per interruption. */
async function removeStaleTemps(path: string): Promise<void> {
  const prefix = `${basename(path)}.tmp-`;
  for (const f of await readdir(dirname(path))) {
    if (!f.startsWith(prefix)) continue;
    const pid = Number(f.slice(prefix.length).split('-')[0]);
    if (Number.isInteger(pid) && pid !== process.pid && !alive(pid)) await rm(join(dirname(path), f), { force: true });
  }
}

/** A folder; each write goes to a temporary name and is renamed over the old file. */
export function dirStore(dir: string): BlobStore {
  return {
    description: dir,
    async write(name, bytes) {
      const path = join(dir, name);
      await mkdir(dirname(path), { recursive: true });
      await removeStaleTemps(path);
      const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
      try {
        await writeFile(tmp, bytes);
        await rename(tmp, path);
      } catch (e) {
        await rm(tmp, { force: true });
        throw e;
      }
    },
    async rename(from, to) {
      await rename(join(dir, from), join(dir, to));
    },
    async read(name) {
      try {
        return new Uint8Array(await readFile(join(dir, name)));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw e;
      }
    },
  };
}
