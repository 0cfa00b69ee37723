/**
 * `Module`, shaped like PyTorch's: parameters, buffers and children registered by name, so
 * `namedParameters()` yields exactly the keys of torchvision / timm / Hugging Face checkpoints
 * (`layer1.0.conv1.weight`). Parameters are tensors with `requiresGrad`; freezing flips it.
 */
import * as A from '@tl/autograd';
import { halfBits, keep, type Tensor } from '@tl/autograd';
import { parseSafetensors, serializeSafetensors, type HostArray, type TensorToWrite } from '../safetensors.js';
import { setGradientCheckpointing } from './checkpointing.js';

/** A checkpoint entry: a tensor, values parsed from a file, or values read back by `stateDictData()`. */
export type StateValue = Tensor | HostArray | HostTensor;
export type StateDict = Map<string, StateValue> | Record<string, StateValue>;

export interface LoadResult {
  missing: string[];
  unexpected: string[];
}

export class StateDictError extends Error {
  override name = 'StateDictError';
  constructor(
    message: string,
    readonly missing: string[],
    readonly unexpected: string[],
    readonly mismatched: { key: string; expected: number[]; got: number[] }[],
  ) {
    super(message);
  }
}

/** Compiles a parameter-name pattern: a glob (`*` any run of characters, `?` one), or a
 * module path that matches everything below it (`layer4` = `layer4.*`). */
export function nameMatcher(pattern: string | readonly string[] | undefined): (name: string) => boolean {
  if (pattern === undefined) return () => true;
  const list = typeof pattern === 'string' ? pattern.split(',').map((p) => p.trim()).filter(Boolean) : pattern;
  const res = list.map((p) => {
    const body = p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
    return new RegExp(`^${body}(\\..*)?$`);
  });
  return (name) => res.some((r) => r.test(name));
}

/** Reads and writes files where there is a file system (the Node entry registers them). */
export interface ModuleFileIO {
  write(path: string, bytes: Uint8Array): Promise<void>;
  /** A path, URL or `hf:` reference, as safetensors bytes. */
  read(source: string): Promise<Uint8Array>;
}

let fileIO: ModuleFileIO | null = null;

/** Whether a checkpoint entry holds host values rather than a tensor. */
export function isHostValue(v: StateValue): v is HostArray | HostTensor {
  return ArrayBuffer.isView((v as { data?: unknown }).data);
}

export function registerModuleFileIO(io: ModuleFileIO): void {
  fileIO = io;
}

/** A tensor of a state dict on the host, as safetensors stores it. */
export interface HostTensor {
  dtype: 'F32' | 'I64';
  shape: number[];
  data: Float32Array | Int32Array;
}

export abstract class Module {
  training = true;
  protected readonly _params = new Map<string, Tensor | null>();
  protected readonly _buffers = new Map<string, Tensor | null>();
  /** Buffers not written to the state dict (PyTorch's persistent=False). */
  protected readonly _nonPersistent = new Set<string>();
  protected readonly _children = new Map<string, Module>();

  abstract forward(...args: never[]): unknown;

  /** Registers a parameter (requiresGrad = true) and returns it. */
  protected param(name: string, t: Tensor | null): Tensor {
    if (t) {
      keep(t);
      t.requiresGrad = true;
    }
    this._params.set(name, t);
    return t as Tensor;
  }

  protected buffer(name: string, t: Tensor | null, persistent = true): Tensor {
    if (t) keep(t);
    this._buffers.set(name, t);
    if (!persistent) this._nonPersistent.add(name);
    return t as Tensor;
  }

  protected module<M extends Module>(name: string, m: M): M {
    this._children.set(name, m);
    return m;
  }

  /** Replaces a registered child (e.g. a new head); the caller also updates its field. */
  protected replaceModule<M extends Module>(name: string, m: M): M {
    if (!this._children.has(name)) throw new Error(`no submodule named "${name}"`);
    this._children.get(name)!.dispose();
    this._children.set(name, m);
    return m;
  }

  /**
   * Registers `m` as child `name` from outside the module (PyTorch's `add_module`), for tools
   * that attach modules to an existing network, as LoRA attaches its adapters to a layer.
   */
  addModule<M extends Module>(name: string, m: M): M {
    if (name === '' || name.includes('.')) throw new RangeError(`addModule: a name must be non-empty and have no ".", got ${JSON.stringify(name)}`);
    if (this._children.has(name)) throw new Error(`addModule: ${this.constructor.name} already has a submodule named "${name}"`);
    return this.module(name, m);
  }

  /** Unregisters child `name` and frees its tensors (PyTorch's `del module.name`). */
  deleteModule(name: string): void {
    const m = this._children.get(name);
    if (!m) throw new Error(`deleteModule: ${this.constructor.name} has no submodule named "${name}"`);
    m.dispose();
    this._children.delete(name);
  }

  child(name: string): Module | undefined {
    return this._children.get(name);
  }

  /**
   * Replaces child `name` with `m`, freeing the old one's tensors. Modules that keep the child
   * in a field refresh it in `onChildReplaced`.
   */
  swapChild(name: string, m: Module): void {
    this.replaceModule(name, m);
    this.onChildReplaced(name, m);
  }

  protected onChildReplaced(_name: string, _m: Module): void {
    throw new Error(`${this.constructor.name} does not support replacing its child modules`);
  }

  *namedChildren(): IterableIterator<[string, Module]> {
    yield* this._children;
  }

  *namedModules(prefix = ''): IterableIterator<[string, Module]> {
    yield [prefix, this];
    for (const [n, c] of this._children) yield* c.namedModules(prefix ? `${prefix}.${n}` : n);
  }

  /** Dotted names and tensors of every parameter; `trainable` filters on requiresGrad. */
  namedParameters(opts: { trainable?: boolean; prefix?: string } = {}): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules(opts.prefix ?? '')) {
      for (const [n, p] of m._params) {
        if (!p) continue;
        if (opts.trainable !== undefined && p.requiresGrad !== opts.trainable) continue;
        out.push([path ? `${path}.${n}` : n, p]);
      }
    }
    return out;
  }

  parameters(opts: { trainable?: boolean } = {}): Tensor[] {
    return this.namedParameters(opts).map(([, p]) => p);
  }

  namedBuffers(opts: { persistentOnly?: boolean } = {}): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules()) {
      for (const [n, b] of m._buffers) {
        if (!b || (opts.persistentOnly && m._nonPersistent.has(n))) continue;
        out.push([path ? `${path}.${n}` : n, b]);
      }
    }
    return out;
  }

  /** Parameters and persistent buffers by name, in registration order (as PyTorch). */
  stateDict(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [path, m] of this.namedModules()) {
      for (const [n, p] of m._params) if (p) out.set(path ? `${path}.${n}` : n, p);
      for (const [n, b] of m._buffers) if (b && !m._nonPersistent.has(n)) out.set(path ? `${path}.${n}` : n, b);
    }
    return out;
  }

  /**
   * Copies values into this module's tensors in place (optimizers keep their references).
   * With `strict` (the default) every missing, unexpected and mis-shaped key is reported in
   * one error; without it, shape mismatches still throw and the rest is returned.
   * `ignoreMissing` names keys the dict may lack even when strict: they keep their current
   * values (a freshly initialised head, as transformers' `_keys_to_ignore_on_load_missing`).
   */
  loadStateDict(dict: StateDict, opts: { strict?: boolean; ignoreMissing?: readonly string[] } = {}): LoadResult {
    // The scope frees what the hooks and reshapes create; the caller's dict is not modified.
    return A.tidy(() => A.noGrad(() => {
      const entries = new Map(dict instanceof Map ? dict : Object.entries(dict));
      for (const [path, m] of this.namedModules()) m.onLoadStateDict(entries, path ? `${path}.` : '');
      return this.copyStateDict(entries, opts.strict ?? true, new Set(opts.ignoreMissing));
    }));
  }

  /**
   * Adapts the checkpoint entries under `prefix` (this module's keys) to this module before
   * they are checked and copied, as PyTorch's load_state_dict pre-hooks and timm's checkpoint
   * filters: a ViT resamples `pos_embed` to its grid. Tensors it creates are freed after the copy.
   */
  protected onLoadStateDict(_entries: Map<string, StateValue>, _prefix: string): void {}

  private copyStateDict(entries: Map<string, StateValue>, strict: boolean, ignoreMissing: ReadonlySet<string>): LoadResult {
    const own = this.stateDict();
    // Checkpoints from before PyTorch 0.4.1 (and many converted ones) have no
    // num_batches_tracked; PyTorch's BatchNorm accepts that, and so do we.
    const missing = [...own.keys()].filter((k) => !entries.has(k) && !k.endsWith('num_batches_tracked') && !ignoreMissing.has(k));
    const unexpected = [...entries.keys()].filter((k) => !own.has(k));
    const mismatched: { key: string; expected: number[]; got: number[] }[] = [];
    for (const [k, t] of own) {
      const v = entries.get(k);
      if (!v) continue;
      const vs = [...v.shape];
      if (vs.length !== t.shape.length || vs.some((d, i) => d !== t.shape[i])) {
        // PyTorch stores 0-d scalars (num_batches_tracked) that we keep as [1].
        if (!(t.size === 1 && vs.reduce((a, d) => a * d, 1) === 1)) mismatched.push({ key: k, expected: [...t.shape], got: vs });
      }
    }
    if (mismatched.length > 0 || (strict && (missing.length > 0 || unexpected.length > 0))) {
      const lines: string[] = [];
      if (missing.length) lines.push(`missing keys (${missing.length}): ${missing.join(', ')}`);
      if (unexpected.length) lines.push(`unexpected keys (${unexpected.length}): ${unexpected.join(', ')}`);
      for (const m of mismatched) lines.push(`shape mismatch for ${m.key}: the model has [${m.expected.join(', ')}], the checkpoint [${m.got.join(', ')}]`);
      throw new StateDictError(`the state dict does not fit ${this.constructor.name}:\n  ${lines.join('\n  ')}`, missing, unexpected, mismatched);
    }
    for (const [k, t] of own) {
      const v = entries.get(k);
      if (!v) continue;
      if (isHostValue(v) && t.dtype === 'float16') {
        A.assign(t, A.tensor(v.data instanceof Float32Array ? v.data : Float32Array.from(v.data), { shape: t.shape, dtype: 'float16' }));
      } else if (isHostValue(v)) {
        t.engine.write(t.buffer, t.dtype === 'int32' ? Int32Array.from(v.data) : v.data instanceof Float32Array ? v.data : Float32Array.from(v.data), t.offset * 4);
      } else {
        A.assign(t, v.shape.length === t.shape.length ? v : v.reshape(t.shape));
      }
    }
    return { missing, unexpected };
  }

  /** The state dict as safetensors bytes with PyTorch's key names and dtypes
   * (num_batches_tracked as I64), loadable with `load_state_dict(strict=True)`. Backed by an
   * ArrayBuffer, so the DOM takes it as a BlobPart (`new Blob([bytes])`). */
  async toSafetensors(metadata: Record<string, string> = {}): Promise<Uint8Array<ArrayBuffer>> {
    const data = await this.stateDictData();
    const own = this.stateDict();
    const entries = new Map<string, TensorToWrite>();
    // A float16 module writes F16, as PyTorch saves a half model's state dict.
    for (const [k, h] of data) entries.set(k, own.get(k)?.dtype === 'float16' ? { dtype: 'F16', shape: h.shape, data: Uint16Array.from(h.data, halfBits) } : h);
    return serializeSafetensors(entries, { format: 'pt', ...metadata });
  }

  /** The state dict read back to the host, with the safetensors dtypes PyTorch writes
   * (num_batches_tracked as I64). */
  async stateDictData(): Promise<Map<string, HostTensor>> {
    const tensors = new Map<string, HostTensor>();
    for (const [k, t] of this.stateDict()) tensors.set(k, { dtype: t.dtype === 'int32' ? 'I64' : 'F32', shape: [...t.shape], data: await t.data() });
    return tensors;
  }

  /** Writes `toSafetensors()` to `path` (a temporary name, then renamed). Node only; in a
   * browser, download the bytes of `toSafetensors()`. */
  async save(path: string, metadata: Record<string, string> = {}): Promise<void> {
    if (!fileIO) throw new Error('Module.save(path) needs a file system (the Node entry of @tl/models); in a browser use toSafetensors()');
    await fileIO.write(path, await this.toSafetensors(metadata));
  }

  /** Loads weights from safetensors bytes, or (Node) a path, URL or `hf:` reference. */
  async load(source: string | ArrayBuffer | Uint8Array, opts: { strict?: boolean } = {}): Promise<LoadResult> {
    let bytes: ArrayBuffer | Uint8Array;
    if (typeof source === 'string') {
      if (!fileIO) throw new Error(`Module.load("${source}") needs the Node entry of @tl/models; in a browser pass the bytes`);
      bytes = await fileIO.read(source);
    } else bytes = source;
    return this.loadStateDict(parseSafetensors(bytes, typeof source === 'string' ? source : 'safetensors bytes').all(), opts);
  }

  /**
   * Converts every floating-point parameter and buffer to `dtype` in place, as PyTorch's
   * `module.to(dtype)`: float16 halves the weights' memory for inference and feature
   * extraction (the optimizers' fused steps take float32 parameters only). Needs the adapter's
   * shader-f16 for float16.
   */
  to(dtype: 'float32' | 'float16'): this {
    if (dtype !== 'float32' && dtype !== 'float16') throw new RangeError(`Module.to: dtype must be 'float32' or 'float16', got ${JSON.stringify(dtype)}`);
    A.noGrad(() => {
      for (const [, m] of this.namedModules()) {
        for (const t of [...m._params.values(), ...m._buffers.values()]) {
          if (t && t.dtype !== 'int32' && t.dtype !== dtype) t.setData(t.to(dtype));
        }
      }
    });
    return this;
  }

  /** `to('float16')`. */
  half(): this {
    return this.to('float16');
  }

  /** `to('float32')`. */
  float(): this {
    return this.to('float32');
  }

  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /**
   * Recomputes the activations of the blocks below (transformer layers, ResNet blocks) in
   * backward instead of keeping them, for less memory at about one more forward pass of
   * arithmetic (Hugging Face's gradient_checkpointing_enable). Throws where nothing supports it.
   */
  gradientCheckpointing(enabled = true): this {
    setGradientCheckpointing(this, enabled);
    return this;
  }

  /** Stops gradients for the parameters whose names match (all when no pattern). */
  freeze(pattern?: string | readonly string[]): this {
    return this.setTrainable(pattern, false);
  }

  unfreeze(pattern?: string | readonly string[]): this {
    return this.setTrainable(pattern, true);
  }

  private setTrainable(pattern: string | readonly string[] | undefined, on: boolean): this {
    const match = nameMatcher(pattern);
    let n = 0;
    for (const [name, p] of this.namedParameters()) {
      if (match(name)) {
        p.requiresGrad = on;
        n++;
      }
    }
    if (pattern !== undefined && n === 0) {
      const names = this.namedParameters().map(([k]) => k);
      throw new Error(`${on ? 'unfreeze' : 'freeze'}(${JSON.stringify(pattern)}) matched no parameter; names look like ${names.slice(0, 4).join(', ')}${names.length > 4 ? ', …' : ''}`);
    }
    return this;
  }

  /** Number of parameter elements (trainable only when asked). */
  numParameters(opts: { trainable?: boolean } = {}): number {
    return this.parameters(opts).reduce((a, p) => a + p.size, 0);
  }

  /** Frees what a module derives from its tensors and keeps (a folded batch norm). */
  protected releaseCaches(): void {}

  /** Frees every parameter and buffer of this module and its children. */
  dispose(): void {
    for (const [, m] of this.namedModules()) {
      m.releaseCaches();
      for (const p of m._params.values()) p?.dispose();
      for (const b of m._buffers.values()) b?.dispose();
    }
  }
}
