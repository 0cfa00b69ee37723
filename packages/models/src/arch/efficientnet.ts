/**
 * EfficientNet-B0 to B4 with torchvision's attribute names:
 * `features.{stage}.{block}.block.{i}` (MBConv: expand 1x1, depthwise, SqueezeExcitation with
 * 1x1 convs `fc1`/`fc2`, project 1x1), SiLU, stochastic depth on the residual branch, and
 * `classifier.1` (the Linear after a Dropout). The variants scale B0's widths and depths by
 * torchvision's multipliers (`EFFICIENTNET_VARIANTS`).
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { ClassifierModel } from '../nn/classifier.js';
import { Dropout, Linear, Sequential, SiLU } from '../nn/layers.js';
import { Module, type StateValue } from '../nn/module.js';
import { remapTimmVisionEntries } from '../timm-vision-keys.js';
import { convNormActivation, globalAvgPool, makeDivisible, SqueezeExcitation } from './common.js';

export { SqueezeExcitation } from './common.js';

/**
 * torchvision's StochasticDepth: in training, zeroes the whole input with probability `p`
 * ('batch') or each sample's row independently ('row'), scaling survivors by 1/(1-p); the
 * identity in eval. The draws come from the global generator (`manualSeed`).
 */
export function stochasticDepth(x: Tensor, p: number, mode: 'row' | 'batch', training: boolean): Tensor {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`stochasticDepth: p must be in [0, 1], got ${p}`);
  if (mode !== 'row' && mode !== 'batch') throw new RangeError(`stochasticDepth: mode must be 'row' or 'batch', got ${JSON.stringify(mode)}`);
  if (!training || p === 0) return x;
  const survival = 1 - p;
  const shape = x.shape.map((d, i) => (mode === 'row' && i === 0 ? d : 1));
  const u = A.rand(shape);
  const noise = A.map([u, survival, survival > 0 ? 1 / survival : 0], ([r, s, k]) => `select(0.0, ${k}, ${r} < ${s})`, { label: 'stochasticDepth' });
  u.dispose();
  const y = A.mul(x, noise);
  noise.dispose();
  return y;
}

export class StochasticDepth extends Module {
  constructor(readonly p: number, readonly mode: 'row' | 'batch' = 'row') {
    super();
  }
  forward(x: Tensor): Tensor {
    return stochasticDepth(x, this.p, this.mode, this.training);
  }
}

/** One stage of MBConv blocks: [expand ratio, kernel, stride, input channels, output
 * channels, layers], the widths and depth before `widthMult` / `depthMult` (as MBConvConfig). */
export type MBConvStage = [number, number, number, number, number, number];

export const EFFICIENTNET_B0_STAGES: MBConvStage[] = [
  [1, 3, 1, 32, 16, 1],
  [6, 3, 2, 16, 24, 2],
  [6, 5, 2, 24, 40, 2],
  [6, 3, 2, 40, 80, 3],
  [6, 5, 1, 80, 112, 3],
  [6, 5, 2, 112, 192, 4],
  [6, 3, 1, 192, 320, 1],
];

export type EfficientNetVariant = 'b0' | 'b1' | 'b2' | 'b3' | 'b4';

/** torchvision's efficientnet_b0..b4: width and depth multipliers of B0's stages, the
 * classifier's dropout, and the input side their ImageNet weights were evaluated at. B5-B7
 * (BatchNorm eps 1e-3, TF-ported weights) are left out. */
export const EFFICIENTNET_VARIANTS: Record<EfficientNetVariant, { widthMult: number; depthMult: number; dropout: number; resolution: number }> = {
  b0: { widthMult: 1.0, depthMult: 1.0, dropout: 0.2, resolution: 224 },
  b1: { widthMult: 1.0, depthMult: 1.1, dropout: 0.2, resolution: 240 },
  b2: { widthMult: 1.1, depthMult: 1.2, dropout: 0.3, resolution: 288 },
  b3: { widthMult: 1.2, depthMult: 1.4, dropout: 0.3, resolution: 300 },
  b4: { widthMult: 1.4, depthMult: 1.8, dropout: 0.4, resolution: 380 },
};

/** EfficientNet-`variant` as torchvision builds it; `config` overrides (numClasses, dropout …). */
export function efficientnet(variant: EfficientNetVariant, config: Omit<EfficientNetConfig, 'widthMult' | 'depthMult' | 'stages'> = {}): EfficientNet {
  const v = EFFICIENTNET_VARIANTS[variant];
  if (!v) throw new RangeError(`efficientnet: variant must be one of ${Object.keys(EFFICIENTNET_VARIANTS).join(', ')}, got ${JSON.stringify(variant)}`);
  return new EfficientNet({ widthMult: v.widthMult, depthMult: v.depthMult, dropout: v.dropout, ...config });
}

export class MBConv extends Module {
  readonly block: Sequential;
  readonly stochasticDepth: StochasticDepth;
  readonly useResConnect: boolean;
  constructor(opts: { expandRatio: number; kernel: number; stride: number; inputChannels: number; outChannels: number; stochasticDepthProb: number; bnEps?: number }) {
    super();
    const { expandRatio, kernel, stride, inputChannels: inp, outChannels: oup, bnEps } = opts;
    if (stride !== 1 && stride !== 2) throw new RangeError(`MBConv: stride must be 1 or 2, got ${stride}`);
    this.useResConnect = stride === 1 && inp === oup;
    const expanded = makeDivisible(inp * expandRatio, 8);
    const layers: Module[] = [];
    if (expanded !== inp) layers.push(convNormActivation(inp, expanded, { kernelSize: 1, activation: SiLU, bnEps }));
    layers.push(
      convNormActivation(expanded, expanded, { kernelSize: kernel, stride, groups: expanded, activation: SiLU, bnEps }),
      new SqueezeExcitation(expanded, Math.max(1, Math.floor(inp / 4)), A.silu, A.sigmoid),
      convNormActivation(expanded, oup, { kernelSize: 1, activation: null, bnEps }),
    );
    this.block = this.module('block', new Sequential(...layers));
    this.stochasticDepth = this.module('stochastic_depth', new StochasticDepth(opts.stochasticDepthProb, 'row'));
  }
  forward(x: Tensor): Tensor {
    const y = this.block.forward(x);
    return this.useResConnect ? A.add(this.stochasticDepth.forward(y), x) : y;
  }
}

export interface EfficientNetConfig {
  numClasses?: number;
  /** MBConv stages before scaling (default: B0's). */
  stages?: MBConvStage[];
  widthMult?: number;
  depthMult?: number;
  dropout?: number;
  /** The largest drop probability, reached by the last block (torchvision: 0.2). */
  stochasticDepthProb?: number;
  /** Width of the last 1x1 conv (default 4x the last stage's). */
  lastChannel?: number;
  bnEps?: number;
  inChannels?: number;
}

export class EfficientNet extends ClassifierModel {
  readonly classifierPath = 'classifier.1';
  /** The key map that reads timm's checkpoints of this network. */
  readonly timmArch = 'efficientnet';
  readonly features: Sequential;
  readonly classifier: Sequential;

  constructor(readonly config: EfficientNetConfig = {}) {
    super();
    const width = config.widthMult ?? 1;
    const depth = config.depthMult ?? 1;
    const bnEps = config.bnEps ?? 1e-5;
    if (!(width > 0) || !(depth > 0)) throw new RangeError(`EfficientNet: widthMult and depthMult must be positive, got ${width} and ${depth}`);
    const stages = (config.stages ?? EFFICIENTNET_B0_STAGES).map(([t, k, s, i, o, n]) => ({
      expandRatio: t,
      kernel: k,
      stride: s,
      inputChannels: makeDivisible(i * width, 8),
      outChannels: makeDivisible(o * width, 8),
      numLayers: Math.ceil(n * depth),
    }));
    if (stages.length === 0) throw new RangeError('EfficientNet: stages must not be empty');
    const total = stages.reduce((a, s) => a + s.numLayers, 0);
    const sdProb = config.stochasticDepthProb ?? 0.2;
    const layers: Module[] = [convNormActivation(config.inChannels ?? 3, stages[0]!.inputChannels, { stride: 2, activation: SiLU, bnEps })];
    let id = 0;
    for (const s of stages) {
      const blocks: Module[] = [];
      for (let j = 0; j < s.numLayers; j++) {
        blocks.push(new MBConv({
          ...s,
          inputChannels: j === 0 ? s.inputChannels : s.outChannels,
          stride: j === 0 ? s.stride : 1,
          stochasticDepthProb: (sdProb * id++) / total,
          bnEps,
        }));
      }
      layers.push(new Sequential(...blocks));
    }
    const lastIn = stages[stages.length - 1]!.outChannels;
    const lastOut = config.lastChannel ?? 4 * lastIn;
    layers.push(convNormActivation(lastIn, lastOut, { kernelSize: 1, activation: SiLU, bnEps }));
    this.features = this.module('features', new Sequential(...layers));
    this.classifier = this.module('classifier', new Sequential(new Dropout(config.dropout ?? 0.2), new Linear(lastOut, config.numClasses ?? 1000)));
  }

  /** timm's checkpoints load too, renamed by its key map (see timm-vision-keys.ts). */
  protected override onLoadStateDict(entries: Map<string, StateValue>, prefix: string): void {
    remapTimmVisionEntries(this.timmArch, entries, prefix);
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
