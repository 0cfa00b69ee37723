/**
 * Vision Transformer (ViT-B/16 by default) with timm's attribute names: `patch_embed.proj`,
 * `cls_token`, `pos_embed`, `blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`,
 * `norm`, `head`. Pre-norm blocks, fused qkv, exact (erf) GELU, LayerNorm eps 1e-6, and the
 * class token as the pooled feature, as timm's vit_base_patch16_224.
 *
 * Built for another image size (`imgSize: 384`, or [rows, cols]), it loads checkpoints of any
 * square grid: `pos_embed` is resampled on load as timm does when it creates a pretrained
 * model at another size (see `resampleAbsPosEmbed`).
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { ClassifierModel } from '../nn/classifier.js';
import { runBlocks, supportsGradientCheckpointing } from '../nn/checkpointing.js';
import { Conv2d, LayerNorm, Linear, Sequential } from '../nn/layers.js';
import { isHostValue, Module, type StateValue } from '../nn/module.js';
import { resampleAbsPosEmbed } from '../nn/pos-embed.js';

export class PatchEmbed extends Module {
  readonly proj: Conv2d;
  constructor(readonly patchSize: number, inChannels: number, embedDim: number) {
    super();
    this.proj = this.module('proj', new Conv2d(inChannels, embedDim, patchSize, { stride: patchSize }));
  }
  /** [N, C, H, W] -> [N, tokens, embedDim]. */
  forward(x: Tensor): Tensor {
    return this.proj.forward(x).flatten(2).transpose(1, 2);
  }
}

export class ViTAttention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly scale: number;
  constructor(readonly dim: number, readonly numHeads: number, qkvBias = true) {
    super();
    if (dim % numHeads) throw new RangeError(`ViTAttention: dim (${dim}) must be divisible by numHeads (${numHeads})`);
    this.scale = (dim / numHeads) ** -0.5;
    this.qkv = this.module('qkv', new Linear(dim, dim * 3, { bias: qkvBias }));
    this.proj = this.module('proj', new Linear(dim, dim));
  }
  forward(x: Tensor): Tensor {
    const [b, n, c] = x.shape as [number, number, number];
    const qkv = this.qkv.forward(x).reshape(b, n, 3, this.numHeads, c / this.numHeads).permute(2, 0, 3, 1, 4);
    const q = A.mul(qkv.select(0, 0), this.scale);
    const attn = A.softmax(A.matmul(q, qkv.select(0, 1).transpose(-2, -1)), -1);
    const out = A.matmul(attn, qkv.select(0, 2)).transpose(1, 2).reshape(b, n, c);
    return this.proj.forward(out);
  }
}

export class ViTMlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(dim: number, hidden: number) {
    super();
    this.fc1 = this.module('fc1', new Linear(dim, hidden));
    this.fc2 = this.module('fc2', new Linear(hidden, dim));
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(A.gelu(this.fc1.forward(x)));
  }
}

export class ViTBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: ViTAttention;
  readonly norm2: LayerNorm;
  readonly mlp: ViTMlp;
  constructor(dim: number, numHeads: number, mlpRatio: number, opts: { qkvBias?: boolean; eps?: number } = {}) {
    super();
    const eps = opts.eps ?? 1e-6;
    this.norm1 = this.module('norm1', new LayerNorm(dim, { eps }));
    this.attn = this.module('attn', new ViTAttention(dim, numHeads, opts.qkvBias ?? true));
    this.norm2 = this.module('norm2', new LayerNorm(dim, { eps }));
    this.mlp = this.module('mlp', new ViTMlp(dim, Math.floor(dim * mlpRatio)));
  }
  forward(x: Tensor): Tensor {
    const h = A.add(x, this.attn.forward(this.norm1.forward(x)));
    return A.add(h, this.mlp.forward(this.norm2.forward(h)));
  }
}

export interface ViTConfig {
  numClasses?: number;
  /** Input side, or [height, width]; each a multiple of patchSize. */
  imgSize?: number | readonly [number, number];
  patchSize?: number;
  embedDim?: number;
  depth?: number;
  numHeads?: number;
  mlpRatio?: number;
  qkvBias?: boolean;
  /** LayerNorm epsilon (timm: 1e-6). */
  eps?: number;
  inChannels?: number;
}

export class VisionTransformer extends ClassifierModel {
  readonly classifierPath = 'head';
  readonly clsToken: Tensor;
  readonly posEmbed: Tensor;
  readonly patchEmbed: PatchEmbed;
  readonly blocks: Sequential;
  readonly norm: LayerNorm;
  /** Patch rows and columns (timm's patch_embed.grid_size). */
  readonly gridSize: readonly [number, number];
  /** Tokens before the patches: the class token. */
  readonly numPrefixTokens = 1;
  readonly numTokens: number;

  constructor(readonly config: ViTConfig = {}) {
    super();
    const img = config.imgSize ?? 224;
    const [h, w] = typeof img === 'number' ? [img, img] : img;
    const patch = config.patchSize ?? 16;
    const dim = config.embedDim ?? 768;
    const eps = config.eps ?? 1e-6;
    if (!Number.isInteger(h) || !Number.isInteger(w) || h < patch || w < patch || h % patch || w % patch) {
      throw new RangeError(`VisionTransformer: imgSize ${JSON.stringify(img)} must be positive multiples of patchSize (${patch})`);
    }
    this.gridSize = [h / patch, w / patch];
    this.numTokens = this.numPrefixTokens + (h / patch) * (w / patch);
    // timm's initialisation of the two embeddings (the linear layers keep PyTorch's default).
    this.clsToken = this.param('cls_token', A.randn([1, 1, dim], { std: 1e-6 }));
    this.posEmbed = this.param('pos_embed', A.randn([1, this.numTokens, dim], { std: 0.02 }));
    this.patchEmbed = this.module('patch_embed', new PatchEmbed(patch, config.inChannels ?? 3, dim));
    const blocks: ViTBlock[] = [];
    for (let i = 0; i < (config.depth ?? 12); i++) {
      blocks.push(new ViTBlock(dim, config.numHeads ?? 12, config.mlpRatio ?? 4, { qkvBias: config.qkvBias, eps }));
    }
    this.blocks = this.module('blocks', new Sequential(...blocks));
    supportsGradientCheckpointing(this);
    this.norm = this.module('norm', new LayerNorm(dim, { eps }));
    this.module('head', new Linear(dim, config.numClasses ?? 1000));
  }

  /** The normalised class token, [N, embedDim]. */
  forwardFeatures(x: Tensor): Tensor {
    const [gh, gw] = this.gridSize;
    const [ih, iw] = [Math.floor(x.shape[2]! / this.patchEmbed.patchSize), Math.floor(x.shape[3]! / this.patchEmbed.patchSize)];
    if (ih !== gh || iw !== gw) {
      throw new RangeError(`VisionTransformer: a ${x.shape[2]}x${x.shape[3]} input gives a ${ih}x${iw} grid of patches; the position embedding has ${gh}x${gw} (imgSize ${JSON.stringify(this.config.imgSize ?? 224)})`);
    }
    const patches = this.patchEmbed.forward(x);
    const cls = this.clsToken.expand(x.shape[0]!, -1, -1);
    const tokens = A.add(A.cat([cls, patches], 1), this.posEmbed);
    // LayerNorm is per token, so normalising only the pooled class token is the same.
    const hidden = runBlocks(this, this.blocks.layers as ViTBlock[], tokens, (b, y) => b.forward(y));
    return this.norm.forward(hidden.select(1, 0));
  }

  forwardHead(features: Tensor): Tensor {
    return this.head().forward(features);
  }

  forward(x: Tensor): Tensor {
    return this.forwardHead(this.forwardFeatures(x));
  }

  blockOrder(): string[] {
    return ['cls_token,pos_embed,patch_embed', ...this.blocks.layers.map((_, i) => `blocks.${i}`), 'norm', 'head'];
  }

  /** A checkpoint of another square grid (224 when this model is 384) gets its `pos_embed`
   * resampled to this grid; one of another width is left to the shape check. */
  protected override onLoadStateDict(entries: Map<string, StateValue>, prefix: string): void {
    const key = `${prefix}pos_embed`;
    const v = entries.get(key);
    const [, tokens, dim] = this.posEmbed.shape as [number, number, number];
    if (!v || v.shape.length !== 3 || v.shape[0] !== 1 || v.shape[2] !== dim || v.shape[1] === tokens) return;
    const t = isHostValue(v) ? A.tensor(v.data, { shape: v.shape }) : v;
    entries.set(key, resampleAbsPosEmbed(t, this.gridSize, { numPrefixTokens: this.numPrefixTokens }));
  }

  /** The head is reached through `head()` (timm's attribute name clashes with it), so a
   * replaced one needs no field update. */
  protected override onChildReplaced(name: string, m: Module): void {
    if (name !== 'head' || !(m instanceof Linear)) super.onChildReplaced(name, m);
  }
}
