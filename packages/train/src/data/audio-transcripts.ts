/** Clips with transcripts for CTC training: the transcripts encoded by a character tokenizer
 * and padded with -100 (Hugging Face's labels) to the longest, the clips augmented (training,
 * seeded) and normalised as AudioDataset's. */
import { augmentClip, DEFAULT_AUDIO_AUGMENT, normalizeClip, type AudioAugment } from './audio.js';
import { hashInts, type Dataset, type Sample } from './dataset.js';
import { IGNORE_INDEX } from './loader.js';

/** What a transcript dataset needs of a tokenizer (CtcCharTokenizer of @tl/models). */
export interface TranscriptEncoder {
  encode(text: string): number[];
}

export class AudioTranscriptDataset implements Dataset {
  readonly inputShape: number[];
  readonly fingerprint: string;
  readonly augments: boolean;
  private readonly labelRows: Int32Array[];
  private readonly augment: AudioAugment;
  constructor(
    readonly clips: Float32Array[],
    readonly transcripts: string[],
    tokenizer: TranscriptEncoder,
    readonly sampleRate: number,
    identity: string,
    augment: boolean | AudioAugment = false,
  ) {
    if (clips.length !== transcripts.length) throw new RangeError(`AudioTranscriptDataset: ${clips.length} clips but ${transcripts.length} transcripts`);
    const len = clips[0]?.length ?? 0;
    if (clips.some((c) => c.length !== len)) throw new RangeError('AudioTranscriptDataset: every clip must have the same length (pad or crop them first)');
    const ids = transcripts.map((t, i) => {
      const e = tokenizer.encode(t);
      if (e.length === 0) throw new RangeError(`AudioTranscriptDataset: transcript ${i} (${JSON.stringify(t)}) is empty`);
      return e;
    });
    const width = Math.max(0, ...ids.map((e) => e.length));
    this.labelRows = ids.map((e) => {
      const row = new Int32Array(width).fill(IGNORE_INDEX);
      row.set(e);
      return row;
    });
    this.inputShape = [len];
    this.augments = augment !== false;
    this.augment = augment === true || augment === false ? DEFAULT_AUDIO_AUGMENT : augment;
    this.fingerprint = `audio-transcripts:${identity}:${clips.length}:${len}@${sampleRate}:${hashInts(ids.flat())}`;
  }
  get length(): number {
    return this.clips.length;
  }
  labels(): Int32Array[] {
    return this.labelRows;
  }
  async get(i: number, augmentSeed?: number): Promise<Sample> {
    const clip = this.clips[i];
    if (!clip) throw new RangeError(`sample ${i} is out of range for ${this.clips.length} clips`);
    const x = augmentSeed !== undefined && this.augments ? augmentClip(clip, augmentSeed, this.augment) : clip;
    return { input: normalizeClip(x), label: this.labelRows[i]! };
  }
}
