/**
 * Character and word error rates of transcripts, as jiwer and Hugging Face's `evaluate` (`cer`,
 * `wer`) compute them over a corpus: the Levenshtein edits (substitutions, deletions,
 * insertions) summed over every pair, divided by the reference characters or words summed.
 */
import { editDistance } from '@tl/models';

const words = (s: string): string[] => s.split(/\s+/).filter((w) => w.length > 0);

/** The edits and the reference size of one pair, for summing over a corpus. */
export function errorCounts(prediction: string, reference: string, unit: 'char' | 'word'): { edits: number; length: number } {
  const [p, r] = unit === 'char' ? [[...prediction], [...reference]] : [words(prediction), words(reference)];
  return { edits: editDistance(p, r), length: r.length };
}

function corpusRate(predictions: readonly string[], references: readonly string[], unit: 'char' | 'word'): number {
  if (predictions.length !== references.length) throw new RangeError(`${unit === 'char' ? 'characterErrorRate' : 'wordErrorRate'}: ${predictions.length} predictions for ${references.length} references`);
  let edits = 0;
  let length = 0;
  predictions.forEach((p, i) => {
    const c = errorCounts(p, references[i]!, unit);
    edits += c.edits;
    length += c.length;
  });
  return edits / length;
}

/** Σ character edits / Σ reference characters (can exceed 1; NaN when the references are empty). */
export function characterErrorRate(predictions: readonly string[], references: readonly string[]): number {
  return corpusRate(predictions, references, 'char');
}

/** Σ word edits / Σ reference words (words split on whitespace). */
export function wordErrorRate(predictions: readonly string[], references: readonly string[]): number {
  return corpusRate(predictions, references, 'word');
}
