/**
 * Labelled audio on disk: one folder per class of .wav/.flac/.mp3/.ogg files (the layout of
 * Speech Commands and of Hugging Face's `audiofolder`), classes sorted by name.
 *
 * Decoding is audio-decode (npm): the wasm-audio-decoders family (FLAC, Ogg Vorbis, mpg123)
 * compiled to WebAssembly plus a JavaScript WAV reader, so it installs in Node and the browser
 * with no native build and no ffmpeg, and it is maintained. FLAC goes to that family's decoder
 * directly: audio-decode 2.2 calls its streaming `decode` without a flush and loses the last
 * block (4096 of 5512 samples of the fixture); `decodeFile` returns them all. Files are decoded one at a time
 * (its decoders are shared instances), mixed down to mono, cut to the length before resampling
 * (a ten-minute file costs a second's work), resampled to 16 kHz (audio.ts), padded or cropped.
 * A file that is not audio, or an empty clip, is skipped and named in one line; resampling,
 * mixdown and cropping are said once per data set, with their counts.
 */
import { readdir, readFile } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import decode from 'audio-decode';
import { FLACDecoder } from '@wasm-audio-decoders/flac';
import { SPEECH_SAMPLE_RATE, normalizeClip, type AudioAugment } from '../data/audio.js';
import { clipFromDecoded, type ClipFacts, type DecodedAudio } from '../data/audio-clip.js';
import { AudioDataset } from '../data/audio-dataset.js';
import { stratifiedSplit, type Dataset } from '../data/dataset.js';
import { DataError } from './data-error.js';

export const AUDIO_EXTENSIONS = new Set(['.wav', '.flac', '.mp3', '.ogg', '.oga']);

export interface AudioClipOptions {
  /** Rate of the model's input (default 16000). */
  sampleRate?: number;
  /** Samples per clip: shorter ones are zero-padded, longer ones cut (default 1 s). */
  length?: number;
}


const isFlac = (b: Uint8Array): boolean => b.length >= 4 && b[0] === 0x66 && b[1] === 0x4c && b[2] === 0x61 && b[3] === 0x43;

let flacDecoder: FLACDecoder | null = null;

async function decodeFlac(bytes: Uint8Array): Promise<DecodedAudio> {
  if (!flacDecoder) {
    flacDecoder = new FLACDecoder();
    await flacDecoder.ready;
  } else {
    await flacDecoder.reset();
  }
  const r = await flacDecoder.decodeFile(bytes);
  if (r.errors.length) throw new Error(r.errors[0]!.message);
  return { sampleRate: r.sampleRate, numberOfChannels: r.channelData.length, length: r.samplesDecoded, getChannelData: (c) => r.channelData[c]! };
}

/** A decoded clip at the target rate and length, not normalised, and what was done to it. */
export async function readClip(path: string, opts: AudioClipOptions = {}): Promise<{ clip: Float32Array; facts: ClipFacts }> {
  const rate = opts.sampleRate ?? SPEECH_SAMPLE_RATE;
  const length = opts.length ?? rate;
  if (!Number.isInteger(length) || length < 1) throw new RangeError(`clip length must be a positive number of samples, got ${length}`);
  const bytes = await readFile(path);
  if (bytes.length === 0) throw new DataError(`${path}: empty file, not audio`);
  let buf: DecodedAudio;
  try {
    buf = isFlac(bytes) ? await decodeFlac(bytes) : await decode(bytes);
  } catch (e) {
    // audio-decode builds an AudioBuffer, which refuses a length of 0: a well-formed empty clip.
    if (/length must be more than 0/.test((e as Error).message)) throw new DataError(`${path}: empty clip (0 samples)`);
    throw new DataError(`${path}: not a readable audio file (${(e as Error).message}); expected WAV, FLAC, MP3 or Ogg Vorbis`);
  }
  if (buf.length === 0) throw new DataError(`${path}: empty clip (0 samples)`);
  return clipFromDecoded(buf, rate, length);
}

/** One clip as the model's input: float32 [length], zero mean and unit variance. */
export async function audioFile(path: string, opts: AudioClipOptions = {}): Promise<Float32Array> {
  return normalizeClip((await readClip(path, opts)).clip);
}

export interface AudioFolderOptions extends AudioClipOptions {
  /** Hold out this fraction of each class for validation (stratified, seeded). */
  valSplit?: number;
  seed?: number;
  /** Random noise, shifts, time masks and gain in training (see audio.ts); default off. */
  augment?: boolean | AudioAugment;
  /** The training classes in index order; a folder outside them is an error. */
  classes?: string[];
  /** Where notices go (skipped files, resampling, cropping); default console.warn. */
  log?: (line: string) => void;
}

export interface AudioFolderResult {
  train: Dataset;
  val: Dataset | null;
  classes: string[];
  /** The path of each clip read, in the index order of the whole folder (a split's Subset
   * indices point into it). */
  files: string[];
  /** Files skipped, with the reason, one line each. */
  skipped: string[];
}

const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;

/** One line of what was done to the clips beyond decoding, or '' when nothing was. */
export function describeClipFacts(facts: ClipFacts[], rate: number, length: number): string {
  const parts: string[] = [];
  const rates = [...new Set(facts.filter((f) => f.rate !== rate).map((f) => f.rate))];
  const resampled = facts.filter((f) => f.rate !== rate).length;
  if (resampled) parts.push(`${plural(resampled, 'clip')} resampled to ${rate} Hz (from ${rates.join(', ')} Hz)`);
  const mixed = facts.filter((f) => f.channels > 1).length;
  if (mixed) parts.push(`${plural(mixed, 'clip')} mixed down to mono`);
  const cropped = facts.filter((f) => f.cropped);
  if (cropped.length) parts.push(`${plural(cropped.length, 'clip')} cut to ${length / rate} s (longest ${Math.max(...cropped.map((f) => f.seconds)).toFixed(1)} s)`);
  return parts.join('; ');
}

/** A folder of class folders of audio files -> training (and validation) clips. */
export async function audioFolder(root: string, opts: AudioFolderOptions = {}): Promise<AudioFolderResult> {
  const dir = resolve(root);
  const rate = opts.sampleRate ?? SPEECH_SAMPLE_RATE;
  const length = opts.length ?? rate;
  const log = opts.log ?? ((l: string) => console.warn(l));
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    throw new DataError(`audio folder ${root} does not exist or cannot be read`);
  }
  const found = entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name).sort();
  if (found.length === 0) throw new DataError(`audio folder ${root} has no class folders; expected ${root}/<class>/<clip>.wav`);
  const classes = opts.classes ?? found;
  const index = new Map(classes.map((c, i) => [c, i]));
  const clips: Float32Array[] = [];
  const targets: number[] = [];
  const paths: string[] = [];
  const facts: ClipFacts[] = [];
  const skipped: string[] = [];
  for (const name of found) {
    const target = index.get(name);
    if (target === undefined) throw new DataError(`audio folder ${root} has a class folder "${name}" that is not one of the ${classes.length} training classes (${classes.join(', ')})`);
    const files = (await readdir(join(dir, name))).filter((f) => AUDIO_EXTENSIONS.has(extname(f).toLowerCase())).sort();
    if (files.length === 0) throw new DataError(`class folder ${join(root, name)} has no audio files (${[...AUDIO_EXTENSIONS].join(', ')})`);
    for (const f of files) {
      try {
        const r = await readClip(join(dir, name, f), { sampleRate: rate, length });
        clips.push(r.clip);
        targets.push(target);
        paths.push(join(dir, name, f));
        facts.push(r.facts);
      } catch (e) {
        if (!(e instanceof DataError)) throw e;
        skipped.push(e.message);
        log(`skipped ${e.message}`);
      }
    }
  }
  if (clips.length === 0) throw new DataError(`audio folder ${root} has no readable clips (${plural(skipped.length, 'file')} skipped)`);
  const said = describeClipFacts(facts, rate, length);
  if (said) log(`${root}: ${said}`);
  const full = new AudioDataset(clips, targets, classes, rate, dir, opts.augment ?? false);
  if (!opts.valSplit) return { train: full, val: null, classes, files: paths, skipped };
  const { train, val } = stratifiedSplit(full, opts.valSplit, opts.seed ?? 0);
  return { train, val, classes, files: paths, skipped };
}
