/** Building blocks shared by the torchvision mobile architectures. */
import * as A from '@tl/autograd';
import type { ConvActivation, Tensor } from '@tl/autograd';
import { BatchNorm2d, ChannelGate, Conv2d, convAct, type Lambda, Sequential } from '../nn/layers.js';

/** torchvision's `_make_divisible`: the nearest multiple of `divisor`, never below
 * `minValue` and never more than 10% under `v`. */
export function makeDivisible(v: number, divisor: number, minValue = divisor): number {
  const r = Math.max(minValue, Math.floor((v + divisor / 2) / divisor) * divisor);
  return r < 0.9 * v ? r + divisor : r;
}

/** torchvision's Conv2dNormActivation: children 0 (conv, no bias), 1 (BatchNorm), 2 (the
 * activation, when there is one), "same" padding. */
export function convNormActivation(
  inChannels: number,
  outChannels: number,
  opts: { kernelSize?: number; stride?: number; groups?: number; activation?: (() => Lambda) | null; bnEps?: number; bnMomentum?: number } = {},
): Sequential {
  const k = opts.kernelSize ?? 3;
  const conv = new Conv2d(inChannels, outChannels, k, { stride: opts.stride ?? 1, padding: (k - 1) >> 1, groups: opts.groups ?? 1, bias: false });
  const bn = new BatchNorm2d(outChannels, { eps: opts.bnEps ?? 1e-5, momentum: opts.bnMomentum ?? 0.1 });
  return opts.activation ? new Sequential(conv, bn, opts.activation()) : new Sequential(conv, bn);
}

/** Mean over the spatial dims: adaptive average pooling to 1x1, flattened to [N, C]. */
export function globalAvgPool(x: Tensor): Tensor {
  return A.mean(x, [2, 3]);
}

const EPILOGUES = new Map<(x: Tensor) => Tensor, ConvActivation>([
  [A.relu, 'relu'], [A.relu6, 'relu6'], [A.silu, 'silu'], [A.sigmoid, 'sigmoid'], [A.hardsigmoid, 'hardsigmoid'], [A.hardswish, 'hardswish'],
]);

/**
 * torchvision's SqueezeExcitation: the spatial mean through 1x1 convs `fc1` and `fc2` gates each
 * channel. EfficientNet uses SiLU and a sigmoid gate, MobileNetV3 ReLU and a hard sigmoid.
 */
export class SqueezeExcitation extends ChannelGate {
  readonly fc1: Conv2d;
  readonly fc2: Conv2d;
  constructor(
    inputChannels: number,
    squeezeChannels: number,
    private readonly activation: (x: Tensor) => Tensor = A.relu,
    private readonly scaleActivation: (x: Tensor) => Tensor = A.sigmoid,
  ) {
    super();
    this.fc1 = this.module('fc1', new Conv2d(inputChannels, squeezeChannels, 1));
    this.fc2 = this.module('fc2', new Conv2d(squeezeChannels, inputChannels, 1));
  }
  /** The per-image, per-channel scale [N, C, 1, 1] that `forward` multiplies x by. */
  gate(x: Tensor): Tensor {
    const pooled = A.mean(x, [2, 3], { keepdim: true });
    return this.convThen(this.fc2, this.scaleActivation, this.convThen(this.fc1, this.activation, pooled));
  }
  /** `act(conv(x))`, in one kernel where `act` is one conv2d applies in its epilogue. */
  private convThen(conv: Conv2d, act: (x: Tensor) => Tensor, x: Tensor): Tensor {
    const epilogue = EPILOGUES.get(act);
    return epilogue ? convAct(conv, x, epilogue) : act(conv.forward(x));
  }
}
