/**
 * The contract between generate() and a model. One decoding loop (greedy, sampling, beam search)
 * serves decoder-only and encoder-decoder models: the model turns the next tokens of each row
 * into logits and remembers what it has seen in a cache it owns, as transformers'
 * `past_key_values`. An encoder-decoder runs its encoder once in `newCache` and keeps the
 * encoder output (and its padding mask) in the cache; decoding then starts from
 * `decoderStartTokenId` instead of the prompt.
 */
import type { Tensor } from '@tl/autograd';

/** What an encoder-decoder encodes once before decoding: the prompt ids [B, S] and mask [B, S]. */
export interface EncoderInput {
  inputIds: Tensor;
  attentionMask?: Tensor | null;
}

export interface GenerativeModel<C = unknown> {
  /** Rows of the logits: the vocabulary size. */
  readonly vocabSize: number;
  /** How many decoder positions the model can attend over (learned positions); null when unbounded. */
  readonly maxPositions: number | null;
  /** Set on an encoder-decoder: the prompt goes to `newCache(…, encoder)` and the decoder starts from this id. */
  readonly decoderStartTokenId?: number;
  /**
   * An empty cache for `batch` rows. An encoder-decoder requires `encoder` (batch rows), runs its
   * encoder under noGrad and keeps the result in the cache.
   */
  newCache(batch: number, encoder?: EncoderInput): C;
  /**
   * Logits [B, t, V] for the next t tokens `ids` int32 [B, t] of every row, attending over the
   * cached positions and these; appends these tokens' keys and values to the cache. `mask`
   * (host values, row-major [B, t]; nonzero = token, 0 = padding) marks left padding of a
   * batched prompt: padded positions are never attended to and do not advance a row's
   * position ids. Host data, because position ids are computed on the host without a readback.
   */
  forwardCached(ids: Tensor, cache: C, mask?: ArrayLike<number> | null): Tensor;
  /**
   * Row i of the returned cache is row `beamIndices[i]` of `cache` (beam search's reordering,
   * and the expansion of each prompt to its beams, where the length exceeds the batch). The
   * old cache is released.
   */
  reorderCache(cache: C, beamIndices: Int32Array): C;
  /** Releases the cache's tensors. */
  disposeCache(cache: C): void;
}

export interface GenerateOptions {
  /** New tokens per row at most (default 20). */
  maxNewTokens?: number;
  /** Token ids that end a row (the tokenizer's or config's eos); the stop token is kept in the output. */
  eosTokenId?: number | readonly number[];
  /** Fills finished rows and left-pads prompts (default: the first eos id, else 0). */
  padTokenId?: number;
  /** Sample instead of taking the most likely token (greedy). */
  doSample?: boolean;
  /** Divides the logits before sampling (default 1). */
  temperature?: number;
  /** Keep only the k most likely tokens when sampling (0: all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1: all). */
  topP?: number;
  /** Seeds the sampler (the repo's Rng); default 0. */
  seed?: number;
  /** Beam search with this many beams (> 1); not combined with sampling. */
  numBeams?: number;
  /** Beam search: a finished hypothesis scores sum(log p) / length^lengthPenalty (default 1, as transformers). */
  lengthPenalty?: number;
  /** Beam search: stop a prompt once numBeams hypotheses are finished (default false, transformers' heuristic). */
  earlyStopping?: boolean;
  /** Called with each step's new token of every row (streaming; greedy and sampling only). */
  onToken?: (tokens: Int32Array, step: number) => void;
}

export interface GenerateOutput {
  /** Per prompt: the new tokens (the prompt excluded; for beam search the best hypothesis). */
  sequences: number[][];
  /** Per prompt: the sum of the chosen tokens' log-probabilities (beam search: the hypothesis score). */
  scores: number[];
}
