/** From a decoded file to the model's clip, the one path Node (audio-decode) and the browser
 * (Web Audio's decodeAudioData) share: cut to what the length needs, mono mixdown, resampling
 * to the model's rate (torchaudio's sinc filter), pad or crop. */
import { mixdown, padOrCrop, resampleAudio, samplesNeeded } from './audio.js';

/** What a decoded file gives: a Web Audio AudioBuffer has it, so does audio-decode's result. */
export interface DecodedAudio {
  sampleRate: number;
  numberOfChannels: number;
  length: number;
  getChannelData(channel: number): Float32Array;
}

/** How a clip was brought to the model's input. */
export interface ClipFacts {
  rate: number;
  channels: number;
  /** Seconds before cutting. */
  seconds: number;
  cropped: boolean;
}

/** The clip at `rate` and `length` samples, not normalised, and what was done to it. */
export function clipFromDecoded(buf: DecodedAudio, rate: number, length: number): { clip: Float32Array; facts: ClipFacts } {
  const keep = Math.min(buf.length, samplesNeeded(length, buf.sampleRate, rate));
  const channels = Array.from({ length: buf.numberOfChannels }, (_, c) => buf.getChannelData(c).subarray(0, keep));
  const mono = resampleAudio(mixdown(channels), buf.sampleRate, rate);
  const facts = { rate: buf.sampleRate, channels: buf.numberOfChannels, seconds: buf.length / buf.sampleRate, cropped: buf.length / buf.sampleRate > length / rate };
  return { clip: padOrCrop(mono, length), facts };
}
