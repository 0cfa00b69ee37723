/**
 * Our side of the training benchmark: the networks built from @tl/models layers, and one
 * training step exactly as `Trainer` runs it (a scope around forward, loss and backward, then
 * the optimizer's fused update and zeroGrad).
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { BatchNorm2d, CifarResNet, Conv2d, LayerNorm, Linear, Module, ModuleList, MultiheadAttention } from '@tl/models';
import { SGD, type Optimizer } from '@tl/train';

/** conv-bn-relu x3 (3->16->32->64, stride 1/2/2, 3x3 pad 1), global average pool, linear 10. */
export class SmallCnn extends Module {
  readonly conv1 = this.module('conv1', new Conv2d(3, 16, 3, { padding: 1, bias: false }));
  readonly bn1 = this.module('bn1', new BatchNorm2d(16));
  readonly conv2 = this.module('conv2', new Conv2d(16, 32, 3, { stride: 2, padding: 1, bias: false }));
  readonly bn2 = this.module('bn2', new BatchNorm2d(32));
  readonly conv3 = this.module('conv3', new Conv2d(32, 64, 3, { stride: 2, padding: 1, bias: false }));
  readonly bn3 = this.module('bn3', new BatchNorm2d(64));
  readonly fc = this.module('fc', new Linear(64, 10));
  forward(x: Tensor): Tensor {
    let y = A.relu(this.bn1.forward(this.conv1.forward(x)));
    y = A.relu(this.bn2.forward(this.conv2.forward(y)));
    y = A.relu(this.bn3.forward(this.conv3.forward(y)));
    return this.fc.forward(A.mean(y, [2, 3]));
  }
}

/** Pre-norm encoder block (as ViT / timm): x + MHA(LN(x)), then x + MLP(LN(x)) with GELU. */
export class EncoderBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: MultiheadAttention;
  readonly norm2: LayerNorm;
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(width: number, heads: number, mlp: number) {
    super();
    this.norm1 = this.module('norm1', new LayerNorm(width));
    this.attn = this.module('attn', new MultiheadAttention(width, heads, { batchFirst: true }));
    this.norm2 = this.module('norm2', new LayerNorm(width));
    this.fc1 = this.module('fc1', new Linear(width, mlp));
    this.fc2 = this.module('fc2', new Linear(mlp, width));
  }
  forward(x: Tensor): Tensor {
    const h = this.norm1.forward(x);
    const [a] = this.attn.forward(h, h, h, { needWeights: false });
    const x1 = A.add(x, a);
    return A.add(x1, this.fc2.forward(A.gelu(this.fc1.forward(this.norm2.forward(x1)))));
  }
}

/** `depth` encoder blocks on [B, T, width] inputs, a final LayerNorm, mean over tokens, linear. */
export class Encoder extends Module {
  readonly blocks: ModuleList<EncoderBlock>;
  readonly norm: LayerNorm;
  readonly head: Linear;
  constructor(readonly cfg: TransformerConfig) {
    super();
    const blocks: EncoderBlock[] = [];
    for (let i = 0; i < cfg.depth; i++) blocks.push(new EncoderBlock(cfg.width, cfg.heads, cfg.mlp));
    this.blocks = this.module('blocks', new ModuleList(blocks));
    this.norm = this.module('norm', new LayerNorm(cfg.width));
    this.head = this.module('head', new Linear(cfg.width, cfg.classes));
  }
  forward(x: Tensor): Tensor {
    let y = x;
    for (const b of this.blocks) y = b.forward(y);
    return this.head.forward(A.mean(this.norm.forward(y), 1));
  }
}

export interface TransformerConfig {
  depth: number;
  width: number;
  heads: number;
  mlp: number;
  classes: number;
}

export interface OursModel {
  module: Module & { forward(x: Tensor): Tensor };
  optimizer: Optimizer;
}

export function buildOurs(kind: 'cnn' | 'transformer' | 'resnet20' | 'resnet20-head', tcfg: TransformerConfig): OursModel {
  let module: OursModel['module'];
  if (kind === 'cnn') module = new SmallCnn();
  else if (kind === 'transformer') module = new Encoder(tcfg);
  else module = new CifarResNet({ depth: 20, numClasses: 10 });
  if (kind === 'resnet20-head') {
    // What the Trainer does for feature extraction without a feature cache: every backbone
    // parameter frozen (so no tape is recorded for it, and BatchNorm uses running statistics).
    module.freeze();
    module.unfreeze('linear.*');
  }
  module.train();
  const optimizer = new SGD(module.parameters({ trainable: true }), { lr: LR });
  return { module, optimizer };
}

export const LR = 0.01;

/** Records one training step and returns the loss (a scalar the caller reads and disposes). */
export function oursStep(m: OursModel, x: Tensor, y: Tensor): Tensor {
  const loss = A.tidy(() => {
    const out = m.module.forward(x);
    const l = A.crossEntropy(out, y);
    if (l.requiresGrad) A.backward(l);
    return l;
  });
  m.optimizer.step();
  m.optimizer.zeroGrad();
  return loss;
}

/** Every parameter and buffer as host arrays (for copying into TF.js). */
export async function hostState(m: Module): Promise<Map<string, { data: Float32Array; shape: number[] }>> {
  const out = new Map<string, { data: Float32Array; shape: number[] }>();
  for (const [k, t] of m.stateDict()) {
    if (t.dtype !== 'float32') continue;
    out.set(k, { data: (await t.data()) as Float32Array, shape: [...t.shape] });
  }
  return out;
}
