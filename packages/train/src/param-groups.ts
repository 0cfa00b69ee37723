/**
 * The optimizer's parameter groups: one per parameter tensor, so unfreezing a block with its
 * own lr, discriminative rates and layer-wise decay are each a matter of that group's lr.
 */
import { nameMatcher } from '@tl/models';
import type { OptimizerSpec, ParamGroup } from './optim.js';
import type { TrainableModel } from './model.js';

export interface ParamGroupOptions {
  /** Learning rate of the head (classifierPath) when it differs from the rest. */
  headLr?: number;
  /** Block i from the head gets lr × layerDecay^i (the model's blockOrder()). */
  layerDecay?: number;
  /** Weight decay on biases and norm weights (rank <= 1) too; off by default. */
  decayNormAndBias?: boolean;
}

/**
 * Each parameter's distance from the head in `blocks` (the model's blockOrder(): patterns as
 * nameMatcher takes them, a block may be a comma list such as VGG's stages). A parameter in no
 * block sits with the first (the most decayed): the stem's loose tensors (ViT's cls_token) are
 * what a block list is most likely to leave out, and an lr too low is the safe side.
 */
export function blockDepths(names: readonly string[], blocks: readonly string[]): Map<string, number> {
  const matchers = blocks.map((b) => nameMatcher(b));
  const depths = new Map<string, number>();
  for (const name of names) {
    const i = matchers.findIndex((m) => m(name));
    depths.set(name, blocks.length - 1 - Math.max(i, 0));
  }
  return depths;
}

export function paramGroups(model: TrainableModel, spec: OptimizerSpec, opts: ParamGroupOptions): ParamGroup[] {
  const base = spec.options.lr ?? (spec.kind === 'sgd' ? 0.01 : 1e-3);
  const wd = spec.options.weightDecay ?? (spec.kind === 'adamw' ? 1e-2 : 0);
  const head = model.classifierPath ? nameMatcher(model.classifierPath) : () => false;
  const params = model.namedParameters();
  const blocks = opts.layerDecay !== undefined ? model.blockOrder?.() ?? [] : [];
  const depths = blocks.length > 0 ? blockDepths(params.map(([n]) => n), blocks) : null;
  return params.map(([name, p]) => {
    let lr = depths ? base * opts.layerDecay! ** depths.get(name)! : base;
    if (opts.headLr !== undefined && head(name)) lr = opts.headLr;
    return { params: [p], lr, weightDecay: opts.decayNormAndBias || p.rank > 1 ? wd : 0, name };
  });
}
