/** safetensors from the file system: the header is read first, each tensor's bytes only
 * when asked for, so a large checkpoint is never held as one buffer or string. */
import { open, rename, rm, writeFile } from 'node:fs/promises';
import {
  decodeTensor, headerLength, parseHeader, SafetensorsError, SafetensorsHeaderView, serializeSafetensors,
  type HostArray, type SafeHeader, type TensorToWrite,
} from './safetensors.js';

export class SafetensorsFileReader extends SafetensorsHeaderView {
  private constructor(private readonly fd: import('node:fs/promises').FileHandle, header: SafeHeader, readonly path: string) {
    super(header, path);
  }

  static async open(path: string): Promise<SafetensorsFileReader> {
    let fd;
    try {
      fd = await open(path, 'r');
    } catch (e) {
      throw new SafetensorsError(`cannot open ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    try {
      const { size } = await fd.stat();
      const first = new Uint8Array(8);
      await fd.read(first, 0, Math.min(8, size), 0);
      const n = headerLength(first, size, path);
      const headerBytes = new Uint8Array(n);
      await fd.read(headerBytes, 0, n, 8);
      return new SafetensorsFileReader(fd, parseHeader(headerBytes, size - 8 - n, path), path);
    } catch (e) {
      await fd.close();
      throw e;
    }
  }

  async get(name: string): Promise<HostArray> {
    const info = this.info(name);
    const [b, e] = info.dataOffsets;
    const bytes = new Uint8Array(e - b);
    await this.fd.read(bytes, 0, e - b, this.header.dataStart + b);
    return decodeTensor(info, bytes, `${this.path}: ${name}`);
  }

  async all(): Promise<Map<string, HostArray>> {
    const out = new Map<string, HostArray>();
    for (const k of this.keys()) out.set(k, await this.get(k));
    return out;
  }

  close(): Promise<void> {
    return this.fd.close();
  }
}

/** Reads every tensor of a file. */
export async function loadSafetensors(path: string): Promise<{ tensors: Map<string, HostArray>; metadata: Record<string, string> }> {
  const r = await SafetensorsFileReader.open(path);
  try {
    return { tensors: await r.all(), metadata: r.metadata };
  } finally {
    await r.close();
  }
}

/** Writes to a temporary name and renames, so an interrupted save never clobbers the old file. */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

export async function saveSafetensors(path: string, tensors: Record<string, TensorToWrite> | Map<string, TensorToWrite>, metadata?: Record<string, string>): Promise<void> {
  await writeFileAtomic(path, serializeSafetensors(tensors, metadata));
}
