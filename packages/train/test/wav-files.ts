/** Audio files made in tests: WAV bytes and tones, so no test needs recordings. */
/** 16-bit PCM WAV bytes (interleaved channels), for the test folders. */
export function wav(channels: Float32Array[], rate: number): Uint8Array {
  const n = channels[0]?.length ?? 0;
  const c = channels.length;
  const buf = Buffer.alloc(44 + n * c * 2);
  buf.write('RIFF', 0);
  buf.writeUInt32LE(36 + n * c * 2, 4);
  buf.write('WAVEfmt ', 8);
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20);
  buf.writeUInt16LE(c, 22);
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * c * 2, 28);
  buf.writeUInt16LE(c * 2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write('data', 36);
  buf.writeUInt32LE(n * c * 2, 40);
  for (let i = 0; i < n; i++) for (let k = 0; k < c; k++) buf.writeInt16LE(Math.round(Math.max(-1, Math.min(1, channels[k]![i]!)) * 32767), 44 + (i * c + k) * 2);
  return buf;
}

/** A sine of n samples at `hz`. */
export const tone = (n: number, rate: number, hz: number, amp = 0.5): Float32Array => Float32Array.from({ length: n }, (_, i) => amp * Math.sin((2 * Math.PI * hz * i) / rate));
