/**
 * One layer's LoRA adapters (Hu et al. 2021, with Hugging Face PEFT's conventions):
 * y = base(x) + B(A(dropout(x))) * alpha / r, lora_A initialised as a Linear (kaiming-uniform
 * with a = sqrt(5), i.e. U(±1/sqrt(fan_in))) and lora_B zeros, so a fresh adapter leaves the
 * output unchanged. The adapters are attached to the base layer itself (`query.lora_A.default`)
 * rather than wrapping it, so the base keeps its checkpoint names and its owner keeps calling it.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { Conv1D } from '../arch/gpt2.js';
import { Conv2d, Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';

/** The layer types LoRA adapts: PEFT's Linear, Conv2d and transformers' Conv1D (fan_in_fan_out). */
export type LoraBase = Linear | Conv2d | Conv1D;

export function isLoraBase(m: Module): m is LoraBase {
  return m instanceof Linear || m instanceof Conv2d || m instanceof Conv1D;
}

export interface LoraAdapterOptions {
  r: number;
  alpha: number;
  dropout: number;
}

/** Children named by adapter, as PEFT's `lora_A` ModuleDict, that adapters join and leave. */
export class AdapterDict extends Module {
  forward(): never {
    throw new Error('AdapterDict has no forward; look its adapters up by name');
  }
  add<M extends Module>(name: string, m: M): M {
    return this.addModule(name, m);
  }
  get(name: string): Module | undefined {
    return this.child(name);
  }
}

interface Adapter {
  a: Linear | Conv2d;
  b: Linear | Conv2d;
  scaling: number;
  dropout: number;
}

type Forward = (x: Tensor) => Tensor;

/** The shapes a base layer's LoRA matrices take: lora_A.weight and lora_B.weight. */
export function loraShapes(base: LoraBase, r: number): { a: number[]; b: number[] } {
  if (base instanceof Conv2d) {
    const [kh, kw] = typeof base.kernelSize === 'number' ? [base.kernelSize, base.kernelSize] : base.kernelSize;
    return { a: [r, base.inChannels, kh, kw], b: [base.outChannels, r, 1, 1] };
  }
  const [inF, outF] = base instanceof Linear ? [base.inFeatures, base.outFeatures] : [base.nx, base.nf];
  return { a: [r, inF], b: [outF, r] };
}

export class LoraLayer {
  readonly loraA = new AdapterDict();
  readonly loraB = new AdapterDict();
  private readonly adapters = new Map<string, Adapter>();
  private readonly baseForward: Forward;
  /** The adapter the forward adds, or none (the base alone). */
  active: string | null = null;
  /** Adapters whose product is currently added into the base weight. */
  readonly merged: string[] = [];

  constructor(readonly base: LoraBase, readonly path: string) {
    if (base instanceof Conv2d && base.groups !== 1) {
      throw new RangeError(`lora: ${path} is a grouped Conv2d (groups ${base.groups}); LoRA adapts convolutions with groups = 1 only`);
    }
    this.baseForward = base.forward.bind(base) as Forward;
    base.addModule('lora_A', this.loraA);
    base.addModule('lora_B', this.loraB);
    (base as { forward: Forward }).forward = (x) => this.forward(x);
  }

  /** Conv1D stores its weight [in, out], the transpose of a Linear's (PEFT's fan_in_fan_out). */
  get fanInFanOut(): boolean {
    return this.base instanceof Conv1D;
  }

  has(name: string): boolean {
    return this.adapters.has(name);
  }

  adapterNames(): string[] {
    return [...this.adapters.keys()];
  }

  add(name: string, opts: LoraAdapterOptions): void {
    const { r, alpha, dropout } = opts;
    const base = this.base;
    let a: Linear | Conv2d;
    let b: Linear | Conv2d;
    if (base instanceof Conv2d) {
      const { stride, padding, dilation } = base;
      a = new Conv2d(base.inChannels, r, base.kernelSize, { stride, padding, dilation, bias: false });
      b = new Conv2d(r, base.outChannels, 1, { bias: false });
    } else {
      const { a: [, inF], b: [outF] } = loraShapes(base, r) as { a: [number, number]; b: [number, number] };
      a = new Linear(inF, r, { bias: false });
      b = new Linear(r, outF, { bias: false });
    }
    A.noGrad(() => A.assign(b.weight, 0));
    this.loraA.add(name, a);
    this.loraB.add(name, b);
    this.adapters.set(name, { a, b, scaling: alpha / r, dropout });
  }

  private adapter(name: string): Adapter {
    const ad = this.adapters.get(name);
    if (!ad) throw new Error(`lora: ${this.path} has no adapter "${name}"; it has ${this.adapterNames().join(', ') || 'none'}`);
    return ad;
  }

  forward(x: Tensor): Tensor {
    const y = this.baseForward(x);
    if (this.active === null || this.merged.length > 0) return y;
    const ad = this.adapter(this.active);
    const h = ad.dropout > 0 ? A.dropout(x, ad.dropout, this.base.training) : x;
    return A.add(y, A.mul(ad.b.forward(ad.a.forward(h)), ad.scaling));
  }

  /** B @ A * scaling in the base weight's layout. */
  deltaWeight(name: string): Tensor {
    const { a, b, scaling } = this.adapter(name);
    const w = this.base.weight;
    const r = a.weight.shape[0]!;
    const ba = A.matmul(b.weight.reshape(b.weight.shape[0]!, r), a.weight.reshape(r, -1));
    const d = A.mul(this.fanInFanOut ? ba.transpose(0, 1) : ba.reshape(w.shape), scaling);
    return this.fanInFanOut ? d.contiguous() : d;
  }

  merge(name: string): void {
    if (this.merged.includes(name)) return;
    A.tidy(() => A.noGrad(() => A.assign(this.base.weight, A.add(this.base.weight, this.deltaWeight(name)))));
    this.merged.push(name);
  }

  unmerge(): void {
    while (this.merged.length > 0) {
      const name = this.merged.pop()!;
      A.tidy(() => A.noGrad(() => A.assign(this.base.weight, A.sub(this.base.weight, this.deltaWeight(name)))));
    }
  }

  /** Removes an adapter and frees its weights. */
  delete(name: string): void {
    if (this.merged.includes(name)) throw new Error(`lora: adapter "${name}" is merged into ${this.path}; unmerge before deleting it`);
    this.adapter(name);
    this.loraA.deleteModule(name);
    this.loraB.deleteModule(name);
    this.adapters.delete(name);
    if (this.active === name) this.active = null;
  }

  /** Detaches every adapter and gives the base back its own forward. */
  detach(): void {
    this.base.deleteModule('lora_A');
    this.base.deleteModule('lora_B');
    this.adapters.clear();
    delete (this.base as { forward?: Forward }).forward;
  }

  weights(name: string): { a: Tensor; b: Tensor } {
    const { a, b } = this.adapter(name);
    return { a: a.weight, b: b.weight };
  }
}
