/**
 * MobileNetV2 with torchvision's attribute names: `features.{i}` (the stem, one
 * InvertedResidual per block with its `conv` Sequential, the last 1x1 conv), ReLU6, and
 * `classifier.1` (the Linear after a Dropout).
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { ClassifierModel } from '../nn/classifier.js';
import { BatchNorm2d, Conv2d, Dropout, Linear, ReLU6, Sequential } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { convNormActivation, globalAvgPool, makeDivisible } from './common.js';

/** [expand ratio t, output channels c, repeats n, first stride s] per stage. */
export type InvertedResidualSetting = [number, number, number, number][];

export const MOBILENET_V2_SETTING: InvertedResidualSetting = [
  [1, 16, 1, 1],
  [6, 24, 2, 2],
  [6, 32, 3, 2],
  [6, 64, 4, 2],
  [6, 96, 3, 1],
  [6, 160, 3, 2],
  [6, 320, 1, 1],
];

export class InvertedResidual extends Module {
  readonly conv: Sequential;
  readonly useResConnect: boolean;
  constructor(inp: number, oup: number, stride: number, expandRatio: number) {
    super();
    if (stride !== 1 && stride !== 2) throw new RangeError(`InvertedResidual: stride must be 1 or 2, got ${stride}`);
    const hidden = Math.round(inp * expandRatio);
    this.useResConnect = stride === 1 && inp === oup;
    const layers: Module[] = [];
    if (expandRatio !== 1) layers.push(convNormActivation(inp, hidden, { kernelSize: 1, activation: ReLU6 }));
    layers.push(
      convNormActivation(hidden, hidden, { stride, groups: hidden, activation: ReLU6 }),
      new Conv2d(hidden, oup, 1, { bias: false }),
      new BatchNorm2d(oup),
    );
    this.conv = this.module('conv', new Sequential(...layers));
  }
  forward(x: Tensor): Tensor {
    const y = this.conv.forward(x);
    return this.useResConnect ? A.add(x, y) : y;
  }
}

export interface MobileNetV2Config {
  numClasses?: number;
  /** Scales every width (torchvision's width_mult, 1.0 for mobilenet_v2). */
  widthMult?: number;
  invertedResidualSetting?: InvertedResidualSetting;
  roundNearest?: number;
  dropout?: number;
  inChannels?: number;
}

export class MobileNetV2 extends ClassifierModel {
  readonly classifierPath = 'classifier.1';
  readonly features: Sequential;
  readonly classifier: Sequential;
  readonly lastChannel: number;

  constructor(readonly config: MobileNetV2Config = {}) {
    super();
    const width = config.widthMult ?? 1;
    const round = config.roundNearest ?? 8;
    const setting = config.invertedResidualSetting ?? MOBILENET_V2_SETTING;
    if (setting.length === 0 || setting.some((s) => s.length !== 4)) {
      throw new RangeError('MobileNetV2: invertedResidualSetting must be a non-empty list of [t, c, n, s]');
    }
    let input = makeDivisible(32 * width, round);
    this.lastChannel = makeDivisible(1280 * Math.max(1, width), round);
    const layers: Module[] = [convNormActivation(config.inChannels ?? 3, input, { stride: 2, activation: ReLU6 })];
    for (const [t, c, n, s] of setting) {
      const output = makeDivisible(c * width, round);
      for (let i = 0; i < n; i++) {
        layers.push(new InvertedResidual(input, output, i === 0 ? s : 1, t));
        input = output;
      }
    }
    layers.push(convNormActivation(input, this.lastChannel, { kernelSize: 1, activation: ReLU6 }));
    this.features = this.module('features', new Sequential(...layers));
    this.classifier = this.module('classifier', new Sequential(new Dropout(config.dropout ?? 0.2), new Linear(this.lastChannel, config.numClasses ?? 1000)));
  }

  forwardFeatures(x: Tensor): Tensor {
    return globalAvgPool(this.features.forward(x));
  }

  forwardHead(features: Tensor): Tensor {
    return this.classifier.forward(features);
  }

  forward(x: Tensor): Tensor {
    return this.forwardHead(this.forwardFeatures(x));
  }

  blockOrder(): string[] {
    return [...this.features.layers.map((_, i) => `features.${i}`), 'classifier'];
  }
}
