/**
 * The Unigram model of SentencePiece (T5, ALBERT, XLNet …) from tokenizer.json's `model`: every
 * piece has a log-probability, and a word is segmented into the pieces whose scores sum highest
 * (Viterbi over the characters). A character no piece covers becomes `<unk>` scored 10 below the
 * lowest piece, consecutive unknowns fuse into one, and with byte fallback an unknown is spelt
 * as its UTF-8 bytes (`<0xE3>` …) instead, as sentencepiece encodes.
 */

/** tokenizer.json's `model` of type Unigram. */
export interface UnigramModelJSON {
  type: 'Unigram';
  unk_id?: number | null;
  vocab: [string, number][];
  byte_fallback?: boolean;
}

interface TrieNode {
  next: Map<number, TrieNode>;
  /** Id of the piece ending here, or -1. */
  id: number;
}

/** sentencepiece's penalty of an unknown character below the lowest piece score. */
const UNK_PENALTY = 10;

const BYTE_PIECE = /^<0x([0-9A-F]{2})>$/;

const utf8 = new TextEncoder();

export class UnigramModel {
  readonly pieces: string[];
  readonly scores: Float32Array;
  readonly unkId: number;
  readonly byteFallback: boolean;
  private readonly ids = new Map<string, number>();
  private readonly root: TrieNode = { next: new Map(), id: -1 };
  private readonly unkScore: number;
  /** Id of the piece of each byte value, with byte fallback. */
  private readonly byteIds: Int32Array;

  /** `unmatched`: pieces never matched against text (special tokens). */
  constructor(json: UnigramModelJSON, unmatched: ReadonlySet<string> = new Set()) {
    if (!Array.isArray(json.vocab) || json.vocab.length === 0) throw new TypeError('Unigram model: "vocab" must be a non-empty list of [piece, score]');
    this.pieces = [];
    this.scores = new Float32Array(json.vocab.length);
    json.vocab.forEach((entry, i) => {
      if (!Array.isArray(entry) || typeof entry[0] !== 'string' || typeof entry[1] !== 'number') throw new TypeError(`Unigram model: vocab[${i}] must be [piece, score], got ${JSON.stringify(entry)}`);
      this.pieces.push(entry[0]);
      this.scores[i] = entry[1];
      if (!this.ids.has(entry[0])) this.ids.set(entry[0], i);
    });
    const unk = json.unk_id;
    if (unk === undefined || unk === null || !(Number.isInteger(unk) && unk >= 0 && unk < this.pieces.length)) {
      throw new RangeError(`Unigram model: unk_id must index the vocabulary of ${this.pieces.length} pieces, got ${JSON.stringify(unk)}`);
    }
    this.unkId = unk;
    this.byteFallback = json.byte_fallback ?? false;
    this.byteIds = new Int32Array(256).fill(-1);
    let min = Infinity;
    for (let i = 0; i < this.pieces.length; i++) {
      const p = this.pieces[i]!;
      const byte = BYTE_PIECE.exec(p);
      if (byte && this.byteFallback) {
        // sentencepiece keeps byte pieces out of matching: they only spell unknown characters.
        this.byteIds[parseInt(byte[1]!, 16)] = i;
        continue;
      }
      if (i === unk || unmatched.has(p) || p === '') continue;
      min = Math.min(min, this.scores[i]!);
      this.insert(p, i);
    }
    if (this.byteFallback) {
      const missing = [...this.byteIds].findIndex((id) => id < 0);
      if (missing >= 0) throw new RangeError(`Unigram model: byte_fallback is on but the vocabulary has no piece <0x${missing.toString(16).toUpperCase().padStart(2, '0')}>`);
    }
    this.unkScore = Math.fround((min === Infinity ? 0 : min) - UNK_PENALTY);
  }

  private insert(piece: string, id: number): void {
    let node = this.root;
    for (const ch of piece) {
      const c = ch.codePointAt(0)!;
      let n = node.next.get(c);
      if (!n) node.next.set(c, (n = { next: new Map(), id: -1 }));
      node = n;
    }
    // The first of duplicate pieces wins, as the token -> id map.
    if (node.id < 0) node.id = id;
  }

  tokenToId(piece: string): number | undefined {
    return this.ids.get(piece);
  }

  /**
   * The best segmentation of a sentence's pre-tokenized words: ids and their pieces. One lattice
   * spans the sentence, no piece crossing a word's end, and path scores add up in float32, as
   * sentencepiece's do: rounding then depends on the score so far, so that equal sums ("0" +
   * "00" against "00" + "0") fall as they do there (Hugging Face's Rust Viterbi runs per word in
   * float64 and can break such ties the other way). Exact ties go to the path found first.
   */
  encodeWords(words: readonly string[]): { ids: number[]; tokens: string[] } {
    const chars: string[] = [];
    /** Per character, the end of its word. */
    const wordEnd: number[] = [];
    for (const w of words) {
      const c = Array.from(w);
      for (let k = 0; k < c.length; k++) wordEnd.push(chars.length + c.length);
      chars.push(...c);
    }
    const n = chars.length;
    const best = new Float64Array(n + 1).fill(-Infinity);
    const fromPos = new Int32Array(n + 1).fill(-1);
    const fromId = new Int32Array(n + 1).fill(-1);
    best[0] = 0;
    for (let start = 0; start < n; start++) {
      const base = best[start]!;
      let node: TrieNode | undefined = this.root;
      let single = false;
      for (let end = start; end < wordEnd[start]!; end++) {
        node = node.next.get(chars[end]!.codePointAt(0)!);
        if (!node) break;
        if (node.id < 0) continue;
        if (end === start) single = true;
        const score = Math.fround(base + this.scores[node.id]!);
        if (fromPos[end + 1]! < 0 || score > best[end + 1]!) {
          best[end + 1] = score;
          fromPos[end + 1] = start;
          fromId[end + 1] = node.id;
        }
      }
      if (!single) {
        const score = Math.fround(base + this.unkScore);
        if (fromPos[start + 1]! < 0 || score > best[start + 1]!) {
          best[start + 1] = score;
          fromPos[start + 1] = start;
          fromId[start + 1] = this.unkId;
        }
      }
    }
    const spans: [number, number, number][] = [];
    for (let end = n; end > 0; end = fromPos[end]!) spans.push([fromPos[end]!, end, fromId[end]!]);
    spans.reverse();
    const ids: number[] = [];
    const tokens: string[] = [];
    for (let k = 0; k < spans.length; k++) {
      let [s, e, id] = spans[k]!;
      if (id === this.unkId) {
        // Consecutive unknown characters are one unknown piece.
        while (k + 1 < spans.length && spans[k + 1]![2] === this.unkId && wordEnd[spans[k + 1]![0]] === wordEnd[s]) e = spans[++k]![1];
        if (this.byteFallback) {
          for (const b of utf8.encode(chars.slice(s, e).join(''))) {
            ids.push(this.byteIds[b]!);
            tokens.push(this.pieces[this.byteIds[b]!]!);
          }
          continue;
        }
      }
      ids.push(id);
      tokens.push(this.pieces[id]!);
    }
    return { ids, tokens };
  }
}
