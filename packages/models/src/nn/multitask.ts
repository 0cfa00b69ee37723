/**
 * Several heads on one backbone (multi-task learning): the backbone's features feed one Linear
 * per task, and `forward` returns every head's output by name, as a Keras model with several
 * outputs or a PyTorch module that returns a dict. State-dict keys are `backbone.*` and
 * `heads.<name>.weight|bias`.
 */
import type { Tensor } from '@tl/autograd';
import { Linear, ModuleDict } from './layers.js';
import { Module } from './module.js';

export type HeadTask = 'classification' | 'multilabel' | 'regression';

export interface HeadSpec {
  /** Default 'classification'. */
  task?: HeadTask;
  /** Classes of a classification or multi-label head. */
  numClasses?: number;
  /** Outputs of a regression head. */
  outputs?: number;
}

/** What a backbone needs: features [N, F] from the inputs (every ClassifierModel has this). */
export interface FeatureBackbone extends Module {
  forwardFeatures(x: Tensor, mask?: Tensor, tokenTypeIds?: Tensor): Tensor;
  readonly numFeatures?: number;
  /** The backbone's own head, which the multi-task model leaves out. */
  readonly classifierPath?: string;
  blockOrder?(): string[];
}

export interface MultiTaskOptions {
  heads: Readonly<Record<string, HeadSpec>>;
  /** Width of the backbone's features; default `backbone.numFeatures`. */
  numFeatures?: number;
}

const TASKS: readonly HeadTask[] = ['classification', 'multilabel', 'regression'];

export class MultiTaskModel extends Module {
  /** Everything the heads own: the trainer's head learning rate and feature caching use it. */
  readonly classifierPath = 'heads';
  readonly backbone: FeatureBackbone;
  readonly heads: ModuleDict<Linear>;
  readonly headTasks: Readonly<Record<string, HeadTask>>;
  readonly numFeatures: number;
  /** Path, inside the backbone, of its own classifier: left out of parameters and state dict. */
  private readonly dropped: string | null;

  /**
   * The backbone's own classifier (its `classifierPath`) is dropped, as timm's
   * `reset_classifier(0)` does: its weights are freed, so it neither trains nor lands in
   * checkpoints, and `backbone.forward` stops working (`forwardFeatures` is what runs).
   */
  constructor(backbone: FeatureBackbone, opts: MultiTaskOptions) {
    super();
    const numFeatures = opts.numFeatures ?? backbone.numFeatures;
    if (!Number.isInteger(numFeatures) || numFeatures! < 1) {
      throw new RangeError(`MultiTaskModel: numFeatures must be a positive integer (the width of the backbone's features), got ${numFeatures}`);
    }
    this.numFeatures = numFeatures!;
    const names = Object.keys(opts.heads ?? {});
    if (names.length === 0) throw new RangeError('MultiTaskModel: heads must name at least one head, e.g. { species: { numClasses: 10 } }');
    const tasks: Record<string, HeadTask> = {};
    const linears: Record<string, Linear> = {};
    for (const name of names) {
      const spec = opts.heads[name]!;
      const task = spec.task ?? 'classification';
      if (!TASKS.includes(task)) throw new RangeError(`MultiTaskModel: head "${name}" has task ${JSON.stringify(task)}; expected one of ${TASKS.join(', ')}`);
      const width = task === 'regression' ? spec.outputs : spec.numClasses;
      const key = task === 'regression' ? 'outputs' : 'numClasses';
      if (!Number.isInteger(width) || width! < 1) throw new RangeError(`MultiTaskModel: the ${task} head "${name}" needs ${key} (a positive integer), got ${width}`);
      tasks[name] = task;
      linears[name] = new Linear(this.numFeatures, width!);
    }
    this.headTasks = tasks;
    this.dropped = backbone.classifierPath ?? null;
    if (this.dropped !== null) {
      let own: Module | undefined = backbone;
      for (const part of this.dropped.split('.')) own = own?.child(part);
      own?.dispose();
    }
    this.backbone = this.module('backbone', backbone);
    this.heads = this.module('heads', new ModuleDict(linears));
  }

  /** Whether the backbone takes token type ids (BERT does, DistilBERT does not). */
  get acceptsTokenTypeIds(): boolean {
    return this.backbone.forwardFeatures.length >= 3;
  }

  forwardFeatures(x: Tensor, mask?: Tensor, tokenTypeIds?: Tensor): Tensor {
    return this.backbone.forwardFeatures(x, mask, tokenTypeIds);
  }

  /** Every head's output [N, width] by head name, from shared features [N, F]. */
  forwardHead(features: Tensor): Record<string, Tensor> {
    return Object.fromEntries(this.heads.entries().map(([name, head]) => [name, head.forward(features)]));
  }

  forward(x: Tensor, mask?: Tensor, tokenTypeIds?: Tensor): Record<string, Tensor> {
    return this.forwardHead(this.forwardFeatures(x, mask, tokenTypeIds));
  }

  /** The backbone's blocks (without its dropped classifier), then the heads. */
  blockOrder(): string[] {
    const d = this.dropped;
    const blocks = (this.backbone.blockOrder?.() ?? []).filter((b) => d === null || (b !== d && !b.startsWith(`${d}.`)));
    return [...blocks.map((b) => b.split(',').map((p) => `backbone.${p}`).join(',')), 'heads'];
  }

  override *namedModules(prefix = ''): IterableIterator<[string, Module]> {
    const skip = this.dropped === null ? null : `${prefix ? `${prefix}.` : ''}backbone.${this.dropped}`;
    for (const entry of super.namedModules(prefix)) {
      if (skip === null || (entry[0] !== skip && !entry[0].startsWith(`${skip}.`))) yield entry;
    }
  }
}
