// Writes sentiment-pairs.csv: the 3,000 labelled sentences of the npm `sentiment` package's test
// fixtures (Amazon, IMDb, Yelp; 1 = positive) as source -> "positive" / "negative" pairs.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const root = join(dirname(createRequire(join(process.cwd(), 'packages/train/package.json')).resolve('sentiment/package.json')), 'test/fixtures');
const quote = (s) => `"${s.replace(/"/g, '""')}"`;
const rows = ['amazon', 'imdb', 'yelp'].flatMap((n) => JSON.parse(readFileSync(join(root, `${n}.json`), 'utf8')));
const csv = ['sentence,sentiment', ...rows.map((r) => `${quote(r.text.trim())},${r.class === 1 ? 'positive' : 'negative'}`)].join('\n') + '\n';
const out = process.argv[2] ?? 'sentiment-pairs.csv';
writeFileSync(`${out}.tmp`, csv);
renameSync(`${out}.tmp`, out);
console.log(`${rows.length} pairs -> ${out}`);
