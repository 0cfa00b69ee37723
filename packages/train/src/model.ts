/** What the trainer needs of a model. */
import type { Tensor } from '@tl/autograd';
import type { Module } from '@tl/models';

/** One output, or one per head (a multi-task model). */
export type ModelOutput = Tensor | Record<string, Tensor>;

/** What the trainer needs of a model: a Module with a forward, and optionally the split into
 * features and head that feature caching uses. */
export interface TrainableModel extends Module {
  forward(x: Tensor, mask?: Tensor, tokenTypeIds?: Tensor): ModelOutput;
  forwardFeatures?(x: Tensor, mask?: Tensor, tokenTypeIds?: Tensor): Tensor;
  forwardHead?(features: Tensor): ModelOutput;
  blockOrder?(): string[];
  readonly classifierPath?: string;
  /** The task of each head of a model that returns one output per head (MultiTaskModel): the
   * defaults of the trainer's `tasks`. */
  readonly headTasks?: Readonly<Record<string, Task>>;
  /** In training, the main logits and those of an auxiliary classifier (Inception v3's
   * AuxLogits; null where the model gives none), whose loss on the same targets adds to the main
   * one times `auxLossWeight` (torchvision's reference recipe: 0.4). Not used from cached features. */
  forwardWithAux?(x: Tensor): { logits: Tensor; auxLogits: Tensor | null };
  readonly auxLossWeight?: number;
  /** Whether forward's third argument is token type ids. Default: judged from the parameters
   * forward declares (BERT's three, DistilBERT's two), as Hugging Face's Trainer passes only
   * the inputs a forward names. */
  readonly acceptsTokenTypeIds?: boolean;
}

export type Task = 'classification' | 'multilabel' | 'regression';
