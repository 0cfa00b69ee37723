/**
 * Text generation over any GenerativeModel (types.ts): greedy search, sampling and beam search
 * with one loop, a key/value cache held by the model, and token choice on the host (one
 * [rows, V] readback per step). Decoder-only models read the left-padded prompts in the first
 * step; an encoder-decoder encodes them in `newCache` and its decoder starts from
 * `decoderStartTokenId`.
 */
import * as A from '@tl/autograd';
import { Rng } from '@tl/tensor';
import { applyTemperature, argmax, logSoftmaxRow, sampleToken, topKFilter, topPFilter } from './sampling.js';
import type { GenerateOptions, GenerateOutput, GenerativeModel } from './types.js';

interface Resolved {
  maxNewTokens: number;
  eos: Set<number>;
  pad: number;
}

function resolve(model: GenerativeModel, prompts: readonly (readonly number[])[], opts: GenerateOptions): Resolved {
  const maxNewTokens = opts.maxNewTokens ?? 20;
  if (!(Number.isInteger(maxNewTokens) && maxNewTokens >= 1)) throw new RangeError(`maxNewTokens must be a positive integer, got ${maxNewTokens}`);
  if (prompts.length === 0) throw new RangeError('generate: no prompts given');
  const eosList = opts.eosTokenId === undefined ? [] : typeof opts.eosTokenId === 'number' ? [opts.eosTokenId] : [...opts.eosTokenId];
  for (const [i, p] of prompts.entries()) {
    if (p.length === 0 && model.decoderStartTokenId === undefined) throw new RangeError(`generate: prompt ${i} is empty; a decoder-only model needs at least one token (e.g. the bos token)`);
    for (const id of p) if (!(Number.isInteger(id) && id >= 0 && id < model.vocabSize)) throw new RangeError(`generate: prompt ${i} has token id ${id}, outside the vocabulary [0, ${model.vocabSize})`);
  }
  const longest = Math.max(...prompts.map((p) => p.length));
  const max = model.maxPositions;
  const decoded = model.decoderStartTokenId === undefined ? longest + maxNewTokens : 1 + maxNewTokens;
  if (max !== null && decoded > max) {
    throw new RangeError(model.decoderStartTokenId === undefined
      ? `the prompt has ${longest} tokens and ${maxNewTokens} new ones are asked for, but the model's context is ${max}: the prompt may be at most ${Math.max(0, max - maxNewTokens)} tokens with maxNewTokens ${maxNewTokens}`
      : `maxNewTokens ${maxNewTokens} exceeds the decoder's context of ${max} positions (at most ${max - 1})`);
  }
  return { maxNewTokens, eos: new Set(eosList), pad: opts.padTokenId ?? eosList[0] ?? 0 };
}

/** Left-padded ids [B, S] and their mask (1 token, 0 padding), row-major. */
function leftPad(prompts: readonly (readonly number[])[], pad: number): { ids: Int32Array; mask: Int32Array; width: number } {
  const width = Math.max(...prompts.map((p) => p.length));
  const ids = new Int32Array(prompts.length * width).fill(pad);
  const mask = new Int32Array(prompts.length * width);
  prompts.forEach((p, r) => {
    ids.set(p, r * width + width - p.length);
    mask.fill(1, r * width + width - p.length, (r + 1) * width);
  });
  return { ids, mask, width };
}

/** The logits of each row's last new token, on the host [rows · V]. */
async function step<C>(model: GenerativeModel<C>, cache: C, ids: Int32Array, rows: number, mask: Int32Array | null): Promise<Float32Array> {
  const last = A.tidy(() => A.noGrad(() => {
    const t = ids.length / rows;
    const logits = model.forwardCached(A.tensor(ids, { shape: [rows, t], dtype: 'int32' }), cache, mask);
    return logits.select(1, t - 1).contiguous();
  }));
  const data = (await last.data()) as Float32Array;
  last.dispose();
  return data;
}

/** The cache after the prompt, and the logits of each prompt's last position. */
async function start<C>(model: GenerativeModel<C>, prompts: readonly (readonly number[])[], r: Resolved): Promise<{ cache: C; logits: Float32Array }> {
  const b = prompts.length;
  const { ids, mask, width } = leftPad(prompts, r.pad);
  if (model.decoderStartTokenId === undefined) {
    const cache = model.newCache(b);
    return { cache, logits: await step(model, cache, ids, b, mask) };
  }
  const cache = A.noGrad(() => {
    const inputIds = A.tensor(ids, { shape: [b, width], dtype: 'int32' });
    const attentionMask = A.tensor(mask, { shape: [b, width], dtype: 'int32' });
    const c = model.newCache(b, { inputIds, attentionMask });
    inputIds.dispose();
    attentionMask.dispose();
    return c;
  });
  return { cache, logits: await step(model, cache, new Int32Array(b).fill(model.decoderStartTokenId), b, null) };
}

/**
 * Continues each prompt (token ids) with up to maxNewTokens tokens: greedily by default,
 * sampled with `doSample`, or by beam search with `numBeams` > 1. A row ends at a stop token
 * (kept in its output).
 */
export async function generate<C>(model: GenerativeModel<C>, prompts: readonly (readonly number[])[], opts: GenerateOptions = {}): Promise<GenerateOutput> {
  const r = resolve(model, prompts, opts);
  const numBeams = opts.numBeams ?? 1;
  if (!(Number.isInteger(numBeams) && numBeams >= 1)) throw new RangeError(`numBeams must be a positive integer, got ${numBeams}`);
  if (numBeams > 1) {
    if (opts.doSample) throw new RangeError('beam search with sampling is not supported: give numBeams or doSample, not both');
    return beamSearch(model, prompts, r, numBeams, opts);
  }
  const b = prompts.length;
  const rng = new Rng(opts.seed ?? 0);
  const temperature = opts.temperature ?? 1;
  const topK = opts.topK ?? 0;
  const topP = opts.topP ?? 1;
  const pick = (row: Float32Array): number => {
    if (!opts.doSample) return argmax(row);
    return sampleToken(topPFilter(topKFilter(applyTemperature(row, temperature), topK), topP), rng);
  };
  let { cache, logits } = await start(model, prompts, r);
  const v = model.vocabSize;
  const sequences: number[][] = prompts.map(() => []);
  const scores = new Array<number>(b).fill(0);
  const done = new Array<boolean>(b).fill(false);
  try {
    for (let s = 0; s < r.maxNewTokens; s++) {
      const next = new Int32Array(b);
      for (let i = 0; i < b; i++) {
        if (done[i]) {
          next[i] = r.pad;
          continue;
        }
        const row = logits.subarray(i * v, (i + 1) * v);
        const tok = pick(row);
        next[i] = tok;
        scores[i]! += logSoftmaxRow(row)[tok]!;
        sequences[i]!.push(tok);
        if (r.eos.has(tok)) done[i] = true;
      }
      opts.onToken?.(next, s);
      if (done.every(Boolean) || s === r.maxNewTokens - 1) break;
      logits = await step(model, cache, next, b, null);
    }
  } finally {
    model.disposeCache(cache);
  }
  return { sequences, scores };
}

interface Hypothesis {
  score: number;
  tokens: number[];
}

/**
 * Beam search as transformers' (early_stopping false): each step every live beam's
 * log-probabilities are added to its score and the best 2·numBeams candidates of a prompt are
 * read in order; a stop token among the first numBeams ends a hypothesis, scored
 * sum(log p) / length^lengthPenalty (length: the new tokens, the stop token included), and the
 * first numBeams other candidates are the next beams. A prompt is done when it has numBeams
 * hypotheses and none of its live beams could beat the worst at the current length (with
 * earlyStopping: as soon as it has numBeams); beams still live at maxNewTokens become hypotheses.
 */
async function beamSearch<C>(model: GenerativeModel<C>, prompts: readonly (readonly number[])[], r: Resolved, nb: number, opts: GenerateOptions): Promise<GenerateOutput> {
  const b = prompts.length;
  const v = model.vocabSize;
  const lp = opts.lengthPenalty ?? 1;
  const first = await start(model, prompts, r);
  // Each prompt's row copied to its beams; only beam 0 starts live, so the first step's
  // candidates all continue the prompt once.
  let cache = model.reorderCache(first.cache, Int32Array.from({ length: b * nb }, (_, i) => Math.floor(i / nb)));
  let logits: Float32Array = new Float32Array(b * nb * v);
  for (let i = 0; i < b * nb; i++) logits.set(first.logits.subarray(Math.floor(i / nb) * v, (Math.floor(i / nb) + 1) * v), i * v);
  let beamScores = Float64Array.from({ length: b * nb }, (_, i) => (i % nb === 0 ? 0 : -1e9));
  let beamTokens: number[][] = Array.from({ length: b * nb }, () => []);
  const hyps: Hypothesis[][] = prompts.map(() => []);
  const done = new Array<boolean>(b).fill(false);
  const add = (p: number, tokens: number[], sum: number): void => {
    const list = hyps[p]!;
    list.push({ score: sum / Math.pow(tokens.length, lp), tokens });
    list.sort((x, y) => y.score - x.score);
    if (list.length > nb) list.pop();
  };
  try {
    for (let s = 0; s < r.maxNewTokens; s++) {
      const nextScores = new Float64Array(b * nb);
      const nextTokens: number[][] = new Array(b * nb);
      const source = new Int32Array(b * nb);
      const feed = new Int32Array(b * nb).fill(r.pad);
      for (let p = 0; p < b; p++) {
        if (done[p]) {
          for (let j = 0; j < nb; j++) {
            source[p * nb + j] = p * nb + j;
            nextTokens[p * nb + j] = beamTokens[p * nb + j]!;
          }
          continue;
        }
        const candidates = topCandidates(logits, beamScores, p, nb, v, 2 * nb);
        let kept = 0;
        let best = -Infinity;
        for (const [rank, c] of candidates.entries()) {
          best = Math.max(best, c.score);
          const row = p * nb + c.beam;
          if (r.eos.has(c.token)) {
            if (rank < nb) add(p, [...beamTokens[row]!, c.token], c.score);
            continue;
          }
          const slot = p * nb + kept++;
          nextScores[slot] = c.score;
          nextTokens[slot] = [...beamTokens[row]!, c.token];
          source[slot] = row;
          feed[slot] = c.token;
          if (kept === nb) break;
        }
        const list = hyps[p]!;
        if (list.length >= nb && (opts.earlyStopping || list[list.length - 1]!.score >= best / Math.pow(s + 1, lp))) done[p] = true;
      }
      beamScores = nextScores;
      beamTokens = nextTokens;
      if (done.every(Boolean) || s === r.maxNewTokens - 1) break;
      cache = model.reorderCache(cache, source);
      logits = await step(model, cache, feed, b * nb, null);
    }
  } finally {
    model.disposeCache(cache);
  }
  for (let p = 0; p < b; p++) {
    if (!done[p]) for (let j = 0; j < nb; j++) add(p, beamTokens[p * nb + j]!, beamScores[p * nb + j]!);
  }
  return { sequences: hyps.map((h) => h[0]!.tokens), scores: hyps.map((h) => h[0]!.score) };
}

interface Candidate {
  score: number;
  beam: number;
  token: number;
}

/** The `k` best (beam score + log p) continuations over a prompt's beams, best first. */
function topCandidates(logits: Float32Array, beamScores: Float64Array, p: number, nb: number, v: number, k: number): Candidate[] {
  const out: Candidate[] = [];
  for (let j = 0; j < nb; j++) {
    const row = p * nb + j;
    const logp = logSoftmaxRow(logits.subarray(row * v, (row + 1) * v));
    const base = beamScores[row]!;
    for (let t = 0; t < v; t++) {
      const score = base + logp[t]!;
      if (out.length === k && score <= out[k - 1]!.score) continue;
      let at = out.length;
      while (at > 0 && out[at - 1]!.score < score) at--;
      out.splice(at, 0, { score, beam: j, token: t });
      if (out.length > k) out.pop();
    }
  }
  return out;
}
