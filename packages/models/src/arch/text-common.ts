/** What the Hugging Face text architectures share: activations by config name, weight
 * initialisation, label counts, input checks and the pooling of one token per sequence. */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { Embedding, LayerNorm, Linear } from '../nn/layers.js';
import type { Module } from '../nn/module.js';

/** transformers' ACT2FN entries that have an op here. */
export function hfActivation(name: string): (x: Tensor) => Tensor {
  switch (name) {
    case 'gelu':
      return (x) => A.gelu(x);
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
    case 'gelu_fast':
      return (x) => A.gelu(x, 'tanh');
    case 'relu':
      return A.relu;
    case 'silu':
    case 'swish':
      return A.silu;
    case 'tanh':
      return A.tanh;
    default:
      throw new RangeError(`activation "${name}" is not supported (gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, silu, swish, tanh)`);
  }
}

/**
 * transformers' `_init_weights` for these models: Linear and Embedding weights from N(0, std²),
 * zero biases and padding rows, LayerNorm at identity; `extra` handles other parameter holders.
 */
export function initTransformerWeights(model: Module, std: number, extra?: (m: Module, name: string) => void): void {
  // The scope frees the random tensors and views the copies are made from.
  A.noGrad(() => A.tidy(() => {
    for (const [name, m] of model.namedModules()) {
      if (m instanceof Linear) {
        A.assign(m.weight, A.randn(m.weight.shape, { std }));
        if (m.bias) A.assign(m.bias, 0);
      } else if (m instanceof Embedding) {
        A.assign(m.weight, A.randn(m.weight.shape, { std }));
        if (m.opts.paddingIdx !== undefined) A.assign(m.weight.select(0, m.opts.paddingIdx), 0);
      } else if (m instanceof LayerNorm) {
        if (m.weight) A.assign(m.weight, 1);
        if (m.bias) A.assign(m.bias, 0);
      } else {
        extra?.(m, name);
      }
    }
  }));
}

/** config.num_labels, else the size of id2label, else transformers' default of 2. */
export function numLabelsOf(config: { num_labels?: number; id2label?: Record<string, string> }, override?: number): number {
  const n = override ?? config.num_labels ?? (config.id2label ? Object.keys(config.id2label).length : 2);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`numLabels must be a positive integer, got ${n}`);
  return n;
}

/** Checks token ids (int32 [batch, seq], seq within the position table) and that the attention
 * mask and token types, when given, have their shape. */
export function checkInputIds(model: string, ids: Tensor, maxPositions: number, ...others: [name: string, t: Tensor | null | undefined][]): [number, number] {
  if (ids.dtype !== 'int32' || ids.rank !== 2) {
    throw new TypeError(`${model}: inputIds must be an int32 tensor [batch, seq], got ${ids.dtype} [${ids.shape.join(', ')}]`);
  }
  const [b, t] = ids.shape as [number, number];
  if (t > maxPositions) throw new RangeError(`${model}: sequence length ${t} exceeds max_position_embeddings (${maxPositions})`);
  for (const [name, x] of others) {
    if (x && (x.rank !== 2 || x.shape[0] !== b || x.shape[1] !== t)) {
      throw new RangeError(`${model}: ${name} must be [${b}, ${t}] as inputIds, got [${x.shape.join(', ')}]`);
    }
  }
  return [b, t];
}

/** The hidden state of the first token (CLS / <s>) of each sequence: [B, T, E] -> [B, E]. */
export function firstToken(hidden: Tensor): Tensor {
  return hidden.select(1, 0);
}

/** hidden [B, T, E] at one position per sequence, `index` int32 [B] -> [B, E]. */
export function tokenAt(hidden: Tensor, index: Tensor): Tensor {
  const [b, , e] = hidden.shape as [number, number, number];
  const idx = index.reshape(b, 1, 1).expand(b, 1, e);
  return A.gather(hidden, 1, idx).reshape(b, e);
}


/** Names of a text model's blocks from input to output (embeddings, then each layer), for
 * layer-wise learning rates and gradual unfreezing. */
export function encoderBlocks(prefix: string, numLayers: number, layerPath: string): string[] {
  return [`${prefix}.embeddings`, ...Array.from({ length: numLayers }, (_, i) => `${prefix}.${layerPath}.${i}`)];
}
