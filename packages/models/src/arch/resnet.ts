/** ResNet-18/34/50 with torchvision's (and timm's) attribute names: conv1, bn1, layer1-4, fc. */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { ClassifierModel } from '../nn/classifier.js';
import { runBlocks, supportsGradientCheckpointing } from '../nn/checkpointing.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, convBnAct, Linear, MaxPool2d, Sequential } from '../nn/layers.js';
import { Module } from '../nn/module.js';

interface Block extends Module {
  forward(x: Tensor): Tensor;
}

export class BasicBlock extends Module implements Block {
  static readonly expansion = 1;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly downsample: Sequential | null;
  constructor(inplanes: number, planes: number, stride = 1, downsample: Sequential | null = null) {
    super();
    this.conv1 = this.module('conv1', new Conv2d(inplanes, planes, 3, { stride, padding: 1, bias: false }));
    this.bn1 = this.module('bn1', new BatchNorm2d(planes));
    this.conv2 = this.module('conv2', new Conv2d(planes, planes, 3, { padding: 1, bias: false }));
    this.bn2 = this.module('bn2', new BatchNorm2d(planes));
    this.downsample = downsample ? this.module('downsample', downsample) : null;
  }
  forward(x: Tensor): Tensor {
    const out = convBnAct(this.conv2, this.bn2, convBnAct(this.conv1, this.bn1, x, 'relu'));
    const identity = this.downsample ? this.downsample.forward(x) : x;
    return A.relu(A.add(out, identity));
  }
}

export class Bottleneck extends Module implements Block {
  static readonly expansion = 4;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly downsample: Sequential | null;
  constructor(inplanes: number, planes: number, stride = 1, downsample: Sequential | null = null) {
    super();
    this.conv1 = this.module('conv1', new Conv2d(inplanes, planes, 1, { bias: false }));
    this.bn1 = this.module('bn1', new BatchNorm2d(planes));
    // torchvision's "ResNet v1.5": the stride sits on the 3x3 conv.
    this.conv2 = this.module('conv2', new Conv2d(planes, planes, 3, { stride, padding: 1, bias: false }));
    this.bn2 = this.module('bn2', new BatchNorm2d(planes));
    this.conv3 = this.module('conv3', new Conv2d(planes, planes * 4, 1, { bias: false }));
    this.bn3 = this.module('bn3', new BatchNorm2d(planes * 4));
    this.downsample = downsample ? this.module('downsample', downsample) : null;
  }
  forward(x: Tensor): Tensor {
    let out = convBnAct(this.conv1, this.bn1, x, 'relu');
    out = convBnAct(this.conv2, this.bn2, out, 'relu');
    out = convBnAct(this.conv3, this.bn3, out);
    const identity = this.downsample ? this.downsample.forward(x) : x;
    return A.relu(A.add(out, identity));
  }
}

export interface ResNetConfig {
  block: 'basic' | 'bottleneck';
  layers: [number, number, number, number];
  numClasses?: number;
  /** Stage widths (torchvision: 64, 128, 256, 512); smaller for tests. */
  widths?: [number, number, number, number];
  inChannels?: number;
}

export class ResNet extends ClassifierModel {
  readonly classifierPath = 'fc';
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly maxpool: MaxPool2d;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  readonly layer4: Sequential;
  readonly avgpool: AdaptiveAvgPool2d;
  fc: Linear;
  readonly config: ResNetConfig;

  constructor(config: ResNetConfig) {
    super();
    this.config = config;
    const widths = config.widths ?? [64, 128, 256, 512];
    const Block = config.block === 'basic' ? BasicBlock : Bottleneck;
    const expansion = Block.expansion;
    let inplanes = widths[0];
    this.conv1 = this.module('conv1', new Conv2d(config.inChannels ?? 3, inplanes, 7, { stride: 2, padding: 3, bias: false }));
    this.bn1 = this.module('bn1', new BatchNorm2d(inplanes));
    this.maxpool = this.module('maxpool', new MaxPool2d({ kernelSize: 3, stride: 2, padding: 1 }));
    const stage = (planes: number, blocks: number, stride: number): Sequential => {
      let down: Sequential | null = null;
      if (stride !== 1 || inplanes !== planes * expansion) {
        down = new Sequential(new Conv2d(inplanes, planes * expansion, 1, { stride, bias: false }), new BatchNorm2d(planes * expansion));
      }
      const list: Module[] = [new Block(inplanes, planes, stride, down)];
      inplanes = planes * expansion;
      for (let i = 1; i < blocks; i++) list.push(new Block(inplanes, planes));
      return new Sequential(...list);
    };
    this.layer1 = this.module('layer1', stage(widths[0], config.layers[0], 1));
    this.layer2 = this.module('layer2', stage(widths[1], config.layers[1], 2));
    this.layer3 = this.module('layer3', stage(widths[2], config.layers[2], 2));
    this.layer4 = this.module('layer4', stage(widths[3], config.layers[3], 2));
    this.avgpool = this.module('avgpool', new AdaptiveAvgPool2d(1));
    this.fc = this.module('fc', new Linear(inplanes, config.numClasses ?? 1000));
    supportsGradientCheckpointing(this);
  }

  /** Everything up to the pooled features [N, numFeatures]. */
  forwardFeatures(x: Tensor): Tensor {
    let y = this.maxpool.forward(convBnAct(this.conv1, this.bn1, x, 'relu'));
    const blocks = [this.layer1, this.layer2, this.layer3, this.layer4].flatMap((stage) => stage.layers as Block[]);
    y = runBlocks(this, blocks, y, (b, h) => b.forward(h));
    return this.avgpool.forward(y).flatten(1);
  }

  forwardHead(features: Tensor): Tensor {
    return this.fc.forward(features);
  }

  forward(x: Tensor): Tensor {
    return this.forwardHead(this.forwardFeatures(x));
  }

  /** Blocks from input to output, for layer-wise learning-rate decay and gradual unfreezing. */
  blockOrder(): string[] {
    return ['conv1', 'bn1', 'layer1', 'layer2', 'layer3', 'layer4', 'fc'];
  }

  protected override onChildReplaced(name: string, m: Module): void {
    if (name !== 'fc' || !(m instanceof Linear)) super.onChildReplaced(name, m);
    this.fc = m as Linear;
  }
}
