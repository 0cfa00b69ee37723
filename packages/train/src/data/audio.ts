/**
 * Waveform preprocessing for speech models, in the order Hugging Face's audio pipelines apply
 * it: mono mixdown, resampling to the model's rate, pad or crop to a fixed length, seeded
 * augmentation (training only), then Wav2Vec2FeatureExtractor's normalisation (zero mean, unit
 * variance per clip). Platform-free: decoding lives in node/audio-folder.ts (and the browser's
 * Web Audio).
 */
import { mixSeed, Rng } from '@tl/tensor';

/** The rate wav2vec 2.0 and most speech checkpoints expect. */
export const SPEECH_SAMPLE_RATE = 16000;

/** The mean of the channels, sample by sample (torchaudio's and HF's mixdown). */
export function mixdown(channels: readonly Float32Array[]): Float32Array {
  if (channels.length === 0) throw new RangeError('mixdown: a clip needs at least one channel');
  if (channels.length === 1) return channels[0]!;
  const n = channels[0]!.length;
  if (channels.some((c) => c.length !== n)) throw new RangeError(`mixdown: channels differ in length (${channels.map((c) => c.length).join(', ')})`);
  const out = new Float32Array(n);
  for (const c of channels) for (let i = 0; i < n; i++) out[i]! += c[i]!;
  for (let i = 0; i < n; i++) out[i]! /= channels.length;
  return out;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** The polyphase filter bank of a rate change: per output phase, taps over 2·width + orig input samples. */
interface SincKernel {
  orig: number;
  target: number;
  width: number;
  taps: Float64Array;
}

const kernels = new Map<string, SincKernel>();

/**
 * Band-limited resampling as torchaudio.functional.resample's default ("sinc_interpolation":
 * a sinc low-pass at rolloff · the lower Nyquist rate, windowed by a squared cosine (Hann)
 * over `lowpassFilterWidth` zero crossings each side), one filter per output phase of the
 * reduced rate ratio. Exact to float32 rounding against torchaudio (test/audio.test.ts).
 */
function sincKernel(origRate: number, targetRate: number, lowpassFilterWidth: number, rolloff: number): SincKernel {
  const key = `${origRate}/${targetRate}/${lowpassFilterWidth}/${rolloff}`;
  const hit = kernels.get(key);
  if (hit) return hit;
  const g = gcd(origRate, targetRate);
  const orig = origRate / g;
  const target = targetRate / g;
  const base = Math.min(orig, target) * rolloff;
  const width = Math.ceil((lowpassFilterWidth * orig) / base);
  const len = 2 * width + orig;
  const taps = new Float64Array(target * len);
  const scale = base / orig;
  for (let p = 0; p < target; p++) {
    for (let j = 0; j < len; j++) {
      let t = ((-p / target) + (j - width) / orig) * base;
      t = Math.max(-lowpassFilterWidth, Math.min(lowpassFilterWidth, t));
      const w = Math.cos((t * Math.PI) / lowpassFilterWidth / 2) ** 2;
      const x = t * Math.PI;
      taps[p * len + j] = (x === 0 ? 1 : Math.sin(x) / x) * w * scale;
    }
  }
  const k = { orig, target, width, taps };
  kernels.set(key, k);
  return k;
}

export interface AudioResampleOptions {
  lowpassFilterWidth?: number;
  rolloff?: number;
}

/** `x` at `origRate` -> `targetRate`: ceil(targetRate · n / origRate) samples. */
export function resampleAudio(x: Float32Array, origRate: number, targetRate: number, opts: AudioResampleOptions = {}): Float32Array {
  for (const [name, r] of [['origRate', origRate], ['targetRate', targetRate]] as const) {
    if (!Number.isInteger(r) || r <= 0) throw new RangeError(`resampleAudio: ${name} must be a positive integer number of Hz, got ${r}`);
  }
  if (origRate === targetRate) return x;
  const { orig, target, width, taps } = sincKernel(origRate, targetRate, opts.lowpassFilterWidth ?? 6, opts.rolloff ?? 0.99);
  const len = 2 * width + orig;
  const n = x.length;
  const outLen = Math.ceil((targetRate * n) / origRate);
  const out = new Float32Array(outLen);
  // Output i is phase i % target of input block i / target, which starts at block·orig − width.
  for (let i = 0; i < outLen; i++) {
    const p = i % target;
    const start = Math.floor(i / target) * orig - width;
    const off = p * len;
    let s = 0;
    const j0 = Math.max(0, -start);
    const j1 = Math.min(len, n - start);
    for (let j = j0; j < j1; j++) s += taps[off + j]! * x[start + j]!;
    out[i] = s;
  }
  return out;
}

/** Input samples needed so that resampling gives `samples` exact output samples (a long clip
 * is cut before resampling, not after). */
export function samplesNeeded(samples: number, origRate: number, targetRate: number, opts: AudioResampleOptions = {}): number {
  if (origRate === targetRate) return samples;
  const { width } = sincKernel(origRate, targetRate, opts.lowpassFilterWidth ?? 6, opts.rolloff ?? 0.99);
  return Math.ceil((samples * origRate) / targetRate) + width + 1;
}

/** The first `length` samples, zero-padded at the end when shorter (HF's padding="max_length", truncation=True). */
export function padOrCrop(x: Float32Array, length: number): Float32Array {
  if (x.length === length) return x;
  const out = new Float32Array(length);
  out.set(x.length > length ? x.subarray(0, length) : x);
  return out;
}

/** Wav2Vec2FeatureExtractor's do_normalize: (x − mean) / sqrt(var + 1e-7) over the clip. */
export function normalizeClip(x: Float32Array): Float32Array {
  let mean = 0;
  for (const v of x) mean += v;
  mean /= x.length || 1;
  let v2 = 0;
  for (const v of x) v2 += (v - mean) ** 2;
  const inv = 1 / Math.sqrt(v2 / (x.length || 1) + 1e-7);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = (x[i]! - mean) * inv;
  return out;
}

export interface AudioAugment {
  /** Gaussian noise at a signal-to-noise ratio drawn from [minSnrDb, maxSnrDb] dB; applied with probability `noiseProb`. */
  noiseProb?: number;
  minSnrDb?: number;
  maxSnrDb?: number;
  /** Shift by up to this fraction of the clip either way, zero-filled. */
  maxShift?: number;
  /** Up to `timeMasks` spans, each up to `maxTimeMask` of the clip, zeroed (SpecAugment's time masks on the waveform). */
  timeMasks?: number;
  maxTimeMask?: number;
  /** Gain drawn from [1 − gain, 1 + gain]. */
  gain?: number;
}

/** What `augment: true` means: mild noise, shifts, two short time masks and gain. */
export const DEFAULT_AUDIO_AUGMENT: Required<AudioAugment> = { noiseProb: 0.5, minSnrDb: 10, maxSnrDb: 30, maxShift: 0.1, timeMasks: 2, maxTimeMask: 0.05, gain: 0.2 };

function gaussian(rng: Rng): number {
  const u = Math.max(rng.next(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
}

/** A seeded random augmentation of a clip (the same seed, the same result); a new array. */
export function augmentClip(x: Float32Array, seed: number, opts: AudioAugment = DEFAULT_AUDIO_AUGMENT): Float32Array {
  const o = { ...DEFAULT_AUDIO_AUGMENT, ...opts };
  const rng = new Rng(mixSeed(seed, 0xa0d1));
  const n = x.length;
  const out = new Float32Array(n);
  const shift = Math.round(rng.uniform(-o.maxShift, o.maxShift) * n);
  const gain = rng.uniform(1 - o.gain, 1 + o.gain);
  for (let i = 0; i < n; i++) {
    const j = i - shift;
    out[i] = j >= 0 && j < n ? x[j]! * gain : 0;
  }
  if (rng.next() < o.noiseProb) {
    let power = 0;
    for (const v of out) power += v * v;
    power /= n || 1;
    const snr = rng.uniform(o.minSnrDb, o.maxSnrDb);
    const std = Math.sqrt(power / 10 ** (snr / 10));
    for (let i = 0; i < n; i++) out[i]! += std * gaussian(rng);
  }
  const masks = rng.int(o.timeMasks + 1);
  for (let m = 0; m < masks; m++) {
    const w = rng.int(Math.floor(o.maxTimeMask * n) + 1);
    const s = rng.int(Math.max(n - w, 0) + 1);
    out.fill(0, s, s + w);
  }
  return out;
}
