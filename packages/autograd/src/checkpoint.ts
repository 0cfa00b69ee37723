/**
 * Gradient checkpointing, as torch.utils.checkpoint: the forward keeps none of `fn`'s
 * activations, and backward runs `fn` again with recording on and backpropagates through the
 * recomputation. A stack of checkpointed blocks then holds only the blocks' inputs plus one
 * block's activations at a time, for about one more forward pass of arithmetic.
 */
import * as T from '@tl/tensor';
import { Tensor } from '@tl/tensor';
import { backward, detach, enableGrad, isGradEnabled, isMarkingOnly, markOnly, Node } from './graph.js';

let recomputing = 0;

/**
 * True while `checkpoint` re-runs a forward inside backward. Layers that change state in their
 * forward (BatchNorm's running statistics) skip it then, so the recomputation leaves the model
 * as one forward would (PyTorch updates them twice).
 */
export function isRecomputing(): boolean {
  return recomputing > 0;
}

/**
 * `fn(...inputs)` with its intermediate tensors freed after the forward and recomputed in
 * backward. Gradients reach the inputs that require them and every tensor `fn` uses that
 * requires one (a block's parameters), equal to those without checkpointing: the random
 * generator's state is restored for the recomputation, so dropout draws the same mask. Other
 * arguments of the block (masks, flags) are captured by `fn`. Outside recording (noGrad) it
 * simply calls `fn`.
 */
export function checkpoint(fn: (...inputs: Tensor[]) => Tensor, ...inputs: Tensor[]): Tensor {
  if (typeof fn !== 'function') throw new TypeError(`checkpoint: fn must be a function, got ${typeof fn}`);
  inputs.forEach((x, i) => {
    if (!(x instanceof Tensor)) throw new TypeError(`checkpoint: input ${i} must be a Tensor, got ${x === null ? 'null' : typeof x}; capture other arguments in fn`);
    x.assertAlive();
  });
  if (!isGradEnabled() || isMarkingOnly()) return fn(...inputs);
  const rng = T.getRngState();
  const { result: out, marked } = T.tidy(() => markOnly(() => fn(...inputs)));
  if (!(out instanceof Tensor)) throw new TypeError(`checkpoint: fn must return a Tensor, got ${out === null ? 'null' : typeof out}`);
  // An output no recorded op made (an input passed through, or nothing needs a gradient)
  // carries its own history already.
  if (!marked.has(out)) return out;
  out.gradNode = new Node('checkpoint', inputs, (g, saved, needs) => recompute(fn, saved, needs, rng, g), inputs);
  return out;
}

function recompute(fn: (...inputs: Tensor[]) => Tensor, saved: readonly Tensor[], needs: readonly boolean[], rng: { seed: number; stream: number }, g: Tensor): (Tensor | null)[] {
  return T.tidy(() => {
    const xs = saved.map((s, i) => {
      const x = detach(s);
      x.requiresGrad = needs[i]!;
      return x;
    });
    const after = T.getRngState();
    T.setRngState(rng);
    recomputing++;
    let y: Tensor;
    try {
      y = enableGrad(() => fn(...xs));
    } finally {
      recomputing--;
      T.setRngState(after);
    }
    if (y.requiresGrad) backward(y, g);
    // The gradients leave the scope with the caller; the detached inputs are freed with it.
    return xs.map((x) => {
      const gx = x.grad;
      x.grad = null;
      return gx;
    });
  });
}
