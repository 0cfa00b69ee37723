/** The networks of `bench:models`, their inputs and how their arithmetic is counted. */

export const NETWORK_IDS = ['resnet18', 'resnet50', 'mobilenet_v2', 'efficientnet_b0', 'vit_b_16', 'bert', 'gpt2'] as const;
export type NetworkId = (typeof NETWORK_IDS)[number];

export interface NetworkInfo {
  id: NetworkId;
  label: string;
  kind: 'image' | 'text';
  /** Image side or sequence length. */
  size: number;
  /** Classes of the head (ImageNet's 1000 for images, 2 for the text classifiers). */
  classes: number;
  /**
   * Attention's two batched matmuls (QK^T and AV: 4 S^2 D FLOPs per layer and sample), which
   * no Linear or Conv2d module holds; the rest is counted from the modules (see ours.ts).
   */
  attentionFlops: number;
}

const attention = (layers: number, seq: number, width: number): number => layers * 4 * seq * seq * width;

export const NETWORKS: Record<NetworkId, NetworkInfo> = {
  resnet18: { id: 'resnet18', label: 'ResNet-18', kind: 'image', size: 224, classes: 1000, attentionFlops: 0 },
  resnet50: { id: 'resnet50', label: 'ResNet-50', kind: 'image', size: 224, classes: 1000, attentionFlops: 0 },
  mobilenet_v2: { id: 'mobilenet_v2', label: 'MobileNetV2', kind: 'image', size: 224, classes: 1000, attentionFlops: 0 },
  efficientnet_b0: { id: 'efficientnet_b0', label: 'EfficientNet-B0', kind: 'image', size: 224, classes: 1000, attentionFlops: 0 },
  vit_b_16: { id: 'vit_b_16', label: 'ViT-B/16', kind: 'image', size: 224, classes: 1000, attentionFlops: attention(12, 197, 768) },
  bert: { id: 'bert', label: 'BERT-base', kind: 'text', size: 128, classes: 2, attentionFlops: attention(12, 128, 768) },
  gpt2: { id: 'gpt2', label: 'GPT-2 small', kind: 'text', size: 128, classes: 2, attentionFlops: attention(12, 128, 768) },
};

/** Deterministic token ids (no padding, below every vocabulary's size). */
export function tokenIds(batch: number, seq: number): Int32Array {
  return Int32Array.from({ length: batch * seq }, (_, i) => 1000 + ((i * 7919) % 28000));
}

/** Deterministic images, uniform in [-1, 1). */
export function images(batch: number, size: number): Float32Array {
  let s = 12345;
  return Float32Array.from({ length: batch * 3 * size * size }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s / 2 ** 31) - 1;
  });
}
