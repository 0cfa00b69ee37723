/** Labelled clips held in memory at the model's rate and length; augmentation (training, seeded)
 * and per-clip normalisation happen in `get`, so a clip is decoded once per run. */
import { augmentClip, DEFAULT_AUDIO_AUGMENT, normalizeClip, type AudioAugment } from './audio.js';
import { hashInts, type Dataset, type Sample } from './dataset.js';

export class AudioDataset implements Dataset {
  readonly inputShape: number[];
  readonly fingerprint: string;
  readonly augments: boolean;
  private readonly augment: AudioAugment;
  constructor(
    readonly clips: Float32Array[],
    readonly targets: number[],
    readonly classes: string[],
    readonly sampleRate: number,
    identity: string,
    augment: boolean | AudioAugment = false,
  ) {
    if (clips.length !== targets.length) throw new RangeError(`AudioDataset: ${clips.length} clips but ${targets.length} targets`);
    const len = clips[0]?.length ?? 0;
    if (clips.some((c) => c.length !== len)) throw new RangeError('AudioDataset: every clip must have the same length (pad or crop them first)');
    this.inputShape = [len];
    this.augments = augment !== false;
    this.augment = augment === true || augment === false ? DEFAULT_AUDIO_AUGMENT : augment;
    this.fingerprint = `audio:${identity}:${clips.length}:${len}@${sampleRate}:${hashInts(targets)}`;
  }
  get length(): number {
    return this.clips.length;
  }
  labels(): number[] {
    return this.targets;
  }
  async get(i: number, augmentSeed?: number): Promise<Sample> {
    const clip = this.clips[i];
    if (!clip) throw new RangeError(`sample ${i} is out of range for ${this.clips.length} clips`);
    const x = augmentSeed !== undefined && this.augments ? augmentClip(clip, augmentSeed, this.augment) : clip;
    return { input: normalizeClip(x), label: this.targets[i]! };
  }
}
