/**
 * The tape: each differentiable op on inputs that require gradients records a `Node` on its
 * output. `backward` walks the nodes from the root in reverse topological order, frees each
 * node's saved activations as soon as its rule has run, and accumulates into leaves' `.grad`.
 * Ops whose inputs need no gradient record nothing and save nothing.
 */
import { add, cast, keep, Tensor, fmt, ones, type GradNodeLike } from '@tl/tensor';

/** Computes the gradients of an op's inputs from its output's gradient. `needs[i]` says
 * whether input i wants one (rules skip the work, e.g. the weight gradient of a frozen conv). */
export type BackwardRule = (g: Tensor, saved: readonly Tensor[], needs: readonly boolean[]) => (Tensor | null)[];

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` without recording a tape (inference, feature extraction, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    const r = fn();
    if (r instanceof Promise) {
      return r.finally(() => (gradEnabled = prev)) as T;
    }
    gradEnabled = prev;
    return r;
  } catch (e) {
    gradEnabled = prev;
    throw e;
  }
}

/** Runs `fn` with recording on, inside a `noGrad` region too. */
export function enableGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

export class Node implements GradNodeLike {
  private saved: Tensor[];
  private freed = false;

  constructor(
    readonly name: string,
    readonly inputs: readonly (Tensor | null)[],
    private readonly rule: BackwardRule,
    saved: readonly Tensor[],
  ) {
    // Aliases outlive the caller's scopes and disposals until backward (or the output's
    // own disposal) releases them.
    this.saved = saved.map((t) => t.alias());
  }

  get isFreed(): boolean {
    return this.freed;
  }

  run(g: Tensor): (Tensor | null)[] {
    if (this.freed) {
      throw new Error(
        `backward through ${this.name} a second time: its saved tensors were freed by the first backward. ` +
          'Call backward({ retainGraph: true }) the first time if you need to go through the graph twice.',
      );
    }
    const needs = this.inputs.map((t) => t !== null && t.requiresGrad);
    return this.rule(g, this.saved, needs);
  }

  release(): void {
    if (this.freed) return;
    this.freed = true;
    for (const t of this.saved) t.dispose();
    this.saved = [];
  }
}

/** True when an op on these inputs must be recorded. */
export function needsGrad(...inputs: readonly (Tensor | number | null | undefined)[]): boolean {
  if (!gradEnabled) return false;
  for (const t of inputs) if (t instanceof Tensor && t.requiresGrad) return true;
  return false;
}

/** Outputs `record` marked under `markOnly`, or null when recording a tape. */
let marked: Set<Tensor> | null = null;

/**
 * Runs `fn` marking the outputs that would need a gradient (requiresGrad) without recording
 * nodes or saving tensors: `checkpoint` learns this way, keeping no activations, whether its
 * function reaches a tensor that wants a gradient. Returns the result and the marked outputs.
 */
export function markOnly<T>(fn: () => T): { result: T; marked: ReadonlySet<Tensor> } {
  const prev = marked;
  const mine = new Set<Tensor>();
  marked = mine;
  try {
    return { result: enableGrad(fn), marked: mine };
  } finally {
    marked = prev;
  }
}

export function isMarkingOnly(): boolean {
  return marked !== null;
}

/** Attaches a node to `out` when any input requires a gradient; returns `out`. */
export function record(
  name: string,
  out: Tensor,
  inputs: readonly (Tensor | number | null | undefined)[],
  rule: BackwardRule,
  saved: readonly Tensor[] = [],
): Tensor {
  if (!needsGrad(...inputs)) return out;
  if (marked) {
    out.requiresGrad = true;
    marked.add(out);
    return out;
  }
  const ins = inputs.map((t) => (t instanceof Tensor ? t : null));
  out.requiresGrad = true;
  out.gradNode = new Node(name, ins, rule, saved);
  return out;
}

export interface BackwardOptions {
  /** Keep saved tensors so backward can run through the graph again. */
  retainGraph?: boolean;
}

/**
 * Accumulates d(root)/d(leaf) into every leaf's `.grad`. `grad` is the upstream gradient
 * (required unless `root` has one element).
 */
export function backward(root: Tensor, grad?: Tensor, opts: BackwardOptions = {}): void {
  root.assertAlive();
  if (!root.requiresGrad) {
    throw new Error(`backward() on ${root}: it does not require grad (no input of the ops that made it has requiresGrad = true, or they ran inside noGrad)`);
  }
  if (!grad && root.size !== 1) {
    throw new Error(`backward() on a non-scalar ${root} needs an explicit gradient of shape ${fmt(root.shape)}`);
  }
  if (grad && (grad.shape.length !== root.shape.length || grad.shape.some((d, i) => d !== root.shape[i]))) {
    throw new Error(`backward(): gradient shape ${fmt(grad.shape)} does not match ${fmt(root.shape)}`);
  }
  const order = topoOrder(root);
  // Every gradient in `pending` belongs to this walk and is freed once propagated.
  const pending = new Map<Tensor, Tensor>();
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    const seed = grad ? detach(grad) : ones(root.shape, root.dtype);
    if (!root.gradNode) {
      accumulateLeaf(root, seed);
      return;
    }
    pending.set(root, seed);
    for (const t of order) {
      const g = pending.get(t);
      if (!g) continue;
      pending.delete(t);
      const node = t.gradNode as Node;
      const grads = node.run(g).map((gi) => (gi === g ? detach(g) : gi));
      g.dispose();
      if (!opts.retainGraph) node.release();
      node.inputs.forEach((input, i) => {
        let gi = grads[i];
        if (!gi) return;
        if (input && input.requiresGrad && gi.dtype !== input.dtype) {
          // A gradient has its input's dtype, as in PyTorch: a rule computing a float16
          // input's gradient in float32 (or the reverse) is rounded here, once.
          const c = cast(gi, input.dtype);
          gi.dispose();
          gi = c;
        }
        if (!input || !input.requiresGrad) {
          gi.dispose();
          return;
        }
        if (!sameShape(gi.shape, input.shape)) {
          throw new Error(`internal: ${node.name} gave a gradient of shape ${fmt(gi.shape)} for an input of shape ${fmt(input.shape)}`);
        }
        if (!input.gradNode) {
          accumulateLeaf(input, gi);
          return;
        }
        const cur = pending.get(input);
        if (cur) {
          pending.set(input, add(cur, gi));
          cur.dispose();
          gi.dispose();
        } else {
          pending.set(input, gi);
        }
      });
    }
  } finally {
    gradEnabled = prev;
    for (const g of pending.values()) g.dispose();
  }
}

/** Adds `g` into `leaf.grad` (contiguous, outside every scope) and frees `g`. */
function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (leaf.grad) {
    const sum = add(leaf.grad, g);
    leaf.grad.dispose();
    leaf.grad = keep(sum);
  } else {
    leaf.grad = keep(g.contiguous());
  }
  g.dispose();
}

/** Tensors with a node reachable from root, each after every tensor that uses it. */
function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  const stack: [Tensor, number][] = [];
  if (root.gradNode) stack.push([root, 0]);
  visited.add(root);
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const [t, i] = top;
    const node = t.gradNode as Node;
    if (i < node.inputs.length) {
      top[1]++;
      const input = node.inputs[i];
      if (input && input.gradNode && !visited.has(input)) {
        visited.add(input);
        stack.push([input, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order.reverse();
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Sets every given tensor's `.grad` to null, freeing it. */
export function zeroGrad(tensors: Iterable<Tensor>): void {
  for (const t of tensors) {
    if (t.grad) {
      t.grad.dispose();
      t.grad = null;
    }
  }
}

/** A tensor that shares `t`'s data but is cut from the graph. */
export function detach(t: Tensor): Tensor {
  const a = t.alias();
  // alias() keeps the handle out of scopes; a detached tensor is an ordinary value again.
  t.engine.track(a);
  return a;
}
