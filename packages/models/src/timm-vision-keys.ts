/**
 * timm's EfficientNet and MobileNetV3 checkpoints (efficientnet_b0..b4, mobilenetv3_large_100,
 * mobilenetv3_small_100) into the torchvision-named networks here. The two libraries build the
 * same layers and name them differently: timm has `conv_stem`/`bn1`, stages of blocks
 * `blocks.{stage}.{block}` whose parts are named (`conv_pw`, `conv_dw`, `se.conv_reduce`,
 * `conv_pwl`, `bn1..3`), and a head `conv_head` (+ `bn2` in EfficientNet) and `classifier`;
 * torchvision numbers the parts of Sequentials. The map below renames by those rules, reshapes
 * MobileNetV3's 1x1 `conv_head` into the Linear `classifier.0`, and leaves anything else as it
 * is, so the strict load names it.
 *
 * Out of scope, because the keys are the same and the numbers are not: timm's `tf_` ports
 * (tf_efficientnet_b*, tf_mobilenetv3_*) pad like TensorFlow ('same', asymmetric) and use
 * BatchNorm eps 1e-3; loaded here they give other outputs. Variants with other structures
 * (mobilenetv3_rw, *_minimal_*, other widths) fail the strict load on their shapes or keys.
 */
import { isHostValue, type Module, type StateDict, type StateValue } from './nn/module.js';

export type TimmVisionArch = 'efficientnet' | 'mobilenetv3';

/**
 * The parts of timm's two block kinds, in the order of torchvision's `block` Sequential.
 * 'SE' is the squeeze-excitation's index, 'P' the projection's: after the SE when the block
 * has one.
 */
const BLOCK_PARTS = {
  // InvertedResidual: 1x1 expansion, depthwise, squeeze-excitation, 1x1 projection.
  ir: { se: 2, parts: { conv_pw: '0.0', bn1: '0.1', conv_dw: '1.0', bn2: '1.1', 'se.conv_reduce': 'SE.fc1', 'se.conv_expand': 'SE.fc2', conv_pwl: 'P.0', bn3: 'P.1' } },
  // DepthwiseSeparableConv, timm's block where the expansion ratio is 1 (torchvision's block
  // without the expansion conv): depthwise, squeeze-excitation, 1x1 projection.
  ds: { se: 1, parts: { conv_dw: '0.0', bn1: '0.1', 'se.conv_reduce': 'SE.fc1', 'se.conv_expand': 'SE.fc2', conv_pw: 'P.0', bn2: 'P.1' } },
} as const;

/** The top-level modules: timm name -> torchvision name; `{last}` is the features index after the blocks. */
const TOP = {
  efficientnet: { conv_stem: 'features.0.0', bn1: 'features.0.1', conv_head: 'features.{last}.0', bn2: 'features.{last}.1', classifier: 'classifier.1' },
  // timm's head convolves the pooled features (a 1x1 conv with bias): torchvision's Linear.
  mobilenetv3: { conv_stem: 'features.0.0', bn1: 'features.0.1', conv_head: 'classifier.0', classifier: 'classifier.3' },
} as const;

/** MobileNetV3's last 1x1 conv is timm's last stage, one ConvBnAct block. */
const CONV_BN_ACT = { conv: '0', bn1: '1' } as const;

const BLOCK_KEY = /^blocks\.(\d+)\.(\d+)\.(.+)\.([^.]+)$/;
const TOP_KEY = /^([a-z_0-9]+)\.([^.]+)$/;

export interface TimmKeyMap {
  /** Model key -> checkpoint key, for every checkpoint key that is loaded. */
  keys: Map<string, string>;
  /** [checkpoint key, model key] of the keys loaded under another name. */
  renamed: [string, string][];
  /** Model keys whose tensor is reshaped: MobileNetV3's conv_head [out, in, 1, 1] into a Linear's [out, in]. */
  reshaped: string[];
  /** Checkpoint keys no rule matched, passed on unchanged for the strict load to report. */
  unmatched: string[];
}

/** Whether these keys are timm's layout of EfficientNet / MobileNetV3 (it has `conv_stem`). */
export function isTimmVisionLayout(keys: Iterable<string>): boolean {
  for (const k of keys) if (k.startsWith('conv_stem.')) return true;
  return false;
}

/**
 * Maps a timm EfficientNet or MobileNetV3 checkpoint's keys to torchvision's. A block's kind
 * (expansion or not, squeeze-excitation or not) and the stages' lengths are read from the keys
 * themselves, so any depth and stage layout of these two families maps.
 */
export function mapTimmVisionKeys(arch: TimmVisionArch, checkpointKeys: Iterable<string>): TimmKeyMap {
  if (arch !== 'efficientnet' && arch !== 'mobilenetv3') throw new RangeError(`mapTimmVisionKeys: arch must be 'efficientnet' or 'mobilenetv3', got ${JSON.stringify(arch)}`);
  const all = [...checkpointKeys];
  // Per block: the names of its parts, to tell its kind.
  const blocks = new Map<string, Set<string>>();
  for (const k of all) {
    const m = BLOCK_KEY.exec(k);
    if (!m) continue;
    const id = `${m[1]}.${m[2]}`;
    if (!blocks.has(id)) blocks.set(id, new Set());
    blocks.get(id)!.add(m[3]!);
  }
  const ids = [...blocks.keys()].map((id) => id.split('.').map(Number) as [number, number]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const numStages = ids.length ? ids[ids.length - 1]![0] + 1 : 0;
  // MobileNetV3's features are flat: features.1.. are the blocks in order, then the last conv.
  const flat = new Map(ids.map(([s, j], i) => [`${s}.${j}`, i + 1]));
  const last = arch === 'efficientnet' ? numStages + 1 : ids.length;

  const out: TimmKeyMap = { keys: new Map(), renamed: [], reshaped: [], unmatched: [] };
  const add = (key: string, target: string | null): void => {
    const k = target ?? key;
    if (target === null) out.unmatched.push(key);
    const twin = out.keys.get(k);
    if (twin !== undefined) throw new RangeError(`the checkpoint keys "${twin}" and "${key}" both map to ${k}`);
    out.keys.set(k, key);
    if (k !== key) out.renamed.push([key, k]);
  };
  for (const key of all) {
    const b = BLOCK_KEY.exec(key);
    if (b) {
      const [, stage, index, part, leaf] = b;
      const id = `${stage}.${index}`;
      const parts = blocks.get(id)!;
      if (arch === 'mobilenetv3' && parts.has('conv')) {
        const to = CONV_BN_ACT[part as keyof typeof CONV_BN_ACT];
        add(key, to === undefined ? null : `features.${flat.get(id)}.${to}.${leaf}`);
        continue;
      }
      const kind = parts.has('conv_pwl') ? BLOCK_PARTS.ir : BLOCK_PARTS.ds;
      const hasSe = parts.has('se.conv_reduce');
      const to = (kind.parts as Record<string, string>)[part!];
      const prefix = arch === 'efficientnet' ? `features.${Number(stage) + 1}.${index}` : `features.${flat.get(id)}`;
      add(key, to === undefined ? null : `${prefix}.block.${to.replace('SE', String(kind.se)).replace('P', String(kind.se + (hasSe ? 1 : 0)))}.${leaf}`);
      continue;
    }
    const t = TOP_KEY.exec(key);
    const to = t ? (TOP[arch] as Record<string, string>)[t[1]!] : undefined;
    if (to === undefined) {
      add(key, null);
      continue;
    }
    add(key, `${to.replace('{last}', String(last))}.${t![2]}`);
    if (arch === 'mobilenetv3' && t![1] === 'conv_head' && t![2] === 'weight') out.reshaped.push('classifier.0.weight');
  }
  return out;
}

/** A 1x1 conv weight [out, in, 1, 1] as a Linear's [out, in]. */
function squeeze1x1(v: StateValue, key: string): StateValue {
  const s = [...v.shape];
  if (s.length !== 4 || s[2] !== 1 || s[3] !== 1) throw new RangeError(`${key}: expected a 1x1 conv weight [out, in, 1, 1], got [${s.join(', ')}]`);
  return isHostValue(v) ? { ...v, shape: [s[0]!, s[1]!] } : v.reshape([s[0]!, s[1]!]);
}

/**
 * Rewrites the entries under `prefix` from timm's names to torchvision's, in place, when they
 * are timm's layout (the load-time hook of EfficientNet and MobileNetV3); returns the map, or
 * null when the entries are not timm's.
 */
export function remapTimmVisionEntries(arch: TimmVisionArch, entries: Map<string, StateValue>, prefix = ''): TimmKeyMap | null {
  const own = [...entries.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  if (!isTimmVisionLayout(own)) return null;
  const map = mapTimmVisionKeys(arch, own);
  const values = new Map(own.map((k) => [k, entries.get(prefix + k)!]));
  for (const k of own) entries.delete(prefix + k);
  for (const [to, from] of map.keys) {
    const v = values.get(from)!;
    entries.set(prefix + to, map.reshaped.includes(to) ? squeeze1x1(v, from) : v);
  }
  return map;
}

/**
 * Loads a timm checkpoint into an EfficientNet or MobileNetV3 strictly, through the key map,
 * and returns what it renamed and reshaped. A checkpoint in torchvision's layout loads as it is
 * (nothing renamed); any missing, unexpected or mis-shaped key throws one StateDictError.
 */
export function loadTimmVisionCheckpoint(model: Module & { readonly timmArch: TimmVisionArch }, dict: StateDict): TimmKeyMap {
  const entries = new Map(dict instanceof Map ? dict : Object.entries(dict));
  const map = remapTimmVisionEntries(model.timmArch, entries) ?? { keys: new Map([...entries.keys()].map((k) => [k, k])), renamed: [], reshaped: [], unmatched: [] };
  model.loadStateDict(entries, { strict: true });
  return map;
}
