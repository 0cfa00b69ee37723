/** The standard layers, with PyTorch's attribute names, shapes and default initialisation. */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { Module } from './module.js';

type Pair = number | [number, number];

/** U(-b, b) with b = 1/sqrt(fanIn): PyTorch's default for Linear and Conv weights and biases. */
function uniformInit(shape: number[], fanIn: number): Tensor {
  const b = 1 / Math.sqrt(Math.max(fanIn, 1));
  return A.rand(shape, { low: -b, high: b });
}

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: { bias?: boolean } = {}) {
    super();
    this.weight = this.param('weight', uniformInit([outFeatures, inFeatures], inFeatures));
    this.bias = opts.bias === false ? null : this.param('bias', uniformInit([outFeatures], inFeatures));
  }
  forward(x: Tensor): Tensor {
    return A.linear(x, this.weight, this.bias);
  }
}

export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  bias?: boolean;
}

export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly stride: Pair;
  readonly padding: Pair;
  readonly dilation: Pair;
  readonly groups: number;
  constructor(readonly inChannels: number, readonly outChannels: number, readonly kernelSize: Pair, opts: Conv2dOptions = {}) {
    super();
    const [kh, kw] = typeof kernelSize === 'number' ? [kernelSize, kernelSize] : kernelSize;
    this.groups = opts.groups ?? 1;
    if (inChannels % this.groups || outChannels % this.groups) {
      throw new RangeError(`Conv2d: in (${inChannels}) and out (${outChannels}) channels must be divisible by groups (${this.groups})`);
    }
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? 0;
    this.dilation = opts.dilation ?? 1;
    const fanIn = (inChannels / this.groups) * kh * kw;
    this.weight = this.param('weight', uniformInit([outChannels, inChannels / this.groups, kh, kw], fanIn));
    this.bias = opts.bias === false ? null : this.param('bias', uniformInit([outChannels], fanIn));
  }
  forward(x: Tensor): Tensor {
    return A.conv2d(x, this.weight, { bias: this.bias, stride: this.stride, padding: this.padding, dilation: this.dilation, groups: this.groups });
  }
}

export class BatchNorm2d extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly runningMean: Tensor;
  readonly runningVar: Tensor;
  readonly numBatchesTracked: Tensor;
  constructor(readonly numFeatures: number, readonly opts: { eps?: number; momentum?: number; affine?: boolean } = {}) {
    super();
    const affine = opts.affine ?? true;
    this.weight = affine ? this.param('weight', A.ones([numFeatures])) : null;
    this.bias = affine ? this.param('bias', A.zeros([numFeatures])) : null;
    this.runningMean = this.buffer('running_mean', A.zeros([numFeatures]));
    this.runningVar = this.buffer('running_var', A.ones([numFeatures]));
    this.numBatchesTracked = this.buffer('num_batches_tracked', A.zeros([], 'int32'));
  }
  /**
   * Batch statistics (and a running-statistics update) in training mode, unless the layer is
   * frozen: a BatchNorm whose affine parameters do not require gradients keeps its running
   * statistics, as timm's FrozenBatchNorm2d, so a frozen backbone stays the pretrained one.
   */
  get usesBatchStats(): boolean {
    return this.training && (this.weight === null || this.weight.requiresGrad);
  }
  forward(x: Tensor): Tensor {
    const training = this.usesBatchStats;
    if (training && !A.isRecomputing()) {
      A.noGrad(() => A.assign(this.numBatchesTracked, A.add(this.numBatchesTracked, 1)));
    }
    return A.batchNorm(x, this.runningMean, this.runningVar, this.weight, this.bias, {
      training,
      momentum: this.opts.momentum ?? 0.1,
      eps: this.opts.eps ?? 1e-5,
    });
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly normalizedShape: number[];
  constructor(normalizedShape: number | number[], readonly opts: { eps?: number; elementwiseAffine?: boolean; bias?: boolean } = {}) {
    super();
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : normalizedShape;
    const affine = opts.elementwiseAffine ?? true;
    this.weight = affine ? this.param('weight', A.ones(this.normalizedShape)) : null;
    this.bias = affine && opts.bias !== false ? this.param('bias', A.zeros(this.normalizedShape)) : null;
  }
  forward(x: Tensor): Tensor {
    return A.layerNorm(x, this.normalizedShape, this.weight, this.bias, this.opts.eps ?? 1e-5);
  }
}

export class Embedding extends Module {
  readonly weight: Tensor;
  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, readonly opts: { paddingIdx?: number } = {}) {
    super();
    const w = A.randn([numEmbeddings, embeddingDim]);
    if (opts.paddingIdx !== undefined) {
      const row = w.select(0, opts.paddingIdx);
      A.assign(row, 0);
      row.dispose();
    }
    this.weight = this.param('weight', w);
  }
  forward(indices: Tensor): Tensor {
    return A.embedding(indices, this.weight, { paddingIdx: this.opts.paddingIdx });
  }
}

export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (p < 0 || p > 1) throw new RangeError(`Dropout: p must be in [0, 1], got ${p}`);
  }
  forward(x: Tensor): Tensor {
    return A.dropout(x, this.p, this.training);
  }
}

/** A parameter-free layer from a function (activations, flatten). */
export class Lambda extends Module {
  constructor(readonly name: string, private readonly fn: (x: Tensor) => Tensor) {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.fn(x);
  }
}

export const ReLU = (): Lambda => new Lambda('ReLU', A.relu);
export const ReLU6 = (): Lambda => new Lambda('ReLU6', A.relu6);
export const GELU = (approximate: 'none' | 'tanh' = 'none'): Lambda => new Lambda('GELU', (x) => A.gelu(x, approximate));
export const SiLU = (): Lambda => new Lambda('SiLU', A.silu);
export const Hardswish = (): Lambda => new Lambda('Hardswish', A.hardswish);
export const Hardsigmoid = (): Lambda => new Lambda('Hardsigmoid', A.hardsigmoid);
export const Sigmoid = (): Lambda => new Lambda('Sigmoid', A.sigmoid);
export const Tanh = (): Lambda => new Lambda('Tanh', A.tanh);
export const Identity = (): Lambda => new Lambda('Identity', (x) => x);
export const Flatten = (startDim = 1, endDim = -1): Lambda => new Lambda('Flatten', (x) => x.flatten(startDim, endDim));

export class MaxPool2d extends Module {
  constructor(readonly opts: A.MaxPool2dOptions) {
    super();
  }
  forward(x: Tensor): Tensor {
    return A.maxPool2d(x, this.opts);
  }
}

export class AvgPool2d extends Module {
  constructor(readonly opts: A.AvgPool2dOptions) {
    super();
  }
  forward(x: Tensor): Tensor {
    return A.avgPool2d(x, this.opts);
  }
}

export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: Pair) {
    super();
  }
  forward(x: Tensor): Tensor {
    return A.adaptiveAvgPool2d(x, this.outputSize);
  }
}

/** Children named "0", "1", … as torch.nn.Sequential. */
export class Sequential extends Module {
  readonly layers: Module[];
  constructor(...layers: Module[]) {
    super();
    this.layers = layers.map((l, i) => this.module(String(i), l));
  }
  forward(x: Tensor): Tensor {
    let y = x;
    for (const l of this.layers) y = (l as unknown as { forward(t: Tensor): Tensor }).forward(y);
    return y;
  }
  get length(): number {
    return this.layers.length;
  }
  at(i: number): Module {
    return this.layers[i < 0 ? i + this.layers.length : i]!;
  }
  protected override onChildReplaced(name: string, m: Module): void {
    this.layers[Number(name)] = m;
  }
}

/** Children named "0", "1", … with no forward of its own, as torch.nn.ModuleList. */
export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[];
  constructor(items: M[] = []) {
    super();
    this.items = items.map((m, i) => this.module(String(i), m));
  }
  forward(): never {
    throw new Error('ModuleList has no forward; iterate its items');
  }
  get length(): number {
    return this.items.length;
  }
  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
}

/** Children named by key, with no forward of its own, as torch.nn.ModuleDict: `heads.species.weight`. */
export class ModuleDict<M extends Module = Module> extends Module {
  private readonly items = new Map<string, M>();
  constructor(items: Readonly<Record<string, M>> = {}) {
    super();
    for (const [name, m] of Object.entries(items)) {
      // A dot would make the state-dict key ambiguous (PyTorch refuses it too).
      if (name === '' || name.includes('.')) throw new RangeError(`ModuleDict: a name must be non-empty and have no ".", got ${JSON.stringify(name)}`);
      this.items.set(name, this.module(name, m));
    }
  }
  forward(): never {
    throw new Error('ModuleDict has no forward; look its items up by name');
  }
  get(name: string): M | undefined {
    return this.items.get(name);
  }
  keys(): string[] {
    return [...this.items.keys()];
  }
  entries(): [string, M][] {
    return [...this.items.entries()];
  }
  get size(): number {
    return this.items.size;
  }
}
