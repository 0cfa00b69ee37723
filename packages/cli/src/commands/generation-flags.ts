/**
 * The decoding flags of `tl predict` (--max-new-tokens, --num-beams, --sample with --temperature,
 * --top-k, --top-p, --seed), read once for causal LMs and T5 alike.
 */
import type { GenerateOptions } from '@tl/models';
import { CliError } from '../errors.js';
import type { Flags } from '../flags.js';

export function positiveIntFlag(flags: Flags, key: string, flag: string, fallback: number): number {
  const v = flags[key] ?? fallback;
  if (!(typeof v === 'number' && Number.isInteger(v) && v >= 1)) throw new CliError(`--${flag} must be a positive integer, got ${v}`, 2);
  return v;
}

export function positiveFlag(flags: Flags, key: string, flag: string, fallback: number): number {
  const v = flags[key] ?? fallback;
  if (!(typeof v === 'number' && v > 0 && Number.isFinite(v))) throw new CliError(`--${flag} must be a positive number, got ${v}`, 2);
  return v;
}

/** Greedy search unless --sample; beam search with --num-beams > 1. `maxNewTokens` is the default of --max-new-tokens. */
export function generationOptions(flags: Flags, maxNewTokens: number): GenerateOptions {
  const numBeams = positiveIntFlag(flags, 'numBeams', 'num-beams', 1);
  const opts: GenerateOptions = { maxNewTokens: positiveIntFlag(flags, 'maxNewTokens', 'max-new-tokens', maxNewTokens), numBeams };
  if (flags.sample) {
    if (numBeams > 1) throw new CliError('--sample and --num-beams do not combine: choose sampling or beam search', 2);
    return {
      ...opts, doSample: true, temperature: positiveFlag(flags, 'temperature', 'temperature', 1), topK: (flags.topK as number | undefined) ?? 0,
      topP: (flags.topP as number | undefined) ?? 1, seed: (flags.seed as number | undefined) ?? 0,
    };
  }
  if (flags.temperature !== undefined || flags.topP !== undefined || flags.seed !== undefined) {
    throw new CliError('--temperature, --top-p and --seed shape sampling; add --sample (generation is greedy without it)', 2);
  }
  return opts;
}
