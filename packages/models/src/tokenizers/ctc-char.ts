/**
 * Hugging Face's Wav2Vec2CTCTokenizer: one token per character from a vocab.json, the space
 * written as the word delimiter `|`, the pad token as CTC's blank. Decoding CTC output groups
 * repeated tokens, drops the pad (blank), and reads `|` back as a space, as
 * `tokenizer.decode(ids)` does with its default `group_tokens=True`.
 */

export interface CtcCharTokenizerOptions {
  /** Default "<pad>" (transformers'); also the CTC blank. */
  padToken?: string;
  /** Default "<unk>"; characters outside the vocabulary map to it. */
  unkToken?: string;
  /** Default "|"; stands for the space between words. */
  wordDelimiterToken?: string;
  /** Lower-case text before encoding (transformers' do_lower_case; default false). */
  doLowerCase?: boolean;
}

/** Greedy CTC decoding of per-frame best tokens: collapse repeats, then drop blanks. */
export function ctcGreedyDecode(frameIds: ArrayLike<number>, blank: number): number[] {
  const out: number[] = [];
  let prev = -1;
  for (let i = 0; i < frameIds.length; i++) {
    const id = frameIds[i]!;
    if (id !== prev && id !== blank) out.push(id);
    prev = id;
  }
  return out;
}

export class CtcCharTokenizer {
  readonly padToken: string;
  readonly unkToken: string;
  readonly wordDelimiterToken: string;
  readonly doLowerCase: boolean;
  private readonly idToToken: Map<number, string>;

  constructor(readonly vocab: Readonly<Record<string, number>>, opts: CtcCharTokenizerOptions = {}) {
    this.padToken = opts.padToken ?? '<pad>';
    this.unkToken = opts.unkToken ?? '<unk>';
    this.wordDelimiterToken = opts.wordDelimiterToken ?? '|';
    this.doLowerCase = opts.doLowerCase ?? false;
    this.idToToken = new Map(Object.entries(vocab).map(([t, i]) => [i, t]));
    for (const [what, token] of [['pad', this.padToken], ['unk', this.unkToken], ['word delimiter', this.wordDelimiterToken]] as const) {
      if (vocab[token] === undefined) throw new RangeError(`CtcCharTokenizer: the ${what} token ${JSON.stringify(token)} is not in the vocabulary (${Object.keys(vocab).length} tokens)`);
    }
    if (this.idToToken.size !== Object.keys(vocab).length) throw new RangeError('CtcCharTokenizer: two tokens of the vocabulary share an id');
  }

  /** A vocabulary of the characters of `texts` (sorted; the space as `|`) after the pad and unk
   * tokens, as transformers' speech fine-tuning recipe builds one from its transcripts. */
  static fromTexts(texts: readonly string[], opts: CtcCharTokenizerOptions = {}): CtcCharTokenizer {
    const lower = opts.doLowerCase ?? false;
    const delimiter = opts.wordDelimiterToken ?? '|';
    const chars = new Set<string>([delimiter]);
    for (const t of texts) for (const ch of lower ? t.toLowerCase() : t) chars.add(ch === ' ' ? delimiter : ch);
    const vocab: Record<string, number> = { [opts.padToken ?? '<pad>']: 0, [opts.unkToken ?? '<unk>']: 1 };
    for (const ch of [...chars].sort()) vocab[ch] ??= Object.keys(vocab).length;
    return new CtcCharTokenizer(vocab, opts);
  }

  get vocabSize(): number {
    return this.idToToken.size;
  }

  get padTokenId(): number {
    return this.vocab[this.padToken]!;
  }

  /** Ids of the characters of `text`, spaces as the word delimiter. */
  encode(text: string): number[] {
    const unk = this.vocab[this.unkToken]!;
    const t = this.doLowerCase ? text.toLowerCase() : text;
    return [...t].map((ch) => this.vocab[ch === ' ' ? this.wordDelimiterToken : ch] ?? unk);
  }

  /** Text of token ids; `groupTokens` (default true) reads them as CTC output: repeats
   * collapsed, blanks (pad) dropped. The delimiter becomes a space, the ends are trimmed. */
  decode(ids: ArrayLike<number>, opts: { groupTokens?: boolean } = {}): string {
    const kept = opts.groupTokens === false ? Array.from(ids).filter((i) => i !== this.padTokenId) : ctcGreedyDecode(ids, this.padTokenId);
    const text = kept.map((i) => {
      const t = this.idToToken.get(i);
      if (t === undefined) throw new RangeError(`CtcCharTokenizer.decode: id ${i} is not in the vocabulary of ${this.vocabSize}`);
      return t === this.wordDelimiterToken ? ' ' : t;
    }).join('');
    return text.trim();
  }
}
