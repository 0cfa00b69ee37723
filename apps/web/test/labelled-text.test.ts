/**
 * The sentence files of the text LoRA panel, parsed as the page parses them (no browser needed:
 * the parser is plain TypeScript over csv-parse's browser build).
 */
import { describe, expect, it } from 'vitest';
import { checkLabelledSentences, parseLabelledTable, sentenceLines } from '../src/labelled-text.js';

describe('labelled sentence files', () => {
  it('reads quoted fields with commas, doubled quotes and line breaks, a BOM and CRLF line ends', () => {
    const csv = '\uFEFFtext,label\r\n"Warm, sunny and bright",warm\r\n"She said ""brr"" twice",cold\r\n\r\n"two\r\nlines",cold\r\n';
    expect(parseLabelledTable(csv, 'mine.csv')).toEqual([
      { text: 'Warm, sunny and bright', label: 'warm' },
      { text: 'She said "brr" twice', label: 'cold' },
      { text: 'two\r\nlines', label: 'cold' },
    ]);
  });

  it('takes the columns by their header names, in any order and case, and TSV by the file name', () => {
    expect(parseLabelledTable('id,Label,TEXT\n1,cold,"icy, grey"\n2,warm,hot sun\n', 'a.csv')).toEqual([
      { text: 'icy, grey', label: 'cold' },
      { text: 'hot sun', label: 'warm' },
    ]);
    expect(parseLabelledTable('label\ttext\nwarm\ta, b and c\n', 'a.tsv')).toEqual([{ text: 'a, b and c', label: 'warm' }]);
  });

  it('names the file and what is wrong in one line', () => {
    expect(() => parseLabelledTable('', 'empty.csv')).toThrow('empty.csv is empty; expected a header line with "text" and "label" columns');
    expect(() => parseLabelledTable('text,label\n', 'head.csv')).toThrow('head.csv has a header but no rows');
    expect(() => parseLabelledTable('sentence,label\nhi,warm\n', 'cols.csv')).toThrow('cols.csv: no "text" column in the header; its columns are "sentence", "label"');
    expect(() => parseLabelledTable('text,label\nhi,\n', 'nolabel.csv')).toThrow('nolabel.csv: row 2 has no label (column 2)');
    expect(() => parseLabelledTable('text,label\n"never closed,warm\n', 'quote.csv')).toThrow(/^quote\.csv: .*[Qq]uote/);
  });

  it('reads a .txt of one sentence a line, trimmed, blank lines and a BOM dropped', () => {
    expect(sentenceLines('\uFEFF first \r\n\r\nsecond\n  \nthird')).toEqual(['first', 'second', 'third']);
  });

  it('wants two labels and no sentence under two labels', () => {
    expect(checkLabelledSentences([{ text: 'a', label: 'x' }, { text: 'b', label: 'y' }, { text: 'c', label: 'x' }])).toEqual(['x', 'y']);
    expect(() => checkLabelledSentences([{ text: 'a', label: 'x' }])).toThrow('classification needs sentences of at least two labels; got only "x"');
    expect(() => checkLabelledSentences([{ text: 'a', label: 'x' }, { text: 'a', label: 'y' }])).toThrow('the sentence "a" has two labels, "x" and "y"');
  });
});
