import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { chrF, chrFScore, chrFStatistics } from '../src/text-metrics.js';

interface Fixture {
  sentences: { hypothesis: string; reference: string; statistics: number[]; chrF: number }[];
  corpus: { statistics: number[]; chrF: number };
}

// scripts/chrf_fixtures.py: sacreBLEU 2's chrF written out in Python over IMDb review sentences.
const fixture = JSON.parse(readFileSync(new URL('./fixtures/chrf.json', import.meta.url), 'utf8')) as Fixture;

describe('chrF', () => {
  it('gives the Python reference statistics and score of each sentence pair', () => {
    for (const s of fixture.sentences) {
      expect(chrFStatistics(s.hypothesis, s.reference), JSON.stringify(s.hypothesis)).toEqual(s.statistics);
      expect(chrFScore(s.statistics)).toBeCloseTo(s.chrF, 10);
    }
  });

  it('sums the statistics over the corpus before scoring, as sacreBLEU corpus_score', () => {
    const score = chrF(fixture.sentences.map((s) => s.hypothesis), fixture.sentences.map((s) => s.reference));
    expect(score).toBeCloseTo(fixture.corpus.chrF, 10);
    const meanOfSentences = fixture.sentences.reduce((a, s) => a + s.chrF, 0) / fixture.sentences.length;
    expect(Math.abs(score - meanOfSentences)).toBeGreaterThan(0.1);
  });

  it('equals the score sacreBLEU prints for the example of its metric card', () => {
    // 61.576379378113785 in Hugging Face's chrF metric card, computed there by sacrebleu.
    expect(chrF(['The relationship between Obama and Netanyahu is not exactly friendly.'], ['The ties between Obama and Netanyahu are not particularly friendly.'])).toBeCloseTo(61.576379378113785, 10);
  });

  it('names a mismatched number of references', () => {
    expect(() => chrF(['a', 'b'], ['a'])).toThrow(/2 predictions for 1 references/);
    expect(() => chrFScore([1, 2, 3])).toThrow(/expected 18 statistics/);
  });
});
