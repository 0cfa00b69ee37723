/**
 * MobileNetV3 Large and Small with torchvision's attribute names: `features.0` (the stem),
 * `features.{i}.block.{j}` (InvertedResidual: expand 1x1 where the width changes, depthwise,
 * SqueezeExcitation with a hard-sigmoid gate, project 1x1), the last 1x1 conv, and
 * `classifier.{0,3}` (Linear, Hardswish, Dropout, Linear). BatchNorm has eps 1e-3 and momentum
 * 0.01, as torchvision's.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { ClassifierModel } from '../nn/classifier.js';
import { Dropout, Hardswish, type Lambda, Linear, ReLU, Sequential } from '../nn/layers.js';
import { Module, type StateValue } from '../nn/module.js';
import { remapTimmVisionEntries } from '../timm-vision-keys.js';
import { convNormActivation, globalAvgPool, makeDivisible, SqueezeExcitation } from './common.js';

/** One block, as torchvision's InvertedResidualConfig before `widthMult`: input channels,
 * kernel, expanded channels, output channels, squeeze-excitation, activation ('RE': ReLU,
 * 'HS': hard-swish), stride. */
export type MobileNetV3Block = [number, number, number, number, boolean, 'RE' | 'HS', number];

export type MobileNetV3Arch = 'large' | 'small';

export const MOBILENET_V3_SETTINGS: Record<MobileNetV3Arch, { blocks: MobileNetV3Block[]; lastChannel: number }> = {
  large: {
    blocks: [
      [16, 3, 16, 16, false, 'RE', 1],
      [16, 3, 64, 24, false, 'RE', 2],
      [24, 3, 72, 24, false, 'RE', 1],
      [24, 5, 72, 40, true, 'RE', 2],
      [40, 5, 120, 40, true, 'RE', 1],
      [40, 5, 120, 40, true, 'RE', 1],
      [40, 3, 240, 80, false, 'HS', 2],
      [80, 3, 200, 80, false, 'HS', 1],
      [80, 3, 184, 80, false, 'HS', 1],
      [80, 3, 184, 80, false, 'HS', 1],
      [80, 3, 480, 112, true, 'HS', 1],
      [112, 3, 672, 112, true, 'HS', 1],
      [112, 5, 672, 160, true, 'HS', 2],
      [160, 5, 960, 160, true, 'HS', 1],
      [160, 5, 960, 160, true, 'HS', 1],
    ],
    lastChannel: 1280,
  },
  small: {
    blocks: [
      [16, 3, 16, 16, true, 'RE', 2],
      [16, 3, 72, 24, false, 'RE', 2],
      [24, 3, 88, 24, false, 'RE', 1],
      [24, 5, 96, 40, true, 'HS', 2],
      [40, 5, 240, 40, true, 'HS', 1],
      [40, 5, 240, 40, true, 'HS', 1],
      [40, 5, 120, 48, true, 'HS', 1],
      [48, 5, 144, 48, true, 'HS', 1],
      [48, 5, 288, 96, true, 'HS', 2],
      [96, 5, 576, 96, true, 'HS', 1],
      [96, 5, 576, 96, true, 'HS', 1],
    ],
    lastChannel: 1024,
  },
};

const BN = { bnEps: 1e-3, bnMomentum: 0.01 };

export class MobileNetV3InvertedResidual extends Module {
  readonly block: Sequential;
  readonly useResConnect: boolean;
  constructor(inp: number, kernel: number, expanded: number, oup: number, useSe: boolean, activation: 'RE' | 'HS', stride: number) {
    super();
    if (stride !== 1 && stride !== 2) throw new RangeError(`MobileNetV3 block: stride must be 1 or 2, got ${stride}`);
    if (activation !== 'RE' && activation !== 'HS') throw new RangeError(`MobileNetV3 block: activation must be 'RE' or 'HS', got ${JSON.stringify(activation)}`);
    this.useResConnect = stride === 1 && inp === oup;
    const act = activation === 'HS' ? Hardswish : ReLU;
    const layers: Module[] = [];
    if (expanded !== inp) layers.push(convNormActivation(inp, expanded, { kernelSize: 1, activation: act, ...BN }));
    layers.push(convNormActivation(expanded, expanded, { kernelSize: kernel, stride, groups: expanded, activation: act, ...BN }));
    // torchvision floors before rounding to a multiple of 8 (timm rounds expanded/4: equal for its widths).
    if (useSe) layers.push(new SqueezeExcitation(expanded, makeDivisible(Math.floor(expanded / 4), 8), A.relu, A.hardsigmoid));
    layers.push(convNormActivation(expanded, oup, { kernelSize: 1, activation: null, ...BN }));
    this.block = this.module('block', new Sequential(...layers));
  }
  forward(x: Tensor): Tensor {
    const y = this.block.forward(x);
    return this.useResConnect ? A.add(y, x) : y;
  }
}

export interface MobileNetV3Config {
  /** Which network (default 'large'); `blocks` and `lastChannel` replace its parts. */
  arch?: MobileNetV3Arch;
  blocks?: MobileNetV3Block[];
  numClasses?: number;
  /** Scales every width of `blocks` and the classifier's hidden width (torchvision's width_mult). */
  widthMult?: number;
  /** Hidden width of the classifier before `widthMult` (Large 1280, Small 1024). */
  lastChannel?: number;
  dropout?: number;
  inChannels?: number;
}

export class MobileNetV3 extends ClassifierModel {
  readonly classifierPath = 'classifier.3';
  /** The key map that reads timm's checkpoints of this network. */
  readonly timmArch = 'mobilenetv3';
  readonly features: Sequential;
  readonly classifier: Sequential;
  private readonly preLogits: Linear;
  private readonly preLogitsActivation: Lambda;
  private readonly dropout: Dropout;

  constructor(readonly config: MobileNetV3Config = {}) {
    super();
    const arch = config.arch ?? 'large';
    const preset = MOBILENET_V3_SETTINGS[arch];
    if (!preset) throw new RangeError(`MobileNetV3: arch must be 'large' or 'small', got ${JSON.stringify(arch)}`);
    const width = config.widthMult ?? 1;
    if (!(width > 0)) throw new RangeError(`MobileNetV3: widthMult must be positive, got ${width}`);
    const blocks = config.blocks ?? preset.blocks;
    if (blocks.length === 0 || blocks.some((b) => b.length !== 7)) {
      throw new RangeError('MobileNetV3: blocks must be a non-empty list of [input, kernel, expanded, output, useSe, activation, stride]');
    }
    const adjust = (c: number): number => makeDivisible(c * width, 8);
    const layers: Module[] = [convNormActivation(config.inChannels ?? 3, adjust(blocks[0]![0]), { stride: 2, activation: Hardswish, ...BN })];
    for (const [inp, k, exp, out, se, act, s] of blocks) layers.push(new MobileNetV3InvertedResidual(adjust(inp), k, adjust(exp), adjust(out), se, act, s));
    const lastIn = adjust(blocks[blocks.length - 1]![3]);
    const lastOut = 6 * lastIn;
    layers.push(convNormActivation(lastIn, lastOut, { kernelSize: 1, activation: Hardswish, ...BN }));
    const hidden = adjust(config.lastChannel ?? preset.lastChannel);
    this.features = this.module('features', new Sequential(...layers));
    this.preLogits = new Linear(lastOut, hidden);
    this.preLogitsActivation = Hardswish();
    this.dropout = new Dropout(config.dropout ?? 0.2);
    this.classifier = this.module('classifier', new Sequential(this.preLogits, this.preLogitsActivation, this.dropout, new Linear(hidden, config.numClasses ?? 1000)));
  }

  /** timm's checkpoints load too, renamed by its key map (see timm-vision-keys.ts). */
  protected override onLoadStateDict(entries: Map<string, StateValue>, prefix: string): void {
    remapTimmVisionEntries(this.timmArch, entries, prefix);
  }

  /** The head's input, [N, hidden]: the pooled last conv through the classifier's first
   * Linear and hard-swish (timm's pre-logits: its `conv_head` and `act2`). */
  forwardFeatures(x: Tensor): Tensor {
    const pooled = globalAvgPool(this.features.forward(x));
    return this.preLogitsActivation.forward(this.preLogits.forward(pooled));
  }

  forwardHead(features: Tensor): Tensor {
    return this.head().forward(this.dropout.forward(features));
  }

  forward(x: Tensor): Tensor {
    return this.forwardHead(this.forwardFeatures(x));
  }

  blockOrder(): string[] {
    return [...this.features.layers.map((_, i) => `features.${i}`), 'classifier.0', 'classifier.3'];
  }
}
