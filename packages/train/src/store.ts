/** Where checkpoints and feature caches go: a folder in Node, OPFS or memory in a browser. */
export interface BlobStore {
  /** Writes atomically: readers see the old bytes or the new ones, never a mix. */
  write(name: string, bytes: Uint8Array): Promise<void>;
  /** The bytes, or null when absent. */
  read(name: string): Promise<Uint8Array | null>;
  /** Moves a blob over another atomically; without it, checkpoints write their files twice. */
  rename?(from: string, to: string): Promise<void>;
  readonly description: string;
}

export class MemoryStore implements BlobStore {
  readonly description = 'memory';
  private files = new Map<string, Uint8Array>();
  async write(name: string, bytes: Uint8Array): Promise<void> {
    this.files.set(name, bytes.slice());
  }
  async read(name: string): Promise<Uint8Array | null> {
    return this.files.get(name) ?? null;
  }
  async rename(from: string, to: string): Promise<void> {
    const bytes = this.files.get(from);
    if (!bytes) throw new Error(`MemoryStore.rename: ${from} does not exist`);
    this.files.set(to, bytes);
    this.files.delete(from);
  }
}
