/**
 * TF.js WebGPU's side of `bench:models`: each convolutional network is our module tree
 * walked with TF.js ops (tfjs-core only), in TF.js's native NHWC / HWIO layouts, with our
 * weights copied in, so both engines run the same network from the same weights. Training
 * is `tf.train.sgd(lr).minimize` with BatchNorm on batch statistics (the running statistics
 * are not updated: a few small ops per layer) and no dropout or stochastic depth. The
 * transformers are not written in TF.js here.
 */
import type * as TfCore from '@tensorflow/tfjs-core';
import * as A from '@tl/autograd';
import { BasicBlock, BatchNorm2d, Bottleneck, Conv2d, Dropout, EfficientNet, InvertedResidual, Lambda, Linear, MaxPool2d, MBConv, MobileNetV2, type Module, ResNet, Sequential, SqueezeExcitation } from '@tl/models';
import { nchwToNhwc, oihwToHwio, transpose2d } from '../training/peer.js';

type Tf = typeof TfCore;
type T = TfCore.Tensor;
type T4 = TfCore.Tensor4D;

export interface PeerNet {
  forward(x: T): T;
  step(x: T, labels: T): T;
  dispose(): void;
}

/** Our module tree in TF.js ops; undefined where a module type is not translated. */
export async function tfjsNet(tf: Tf, model: Module, classes: number, lr: number): Promise<PeerNet | undefined> {
  if (!(model instanceof ResNet || model instanceof MobileNetV2 || model instanceof EfficientNet)) return undefined;
  const vars = new Map<A.Tensor, TfCore.Variable>();
  for (const [name, t] of model.stateDict()) {
    if (t.dtype !== 'float32') continue;
    const data = (await t.data()) as Float32Array;
    const shape = [...t.shape];
    let value: T;
    if (shape.length === 4) value = tf.tensor(oihwToHwio(data, shape), [shape[2]!, shape[3]!, shape[1]!, shape[0]!]);
    else if (shape.length === 2) value = tf.tensor(transpose2d(data, shape), [shape[1]!, shape[0]!]);
    else value = tf.tensor(data, shape);
    const running = /running_(mean|var)$/.test(name);
    vars.set(t, tf.variable(value, !running, name));
    value.dispose();
  }
  const v = (t: A.Tensor | null): TfCore.Variable => {
    const w = t && vars.get(t);
    if (!w) throw new Error('tfjs peer: a weight was not copied');
    return w;
  };
  let training = false;

  const conv = (m: Conv2d, x: T): T => {
    const stride: [number, number] = typeof m.stride === 'number' ? [m.stride, m.stride] : [m.stride[0], m.stride[1]];
    const [ph, pw] = typeof m.padding === 'number' ? [m.padding, m.padding] : m.padding;
    const pad: [[number, number], [number, number], [number, number], [number, number]] = [[0, 0], [ph, ph], [pw, pw], [0, 0]];
    let y: T;
    if (m.groups === 1) y = tf.conv2d(x as T4, v(m.weight) as T4, stride, pad);
    else if (m.groups === m.inChannels && m.outChannels === m.inChannels) {
      // HWIO of a depthwise weight is [kh, kw, 1, C]: the same memory as TF.js's [kh, kw, C, 1].
      const w = v(m.weight);
      y = tf.depthwiseConv2d(x as T4, tf.reshape(w, [w.shape[0]!, w.shape[1]!, w.shape[3]!, 1]) as T4, stride, pad);
    } else throw new Error(`tfjs peer: grouped convolution with ${m.groups} groups`);
    return m.bias ? tf.add(y, v(m.bias)) : y;
  };
  const bn = (m: BatchNorm2d, x: T): T => {
    const eps = m.opts.eps ?? 1e-5;
    if (!training) return tf.batchNorm(x, v(m.runningMean), v(m.runningVar), v(m.bias), v(m.weight), eps);
    const { mean, variance } = tf.moments(x, [0, 1, 2]);
    return tf.batchNorm(x, mean, variance, v(m.bias), v(m.weight), eps);
  };
  const silu = (x: T): T => tf.mul(x, tf.sigmoid(x));
  const lambda = (m: Lambda, x: T): T => {
    switch (m.name) {
      case 'ReLU': return tf.relu(x);
      case 'ReLU6': return tf.relu6(x);
      case 'SiLU': return silu(x);
      case 'Identity': return x;
      default: throw new Error(`tfjs peer: activation ${m.name}`);
    }
  };
  const run = (m: Module, x: T): T => {
    if (m instanceof Sequential) return m.layers.reduce((h, l) => run(l, h), x);
    if (m instanceof Conv2d) return conv(m, x);
    if (m instanceof BatchNorm2d) return bn(m, x);
    if (m instanceof Lambda) return lambda(m, x);
    if (m instanceof Dropout) return x;
    if (m instanceof Linear) return tf.add(tf.matMul(x as TfCore.Tensor2D, v(m.weight) as TfCore.Tensor2D), v(m.bias));
    if (m instanceof MaxPool2d) {
      const o = m.opts;
      const p = typeof o.padding === 'number' ? o.padding : 0;
      const padded = p ? tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], -Infinity) : x;
      return tf.maxPool(padded as T4, o.kernelSize as number, (o.stride ?? o.kernelSize) as number, 'valid');
    }
    if (m instanceof BasicBlock) {
      let y = tf.relu(bn(m.bn1, conv(m.conv1, x)));
      y = bn(m.bn2, conv(m.conv2, y));
      return tf.relu(tf.add(y, m.downsample ? run(m.downsample, x) : x));
    }
    if (m instanceof Bottleneck) {
      let y = tf.relu(bn(m.bn1, conv(m.conv1, x)));
      y = tf.relu(bn(m.bn2, conv(m.conv2, y)));
      y = bn(m.bn3, conv(m.conv3, y));
      return tf.relu(tf.add(y, m.downsample ? run(m.downsample, x) : x));
    }
    if (m instanceof InvertedResidual) {
      const y = run(m.conv, x);
      return m.useResConnect ? tf.add(x, y) : y;
    }
    if (m instanceof MBConv) {
      const y = run(m.block, x);
      return m.useResConnect ? tf.add(y, x) : y;
    }
    if (m instanceof SqueezeExcitation) {
      const s = tf.mean(x, [1, 2], true);
      return tf.mul(x, tf.sigmoid(conv(m.fc2, silu(conv(m.fc1, s)))));
    }
    throw new Error(`tfjs peer: no translation of ${m.constructor.name}`);
  };
  const forward = (x: T): T => {
    if (model instanceof ResNet) {
      let y = run(model.maxpool, tf.relu(bn(model.bn1, conv(model.conv1, x))));
      for (const l of [model.layer1, model.layer2, model.layer3, model.layer4]) y = run(l, y);
      return run(model.fc, tf.mean(y, [1, 2]));
    }
    return run(model.classifier, tf.mean(run(model.features, x), [1, 2]));
  };
  const opt = tf.train.sgd(lr);
  const trainable = [...vars.values()].filter((w) => w.trainable);
  return {
    forward: (x) => {
      training = false;
      return tf.tidy(() => forward(x));
    },
    step: (x, labels) => {
      training = true;
      const loss = opt.minimize(() => tf.losses.softmaxCrossEntropy(tf.oneHot(labels as TfCore.Tensor1D, classes), forward(x)) as TfCore.Scalar, true, trainable);
      return loss!;
    },
    dispose: () => {
      opt.dispose();
      for (const w of vars.values()) w.dispose();
    },
  };
}

export { nchwToNhwc };
