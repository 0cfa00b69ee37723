import { acquireDevice } from './gpu.js';
import { BufferPool, bucketSize, type MemoryInfo } from './pool.js';
import type { Params } from './params.js';

/** A storage binding: a whole buffer, or a byte range of one (see `Engine.bindElements`). */
export type StorageBinding = GPUBuffer | GPUBufferBinding;

/** Where a kernel finds a run of elements: the binding, and the first element's index in it. */
export interface BoundElements {
  resource: StorageBinding;
  offset: number;
}

/** One compute dispatch: WGSL whose binding 0 is the uniform block (when params are given)
 * and whose following bindings are `buffers`, in order. */
export interface Dispatch {
  /** A spec string that determines the WGSL (kernel family, variant, specialization): the
   * pipeline is cached by it and `code` is read only on a miss, so a kernel that passes `code`
   * as a getter generates its WGSL once per spec, not once per call. Two texts under one key
   * fail the test suites (see `checkPipelineKeys`). */
  key: string;
  code: string;
  buffers: readonly StorageBinding[];
  params?: Params;
  workgroups: readonly [number, number?, number?];
  /** Human-readable name used in error messages. */
  label?: string;
}

interface Disposable {
  dispose(): void;
  readonly disposed: boolean;
}

const ARENA_BYTES = 1 << 18;
const MAX_DISPATCHES_PER_SUBMIT = 1024;

/**
 * The GPU device and everything that hangs off it: pipeline cache, buffer pool, the shared
 * command encoder that ops record into, the uniform arena, scopes and the memory counters.
 * Ops return at once; work is submitted in batches and only `read` waits for the GPU.
 */
export class Engine {
  readonly pool: BufferPool;
  readonly maxWorkgroupsPerDim: number;
  readonly hasSubgroups: boolean;
  /** The fewest invocations a subgroup of this adapter has (0 without subgroups, or where the
   * adapter does not say). */
  readonly subgroupMinSize: number;
  readonly hasF16: boolean;
  private readonly uniformAlign: number;
  /** Byte alignment of a bound range's start: the device's, and at least 16 so a range
   * starts on a vec4 and element offsets keep their alignment to 4 within it. */
  private readonly storageAlign: number;
  private _bindingLimit: number;
  private keyedPipelines = new Map<string, GPUComputePipeline>();
  private keyedCode: Map<string, string> | null =
    (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.TL_CHECK_PIPELINE_KEYS === '1' ? new Map() : null;
  /** The binding numbers each pipeline declares `read_write`, and the write counter that
   * stamps every buffer a dispatch, copy or upload writes (see `writeStamp`). */
  private writtenBindings = new WeakMap<GPUComputePipeline, number[]>();
  private writes = 0;
  private lastWrite = new WeakMap<GPUBuffer, number>();
  /** Work to run at the next wait on the GPU (`read`, `sync`): the kernel autotuner's
   * measurements, which cannot run inside the synchronous op that asked for them. */
  private idleTasks: (() => Promise<void>)[] = [];
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private dispatches = 0;
  private readonly arena: GPUBuffer;
  private readonly arenaCpu = new Uint8Array(ARENA_BYTES);
  private arenaUsed = 0;
  private staging = new Map<number, GPUBuffer[]>();
  private errors: string[] = [];
  private lostReason: string | null = null;
  private scopes: Set<Disposable>[] = [];
  liveTensors = 0;
  /** Counts submits, for tests and benchmarks that check batching. */
  submits = 0;

  constructor(
    readonly device: GPUDevice,
    readonly adapter: GPUAdapter,
    /** Held so the GPU object outlives every dispatch (Dawn crashes when it is collected). */
    readonly gpu: GPU,
  ) {
    this.pool = new BufferPool(device);
    this.maxWorkgroupsPerDim = device.limits.maxComputeWorkgroupsPerDimension;
    this.uniformAlign = device.limits.minUniformBufferOffsetAlignment;
    this.storageAlign = Math.max(device.limits.minStorageBufferOffsetAlignment, 16);
    this._bindingLimit = device.limits.maxStorageBufferBindingSize;
    this.hasSubgroups = device.features.has('subgroups');
    const info = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number };
    this.subgroupMinSize = this.hasSubgroups ? info?.subgroupMinSize ?? 0 : 0;
    this.hasF16 = device.features.has('shader-f16');
    this.arena = device.createBuffer({ size: ARENA_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    device.addEventListener('uncapturederror', (ev) => {
      this.errors.push((ev as GPUUncapturedErrorEvent).error.message);
    });
    void device.lost.then((info) => {
      this.lostReason = `${info.reason}: ${info.message}`;
      if (info.reason !== 'destroyed') console.error(`@tl/tensor: the GPU device was lost (${this.lostReason})`);
    });
  }

  static async create(): Promise<Engine> {
    const { device, adapter, gpu } = await acquireDevice();
    return new Engine(device, adapter, gpu);
  }

  get adapterDescription(): string {
    const info = this.adapter.info;
    return [info?.vendor, info?.architecture, info?.device, info?.description].filter(Boolean).join(' ') || 'unknown adapter';
  }

  /** The pipeline of the kernel spec `key`; `code` runs only when it is not cached yet. */
  pipelineFor(key: string, code: () => string, label?: string): GPUComputePipeline {
    const text = this.keyedCode ? code() : null;
    if (text !== null) this.checkKey(key, text, label);
    let p = this.keyedPipelines.get(key);
    if (!p) {
      p = this.createPipeline(text ?? code(), label);
      this.keyedPipelines.set(key, p);
    }
    return p;
  }

  /**
   * Whether every keyed dispatch also builds its WGSL and fails when its key's pipeline was
   * built from other text (on where TL_CHECK_PIPELINE_KEYS=1, as the test suites set it): a
   * key that leaves out something the code depends on would otherwise run another kernel
   * without a sound. Off, a cache hit builds no WGSL at all.
   */
  get checkPipelineKeys(): boolean {
    return this.keyedCode !== null;
  }

  set checkPipelineKeys(on: boolean) {
    if (on !== this.checkPipelineKeys) this.keyedCode = on ? new Map() : null;
  }

  private checkKey(key: string, code: string, label: string | undefined): void {
    const first = this.keyedCode!.get(key);
    if (first === undefined) this.keyedCode!.set(key, code);
    else if (first !== code) {
      throw new Error(`${label ?? 'kernel'}: pipeline key '${key}' was built from other WGSL; the key leaves out something its code depends on`);
    }
  }

  private createPipeline(code: string, label: string | undefined): GPUComputePipeline {
    const module = this.device.createShaderModule({ code, label });
    const p = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label });
    this.writtenBindings.set(p, [...code.matchAll(/@binding\((\d+)\)\s*var\s*<\s*storage\s*,\s*read_write\s*>/g)].map((m) => Number(m[1])));
    return p;
  }

  /**
   * A number that grows each time `buffer` is written by a dispatch, a copy or an upload
   * (0 if never), as PyTorch's tensor version counter: a cache derived from tensors
   * (a folded batch norm) is valid while their storages and stamps are unchanged.
   */
  writeStamp(buffer: GPUBuffer): number {
    return this.lastWrite.get(buffer) ?? 0;
  }

  /** Stamps `buffer` as written now. */
  noteWrite(buffer: GPUBuffer): void {
    this.lastWrite.set(buffer, ++this.writes);
  }

  get pipelineCount(): number {
    return this.keyedPipelines.size;
  }

  /** Queues `task` to run (once, in order) at the next `read` or `sync`, after the work
   * recorded so far has been submitted. */
  whenIdle(task: () => Promise<void>): void {
    this.idleTasks.push(task);
  }

  private async runIdleTasks(): Promise<void> {
    // Taken before running: a task that reads or syncs itself must not run again.
    const tasks = this.idleTasks;
    this.idleTasks = [];
    for (const t of tasks) await t();
  }

  /** The largest storage binding in bytes (the device's maxStorageBufferBindingSize unless
   * lowered by `setBindingLimit`). Ops on larger tensors either run in chunks of bound
   * ranges or throw, naming the op and the size. */
  get bindingLimit(): number {
    return this._bindingLimit;
  }

  /** Test hook: lowers the binding limit (null restores the device's) so the chunked paths
   * run on small tensors. Buffers over it are then bound by range, as on a real device. */
  setBindingLimit(bytes: number | null): void {
    const device = this.device.limits.maxStorageBufferBindingSize;
    if (bytes === null) {
      this._bindingLimit = device;
      return;
    }
    if (!Number.isInteger(bytes) || bytes < 4 * this.storageAlign || bytes > device || bytes % 4 !== 0) {
      throw new RangeError(`setBindingLimit: ${bytes} bytes; expected a multiple of 4 from ${4 * this.storageAlign} to the device's ${device}`);
    }
    this._bindingLimit = bytes;
  }

  /** Elements that always fit one binding, wherever they start: chunked ops split by this. */
  get maxBindingElements(): number {
    return Math.floor((Math.floor(this._bindingLimit / 16) * 16 - this.storageAlign) / 4);
  }

  /**
   * Binds `count` elements (of `elementBytes`, 4 unless float16) of `buffer` starting at element `first`: the whole buffer
   * when it fits the binding limit (the common case binds exactly as before), else the
   * aligned byte range that holds them. Throws, naming `label`, when they cannot fit.
   */
  bindElements(buffer: GPUBuffer, first: number, count: number, label: string, elementBytes: 2 | 4 = 4): BoundElements {
    if (buffer.size <= this._bindingLimit) return { resource: buffer, offset: first };
    const start = this.rangeStart(first, elementBytes);
    const size = this.rangeSize(buffer, start, (first + count) * elementBytes - start);
    if (size > this._bindingLimit) throw this.tooLarge(label, count * elementBytes);
    return { resource: { buffer, offset: start, size }, offset: first - start / elementBytes };
  }

  /** Runs of `n` elements for ops on contiguous tensors: one run when `whole` (everything
   * fits a binding), else runs of `maxBindingElements`, each dispatched on bound ranges. */
  elementRuns(n: number, whole: boolean): { start: number; count: number }[] {
    const step = whole ? n : this.maxBindingElements;
    const runs: { start: number; count: number }[] = [];
    for (let start = 0; start < n; start += step) runs.push({ start, count: Math.min(step, n - start) });
    return runs;
  }

  /** Whether `bindElements` can bind these elements. */
  fitsBinding(buffer: GPUBuffer, first: number, count: number, elementBytes: 2 | 4 = 4): boolean {
    if (buffer.size <= this._bindingLimit) return true;
    const start = this.rangeStart(first, elementBytes);
    return this.rangeSize(buffer, start, (first + count) * elementBytes - start) <= this._bindingLimit;
  }

  private rangeStart(first: number, elementBytes: 2 | 4): number {
    return Math.floor((first * elementBytes) / this.storageAlign) * this.storageAlign;
  }

  /** A bound range's size: whole vec4s, since a kernel reading the range as vec4s (matmul)
   * sees only complete ones and may load the one holding the last elements. */
  private rangeSize(buffer: GPUBuffer, start: number, bytes: number): number {
    return Math.min(Math.max(Math.ceil(bytes / 16) * 16, 16), buffer.size - start);
  }

  /** The error for a tensor of `bytes` that op `label` cannot bind or split; `why` says
   * what the op can split, where it splits some. */
  tooLarge(label: string, bytes: number, why = `${label} does not split tensors over it`): Error {
    const limit = this._bindingLimit;
    const own = this.device.limits.maxStorageBufferBindingSize;
    return new RangeError(
      `${label}: a tensor of ${bytes} bytes exceeds the adapter's storage binding limit of ${limit} bytes ` +
        `(maxStorageBufferBindingSize${limit === own ? '' : `, lowered from ${own} by setBindingLimit`}); ${why}`,
    );
  }

  dispatch(d: Dispatch): void {
    this.checkAlive();
    const [x, y = 1, z = 1] = d.workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const max = this.maxWorkgroupsPerDim;
    if (x > max || y > max || z > max) {
      throw new Error(`${d.label ?? 'kernel'}: dispatch [${x}, ${y}, ${z}] exceeds ${max} workgroups per dimension`);
    }
    const storage = d.buffers.map((b) => this.storageResource(b, d.label ?? 'kernel'));
    const pipeline = this.pipelineFor(d.key, () => d.code, d.label);
    const entries: GPUBindGroupEntry[] = [];
    let binding = 0;
    if (d.params && !d.params.empty) {
      const bytes = d.params.bytes();
      if (this.arenaUsed + bytes.byteLength > ARENA_BYTES) this.flush();
      const offset = this.arenaUsed;
      this.arenaCpu.set(bytes, offset);
      this.arenaUsed = Math.ceil((offset + bytes.byteLength) / this.uniformAlign) * this.uniformAlign;
      entries.push({ binding: binding++, resource: { buffer: this.arena, offset, size: bytes.byteLength } });
    }
    for (const resource of storage) entries.push({ binding: binding++, resource });
    for (const b of this.writtenBindings.get(pipeline) ?? []) {
      const r = entries[b]?.resource as GPUBufferBinding | undefined;
      if (r) this.noteWrite(r.buffer);
    }
    const bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const pass = this.computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    if (++this.dispatches >= MAX_DISPATCHES_PER_SUBMIT) this.flush();
  }

  /** Splits `n` workgroups over x and y so neither exceeds the device limit. Kernels
   * recover the linear index as `wg.x + wg.y * nwg.x` (see `linearWorkgroup`). */
  grid(n: number): [number, number] {
    const max = this.maxWorkgroupsPerDim;
    if (n <= max) return [Math.max(n, 1), 1];
    const y = Math.ceil(n / max);
    return [Math.ceil(n / y), y];
  }

  copyBuffer(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.checkAlive();
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
    this.noteWrite(dst);
  }

  /** Uploads host data. Recorded work is submitted first: a pooled buffer may still be read
   * by a recorded dispatch, and queue writes run before later submits. */
  write(buffer: GPUBuffer, data: ArrayBufferView, byteOffset = 0): void {
    this.checkAlive();
    if (this.encoder) this.flush();
    this.device.queue.writeBuffer(buffer, byteOffset, data.buffer, data.byteOffset, data.byteLength);
    this.noteWrite(buffer);
  }

  /** Submits every recorded dispatch. */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    const commands = this.encoder.finish();
    this.encoder = null;
    if (this.arenaUsed > 0) {
      this.device.queue.writeBuffer(this.arena, 0, this.arenaCpu.buffer, 0, this.arenaUsed);
      this.arenaUsed = 0;
    }
    this.device.queue.submit([commands]);
    this.pool.afterSubmit();
    this.dispatches = 0;
    this.submits++;
    this.throwErrors();
  }

  /** Copies `byteLength` bytes at `byteOffset` of `buffer` to the host. */
  async read(buffer: GPUBuffer, byteOffset: number, byteLength: number): Promise<ArrayBuffer> {
    this.checkAlive();
    if (this.idleTasks.length) await this.runIdleTasks();
    const copyBytes = Math.ceil(byteLength / 4) * 4;
    const size = bucketSize(copyBytes);
    const stage = this.staging.get(size)?.pop() ??
      this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.copyBuffer(buffer, byteOffset, stage, 0, copyBytes);
    this.flush();
    try {
      await stage.mapAsync(GPUMapMode.READ, 0, copyBytes);
    } catch (e) {
      this.throwErrors();
      this.checkAlive();
      throw e;
    }
    const out = stage.getMappedRange(0, copyBytes).slice(0, byteLength);
    stage.unmap();
    let list = this.staging.get(size);
    if (!list) this.staging.set(size, (list = []));
    list.push(stage);
    return out;
  }

  /** Waits until every submitted command has run. */
  async sync(): Promise<void> {
    if (this.idleTasks.length) await this.runIdleTasks();
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.throwErrors();
  }

  memory(): MemoryInfo {
    const p = this.pool;
    return {
      liveBuffers: p.liveBuffers,
      liveBytes: p.liveBytes,
      pooledBuffers: p.pooledBuffers,
      pooledBytes: p.pooledBytes,
      liveTensors: this.liveTensors,
      peakBytes: p.peakBytes,
    };
  }

  // Scopes ------------------------------------------------------------------------------

  track(t: Disposable): void {
    const top = this.scopes[this.scopes.length - 1];
    if (top) top.add(t);
  }

  /** Removes `t` from every open scope, so it outlives them. */
  keep<T extends Disposable>(t: T): T {
    for (const s of this.scopes) s.delete(t);
    return t;
  }

  beginScope(): void {
    this.scopes.push(new Set());
  }

  /** Disposes what was created since the matching `beginScope`, except `keep` (which moves
   * to the enclosing scope). */
  endScope(keep: Iterable<Disposable> = []): void {
    const scope = this.scopes.pop();
    if (!scope) throw new Error('endScope() without a matching beginScope()');
    const kept = new Set(keep);
    const parent = this.scopes[this.scopes.length - 1];
    for (const t of scope) {
      if (kept.has(t)) parent?.add(t);
      else if (!t.disposed) t.dispose();
    }
  }

  get scopeDepth(): number {
    return this.scopes.length;
  }

  destroy(): void {
    this.flush();
    this.pool.trim();
    for (const list of this.staging.values()) for (const b of list) b.destroy();
    this.staging.clear();
    this.device.destroy();
  }

  /** A whole buffer over the binding limit is bound up to its tensor's size when that fits
   * (buckets round up); else the op was handed a tensor it cannot split. */
  private storageResource(b: StorageBinding, label: string): GPUBufferBinding {
    if ('buffer' in b) return b;
    if (b.size <= this._bindingLimit) return { buffer: b };
    const bytes = this.pool.requestedBytes(b);
    const size = this.rangeSize(b, 0, bytes);
    if (size > this._bindingLimit) throw this.tooLarge(label, bytes);
    return { buffer: b, offset: 0, size };
  }

  private commandEncoder(): GPUCommandEncoder {
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    this.pass ??= this.commandEncoder().beginComputePass();
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  private checkAlive(): void {
    if (this.lostReason) throw new Error(`@tl/tensor: the GPU device was lost (${this.lostReason}); create a new engine with init()`);
  }

  private throwErrors(): void {
    if (this.errors.length === 0) return;
    const msg = this.errors.join('\n');
    this.errors = [];
    throw new Error(`WebGPU error: ${msg}`);
  }
}

let current: Engine | null = null;
let pending: Promise<Engine> | null = null;
const initHooks: ((e: Engine) => Promise<void>)[] = [];

/** Runs `hook` on every engine `init` creates, before `init` resolves (the autotuner loads
 * the adapter's stored kernel choices there, so the first op already uses them). */
export function onEngineInit(hook: (e: Engine) => Promise<void>): void {
  initHooks.push(hook);
}

/** Creates the shared engine once (adapter, device with the adapter's limits). */
export function init(): Promise<Engine> {
  if (current) return Promise.resolve(current);
  pending ??= Engine.create().then(async (e) => {
    for (const hook of initHooks) await hook(e);
    current = e;
    pending = null;
    return e;
  }, (err: unknown) => {
    pending = null;
    throw err;
  });
  return pending;
}

/** The GPUDevice the engine uses, created on first call. */
export async function getDevice(): Promise<GPUDevice> {
  return (await init()).device;
}

export function engine(): Engine {
  if (!current) {
    throw new Error(
      "@tl/tensor: the GPU engine is not initialised. Add `import { init } from '@tl/tensor'; await init();` " +
        'once, before creating tensors or models.',
    );
  }
  return current;
}

/** Replaces the shared engine (tests, or a device the caller created). */
export function setEngine(e: Engine | null): void {
  current = e;
}
