/**
 * Gradient checkpointing of whole models (Hugging Face's gradient_checkpointing_enable, timm's
 * set_grad_checkpointing): a module that runs a stack of blocks declares it with
 * `supportsGradientCheckpointing(this)` and runs them through `runBlocks`;
 * `Module.gradientCheckpointing()` switches every such module below it. Each block is then a
 * `checkpoint`: its activations are recomputed in backward instead of kept.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import type { Module } from './module.js';

const supported = new WeakSet<Module>();
const enabled = new WeakSet<Module>();

/** Declares that `m` runs its blocks through `runBlocks`, so they may be recomputed. */
export function supportsGradientCheckpointing(m: Module): void {
  supported.add(m);
}

/** Switches checkpointing of every supporting module under `root` (itself included). */
export function setGradientCheckpointing(root: Module, on: boolean): void {
  let found = 0;
  for (const [, m] of root.namedModules()) {
    if (!supported.has(m)) continue;
    found++;
    if (on) enabled.add(m);
    else enabled.delete(m);
  }
  if (on && found === 0) {
    throw new Error(`gradientCheckpointing: ${root.constructor.name} has no stack of blocks that can be recomputed (transformer encoders and ResNet stages can)`);
  }
}

export function isGradientCheckpointing(m: Module): boolean {
  return enabled.has(m);
}

/**
 * `x` through each block in turn; each block runs as a `checkpoint` when `owner` has
 * checkpointing on, is training and gradients are recorded (evaluation keeps nothing anyway).
 */
export function runBlocks<B>(owner: Module, blocks: Iterable<B>, x: Tensor, step: (block: B, x: Tensor) => Tensor): Tensor {
  const recompute = enabled.has(owner) && owner.training && A.isGradEnabled();
  let y = x;
  for (const b of blocks) y = recompute ? A.checkpoint((h) => step(b, h), y) : step(b, y);
  return y;
}
