/**
 * The same networks in TensorFlow.js ops (tfjs-core only: no tfjs-layers), trained with
 * `tf.train.sgd(lr).minimize(...)`. Weights are copied from ours, so both sides start from
 * the same point: conv filters OIHW -> HWIO, Linear weights [out, in] -> [in, out], images
 * NCHW -> NHWC (TF.js's native layout). Convolutions use explicit padding 1 (PyTorch's), not
 * 'same', which pads stride-2 convolutions differently.
 */
import type * as TfCore from '@tensorflow/tfjs-core';
import type { TransformerConfig } from './ours.js';

type Tf = typeof TfCore;
type T = TfCore.Tensor;
export type HostState = Map<string, { data: Float32Array; shape: number[] }>;

const BN_EPS = 1e-5;
const BN_MOMENTUM = 0.1;
const LN_EPS = 1e-5;

export interface PeerModel {
  /** One step: forward, loss, gradients, SGD update (and BatchNorm running statistics). */
  step(x: T, labels: T): T;
  dispose(): void;
}

export function oihwToHwio(w: Float32Array, [o, i, kh, kw]: number[]): Float32Array {
  const out = new Float32Array(w.length);
  for (let a = 0; a < o!; a++)
    for (let b = 0; b < i!; b++)
      for (let r = 0; r < kh!; r++)
        for (let q = 0; q < kw!; q++) out[((r * kw! + q) * i! + b) * o! + a] = w[((a * i! + b) * kh! + r) * kw! + q]!;
  return out;
}

export function transpose2d(w: Float32Array, [rows, cols]: number[]): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows!; r++) for (let c = 0; c < cols!; c++) out[c * rows! + r] = w[r * cols! + c]!;
  return out;
}

export function nchwToNhwc(x: Float32Array, [n, c, h, w]: number[]): Float32Array {
  const out = new Float32Array(x.length);
  const hw = h! * w!;
  for (let b = 0; b < n!; b++)
    for (let ch = 0; ch < c!; ch++)
      for (let i = 0; i < hw; i++) out[(b * hw + i) * c! + ch] = x[(b * c! + ch) * hw + i]!;
  return out;
}

/** Variables from our state dict, in TF.js layouts; BatchNorm running stats are non-trainable. */
class Weights {
  readonly v = new Map<string, TfCore.Variable>();
  constructor(tf: Tf, state: HostState, trainable: (name: string) => boolean) {
    for (const [k, { data, shape }] of state) {
      let d = data;
      let s = shape;
      if (shape.length === 4) {
        d = oihwToHwio(data, shape);
        s = [shape[2]!, shape[3]!, shape[1]!, shape[0]!];
      } else if (shape.length === 2) {
        d = transpose2d(data, shape);
        s = [shape[1]!, shape[0]!];
      }
      const running = k.endsWith('running_mean') || k.endsWith('running_var');
      this.v.set(k, tf.variable(tf.tensor(d, s), !running && trainable(k), k));
    }
  }
  get(k: string): TfCore.Variable {
    const t = this.v.get(k);
    if (!t) throw new Error(`peer: no weight ${k}`);
    return t;
  }
  trainable(): TfCore.Variable[] {
    return [...this.v.values()].filter((t) => t.trainable);
  }
  dispose(): void {
    for (const t of this.v.values()) t.dispose();
  }
}

/** Shared by the convolutional networks: conv, BatchNorm (batch or running statistics), SGD. */
class ConvNet {
  readonly w: Weights;
  readonly opt: TfCore.SGDOptimizer;
  /** Batch moments of this step, applied to the running statistics after the update. */
  private moments: [string, T, T, number][] = [];
  constructor(readonly tf: Tf, state: HostState, lr: number, trainable: (name: string) => boolean) {
    this.w = new Weights(tf, state, trainable);
    this.opt = tf.train.sgd(lr);
  }
  conv(x: T, name: string, stride: number): T {
    return this.tf.conv2d(x as TfCore.Tensor4D, this.w.get(`${name}.weight`) as TfCore.Tensor4D, stride, 1);
  }
  bn(x: T, name: string, batchStats: boolean): T {
    const tf = this.tf;
    const gamma = this.w.get(`${name}.weight`);
    const beta = this.w.get(`${name}.bias`);
    if (!batchStats) return tf.batchNorm(x, this.w.get(`${name}.running_mean`), this.w.get(`${name}.running_var`), beta, gamma, BN_EPS);
    const { mean, variance } = tf.moments(x, [0, 1, 2]);
    this.moments.push([name, tf.keep(mean), tf.keep(variance), x.shape[0]! * x.shape[1]! * x.shape[2]!]);
    return tf.batchNorm(x, mean, variance, beta, gamma, BN_EPS);
  }
  /** PyTorch's running-statistics update (unbiased variance), outside the gradient. */
  updateRunning(): void {
    const tf = this.tf;
    tf.tidy(() => {
      for (const [name, mean, variance, count] of this.moments) {
        const rm = this.w.get(`${name}.running_mean`);
        const rv = this.w.get(`${name}.running_var`);
        rm.assign(tf.add(tf.mul(rm, 1 - BN_MOMENTUM), tf.mul(mean, BN_MOMENTUM)));
        rv.assign(tf.add(tf.mul(rv, 1 - BN_MOMENTUM), tf.mul(variance, (BN_MOMENTUM * count) / (count - 1))));
      }
    });
    for (const [, m, v] of this.moments) {
      m.dispose();
      v.dispose();
    }
    this.moments = [];
  }
  linear(x: T, name: string): T {
    return this.tf.add(this.tf.matMul(x as TfCore.Tensor2D, this.w.get(`${name}.weight`) as TfCore.Tensor2D), this.w.get(`${name}.bias`));
  }
  loss(logits: T, labels: T): TfCore.Scalar {
    const tf = this.tf;
    return tf.losses.softmaxCrossEntropy(tf.oneHot(labels as TfCore.Tensor1D, logits.shape[1]!), logits) as TfCore.Scalar;
  }
}

export function peerSmallCnn(tf: Tf, state: HostState, lr: number): PeerModel {
  const net = new ConvNet(tf, state, lr, () => true);
  const forward = (x: T): T => {
    let y = tf.relu(net.bn(net.conv(x, 'conv1', 1), 'bn1', true));
    y = tf.relu(net.bn(net.conv(y, 'conv2', 2), 'bn2', true));
    y = tf.relu(net.bn(net.conv(y, 'conv3', 2), 'bn3', true));
    return net.linear(tf.mean(y, [1, 2]), 'fc');
  };
  return {
    step(x, labels) {
      const cost = net.opt.minimize(() => net.loss(forward(x), labels), true, net.w.trainable())!;
      net.updateRunning();
      return cost;
    },
    dispose() {
      net.w.dispose();
      net.opt.dispose();
    },
  };
}

/** CIFAR ResNet-20, option A shortcuts (stride-2 subsampling, zero channel padding). */
export function peerResNet20(tf: Tf, state: HostState, lr: number, headOnly: boolean): PeerModel {
  const net = new ConvNet(tf, state, lr, headOnly ? (k) => k.startsWith('linear.') : () => true);
  const bs = !headOnly;
  const block = (x: T, p: string, inPlanes: number, planes: number, stride: number): T => {
    let o = tf.relu(net.bn(net.conv(x, `${p}.conv1`, stride), `${p}.bn1`, bs));
    o = net.bn(net.conv(o, `${p}.conv2`, 1), `${p}.bn2`, bs);
    let sc = x;
    if (stride !== 1 || inPlanes !== planes) {
      // x[:, ::2, ::2, :] as reshape + slice: TF.js has no StridedSlice gradient, and the
      // slice stays 4-D because its gradient (a pad) fails to compile on WebGPU for rank 6.
      const [n, h, w, c] = x.shape as [number, number, number, number];
      const sub = tf.reshape(tf.slice(tf.reshape(x, [n * (h / 2), 2, w / 2, 2 * c]), [0, 0, 0, 0], [n * (h / 2), 1, w / 2, c]), [n, h / 2, w / 2, c]);
      const pc = (planes - inPlanes) / 2;
      sc = tf.pad(sub, [[0, 0], [0, 0], [0, 0], [pc, pc]]);
    }
    return tf.relu(tf.add(o, sc));
  };
  const backbone = (x: T): T => {
    let y = tf.relu(net.bn(net.conv(x, 'conv1', 1), 'bn1', bs));
    let inPlanes = 16;
    for (const [s, planes] of [[1, 16], [2, 32], [3, 64]] as const) {
      for (let i = 0; i < 3; i++) {
        y = block(y, `layer${s}.${i}`, inPlanes, planes, i === 0 && s > 1 ? 2 : 1);
        inPlanes = planes;
      }
    }
    return tf.mean(y, [1, 2]);
  };
  return {
    step(x, labels) {
      if (headOnly) {
        // The frozen backbone runs outside the gradient tape, under tidy; only the head trains.
        const feats = tf.tidy(() => backbone(x));
        const cost = net.opt.minimize(() => net.loss(net.linear(feats, 'linear'), labels), true, net.w.trainable())!;
        feats.dispose();
        return cost;
      }
      const cost = net.opt.minimize(() => net.loss(net.linear(backbone(x), 'linear'), labels), true, net.w.trainable())!;
      net.updateRunning();
      return cost;
    },
    dispose() {
      net.w.dispose();
      net.opt.dispose();
    },
  };
}

/** The pre-norm encoder stack of ours.ts: MHA with a fused QKV projection, exact GELU. */
export function peerEncoder(tf: Tf, state: HostState, lr: number, cfg: TransformerConfig): PeerModel {
  const w = new Weights(tf, state, () => true);
  const opt = tf.train.sgd(lr);
  const { width: e, heads: h } = cfg;
  const d = e / h;
  const ln = (x: T, name: string): T => {
    const { mean, variance } = tf.moments(x, [x.rank - 1], true);
    return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, LN_EPS))), w.get(`${name}.weight`)), w.get(`${name}.bias`));
  };
  const dense = (x2: T, name: string): T => tf.add(tf.matMul(x2 as TfCore.Tensor2D, w.get(`${name}.weight`) as TfCore.Tensor2D), w.get(`${name}.bias`));
  const gelu = (x: T): T => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
  const forward = (x: T): T => {
    const [b, t] = x.shape as [number, number, number];
    let y = tf.reshape(x, [b * t, e]);
    for (let i = 0; i < cfg.depth; i++) {
      const p = `blocks.${i}`;
      const qkv = tf.add(tf.matMul(ln(y, `${p}.norm1`) as TfCore.Tensor2D, w.get(`${p}.attn.in_proj_weight`) as TfCore.Tensor2D), w.get(`${p}.attn.in_proj_bias`));
      const heads = tf.split(qkv, 3, 1).map((z) => tf.transpose(tf.reshape(z, [b, t, h, d]), [0, 2, 1, 3]));
      const probs = tf.softmax(tf.mul(tf.matMul(heads[0]!, heads[1]!, false, true), 1 / Math.sqrt(d)));
      const ctx = tf.reshape(tf.transpose(tf.matMul(probs, heads[2]!), [0, 2, 1, 3]), [b * t, e]);
      y = tf.add(y, dense(ctx, `${p}.attn.out_proj`));
      y = tf.add(y, dense(gelu(dense(ln(y, `${p}.norm2`), `${p}.fc1`)), `${p}.fc2`));
    }
    const pooled = tf.mean(tf.reshape(ln(y, 'norm'), [b, t, e]), 1);
    return dense(pooled, 'head');
  };
  return {
    step(x, labels) {
      return opt.minimize(
        () => tf.losses.softmaxCrossEntropy(tf.oneHot(labels as TfCore.Tensor1D, cfg.classes), forward(x)) as TfCore.Scalar,
        true,
        w.trainable(),
      )!;
    },
    dispose() {
      w.dispose();
      opt.dispose();
    },
  };
}
