/** Differentiable joins, pads and index ops. */
import * as T from '@tl/tensor';
import { normDim, type Tensor } from '@tl/tensor';
import { dropCast, fullPrecision } from '../autocast.js';
import { record } from '../graph.js';

export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  const y = T.cat(tensors, dim);
  const d = normDim(dim, y.rank);
  const sizes = tensors.map((t) => t.shape[d]!);
  return record('cat', y, tensors, (g, _s, needs) => {
    let off = 0;
    return sizes.map((n, i) => {
      const start = off;
      off += n;
      return needs[i] ? g.slice(d, start, start + n) : null;
    });
  });
}

export const concat = cat;

export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  const y = T.stack(tensors, dim);
  const d = normDim(dim, y.rank);
  return record('stack', y, tensors, (g, _s, needs) => tensors.map((_, i) => (needs[i] ? g.select(d, i) : null)));
}

/** F.pad; only 'constant' mode is differentiable here (reflect/replicate are not yet). */
export function pad(x: Tensor, pads: readonly number[], opts: T.PadOptions = {}): Tensor {
  x = fullPrecision(x);
  if (x.requiresGrad && (opts.mode ?? 'constant') !== 'constant') {
    throw new Error(`pad: mode '${opts.mode}' has no gradient rule yet; use mode 'constant' on tensors that require grad`);
  }
  const y = T.pad(x, pads, opts);
  return record('pad', y, [x], (g) => {
    // Negating the pads crops the padded gradient back to x's shape.
    return [T.pad(g, pads.map((p) => -p))];
  });
}

export function embedding(indices: Tensor, weight: Tensor, opts: { paddingIdx?: number } = {}): Tensor {
  const w = fullPrecision(weight);
  const y = T.embedding(indices, w);
  const v = w.shape[0]!;
  const out = record('embedding', y, [w], (g, [idx]) => [T.embeddingBackward(idx!, g, v, opts)], [indices]);
  dropCast(weight, w);
  return out;
}

export function indexSelect(x: Tensor, dim: number, index: Tensor): Tensor {
  x = fullPrecision(x);
  const y = T.indexSelect(x, dim, index);
  return record('indexSelect', y, [x], (g, [idx]) => [T.indexSelectBackward(g, x.shape, dim, idx!)], [index]);
}

export function gather(x: Tensor, dim: number, index: Tensor): Tensor {
  x = fullPrecision(x);
  const y = T.gather(x, dim, index);
  return record('gather', y, [x], (g, [idx]) => [T.gatherBackward(g, x.shape, dim, idx!)], [index]);
}

export function flip(x: Tensor, dims: number | readonly number[]): Tensor {
  x = fullPrecision(x);
  return record('flip', T.flip(x, dims), [x], (g) => [T.flip(g, dims)]);
}

/** Tensor.repeat; the gradient sums the tiles: out dim d of size r·n is viewed as [r, n]. */
export function repeat(x: Tensor, ...repeats: number[] | [readonly number[]]): Tensor {
  x = fullPrecision(x);
  const y = T.repeat(x, ...repeats);
  const reps = repeats.length === 1 && Array.isArray(repeats[0]) ? [...(repeats[0] as readonly number[])] : (repeats as number[]);
  const inShape = [...new Array<number>(reps.length - x.rank).fill(1), ...x.shape];
  return record('repeat', y, [x], (g) => {
    const tiled = g.reshape(inShape.flatMap((n, d) => [reps[d]!, n]));
    return [T.sum(tiled, reps.map((_, d) => 2 * d)).reshape(x.shape)];
  });
}

export function tril(x: Tensor, diagonal = 0): Tensor {
  x = fullPrecision(x);
  return record('tril', T.tril(x, diagonal), [x], (g) => [T.tril(g, diagonal)]);
}

export function triu(x: Tensor, diagonal = 0): Tensor {
  x = fullPrecision(x);
  return record('triu', T.triu(x, diagonal), [x], (g) => [T.triu(g, diagonal)]);
}
