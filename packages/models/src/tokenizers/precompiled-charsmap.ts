/**
 * SentencePiece's precompiled normalisation rules (the `precompiled_charsmap` of a model's
 * normalizer_spec, carried base64 in tokenizer.json's `Precompiled` normaliser): a Darts-clone
 * double-array trie over UTF-8 bytes whose values point into a blob of NUL-terminated
 * replacement strings. Applied as sentencepiece does: at each position the longest matching
 * byte sequence is replaced, otherwise one character is copied. Hugging Face's Rust normaliser
 * matches per grapheme instead, which can differ on rare sequences; sentencepiece is the
 * reference the ids are checked against.
 */

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: false });

function base64Bytes(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export class PrecompiledCharsmap {
  private readonly units: Uint32Array;
  private readonly strings: Uint8Array;

  constructor(charsmap: Uint8Array) {
    if (charsmap.length < 4) throw new RangeError(`precompiled_charsmap: ${charsmap.length} bytes, expected at least the 4 of its trie size`);
    const view = new DataView(charsmap.buffer, charsmap.byteOffset, charsmap.byteLength);
    const trieBytes = view.getUint32(0, true);
    if (trieBytes % 4 !== 0 || 4 + trieBytes > charsmap.length) throw new RangeError(`precompiled_charsmap: trie of ${trieBytes} bytes does not fit the ${charsmap.length - 4} after its size`);
    this.units = new Uint32Array(trieBytes / 4);
    for (let i = 0; i < this.units.length; i++) this.units[i] = view.getUint32(4 + 4 * i, true);
    this.strings = charsmap.subarray(4 + trieBytes);
  }

  static fromBase64(b64: string): PrecompiledCharsmap {
    return new PrecompiledCharsmap(base64Bytes(b64));
  }

  /** [value, matched length] of the longest key that prefixes bytes[start..], or null. */
  private longestPrefix(bytes: Uint8Array, start: number): [number, number] | null {
    const u = this.units;
    if (u.length === 0) return null;
    const offset = (unit: number): number => (unit >>> 10) << ((unit & (1 << 9)) >>> 6);
    let node = offset(u[0]!);
    let best: [number, number] | null = null;
    for (let i = start; i < bytes.length; i++) {
      const c = bytes[i]!;
      if (c === 0) break;
      node ^= c;
      const unit = u[node];
      if (unit === undefined || (unit & 0x800000ff) >>> 0 !== c) break;
      node ^= offset(unit);
      if ((unit >>> 8) & 1) best = [u[node]! & 0x7fffffff, i - start + 1];
    }
    return best;
  }

  /** The replacement string stored at `offset` (up to its NUL). */
  private replacement(offset: number): Uint8Array {
    let end = offset;
    while (end < this.strings.length && this.strings[end] !== 0) end++;
    return this.strings.subarray(offset, end);
  }

  normalize(text: string): string {
    const bytes = utf8.encode(text);
    const out: number[] = [];
    let i = 0;
    while (i < bytes.length) {
      const m = this.longestPrefix(bytes, i);
      if (m) {
        for (const b of this.replacement(m[0])) out.push(b);
        i += m[1];
      } else {
        // One UTF-8 character (the encoder wrote valid UTF-8): its lead byte gives its length.
        const lead = bytes[i]!;
        const n = lead < 0x80 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
        for (let k = 0; k < n && i < bytes.length; k++) out.push(bytes[i++]!);
      }
    }
    return utf8Decoder.decode(Uint8Array.from(out));
  }
}
