/**
 * ConvNeXt (Tiny by default) with torchvision's attribute names: `features.0` the patchify stem
 * (4x4 stride-4 conv `.0`, LayerNorm2d `.1`), then stages of CNBlocks
 * (`features.{i}.{j}.block.{0,2,3,5}`: depthwise 7x7, LayerNorm over channels, Linear 4x, GELU,
 * Linear back; `layer_scale`; row-mode stochastic depth) alternating with downsample layers
 * (LayerNorm2d `.0`, 2x2 stride-2 conv `.1`), and `classifier.{0,2}` (LayerNorm2d, Linear).
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { ClassifierModel } from '../nn/classifier.js';
import { Conv2d, GELU, Identity, LayerNorm, Linear, Sequential } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { StochasticDepth } from './efficientnet.js';

/** torchvision's LayerNorm2d: a LayerNorm over the channels of an NCHW tensor (eps 1e-6). */
export class LayerNorm2d extends LayerNorm {
  constructor(channels: number, eps = 1e-6) {
    super(channels, { eps });
  }
  override forward(x: Tensor): Tensor {
    if (x.rank !== 4) throw new RangeError(`LayerNorm2d: expected an NCHW tensor, got shape [${x.shape.join(', ')}]`);
    return super.forward(x.permute([0, 2, 3, 1])).permute([0, 3, 1, 2]);
  }
}

/** A layer that permutes its input's dimensions (torchvision's ops.misc.Permute), so the
 * Sequential's indices, and so the parameter names, are torchvision's. */
class Permute extends Module {
  constructor(readonly dims: number[]) {
    super();
  }
  forward(x: Tensor): Tensor {
    return x.permute(this.dims);
  }
}

export class CNBlock extends Module {
  readonly block: Sequential;
  readonly layerScale: Tensor;
  readonly stochasticDepth: StochasticDepth;
  constructor(dim: number, layerScale: number, stochasticDepthProb: number) {
    super();
    this.block = this.module('block', new Sequential(
      new Conv2d(dim, dim, 7, { padding: 3, groups: dim }),
      new Permute([0, 2, 3, 1]),
      new LayerNorm(dim, { eps: 1e-6 }),
      new Linear(dim, 4 * dim),
      GELU(),
      new Linear(4 * dim, dim),
      new Permute([0, 3, 1, 2]),
    ));
    this.layerScale = this.param('layer_scale', A.full([dim, 1, 1], layerScale));
    this.stochasticDepth = this.module('stochastic_depth', new StochasticDepth(stochasticDepthProb, 'row'));
  }
  forward(x: Tensor): Tensor {
    return A.add(this.stochasticDepth.forward(A.mul(this.layerScale, this.block.forward(x))), x);
  }
}

/** One stage: its width, the width the downsample after it leads to (null: the last stage),
 * and its number of blocks (as CNBlockConfig). */
export type CNBlockStage = [inputChannels: number, outChannels: number | null, numLayers: number];

export const CONVNEXT_TINY_STAGES: CNBlockStage[] = [
  [96, 192, 3],
  [192, 384, 3],
  [384, 768, 9],
  [768, null, 3],
];

export interface ConvNeXtConfig {
  numClasses?: number;
  /** Stages (default: Tiny's). */
  stages?: CNBlockStage[];
  /** The largest drop probability, reached by the last block (torchvision's Tiny: 0.1). */
  stochasticDepthProb?: number;
  /** Initial value of every layer scale (torchvision: 1e-6). */
  layerScale?: number;
  inChannels?: number;
}

export class ConvNeXt extends ClassifierModel {
  readonly classifierPath = 'classifier.2';
  readonly features: Sequential;
  readonly classifier: Sequential;
  private readonly headNorm: LayerNorm2d;

  constructor(readonly config: ConvNeXtConfig = {}) {
    super();
    const stages = config.stages ?? CONVNEXT_TINY_STAGES;
    if (stages.length === 0) throw new RangeError('ConvNeXt: stages must not be empty');
    const total = stages.reduce((a, s) => a + s[2], 0);
    const sdProb = config.stochasticDepthProb ?? 0.1;
    const layerScale = config.layerScale ?? 1e-6;
    const width0 = stages[0]![0];
    const layers: Module[] = [new Sequential(new Conv2d(config.inChannels ?? 3, width0, 4, { stride: 4 }), new LayerNorm2d(width0))];
    let id = 0;
    for (const [dim, out, n] of stages) {
      const blocks: Module[] = [];
      // torchvision divides by (blocks - 1), so the last block gets the full probability.
      for (let j = 0; j < n; j++) blocks.push(new CNBlock(dim, layerScale, total > 1 ? (sdProb * id++) / (total - 1) : 0));
      layers.push(new Sequential(...blocks));
      if (out !== null) layers.push(new Sequential(new LayerNorm2d(dim), new Conv2d(dim, out, 2, { stride: 2 })));
    }
    const last = stages[stages.length - 1]!;
    const lastWidth = last[1] ?? last[0];
    this.features = this.module('features', new Sequential(...layers));
    // classifier.1 is torchvision's Flatten, done by forwardFeatures; the index keeps the names.
    this.headNorm = new LayerNorm2d(lastWidth);
    this.classifier = this.module('classifier', new Sequential(this.headNorm, Identity(), new Linear(lastWidth, config.numClasses ?? 1000)));
  }

  forwardFeatures(x: Tensor): Tensor {
    const pooled = A.mean(this.features.forward(x), [2, 3], { keepdim: true });
    return this.headNorm.forward(pooled).flatten(1);
  }

  forwardHead(features: Tensor): Tensor {
    return this.head().forward(features);
  }

  forward(x: Tensor): Tensor {
    return this.forwardHead(this.forwardFeatures(x));
  }

  blockOrder(): string[] {
    return [...this.features.layers.map((_, i) => `features.${i}`), 'classifier.0', 'classifier.2'];
  }
}
