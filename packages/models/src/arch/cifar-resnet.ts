/**
 * The CIFAR-10 ResNets of He et al. 2016 (20/32/44/56 layers): three stages of BasicBlocks,
 * widths 16/32/64, and "option A" shortcuts (stride-2 subsampling zero-padded with planes/4
 * channels each side, no parameters), with the key names of akamaster/pytorch_resnet_cifar10.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { ClassifierModel } from '../nn/classifier.js';
import { runBlocks, supportsGradientCheckpointing } from '../nn/checkpointing.js';
import { BatchNorm2d, Conv2d, convBnAct, Linear, Sequential } from '../nn/layers.js';
import { Module } from '../nn/module.js';

export class CifarBasicBlock extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  private readonly padChannels: number;
  private readonly subsample: boolean;
  constructor(inPlanes: number, planes: number, stride = 1) {
    super();
    this.conv1 = this.module('conv1', new Conv2d(inPlanes, planes, 3, { stride, padding: 1, bias: false }));
    this.bn1 = this.module('bn1', new BatchNorm2d(planes));
    this.conv2 = this.module('conv2', new Conv2d(planes, planes, 3, { padding: 1, bias: false }));
    this.bn2 = this.module('bn2', new BatchNorm2d(planes));
    this.subsample = stride !== 1 || inPlanes !== planes;
    this.padChannels = (planes - inPlanes) / 2;
  }
  private shortcut(x: Tensor): Tensor {
    if (!this.subsample) return x;
    const sub = x.slice(2, 0, undefined, 2).slice(3, 0, undefined, 2);
    return A.pad(sub, [0, 0, 0, 0, this.padChannels, this.padChannels]);
  }
  forward(x: Tensor): Tensor {
    const out = convBnAct(this.conv2, this.bn2, convBnAct(this.conv1, this.bn1, x, 'relu'));
    return A.relu(A.add(out, this.shortcut(x)));
  }
}

export interface CifarResNetConfig {
  depth: 20 | 32 | 44 | 56 | 110 | number;
  numClasses?: number;
  widths?: [number, number, number];
  inChannels?: number;
}

export class CifarResNet extends ClassifierModel {
  readonly classifierPath = 'linear';
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  linear: Linear;

  constructor(readonly config: CifarResNetConfig) {
    super();
    if ((config.depth - 2) % 6 !== 0 || config.depth < 8) throw new RangeError(`CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got ${config.depth}`);
    const n = (config.depth - 2) / 6;
    const widths = config.widths ?? [16, 32, 64];
    let inPlanes = widths[0];
    this.conv1 = this.module('conv1', new Conv2d(config.inChannels ?? 3, inPlanes, 3, { padding: 1, bias: false }));
    this.bn1 = this.module('bn1', new BatchNorm2d(inPlanes));
    const stage = (planes: number, stride: number): Sequential => {
      const blocks: Module[] = [];
      for (let i = 0; i < n; i++) {
        blocks.push(new CifarBasicBlock(inPlanes, planes, i === 0 ? stride : 1));
        inPlanes = planes;
      }
      return new Sequential(...blocks);
    };
    this.layer1 = this.module('layer1', stage(widths[0], 1));
    this.layer2 = this.module('layer2', stage(widths[1], 2));
    this.layer3 = this.module('layer3', stage(widths[2], 2));
    this.linear = this.module('linear', new Linear(inPlanes, config.numClasses ?? 10));
    supportsGradientCheckpointing(this);
  }

  forwardFeatures(x: Tensor): Tensor {
    let y = convBnAct(this.conv1, this.bn1, x, 'relu');
    const blocks = [this.layer1, this.layer2, this.layer3].flatMap((stage) => stage.layers as CifarBasicBlock[]);
    y = runBlocks(this, blocks, y, (b, h) => b.forward(h));
    return A.mean(y, [2, 3]);
  }

  forwardHead(features: Tensor): Tensor {
    return this.linear.forward(features);
  }

  forward(x: Tensor): Tensor {
    return this.forwardHead(this.forwardFeatures(x));
  }

  blockOrder(): string[] {
    return ['conv1', 'bn1', 'layer1', 'layer2', 'layer3', 'linear'];
  }

  protected override onChildReplaced(name: string, m: Module): void {
    if (name !== 'linear' || !(m instanceof Linear)) super.onChildReplaced(name, m);
    this.linear = m as Linear;
  }
}
