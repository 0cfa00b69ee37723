/**
 * Size-bucketed pool of storage buffers. Sizes are rounded up to one of four classes per
 * power of two (at most 25% slack), so buffers of nearby sizes are reused across steps
 * instead of being created and left to the garbage collector.
 */
export const BUFFER_USAGE = 0x80 /* STORAGE */ | 0x04 /* COPY_SRC */ | 0x08; /* COPY_DST */

export function bucketSize(bytes: number): number {
  const min = 256;
  if (bytes <= min) return min;
  const pow = 2 ** Math.floor(Math.log2(bytes));
  const step = pow / 4;
  return Math.ceil(bytes / step) * step;
}

export interface MemoryInfo {
  /** Buffers held by tensors (or other users) right now. */
  liveBuffers: number;
  liveBytes: number;
  /** Buffers released and kept for reuse. */
  pooledBuffers: number;
  pooledBytes: number;
  /** Tensors not yet disposed. */
  liveTensors: number;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  liveBuffers = 0;
  liveBytes = 0;
  pooledBuffers = 0;
  pooledBytes = 0;

  constructor(private readonly device: GPUDevice, private readonly maxPooledBytes = 1 << 30) {}

  acquire(bytes: number): GPUBuffer {
    const size = bucketSize(bytes);
    const list = this.free.get(size);
    let buffer = list?.pop();
    if (buffer) {
      this.pooledBuffers--;
      this.pooledBytes -= size;
    } else {
      buffer = this.device.createBuffer({ size, usage: BUFFER_USAGE });
    }
    this.liveBuffers++;
    this.liveBytes += size;
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    const size = buffer.size;
    this.liveBuffers--;
    this.liveBytes -= size;
    if (this.pooledBytes + size > this.maxPooledBytes) {
      // Recorded but unsubmitted commands may still use it; destroy() is only safe once
      // they are submitted (the engine calls `afterSubmit`).
      this.toDestroy.push(buffer);
      return;
    }
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buffer);
    this.pooledBuffers++;
    this.pooledBytes += size;
  }

  private toDestroy: GPUBuffer[] = [];

  /** Destroys buffers released over the pool's capacity, now that their work is submitted. */
  afterSubmit(): void {
    for (const b of this.toDestroy) b.destroy();
    this.toDestroy = [];
  }

  /** Destroys every pooled buffer (live ones are untouched). */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.pooledBuffers = 0;
    this.pooledBytes = 0;
  }
}
