/**
 * DenseNet-BC (121 by default) with torchvision's attribute names: `features.conv0`, `norm0`,
 * `denseblock{n}.denselayer{m}.{norm1,conv1,norm2,conv2}`, `transition{n}.{norm,conv}`,
 * `norm5`, and `classifier`.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { ClassifierModel } from '../nn/classifier.js';
import { AvgPool2d, BatchNorm2d, Conv2d, convBnAct, type Lambda, Linear, MaxPool2d, ReLU } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { globalAvgPool } from './common.js';

interface Layer extends Module {
  forward(x: Tensor): Tensor;
}

export class DenseLayer extends Module {
  readonly norm1: BatchNorm2d;
  readonly conv1: Conv2d;
  readonly norm2: BatchNorm2d;
  readonly conv2: Conv2d;
  constructor(numInputFeatures: number, growthRate: number, bnSize: number, readonly dropRate = 0) {
    super();
    this.norm1 = this.module('norm1', new BatchNorm2d(numInputFeatures));
    this.module('relu1', ReLU());
    this.conv1 = this.module('conv1', new Conv2d(numInputFeatures, bnSize * growthRate, 1, { bias: false }));
    this.norm2 = this.module('norm2', new BatchNorm2d(bnSize * growthRate));
    this.module('relu2', ReLU());
    this.conv2 = this.module('conv2', new Conv2d(bnSize * growthRate, growthRate, 3, { padding: 1, bias: false }));
  }
  /** The new `growthRate` channels from the concatenation of every earlier output. */
  forward(features: Tensor[]): Tensor {
    const x = features.length === 1 ? features[0]! : A.cat(features, 1);
    const y = this.conv2.forward(convBnAct(this.conv1, this.norm2, A.relu(this.norm1.forward(x)), 'relu'));
    return A.dropout(y, this.dropRate, this.training);
  }
}

export class DenseBlock extends Module {
  readonly layers: DenseLayer[] = [];
  constructor(numLayers: number, numInputFeatures: number, bnSize: number, growthRate: number, dropRate = 0) {
    super();
    for (let i = 0; i < numLayers; i++) {
      this.layers.push(this.module(`denselayer${i + 1}`, new DenseLayer(numInputFeatures + i * growthRate, growthRate, bnSize, dropRate)));
    }
  }
  forward(x: Tensor): Tensor {
    const features = [x];
    for (const layer of this.layers) features.push(layer.forward(features));
    return A.cat(features, 1);
  }
}

export class Transition extends Module {
  readonly norm: BatchNorm2d;
  readonly conv: Conv2d;
  readonly pool: AvgPool2d;
  constructor(numInputFeatures: number, numOutputFeatures: number) {
    super();
    this.norm = this.module('norm', new BatchNorm2d(numInputFeatures));
    this.module('relu', ReLU());
    this.conv = this.module('conv', new Conv2d(numInputFeatures, numOutputFeatures, 1, { bias: false }));
    this.pool = this.module('pool', new AvgPool2d({ kernelSize: 2, stride: 2 }));
  }
  forward(x: Tensor): Tensor {
    return this.pool.forward(this.conv.forward(A.relu(this.norm.forward(x))));
  }
}

/** torchvision's `features`: an nn.Sequential with named children, run in order. */
export class DenseNetFeatures extends Module {
  private readonly order: Layer[] = [];
  add<M extends Layer | Lambda>(name: string, m: M): M {
    this.module(name, m);
    this.order.push(m);
    return m;
  }
  forward(x: Tensor): Tensor {
    let y = x;
    for (const m of this.order) y = m.forward(y);
    return y;
  }
}

export interface DenseNetConfig {
  numClasses?: number;
  growthRate?: number;
  /** Layers per dense block (DenseNet-121: 6, 12, 24, 16). */
  blockConfig?: number[];
  numInitFeatures?: number;
  bnSize?: number;
  dropRate?: number;
  inChannels?: number;
}

export class DenseNet extends ClassifierModel {
  readonly classifierPath = 'classifier';
  readonly features: DenseNetFeatures;
  classifier: Linear;
  private readonly blocks: string[] = [];

  constructor(readonly config: DenseNetConfig = {}) {
    super();
    const growth = config.growthRate ?? 32;
    const blockConfig = config.blockConfig ?? [6, 12, 24, 16];
    const bnSize = config.bnSize ?? 4;
    let n = config.numInitFeatures ?? 64;
    if (blockConfig.length === 0 || blockConfig.some((b) => !Number.isInteger(b) || b < 1)) {
      throw new RangeError(`DenseNet: blockConfig must be a non-empty list of positive integers, got [${blockConfig.join(', ')}]`);
    }
    const f = (this.features = this.module('features', new DenseNetFeatures()));
    f.add('conv0', new Conv2d(config.inChannels ?? 3, n, 7, { stride: 2, padding: 3, bias: false }));
    f.add('norm0', new BatchNorm2d(n));
    f.add('relu0', ReLU());
    f.add('pool0', new MaxPool2d({ kernelSize: 3, stride: 2, padding: 1 }));
    this.blocks.push('features.conv0,features.norm0');
    blockConfig.forEach((layers, i) => {
      f.add(`denseblock${i + 1}`, new DenseBlock(layers, n, bnSize, growth, config.dropRate ?? 0));
      this.blocks.push(`features.denseblock${i + 1}`);
      n += layers * growth;
      if (i !== blockConfig.length - 1) {
        f.add(`transition${i + 1}`, new Transition(n, Math.floor(n / 2)));
        this.blocks.push(`features.transition${i + 1}`);
        n = Math.floor(n / 2);
      }
    });
    f.add('norm5', new BatchNorm2d(n));
    this.blocks.push('features.norm5', 'classifier');
    this.classifier = this.module('classifier', new Linear(n, config.numClasses ?? 1000));
  }

  forwardFeatures(x: Tensor): Tensor {
    return globalAvgPool(A.relu(this.features.forward(x)));
  }

  forwardHead(features: Tensor): Tensor {
    return this.classifier.forward(features);
  }

  forward(x: Tensor): Tensor {
    return this.forwardHead(this.forwardFeatures(x));
  }

  blockOrder(): string[] {
    return [...this.blocks];
  }

  protected override onChildReplaced(name: string, m: Module): void {
    if (name !== 'classifier' || !(m instanceof Linear)) super.onChildReplaced(name, m);
    this.classifier = m as Linear;
  }
}

const LEGACY_DENSE_KEY = /^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$/;

/**
 * Renames the keys of DenseNet checkpoints saved before torchvision 0.3
 * (`denselayer1.norm.1.weight` -> `denselayer1.norm1.weight`), as torchvision does on load.
 */
export function remapLegacyDenseNetKeys<V>(dict: Map<string, V>): Map<string, V> {
  const out = new Map<string, V>();
  for (const [k, v] of dict) {
    const m = LEGACY_DENSE_KEY.exec(k);
    out.set(m ? `${m[1]}${m[2]}` : k, v);
  }
  return out;
}
