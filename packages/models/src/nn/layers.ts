/** The standard layers, with PyTorch's attribute names, shapes and default initialisation. */
import * as A from '@tl/autograd';
import type { ConvActivation, DType, Tensor } from '@tl/autograd';
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
  get geometry(): { stride: Pair; padding: Pair; dilation: Pair; groups: number } {
    return { stride: this.stride, padding: this.padding, dilation: this.dilation, groups: this.groups };
  }
  forward(x: Tensor): Tensor {
    return A.conv2d(x, this.weight, { bias: this.bias, ...this.geometry });
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

  private folded: { key: string; scale: Tensor; shift: Tensor } | null = null;

  /**
   * What this layer does with its running statistics, as a per-channel `scale` and `shift`
   * with the preceding convolution's bias folded in, in `dtype`: conv2d's epilogue then does
   * the batch norm. Kept until one of the tensors it comes from is written or replaced.
   */
  foldedAffine(convBias: Tensor | null, dtype: DType): { scale: Tensor; shift: Tensor } {
    const from = [this.weight, this.bias, this.runningMean, this.runningVar, convBias];
    const key = [...from.map((t) => (t ? t.version : '-')), dtype, this.opts.eps ?? 1e-5].join(' ');
    if (this.folded?.key === key) return this.folded;
    this.releaseCaches();
    const [scale, shift] = A.noGrad(() =>
      A.tidy(() => {
        const f32 = (t: Tensor): Tensor => (t.dtype === 'float32' ? t : A.cast(t, 'float32'));
        const inv = A.rsqrt(A.add(f32(this.runningVar), this.opts.eps ?? 1e-5));
        const s = this.weight ? A.mul(inv, f32(this.weight)) : inv;
        let b = A.neg(A.mul(f32(this.runningMean), s));
        if (convBias) b = A.add(b, A.mul(f32(convBias), s));
        if (this.bias) b = A.add(b, f32(this.bias));
        return [s, b].map((t) => A.keep(t.dtype === dtype ? t.contiguous() : A.cast(t, dtype)));
      }),
    ) as [Tensor, Tensor];
    this.folded = { key, scale, shift };
    return this.folded;
  }

  protected override releaseCaches(): void {
    this.folded?.scale.dispose();
    this.folded?.shift.dispose();
    this.folded = null;
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
  /** `activation`: the conv2d epilogue that computes `fn`, which lets a convolution before
   * this layer apply it (set by ReLU(), SiLU() and the other activation layers). */
  constructor(readonly name: string, private readonly fn: (x: Tensor) => Tensor, readonly activation?: ConvActivation) {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.fn(x);
  }
}

export const ReLU = (): Lambda => new Lambda('ReLU', A.relu, 'relu');
export const ReLU6 = (): Lambda => new Lambda('ReLU6', A.relu6, 'relu6');
export const GELU = (approximate: 'none' | 'tanh' = 'none'): Lambda =>
  new Lambda('GELU', (x) => A.gelu(x, approximate), approximate === 'none' ? 'gelu' : undefined);
export const SiLU = (): Lambda => new Lambda('SiLU', A.silu, 'silu');
export const Hardswish = (): Lambda => new Lambda('Hardswish', A.hardswish, 'hardswish');
export const Hardsigmoid = (): Lambda => new Lambda('Hardsigmoid', A.hardsigmoid, 'hardsigmoid');
export const Sigmoid = (): Lambda => new Lambda('Sigmoid', A.sigmoid, 'sigmoid');
export const Tanh = (): Lambda => new Lambda('Tanh', A.tanh, 'tanh');
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

/**
 * A layer that multiplies each channel of each image by a gate computed from the input
 * (squeeze-excitation): `forward(x) = gate(x) * x`, with the gate [N, C, 1, 1]. Where the
 * layer after it in a Sequential is a convolution whose batch norm folds (evaluation), the
 * convolution applies the gate as it loads its input instead (`conv2d`'s inputScale).
 */
export abstract class ChannelGate extends Module {
  abstract gate(x: Tensor): Tensor;
  forward(x: Tensor): Tensor {
    return A.mul(this.gate(x), x);
  }
}

/** `next(gate * x)` in one convolution where `next` is a plain [Conv2d, BatchNorm2d, act?]
 * Sequential whose batch norm folds; else null. */
function gatedConv(next: Module | undefined, x: Tensor, gate: Tensor): Tensor | null {
  if (!(next instanceof Sequential) || !isOwnForward(next)) return null;
  const [conv, bn, after] = next.layers;
  if (!(conv instanceof Conv2d && bn instanceof BatchNorm2d && canFold(conv, bn))) return null;
  if (next.layers.length > 3 || (after && !(after instanceof Lambda && isOwnForward(after) && after.activation))) return null;
  return foldedConv(conv, bn, x, after instanceof Lambda ? after.activation : undefined, gate);
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
    for (let i = 0; i < this.layers.length; i++) {
      const [l, next, after] = [this.layers[i]!, this.layers[i + 1], this.layers[i + 2]];
      if (l instanceof Conv2d && next instanceof BatchNorm2d && canFold(l, next)) {
        const act = after instanceof Lambda && isOwnForward(after) ? after.activation : undefined;
        y = foldedConv(l, next, y, act);
        i += act ? 2 : 1;
        continue;
      }
      if (l instanceof ChannelGate && isOwnForward(l) && folding) {
        const gate = l.gate(y);
        const fused = gatedConv(next, y, gate);
        y = fused ?? A.mul(gate, y);
        if (fused) i++;
        continue;
      }
      y = (l as unknown as { forward(t: Tensor): Tensor }).forward(y);
    }
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

let folding = true;

/**
 * Turns off (or back on) folding evaluation-mode batch norms into the convolutions before
 * them; on by default. The outputs agree to float32 rounding either way: this is for
 * comparing the two, or to see each layer's own output while debugging.
 */
export function setBatchNormFolding(enabled: boolean): void {
  folding = enabled;
}

/** Whether `m` runs its class's own forward (LoRA, for one, replaces a layer's forward). */
function isOwnForward(m: Module): boolean {
  return !Object.prototype.hasOwnProperty.call(m, 'forward');
}

/**
 * Whether `bn` after `conv` can run as conv2d's epilogue: the batch norm normalises with its
 * running statistics (evaluation mode, or frozen), neither layer's parameters want a
 * gradient, and both are plain layers of their class.
 */
function canFold(conv: Module, bn: BatchNorm2d): conv is Conv2d {
  return (
    folding && conv.constructor === Conv2d && bn.constructor === BatchNorm2d && isOwnForward(conv) && isOwnForward(bn) &&
    !bn.usesBatchStats && !A.needsGrad((conv as Conv2d).weight, (conv as Conv2d).bias, bn.weight, bn.bias)
  );
}

/** One convolution computing `act(bn(conv(x)))`, with the batch norm folded into its epilogue. */
function foldedConv(conv: Conv2d, bn: BatchNorm2d, x: Tensor, act: ConvActivation | undefined, inputScale?: Tensor): Tensor {
  const { scale, shift } = bn.foldedAffine(conv.bias, conv.weight.dtype);
  return A.conv2d(x, conv.weight, { ...conv.geometry, bias: shift, scale, activation: act, inputScale });
}

/**
 * `act(bn(conv(x)))` for the blocks that call their layers one by one (ResNet's): one
 * convolution where the batch norm can fold into it (see `canFold`), else each layer's forward.
 */
export function convBnAct(conv: Module & { forward(x: Tensor): Tensor }, bn: BatchNorm2d, x: Tensor, act?: ConvActivation): Tensor {
  if (canFold(conv, bn)) return foldedConv(conv, bn, x, act);
  const y = bn.forward(conv.forward(x));
  return act ? A.unary(act, y) : y;
}

/** `act(conv(x))`, the activation in the convolution's epilogue where `conv` is a plain Conv2d. */
export function convAct(conv: Module & { forward(x: Tensor): Tensor }, x: Tensor, act: ConvActivation): Tensor {
  if (conv.constructor === Conv2d && isOwnForward(conv)) {
    const c = conv as Conv2d;
    return A.conv2d(x, c.weight, { bias: c.bias, ...c.geometry, activation: act });
  }
  return A.unary(act, conv.forward(x));
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
