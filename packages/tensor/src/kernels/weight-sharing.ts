/**
 * How the lanes of a workgroup whose invocations all use the same weights (the direct and
 * pointwise convolutions: a workgroup covers pixels of the same output channels) get them.
 * `lanes`: every lane loads every weight it uses, which on lavapipe is a lane-by-lane loop per
 * load even though the address is the same (portable). `subgroup`: lane l of each subgroup
 * loads the weight of the block's channel l and `subgroupBroadcast` hands it to the others, so
 * a reduction step loads one or two weights per lane instead of 8 or 16 (on lavapipe 1.6x for
 * the pointwise kernel over MobileNetV2's and EfficientNet-B0's 1x1 shapes, 1.1-1.35x for the
 * direct kernel over ResNet-18's stem, strided and 7 px convolutions).
 */
import { engine } from '../engine.js';

export type WeightSharing = 'lanes' | 'subgroup';
export const WEIGHT_SHARING: readonly WeightSharing[] = ['lanes', 'subgroup'];

/** Subgroups of at least 8 lanes: the kernels broadcast from lanes 0-7. */
const subgroupReady = (): boolean => engine().subgroupMinSize >= 8;

let forced: WeightSharing | null = null;

/** Runs the convolutions that share weights across lanes with `sharing` (tests and
 * benchmarks); null restores the default: `subgroup` where the adapter has the `subgroups`
 * feature with subgroups of 8 lanes or more, else `lanes`. */
export function forceWeightSharing(sharing: WeightSharing | null): void {
  if (sharing !== null && !WEIGHT_SHARING.includes(sharing)) {
    throw new RangeError(`forceWeightSharing: unknown way '${String(sharing)}'; expected lanes or subgroup`);
  }
  if (sharing === 'subgroup' && !subgroupReady()) {
    throw new RangeError(`forceWeightSharing: 'subgroup' needs the adapter's 'subgroups' feature with subgroups of 8 or more lanes (this one: ${engine().subgroupMinSize || 'none'})`);
  }
  forced = sharing;
}

/** The way the next dispatch shares its weights. */
export function weightSharing(): WeightSharing {
  return forced ?? (subgroupReady() ? 'subgroup' : 'lanes');
}

/** WGSL for a kernel that shares weights by `sharing`: the directive it starts with, and the
 * builtin its entry point adds. */
export function subgroupWgsl(sharing: WeightSharing): { enable: string; builtin: string } {
  return sharing === 'subgroup'
    ? { enable: 'enable subgroups;', builtin: ', @builtin(subgroup_invocation_id) sgi: u32' }
    : { enable: '', builtin: '' };
}
