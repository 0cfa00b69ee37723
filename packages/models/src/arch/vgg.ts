/**
 * VGG (16 by default, with or without BatchNorm) with torchvision's attribute names:
 * `features.{i}` (conv 3x3, [BatchNorm,] ReLU, and 2x2 max pools, numbered as
 * torchvision's make_layers), `avgpool` (adaptive, 7x7), `classifier.{0,3,6}`.
 */
import type { Tensor } from '@tl/autograd';
import { ClassifierModel } from '../nn/classifier.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, type Lambda, Linear, MaxPool2d, ReLU, Sequential } from '../nn/layers.js';
import type { Module } from '../nn/module.js';

/** Conv widths, with 'M' for a 2x2 max pool (torchvision's cfgs). */
export type VGGLayout = (number | 'M')[];

export const VGG_LAYOUTS = {
  vgg11: [64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'],
  vgg13: [64, 64, 'M', 128, 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'],
  vgg16: [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512, 'M'],
  vgg19: [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M', 512, 512, 512, 512, 'M'],
} satisfies Record<string, VGGLayout>;

export interface VGGConfig {
  numClasses?: number;
  /** Default: VGG-16's. */
  cfg?: VGGLayout;
  batchNorm?: boolean;
  /** Width of the two hidden Linear layers (torchvision: 4096). */
  hidden?: number;
  dropout?: number;
  inChannels?: number;
}

export class VGG extends ClassifierModel {
  readonly classifierPath = 'classifier.6';
  readonly features: Sequential;
  readonly avgpool: AdaptiveAvgPool2d;
  readonly classifier: Sequential;
  /** The parameterised `features` indices of each stage (the convs and norms before a pool). */
  private readonly stages: number[][];
  /** classifier.0-5 (the head, classifier.6, is replaceable). */
  private readonly preLogits: (Linear | Lambda | Dropout)[];

  constructor(readonly config: VGGConfig = {}) {
    super();
    const cfg = config.cfg ?? VGG_LAYOUTS.vgg16;
    const bn = config.batchNorm ?? false;
    const layers: Module[] = [];
    this.stages = [[]];
    let inC = config.inChannels ?? 3;
    for (const v of cfg) {
      if (v === 'M') {
        layers.push(new MaxPool2d({ kernelSize: 2, stride: 2 }));
        this.stages.push([]);
        continue;
      }
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`VGG: layer widths must be positive integers or 'M', got ${JSON.stringify(v)}`);
      this.stages[this.stages.length - 1]!.push(layers.length);
      layers.push(new Conv2d(inC, v, 3, { padding: 1 }));
      if (bn) {
        this.stages[this.stages.length - 1]!.push(layers.length);
        layers.push(new BatchNorm2d(v));
      }
      layers.push(ReLU());
      inC = v;
    }
    this.stages = this.stages.filter((s) => s.length > 0);
    const hidden = config.hidden ?? 4096;
    const p = config.dropout ?? 0.5;
    this.features = this.module('features', new Sequential(...layers));
    this.avgpool = this.module('avgpool', new AdaptiveAvgPool2d(7));
    this.preLogits = [new Linear(inC * 7 * 7, hidden), ReLU(), new Dropout(p), new Linear(hidden, hidden), ReLU(), new Dropout(p)];
    this.classifier = this.module('classifier', new Sequential(...this.preLogits, new Linear(hidden, config.numClasses ?? 1000)));
  }

  /**
   * The head's input, [N, hidden]: the 7x7 pooled map through the classifier's first two
   * Linear + ReLU + Dropout layers (timm's "pre-logits"), so features match `numFeatures`.
   */
  forwardFeatures(x: Tensor): Tensor {
    let y = this.avgpool.forward(this.features.forward(x)).flatten(1);
    for (const layer of this.preLogits) y = layer.forward(y);
    return y;
  }

  forwardHead(features: Tensor): Tensor {
    return this.head().forward(features);
  }

  forward(x: Tensor): Tensor {
    return this.forwardHead(this.forwardFeatures(x));
  }

  /** One entry per conv stage, then each classifier Linear. */
  blockOrder(): string[] {
    return [...this.stages.map((s) => s.map((i) => `features.${i}`).join(',')), 'classifier.0', 'classifier.3', 'classifier.6'];
  }
}
