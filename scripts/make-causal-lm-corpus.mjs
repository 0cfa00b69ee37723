// The corpus, tokenizer and model config of the README's causal-LM run, from the npm `sentiment`
// package's labelled sentences (UCI Sentiment Labelled Sentences, CC BY 4.0): Yelp and Amazon
// reviews to pretrain a tiny Llama from scratch, IMDB film reviews to fine-tune it on. Writes
// into the folder given (default runs/causal-lm-data): pretrain.txt, imdb.txt (one sentence per
// paragraph), and llama/{config.json, tokenizer.json}: a lower-cased WordPiece vocabulary of
// the pretraining sentences' most frequent words, every single letter and digit (alone and as
// a ## continuation, so no word of any domain is unknown), [PAD], [UNK] and </s>.
// Usage: node scripts/make-causal-lm-corpus.mjs [out-folder]
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const out = process.argv[2] ?? 'runs/causal-lm-data';
const require = createRequire(join(process.cwd(), 'packages/train/package.json'));
const fixtures = join(dirname(require.resolve('sentiment/package.json')), 'test/fixtures');
const sentences = (name) => JSON.parse(readFileSync(join(fixtures, `${name}.json`), 'utf8')).filter((r) => typeof r.text === 'string' && r.text.trim()).map((r) => r.text.trim());

const write = (path, text) => {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
};

const pretrain = [...sentences('yelp'), ...sentences('amazon')];
const imdb = sentences('imdb');
mkdirSync(join(out, 'llama'), { recursive: true });
write(join(out, 'pretrain.txt'), `${pretrain.join('\n\n')}\n`);
write(join(out, 'imdb.txt'), `${imdb.join('\n\n')}\n`);

const SPECIALS = ['[PAD]', '[UNK]', '</s>'];
const counts = new Map();
for (const t of pretrain) {
  for (const w of t.toLowerCase().normalize('NFD').replace(/\p{Mn}/gu, '').match(/[\p{L}\p{N}]+|[^\s\p{L}\p{N}]/gu) ?? []) counts.set(w, (counts.get(w) ?? 0) + 1);
}
const chars = [...'abcdefghijklmnopqrstuvwxyz0123456789'];
const pieces = [...chars, ...chars.map((c) => `##${c}`)];
const words = [...counts.entries()].filter(([, n]) => n >= 2).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([w]) => w).filter((w) => !pieces.includes(w));
const vocab = [...SPECIALS, ...pieces, ...words.slice(0, 2048 - SPECIALS.length - pieces.length)];
const tokenizer = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
  normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
  pre_tokenizer: { type: 'BertPreTokenizer' },
  post_processor: null,
  decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
  model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: Object.fromEntries(vocab.map((t, i) => [t, i])) },
};
write(join(out, 'llama', 'tokenizer.json'), JSON.stringify(tokenizer));
const config = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: vocab.length, hidden_size: 128, intermediate_size: 352,
  num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, hidden_act: 'silu', max_position_embeddings: 128,
  rms_norm_eps: 1e-6, rope_theta: 10000, rope_scaling: null, tie_word_embeddings: true, bos_token_id: null, eos_token_id: 2, pad_token_id: 0,
  attention_bias: false, attention_dropout: 0, initializer_range: 0.02,
};
write(join(out, 'llama', 'config.json'), JSON.stringify(config, null, 2));
console.log(`${out}: pretrain.txt (${pretrain.length} sentences), imdb.txt (${imdb.length}), llama/ (vocabulary ${vocab.length})`);
