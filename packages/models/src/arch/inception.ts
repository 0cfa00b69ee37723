/**
 * Inception v3 with torchvision's attribute names: the stem (`Conv2d_1a_3x3` … `Conv2d_4a_3x3`,
 * each a BasicConv2d `.conv`/`.bn`), `Mixed_5b` … `Mixed_7c` (InceptionA to E, branches named as
 * torchvision's), the auxiliary classifier `AuxLogits` on Mixed_6e, and `fc`. In training it
 * also gives the auxiliary logits (`forwardWithAux`), whose loss torchvision's reference recipe
 * adds at 0.4 (`auxLossWeight`); in eval it is the main classifier alone, as torchvision.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { ClassifierModel } from '../nn/classifier.js';
import { BatchNorm2d, Conv2d, convBnAct, type Conv2dOptions, Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';

type Pair = number | [number, number];

/** Maps a torchvision width to the model's (divided by the channel divisor). */
type Width = (channels: number) => number;

/** Conv (no bias), BatchNorm (eps 0.001), ReLU. */
export class BasicConv2d extends Module {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;
  constructor(inChannels: number, outChannels: number, kernelSize: Pair, opts: Omit<Conv2dOptions, 'bias'> = {}) {
    super();
    this.conv = this.module('conv', new Conv2d(inChannels, outChannels, kernelSize, { ...opts, bias: false }));
    this.bn = this.module('bn', new BatchNorm2d(outChannels, { eps: 0.001 }));
  }
  forward(x: Tensor): Tensor {
    return convBnAct(this.conv, this.bn, x, 'relu');
  }
}

/** A BasicConv2d between torchvision widths `i` and `o`, built at the model's widths. */
const basic = (w: Width) => (i: number, o: number, k: Pair, opts: Omit<Conv2dOptions, 'bias'> = {}): BasicConv2d => new BasicConv2d(w(i), w(o), k, opts);

/** The 3x3 stride-1 average pool of the pool branches (padding counted, as F.avg_pool2d). */
const poolBranch = (x: Tensor): Tensor => A.avgPool2d(x, { kernelSize: 3, stride: 1, padding: 1 });
const maxPool3s2 = (x: Tensor): Tensor => A.maxPool2d(x, { kernelSize: 3, stride: 2 });

export class InceptionA extends Module {
  readonly branch1x1: BasicConv2d;
  readonly branch5x5_1: BasicConv2d;
  readonly branch5x5_2: BasicConv2d;
  readonly branch3x3dbl_1: BasicConv2d;
  readonly branch3x3dbl_2: BasicConv2d;
  readonly branch3x3dbl_3: BasicConv2d;
  readonly branch_pool: BasicConv2d;
  constructor(inChannels: number, poolFeatures: number, w: Width) {
    super();
    const c = basic(w);
    this.branch1x1 = this.module('branch1x1', c(inChannels, 64, 1));
    this.branch5x5_1 = this.module('branch5x5_1', c(inChannels, 48, 1));
    this.branch5x5_2 = this.module('branch5x5_2', c(48, 64, 5, { padding: 2 }));
    this.branch3x3dbl_1 = this.module('branch3x3dbl_1', c(inChannels, 64, 1));
    this.branch3x3dbl_2 = this.module('branch3x3dbl_2', c(64, 96, 3, { padding: 1 }));
    this.branch3x3dbl_3 = this.module('branch3x3dbl_3', c(96, 96, 3, { padding: 1 }));
    this.branch_pool = this.module('branch_pool', c(inChannels, poolFeatures, 1));
  }
  forward(x: Tensor): Tensor {
    return A.cat([
      this.branch1x1.forward(x),
      this.branch5x5_2.forward(this.branch5x5_1.forward(x)),
      this.branch3x3dbl_3.forward(this.branch3x3dbl_2.forward(this.branch3x3dbl_1.forward(x))),
      this.branch_pool.forward(poolBranch(x)),
    ], 1);
  }
}

/** Grid reduction 35 -> 17. */
export class InceptionB extends Module {
  readonly branch3x3: BasicConv2d;
  readonly branch3x3dbl_1: BasicConv2d;
  readonly branch3x3dbl_2: BasicConv2d;
  readonly branch3x3dbl_3: BasicConv2d;
  constructor(inChannels: number, w: Width) {
    super();
    const c = basic(w);
    this.branch3x3 = this.module('branch3x3', c(inChannels, 384, 3, { stride: 2 }));
    this.branch3x3dbl_1 = this.module('branch3x3dbl_1', c(inChannels, 64, 1));
    this.branch3x3dbl_2 = this.module('branch3x3dbl_2', c(64, 96, 3, { padding: 1 }));
    this.branch3x3dbl_3 = this.module('branch3x3dbl_3', c(96, 96, 3, { stride: 2 }));
  }
  forward(x: Tensor): Tensor {
    return A.cat([
      this.branch3x3.forward(x),
      this.branch3x3dbl_3.forward(this.branch3x3dbl_2.forward(this.branch3x3dbl_1.forward(x))),
      maxPool3s2(x),
    ], 1);
  }
}

/** Factorised 7x7 convolutions (1x7 then 7x1). */
export class InceptionC extends Module {
  readonly branch1x1: BasicConv2d;
  readonly branch7x7_1: BasicConv2d;
  readonly branch7x7_2: BasicConv2d;
  readonly branch7x7_3: BasicConv2d;
  readonly branch7x7dbl_1: BasicConv2d;
  readonly branch7x7dbl_2: BasicConv2d;
  readonly branch7x7dbl_3: BasicConv2d;
  readonly branch7x7dbl_4: BasicConv2d;
  readonly branch7x7dbl_5: BasicConv2d;
  readonly branch_pool: BasicConv2d;
  constructor(inChannels: number, channels7x7: number, w: Width) {
    super();
    const c = basic(w);
    const c7 = channels7x7;
    const row = { padding: [0, 3] as [number, number] };
    const col = { padding: [3, 0] as [number, number] };
    this.branch1x1 = this.module('branch1x1', c(inChannels, 192, 1));
    this.branch7x7_1 = this.module('branch7x7_1', c(inChannels, c7, 1));
    this.branch7x7_2 = this.module('branch7x7_2', c(c7, c7, [1, 7], row));
    this.branch7x7_3 = this.module('branch7x7_3', c(c7, 192, [7, 1], col));
    this.branch7x7dbl_1 = this.module('branch7x7dbl_1', c(inChannels, c7, 1));
    this.branch7x7dbl_2 = this.module('branch7x7dbl_2', c(c7, c7, [7, 1], col));
    this.branch7x7dbl_3 = this.module('branch7x7dbl_3', c(c7, c7, [1, 7], row));
    this.branch7x7dbl_4 = this.module('branch7x7dbl_4', c(c7, c7, [7, 1], col));
    this.branch7x7dbl_5 = this.module('branch7x7dbl_5', c(c7, 192, [1, 7], row));
    this.branch_pool = this.module('branch_pool', c(inChannels, 192, 1));
  }
  forward(x: Tensor): Tensor {
    let dbl = this.branch7x7dbl_1.forward(x);
    for (const conv of [this.branch7x7dbl_2, this.branch7x7dbl_3, this.branch7x7dbl_4, this.branch7x7dbl_5]) dbl = conv.forward(dbl);
    return A.cat([
      this.branch1x1.forward(x),
      this.branch7x7_3.forward(this.branch7x7_2.forward(this.branch7x7_1.forward(x))),
      dbl,
      this.branch_pool.forward(poolBranch(x)),
    ], 1);
  }
}

/** Grid reduction 17 -> 8. */
export class InceptionD extends Module {
  readonly branch3x3_1: BasicConv2d;
  readonly branch3x3_2: BasicConv2d;
  readonly branch7x7x3_1: BasicConv2d;
  readonly branch7x7x3_2: BasicConv2d;
  readonly branch7x7x3_3: BasicConv2d;
  readonly branch7x7x3_4: BasicConv2d;
  constructor(inChannels: number, w: Width) {
    super();
    const c = basic(w);
    this.branch3x3_1 = this.module('branch3x3_1', c(inChannels, 192, 1));
    this.branch3x3_2 = this.module('branch3x3_2', c(192, 320, 3, { stride: 2 }));
    this.branch7x7x3_1 = this.module('branch7x7x3_1', c(inChannels, 192, 1));
    this.branch7x7x3_2 = this.module('branch7x7x3_2', c(192, 192, [1, 7], { padding: [0, 3] }));
    this.branch7x7x3_3 = this.module('branch7x7x3_3', c(192, 192, [7, 1], { padding: [3, 0] }));
    this.branch7x7x3_4 = this.module('branch7x7x3_4', c(192, 192, 3, { stride: 2 }));
  }
  forward(x: Tensor): Tensor {
    let b7 = this.branch7x7x3_1.forward(x);
    for (const conv of [this.branch7x7x3_2, this.branch7x7x3_3, this.branch7x7x3_4]) b7 = conv.forward(b7);
    return A.cat([this.branch3x3_2.forward(this.branch3x3_1.forward(x)), b7, maxPool3s2(x)], 1);
  }
}

/** Expanded filter bank: the 3x3 branches split into parallel 1x3 and 3x1. */
export class InceptionE extends Module {
  readonly branch1x1: BasicConv2d;
  readonly branch3x3_1: BasicConv2d;
  readonly branch3x3_2a: BasicConv2d;
  readonly branch3x3_2b: BasicConv2d;
  readonly branch3x3dbl_1: BasicConv2d;
  readonly branch3x3dbl_2: BasicConv2d;
  readonly branch3x3dbl_3a: BasicConv2d;
  readonly branch3x3dbl_3b: BasicConv2d;
  readonly branch_pool: BasicConv2d;
  constructor(inChannels: number, w: Width) {
    super();
    const c = basic(w);
    const row = { padding: [0, 1] as [number, number] };
    const col = { padding: [1, 0] as [number, number] };
    this.branch1x1 = this.module('branch1x1', c(inChannels, 320, 1));
    this.branch3x3_1 = this.module('branch3x3_1', c(inChannels, 384, 1));
    this.branch3x3_2a = this.module('branch3x3_2a', c(384, 384, [1, 3], row));
    this.branch3x3_2b = this.module('branch3x3_2b', c(384, 384, [3, 1], col));
    this.branch3x3dbl_1 = this.module('branch3x3dbl_1', c(inChannels, 448, 1));
    this.branch3x3dbl_2 = this.module('branch3x3dbl_2', c(448, 384, 3, { padding: 1 }));
    this.branch3x3dbl_3a = this.module('branch3x3dbl_3a', c(384, 384, [1, 3], row));
    this.branch3x3dbl_3b = this.module('branch3x3dbl_3b', c(384, 384, [3, 1], col));
    this.branch_pool = this.module('branch_pool', c(inChannels, 192, 1));
  }
  forward(x: Tensor): Tensor {
    const b3 = this.branch3x3_1.forward(x);
    const dbl = this.branch3x3dbl_2.forward(this.branch3x3dbl_1.forward(x));
    return A.cat([
      this.branch1x1.forward(x),
      this.branch3x3_2a.forward(b3),
      this.branch3x3_2b.forward(b3),
      this.branch3x3dbl_3a.forward(dbl),
      this.branch3x3dbl_3b.forward(dbl),
      this.branch_pool.forward(poolBranch(x)),
    ], 1);
  }
}

/** The auxiliary classifier on Mixed_6e's 17x17 map (5x5 stride-3 average pool, 1x1, 5x5). */
export class InceptionAux extends Module {
  readonly conv0: BasicConv2d;
  readonly conv1: BasicConv2d;
  fc: Linear;
  constructor(inChannels: number, numClasses: number, w: Width) {
    super();
    const c = basic(w);
    this.conv0 = this.module('conv0', c(inChannels, 128, 1));
    this.conv1 = this.module('conv1', c(128, 768, 5));
    this.fc = this.module('fc', new Linear(w(768), numClasses));
  }
  forward(x: Tensor): Tensor {
    const [h, wd] = [x.shape[2]!, x.shape[3]!];
    if (h < 17 || wd < 17) {
      throw new RangeError(`InceptionAux: Mixed_6e's map must be at least 17x17 (a 299x299 input), got ${h}x${wd}; train at 299 px or build with auxLogits: false`);
    }
    const y = this.conv1.forward(this.conv0.forward(A.avgPool2d(x, { kernelSize: 5, stride: 3 })));
    return this.fc.forward(A.mean(y, [2, 3]));
  }
  protected override onChildReplaced(name: string, m: Module): void {
    if (name !== 'fc' || !(m instanceof Linear)) super.onChildReplaced(name, m);
    this.fc = m as Linear;
  }
}

export interface Inception3Config {
  numClasses?: number;
  /** The auxiliary classifier `AuxLogits` (default true, as torchvision's weights have it). */
  auxLogits?: boolean;
  /** Rescale input normalised with ImageNet's mean/std to the [-1, 1] statistics the ported
   * TensorFlow weights were trained on (torchvision sets it with its pretrained weights).
   * Default false, as torchvision's Inception3. */
  transformInput?: boolean;
  /** Dropout before `fc` (default 0.5). */
  dropout?: number;
  /** Divides every width (not the 3 input channels) for small test models; default 1. It must
   * divide all of them: 1, 2, 4, 8 or 16. */
  channelDivisor?: number;
}

/** The main logits and, in training with the auxiliary classifier, its logits (else null):
 * torchvision's InceptionOutputs. */
export interface InceptionOutputs {
  logits: Tensor;
  auxLogits: Tensor | null;
}

const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];

export class Inception3 extends ClassifierModel {
  readonly classifierPath = 'fc';
  /** The auxiliary loss's factor in torchvision's reference recipe
   * (references/classification/train.py: loss + 0.4 * aux_loss). */
  readonly auxLossWeight = 0.4;
  readonly Conv2d_1a_3x3: BasicConv2d;
  readonly Conv2d_2a_3x3: BasicConv2d;
  readonly Conv2d_2b_3x3: BasicConv2d;
  readonly Conv2d_3b_1x1: BasicConv2d;
  readonly Conv2d_4a_3x3: BasicConv2d;
  readonly Mixed_5b: InceptionA;
  readonly Mixed_5c: InceptionA;
  readonly Mixed_5d: InceptionA;
  readonly Mixed_6a: InceptionB;
  readonly Mixed_6b: InceptionC;
  readonly Mixed_6c: InceptionC;
  readonly Mixed_6d: InceptionC;
  readonly Mixed_6e: InceptionC;
  readonly AuxLogits: InceptionAux | null;
  readonly Mixed_7a: InceptionD;
  readonly Mixed_7b: InceptionE;
  readonly Mixed_7c: InceptionE;
  fc: Linear;
  readonly transformInput: boolean;
  readonly dropout: number;

  constructor(readonly config: Inception3Config = {}) {
    super();
    const d = config.channelDivisor ?? 1;
    const w: Width = (ch) => {
      if (!Number.isInteger(ch / d)) throw new RangeError(`Inception3: channelDivisor ${d} must divide every width (1, 2, 4, 8 or 16), but not ${ch}`);
      return ch / d;
    };
    const numClasses = config.numClasses ?? 1000;
    this.transformInput = config.transformInput ?? false;
    this.dropout = config.dropout ?? 0.5;
    const c = basic(w);
    this.Conv2d_1a_3x3 = this.module('Conv2d_1a_3x3', new BasicConv2d(3, w(32), 3, { stride: 2 }));
    this.Conv2d_2a_3x3 = this.module('Conv2d_2a_3x3', c(32, 32, 3));
    this.Conv2d_2b_3x3 = this.module('Conv2d_2b_3x3', c(32, 64, 3, { padding: 1 }));
    this.Conv2d_3b_1x1 = this.module('Conv2d_3b_1x1', c(64, 80, 1));
    this.Conv2d_4a_3x3 = this.module('Conv2d_4a_3x3', c(80, 192, 3));
    this.Mixed_5b = this.module('Mixed_5b', new InceptionA(192, 32, w));
    this.Mixed_5c = this.module('Mixed_5c', new InceptionA(256, 64, w));
    this.Mixed_5d = this.module('Mixed_5d', new InceptionA(288, 64, w));
    this.Mixed_6a = this.module('Mixed_6a', new InceptionB(288, w));
    this.Mixed_6b = this.module('Mixed_6b', new InceptionC(768, 128, w));
    this.Mixed_6c = this.module('Mixed_6c', new InceptionC(768, 160, w));
    this.Mixed_6d = this.module('Mixed_6d', new InceptionC(768, 160, w));
    this.Mixed_6e = this.module('Mixed_6e', new InceptionC(768, 192, w));
    this.AuxLogits = config.auxLogits === false ? null : this.module('AuxLogits', new InceptionAux(768, numClasses, w));
    this.Mixed_7a = this.module('Mixed_7a', new InceptionD(768, w));
    this.Mixed_7b = this.module('Mixed_7b', new InceptionE(1280, w));
    this.Mixed_7c = this.module('Mixed_7c', new InceptionE(2048, w));
    this.fc = this.module('fc', new Linear(w(2048), numClasses));
  }

  /** torchvision's _transform_input: x * std / 0.5 + (mean - 0.5) / 0.5 per channel. */
  private transformed(x: Tensor): Tensor {
    if (!this.transformInput) return x;
    if (x.rank !== 4 || x.shape[1] !== 3) throw new RangeError(`Inception3: transformInput takes [N, 3, H, W] input, got [${x.shape.join(', ')}]`);
    const scale = A.tensor(Float32Array.from(IMAGENET_STD, (s) => s / 0.5), { shape: [1, 3, 1, 1] });
    const shift = A.tensor(Float32Array.from(IMAGENET_MEAN, (m) => (m - 0.5) / 0.5), { shape: [1, 3, 1, 1] });
    return A.add(A.mul(x, scale), shift);
  }

  /** Mixed_6e's output (where the auxiliary classifier branches off). */
  private toMixed6e(x: Tensor): Tensor {
    let y = this.transformed(x);
    for (const m of [this.Conv2d_1a_3x3, this.Conv2d_2a_3x3, this.Conv2d_2b_3x3]) y = m.forward(y);
    y = this.Conv2d_4a_3x3.forward(this.Conv2d_3b_1x1.forward(maxPool3s2(y)));
    y = maxPool3s2(y);
    for (const m of [this.Mixed_5b, this.Mixed_5c, this.Mixed_5d, this.Mixed_6a, this.Mixed_6b, this.Mixed_6c, this.Mixed_6d, this.Mixed_6e]) y = m.forward(y);
    return y;
  }

  private fromMixed6e(y: Tensor): Tensor {
    const z = this.Mixed_7c.forward(this.Mixed_7b.forward(this.Mixed_7a.forward(y)));
    return A.mean(z, [2, 3]);
  }

  /** The pooled features [N, 2048 / channelDivisor] (before the dropout and `fc`). */
  forwardFeatures(x: Tensor): Tensor {
    return this.fromMixed6e(this.toMixed6e(x));
  }

  forwardHead(features: Tensor): Tensor {
    return this.fc.forward(A.dropout(features, this.dropout, this.training));
  }

  /** The main logits (in training, `forwardWithAux` also gives the auxiliary ones). */
  forward(x: Tensor): Tensor {
    return this.forwardHead(this.forwardFeatures(x));
  }

  /** torchvision's forward: in training with AuxLogits, the main and the auxiliary logits. */
  forwardWithAux(x: Tensor): InceptionOutputs {
    const mid = this.toMixed6e(x);
    const auxLogits = this.training && this.AuxLogits ? this.AuxLogits.forward(mid) : null;
    return { logits: this.forwardHead(this.fromMixed6e(mid)), auxLogits };
  }

  /** A new `fc`, and a new AuxLogits.fc of the same classes (as torchvision's fine-tuning
   * tutorial replaces both). */
  override resetClassifier(numClasses: number): this {
    super.resetClassifier(numClasses);
    const aux = this.AuxLogits;
    if (aux) aux.swapChild('fc', new Linear(aux.fc.inFeatures, numClasses));
    return this;
  }

  /** Both classifiers: under a frozen backbone the auxiliary loss trains the new AuxLogits.fc
   * (torchvision's fine-tuning tutorial leaves both trainable), so later unfreezing is not
   * pulled toward a random auxiliary head. */
  override headPattern(): string {
    return this.AuxLogits ? 'fc.*,AuxLogits.fc.*' : super.headPattern();
  }

  blockOrder(): string[] {
    return [
      'Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3', 'Conv2d_3b_1x1', 'Conv2d_4a_3x3',
      'Mixed_5b', 'Mixed_5c', 'Mixed_5d', 'Mixed_6a', 'Mixed_6b', 'Mixed_6c', 'Mixed_6d', 'Mixed_6e',
      ...(this.AuxLogits ? ['AuxLogits'] : []), 'Mixed_7a', 'Mixed_7b', 'Mixed_7c', 'fc',
    ];
  }

  protected override onChildReplaced(name: string, m: Module): void {
    if (name !== 'fc' || !(m instanceof Linear)) super.onChildReplaced(name, m);
    this.fc = m as Linear;
  }
}
