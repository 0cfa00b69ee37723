/** A network with a replaceable classification head (the `fc` / `classifier` / `head` of timm). */
import type { Tensor } from '@tl/autograd';
import { Linear } from './layers.js';
import { Module } from './module.js';

export abstract class ClassifierModel extends Module {
  /** Dotted path of the head Linear: 'fc', 'linear', 'classifier.1', 'head' … */
  abstract readonly classifierPath: string;

  abstract override forward(x: Tensor, mask?: Tensor): Tensor;

  /** Everything before the head: [N, numFeatures]. Feature extraction caches this. */
  abstract forwardFeatures(x: Tensor, mask?: Tensor): Tensor;

  abstract forwardHead(features: Tensor): Tensor;

  /** Parameter-name prefixes from input to head, for layer-wise lr decay and gradual unfreezing. */
  abstract blockOrder(): string[];

  /** The head's input width. */
  get numFeatures(): number {
    return this.head().inFeatures;
  }

  get numClasses(): number {
    return this.head().outFeatures;
  }

  head(): Linear {
    const m = this.resolve(this.classifierPath);
    if (!(m instanceof Linear)) throw new Error(`${this.constructor.name}: ${this.classifierPath} is not a Linear head`);
    return m;
  }

  /** Replaces the head with a freshly initialised Linear of `numClasses` outputs (trainable). */
  resetClassifier(numClasses: number): this {
    if (!Number.isInteger(numClasses) || numClasses < 1) throw new RangeError(`resetClassifier: numClasses must be a positive integer, got ${numClasses}`);
    const old = this.head();
    const fresh = new Linear(old.inFeatures, numClasses, { bias: old.bias !== null });
    const parts = this.classifierPath.split('.');
    const last = parts.pop()!;
    const parent = parts.length ? this.resolve(parts.join('.')) : this;
    parent.swapChild(last, fresh);
    return this;
  }

  /** The parameter names of the head (for freezing everything else). */
  headPattern(): string {
    return `${this.classifierPath}.*`;
  }

  private resolve(path: string): Module {
    let m: Module = this;
    for (const p of path.split('.')) {
      const next = m.child(p);
      if (!next) throw new Error(`${this.constructor.name}: no submodule ${path}`);
      m = next;
    }
    return m;
  }
}
