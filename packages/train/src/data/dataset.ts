/**
 * Data sets are lists of samples that load on demand. An image sample is a float32 CHW
 * array already normalised; a text sample is token ids with a mask (and token type ids for
 * sentence pairs); labels are class indices (single-label), 0/1 vectors (multi-label) or
 * float vectors (regression), or one of those per head for a multi-task model.
 */
import { mixSeed, Rng } from '@tl/tensor';
import type { BatchTransform } from './augment/mix.js';

/** A class index, a target vector (multi-label, regression), or a sequence of token ids
 * (text-to-text and causal-LM labels, CTC transcripts; IGNORE_INDEX, -100, where no loss is
 * taken, as Hugging Face's `labels`). */
export type Target = number | Float32Array | Int32Array;

/** One target per head of a multi-task model. A head that is absent (or null) here leaves
 * this sample out of that head's loss and metrics. */
export type HeadTargets = Readonly<Record<string, Target | null | undefined>>;

export function isHeadTargets(label: Target | HeadTargets): label is HeadTargets {
  return typeof label === 'object' && !(label instanceof Float32Array) && !(label instanceof Int32Array);
}

export interface Sample {
  /** Float32 CHW pixels, or int32 token ids. */
  input: Float32Array | Int32Array;
  /** Attention mask for text samples. */
  mask?: Int32Array;
  /** Token type ids (0 for the first text, 1 for the second) of sentence-pair samples. */
  tokenTypeIds?: Int32Array;
  label: Target | HeadTargets;
}

export interface Dataset {
  readonly length: number;
  /** Input shape of one sample ([C, H, W] or [T]). */
  readonly inputShape: number[];
  readonly classes?: string[];
  /** Loads sample `i`; `augmentSeed` set means: apply random augmentation with that seed. */
  get(i: number, augmentSeed?: number): Promise<Sample>;
  /** Labels without loading inputs (for stratified splits and metrics). */
  labels(): (Target | HeadTargets)[];
  /** A stable description of what the samples are (cache keys). */
  readonly fingerprint: string;
  /** Whether `get` with a seed changes the sample (random augmentation is on). */
  readonly augments: boolean;
  /** A batch-level augmentation (mixup, CutMix) the DataLoader applies when it augments. */
  readonly batchTransform?: BatchTransform;
}

/** A view of some indices of another data set. */
export class Subset implements Dataset {
  constructor(readonly base: Dataset, readonly indices: number[], readonly tag = 'subset', private readonly augment?: boolean) {}
  get length(): number {
    return this.indices.length;
  }
  get inputShape(): number[] {
    return this.base.inputShape;
  }
  get classes(): string[] | undefined {
    return this.base.classes;
  }
  get augments(): boolean {
    return this.augment ?? this.base.augments;
  }
  get fingerprint(): string {
    return `${this.base.fingerprint}|${this.tag}:${hashInts(this.indices)}`;
  }
  get(i: number, augmentSeed?: number): Promise<Sample> {
    const j = this.indices[i];
    if (j === undefined) throw new RangeError(`sample ${i} is out of range for a data set of ${this.length}`);
    return this.base.get(j, this.augment === false ? undefined : augmentSeed);
  }
  labels(): (Target | HeadTargets)[] {
    const all = this.base.labels();
    return this.indices.map((i) => all[i]!);
  }
}

export function hashInts(xs: readonly number[]): string {
  let h = 0x12345;
  for (const x of xs) h = mixSeed(h, x);
  return `${xs.length}-${h.toString(16)}`;
}

/**
 * Splits into train and validation keeping each class's share (stratified, seeded). The
 * validation subset never augments.
 */
export function stratifiedSplit(ds: Dataset, valFraction: number, seed = 0): { train: Subset; val: Subset } {
  if (!(valFraction > 0 && valFraction < 1)) throw new RangeError(`valSplit must be in (0, 1), got ${valFraction}`);
  const byClass = new Map<string, number[]>();
  ds.labels().forEach((l, i) => {
    const key = typeof l === 'number' ? String(l) : 'all';
    if (!byClass.has(key)) byClass.set(key, []);
    byClass.get(key)!.push(i);
  });
  const rng = new Rng(mixSeed(seed, 0x5717));
  const train: number[] = [];
  const val: number[] = [];
  for (const idx of byClass.values()) {
    rng.shuffle(idx);
    const nVal = idx.length > 1 ? Math.max(1, Math.round(idx.length * valFraction)) : 0;
    val.push(...idx.slice(0, nVal));
    train.push(...idx.slice(nVal));
  }
  train.sort((a, b) => a - b);
  val.sort((a, b) => a - b);
  return { train: new Subset(ds, train, `train${valFraction}/${seed}`), val: new Subset(ds, val, `val${valFraction}/${seed}`, false) };
}

/** The first `k` samples of each class (seeded choice): few-shot training sets. */
export function takePerClass(ds: Dataset, k: number, seed = 0): Subset {
  const byClass = new Map<number, number[]>();
  ds.labels().forEach((l, i) => {
    if (typeof l !== 'number') throw new Error('takePerClass needs single-label data');
    if (!byClass.has(l)) byClass.set(l, []);
    byClass.get(l)!.push(i);
  });
  const rng = new Rng(mixSeed(seed, 0xfe3));
  const out: number[] = [];
  for (const [c, idx] of [...byClass.entries()].sort((a, b) => a[0] - b[0])) {
    if (idx.length < k) throw new Error(`class ${ds.classes?.[c] ?? c} has ${idx.length} samples, fewer than the ${k} asked for`);
    out.push(...rng.shuffle(idx).slice(0, k));
  }
  return new Subset(ds, out.sort((a, b) => a - b), `take${k}/${seed}`);
}

/** A data set held in memory: inputs already decoded. */
export class TensorDataset implements Dataset {
  readonly augments: boolean;
  constructor(
    readonly inputs: (Float32Array | Int32Array)[],
    readonly targets: (Target | HeadTargets)[],
    readonly inputShape: number[],
    readonly fingerprint: string,
    readonly classes?: string[],
    readonly masks?: Int32Array[],
    private readonly augmentFn?: (x: Float32Array, rng: Rng, index: number) => Float32Array,
    readonly tokenTypeIds?: Int32Array[],
  ) {
    if (inputs.length !== targets.length) throw new Error(`TensorDataset: ${inputs.length} inputs but ${targets.length} labels`);
    this.augments = augmentFn !== undefined;
  }
  get length(): number {
    return this.inputs.length;
  }
  async get(i: number, augmentSeed?: number): Promise<Sample> {
    const x = this.inputs[i];
    if (!x) throw new RangeError(`sample ${i} is out of range for a data set of ${this.length}`);
    const input = augmentSeed !== undefined && this.augmentFn && x instanceof Float32Array ? this.augmentFn(x, new Rng(augmentSeed), i) : x;
    return {
      input,
      label: this.targets[i]!,
      ...(this.masks ? { mask: this.masks[i]! } : {}),
      ...(this.tokenTypeIds ? { tokenTypeIds: this.tokenTypeIds[i]! } : {}),
    };
  }
  labels(): (Target | HeadTargets)[] {
    return this.targets;
  }
}
