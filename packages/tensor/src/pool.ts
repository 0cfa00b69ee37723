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
  /** The most `liveBytes` reached since the engine started or `resetPeakMemory()` (PyTorch's
   * max_memory_allocated): what a step needs, whatever the pool keeps beside it. */
  peakBytes: number;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  liveBuffers = 0;
  liveBytes = 0;
  pooledBuffers = 0;
  pooledBytes = 0;
  peakBytes = 0;

  constructor(private readonly device: GPUDevice, private readonly maxPooledBytes = 1 << 30) {}

  /** The bytes each live buffer was acquired for (its size is the bucket's): the engine
   * binds a buffer over the binding limit up to this when it fits. */
  private requested = new WeakMap<GPUBuffer, number>();

  acquire(bytes: number): GPUBuffer {
    const max = this.device.limits.maxBufferSize;
    if (bytes > max) {
      throw new RangeError(`cannot allocate a tensor of ${bytes} bytes: the adapter's maxBufferSize is ${max} bytes`);
    }
    // Near maxBufferSize the bucket may not fit; such a buffer gets its exact size and is
    // destroyed on release rather than pooled.
    const bucket = bucketSize(bytes);
    const size = bucket <= max ? bucket : Math.ceil(bytes / 4) * 4;
    const list = this.free.get(size);
    let buffer = list?.pop();
    if (buffer) {
      this.pooledBuffers--;
      this.pooledBytes -= size;
    } else {
      buffer = this.device.createBuffer({ size, usage: BUFFER_USAGE });
    }
    this.requested.set(buffer, bytes);
    this.liveBuffers++;
    this.liveBytes += size;
    if (this.liveBytes > this.peakBytes) this.peakBytes = this.liveBytes;
    return buffer;
  }

  requestedBytes(buffer: GPUBuffer): number {
    return this.requested.get(buffer) ?? buffer.size;
  }

  release(buffer: GPUBuffer): void {
    const size = buffer.size;
    this.liveBuffers--;
    this.liveBytes -= size;
    if (this.pooledBytes + size > this.maxPooledBytes || bucketSize(size) !== size) {
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

  /** Starts a new peak from the bytes live now (PyTorch's reset_peak_memory_stats). */
  resetPeak(): void {
    this.peakBytes = this.liveBytes;
  }

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
