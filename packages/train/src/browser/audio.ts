/**
 * Audio in the browser page: picked files decoded by the Web Audio API (decodeAudioData in an
 * OfflineAudioContext) and microphone takes (getUserMedia + MediaRecorder), brought to the
 * model's clip by the same steps as Node (audio-clip.ts: mixdown, torchaudio's resampling,
 * pad or crop). Web Audio lives on the page's main thread only, so clips are made there and
 * the Float32Arrays go wherever training runs.
 *
 * decodeAudioData resamples to its context's rate with the browser's own filter, so a file is
 * decoded in a context at the rate its header declares (WAV, FLAC) and only then resampled
 * here, exactly as in Node. Other formats have no rate this module reads: Opus (Ogg, WebM,
 * what MediaRecorder gives) decodes at 48 kHz natively, so 48 kHz is the context's rate for
 * them; an MP3 or Vorbis file at another rate is resampled by the browser to 48 kHz first
 * (`facts.browserResampled` says so).
 */
import { clipFromDecoded, type ClipFacts } from '../data/audio-clip.js';
import { SPEECH_SAMPLE_RATE, type AudioAugment } from '../data/audio.js';
import { AudioDataset } from '../data/audio-dataset.js';
import { stratifiedSplit, type Dataset } from '../data/dataset.js';

export class BrowserAudioError extends Error {
  override name = 'BrowserAudioError';
}

/** Rate and length of the clips a model takes. */
export interface BrowserClipOptions {
  /** Default 16000. */
  sampleRate?: number;
  /** Samples per clip (default one second). */
  length?: number;
  /** Shown in errors (a file name). */
  name?: string;
}

export interface BrowserClip {
  /** float32 [length] at the model's rate, not normalised (AudioDataset normalises). */
  clip: Float32Array;
  facts: ClipFacts & { browserResampled: boolean };
}

/** Opus's only decoding rate, and the context's rate for files whose rate is not read here. */
const FALLBACK_RATE = 48000;

const ascii = (b: Uint8Array, at: number, s: string): boolean => [...s].every((ch, i) => b[at + i] === ch.charCodeAt(0));

/** The sample rate a WAV ("fmt " chunk) or FLAC (STREAMINFO) header declares; null for other data. */
export function declaredSampleRate(bytes: Uint8Array): number | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length >= 12 && ascii(bytes, 0, 'RIFF') && ascii(bytes, 8, 'WAVE')) {
    for (let at = 12; at + 8 <= bytes.length; at += 8 + view.getUint32(at + 4, true) + (view.getUint32(at + 4, true) & 1)) {
      if (ascii(bytes, at, 'fmt ') && at + 16 <= bytes.length) return view.getUint32(at + 12, true);
    }
    return null;
  }
  if (bytes.length >= 21 && ascii(bytes, 0, 'fLaC')) return (bytes[18]! << 12) | (bytes[19]! << 4) | (bytes[20]! >> 4);
  return null;
}

const checkClipOptions = (opts: BrowserClipOptions): { rate: number; length: number } => {
  const rate = opts.sampleRate ?? SPEECH_SAMPLE_RATE;
  const length = opts.length ?? rate;
  if (!Number.isInteger(rate) || rate <= 0) throw new RangeError(`sampleRate must be a positive integer number of Hz, got ${rate}`);
  if (!Number.isInteger(length) || length < 1) throw new RangeError(`clip length must be a positive number of samples, got ${length}`);
  return { rate, length };
};

/** A picked file (or its bytes) as the model's clip. */
export async function decodeAudioBlob(src: Blob | ArrayBuffer | Uint8Array, opts: BrowserClipOptions = {}): Promise<BrowserClip> {
  const { rate, length } = checkClipOptions(opts);
  const name = opts.name ?? (src instanceof File ? src.name : 'audio');
  const bytes = src instanceof Blob ? new Uint8Array(await src.arrayBuffer()) : src instanceof Uint8Array ? src : new Uint8Array(src);
  if (bytes.length === 0) throw new BrowserAudioError(`${name}: empty file, not audio`);
  const declared = declaredSampleRate(bytes);
  const contextRate = declared ?? FALLBACK_RATE;
  let buf: AudioBuffer;
  try {
    // decodeAudioData detaches the buffer it is given: hand it a copy.
    buf = await new OfflineAudioContext(1, 1, contextRate).decodeAudioData(bytes.slice().buffer);
  } catch (e) {
    throw new BrowserAudioError(`${name}: not a readable audio file (${(e as Error).message ?? String(e)}); expected WAV, FLAC, MP3, Ogg or WebM audio`);
  }
  if (buf.length === 0) throw new BrowserAudioError(`${name}: empty clip (0 samples)`);
  const { clip, facts } = clipFromDecoded(buf, rate, length);
  return { clip, facts: { ...facts, browserResampled: declared === null } };
}

export interface RecordOptions extends BrowserClipOptions {
  /** Seconds to record (default the clip's length at its rate). */
  seconds?: number;
  /** A stream already open (it is left open); default: ask getUserMedia for the microphone and close it after. */
  stream?: MediaStream;
}

/** A microphone take of `seconds` as the model's clip: MediaRecorder's Opus decoded at 48 kHz, then resampled here. */
export async function recordMicrophone(opts: RecordOptions = {}): Promise<BrowserClip> {
  const { rate, length } = checkClipOptions(opts);
  const seconds = opts.seconds ?? length / rate;
  if (!(seconds > 0 && seconds <= 60)) throw new RangeError(`recordMicrophone: seconds must be in (0, 60], got ${seconds}`);
  if (!navigator.mediaDevices?.getUserMedia) throw new BrowserAudioError('this page cannot use a microphone (no navigator.mediaDevices: it must be served over https or from localhost)');
  let stream: MediaStream;
  try {
    stream = opts.stream ?? await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  } catch (e) {
    throw new BrowserAudioError(`no microphone: ${(e as Error).message ?? String(e)} (allow the page to use it, or pick files instead)`);
  }
  try {
    const mimeType = ['audio/webm;codecs=opus', 'audio/ogg;codecs=opus', 'audio/webm'].find((t) => MediaRecorder.isTypeSupported(t));
    const recorder = new MediaRecorder(stream, mimeType ? { mimeType } : {});
    const chunks: Blob[] = [];
    recorder.ondataavailable = (e) => chunks.push(e.data);
    const stopped = new Promise<void>((ok, fail) => {
      recorder.onstop = () => ok();
      recorder.onerror = (e) => fail(new BrowserAudioError(`recording failed: ${String((e as ErrorEvent).message ?? e.type)}`));
    });
    recorder.start();
    await new Promise((ok) => setTimeout(ok, seconds * 1000));
    recorder.stop();
    await stopped;
    return await decodeAudioBlob(new Blob(chunks, { type: recorder.mimeType }), { sampleRate: rate, length, name: 'microphone take' });
  } finally {
    if (!opts.stream) for (const t of stream.getTracks()) t.stop();
  }
}

export interface BrowserAudioOptions extends BrowserClipOptions {
  /** Hold out this fraction of each class for validation (stratified, seeded). */
  valSplit?: number;
  seed?: number;
  /** Noise, shifts, time masks and gain in training (audio.ts); default off. */
  augment?: boolean | AudioAugment;
  /** Names the data set in feature-cache keys. */
  identity?: string;
}

/** One class of the page's lists: its name and its clips (picked files, or takes already made). */
export interface AudioClass {
  name: string;
  clips: (Blob | Float32Array)[];
}

/** Clips per class as a data set (decoded as `decodeAudioBlob`), optionally split for validation. */
export async function browserAudio(perClass: AudioClass[], opts: BrowserAudioOptions = {}): Promise<{ train: Dataset; val: Dataset | null; classes: string[]; facts: BrowserClip['facts'][] }> {
  const { rate, length } = checkClipOptions(opts);
  const classes = perClass.map((c) => c.name);
  if (classes.length < 2) throw new BrowserAudioError(`classification needs at least two classes, got ${classes.length}`);
  const clips: Float32Array[] = [];
  const targets: number[] = [];
  const facts: BrowserClip['facts'][] = [];
  for (const [label, c] of perClass.entries()) {
    if (c.clips.length === 0) throw new BrowserAudioError(`class "${c.name}" has no clips`);
    for (const [k, src] of c.clips.entries()) {
      if (src instanceof Float32Array) {
        if (src.length !== length) throw new BrowserAudioError(`class "${c.name}", take ${k + 1}: ${src.length} samples; the clips are ${length} long`);
        clips.push(src);
      } else {
        const r = await decodeAudioBlob(src, { sampleRate: rate, length, name: src instanceof File ? src.name : `class "${c.name}", file ${k + 1}` });
        clips.push(r.clip);
        facts.push(r.facts);
      }
      targets.push(label);
    }
  }
  const ds = new AudioDataset(clips, targets, classes, rate, opts.identity ?? 'browser', opts.augment ?? false);
  if (!opts.valSplit) return { train: ds, val: null, classes, facts };
  const { train, val } = stratifiedSplit(ds, opts.valSplit, opts.seed ?? 0);
  return { train, val, classes, facts };
}
