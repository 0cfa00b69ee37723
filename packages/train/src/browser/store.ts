/**
 * Checkpoints and feature caches in the browser: the origin private file system (OPFS) when
 * the browser has it, else memory. Names are `/`-separated paths below the store's folder.
 */
import { MemoryStore, type BlobStore } from '../store.js';

function opfsRoot(): Promise<FileSystemDirectoryHandle> | null {
  const storage = typeof navigator !== 'undefined' ? navigator.storage : undefined;
  return storage && typeof storage.getDirectory === 'function' ? storage.getDirectory() : null;
}

async function folder(root: FileSystemDirectoryHandle, parts: string[], create: boolean): Promise<FileSystemDirectoryHandle | null> {
  let dir = root;
  for (const p of parts) {
    try {
      dir = await dir.getDirectoryHandle(p, { create });
    } catch (e) {
      if (!create && (e as DOMException).name === 'NotFoundError') return null;
      throw e;
    }
  }
  return dir;
}

function split(path: string): string[] {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) throw new Error(`store path "${path}" must not contain ".."`);
  if (parts.length === 0) throw new Error('a store path must name a file');
  return parts;
}

/** An OPFS folder as a BlobStore. Writes go through createWritable, which replaces the file
 * when closed (readers see old or new bytes, never a mix). */
export class OpfsStore implements BlobStore {
  readonly description: string;
  constructor(private readonly root: Promise<FileSystemDirectoryHandle>, readonly dir: string) {
    this.description = `OPFS:/${dir}`;
  }
  private async handle(name: string, create: boolean): Promise<FileSystemFileHandle | null> {
    const parts = [...split(this.dir), ...split(name)];
    const file = parts.pop()!;
    const d = await folder(await this.root, parts, create);
    if (!d) return null;
    try {
      return await d.getFileHandle(file, { create });
    } catch (e) {
      if (!create && (e as DOMException).name === 'NotFoundError') return null;
      throw e;
    }
  }
  async write(name: string, bytes: Uint8Array): Promise<void> {
    const h = (await this.handle(name, true))!;
    const w = await h.createWritable();
    try {
      await w.write(bytes as Uint8Array<ArrayBuffer>);
      await w.close();
    } catch (e) {
      await w.abort().catch(() => {});
      throw e;
    }
  }
  async read(name: string): Promise<Uint8Array | null> {
    const h = await this.handle(name, false);
    if (!h) return null;
    return new Uint8Array(await (await h.getFile()).arrayBuffer());
  }
  /** Removes the file, if present. */
  async remove(name: string): Promise<void> {
    const parts = [...split(this.dir), ...split(name)];
    const file = parts.pop()!;
    const d = await folder(await this.root, parts, false);
    await d?.removeEntry(file).catch((e: DOMException) => {
      if (e.name !== 'NotFoundError') throw e;
    });
  }
}

/** The browser's BlobStore: OPFS under `dir` when available and writable, else memory. */
export async function browserStore(dir = 'tl'): Promise<BlobStore> {
  const root = opfsRoot();
  if (!root) return new MemoryStore();
  try {
    const store = new OpfsStore(root, dir);
    await store.write('.probe', new Uint8Array([1]));
    return store;
  } catch {
    return new MemoryStore();
  }
}
