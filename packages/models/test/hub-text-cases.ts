/**
 * The Hub-format text fixtures (fixtures/hub_text, from make_hub_text_fixtures.py) and what
 * loading each must report, shared by the Node loader's test and the browser's
 * (apps/web/test/text.test.ts), with the backbone call both compare against PyTorch.
 */
import type { Tensor } from '@tl/autograd';
import { BertForSequenceClassification, DistilBertForSequenceClassification, RobertaForSequenceClassification, T5EncoderForSequenceClassification, type TextClassifier } from '@tl/models';

export interface Case {
  repo: string;
  id: 'bert' | 'distilbert' | 'roberta' | 'gpt2';
  /** The tokenizer of tokenizers.json the repo carries (its batch is the input). */
  tokenizer: string;
  dropped: string[];
  /** How many keys the map renames, and one of them. */
  renamed: [number, [string, string] | null];
  newlyInitialized: string[];
}

const layers = (f: (i: number) => string[]): string[] => [0, 1].flatMap(f);
export const CASES: Case[] = [
  {
    repo: 'gpt2', id: 'gpt2', tokenizer: 'gpt2',
    dropped: layers((i) => [`h.${i}.attn.bias`, `h.${i}.attn.masked_bias`]),
    renamed: [28, ['h.0.attn.c_attn.weight', 'transformer.h.0.attn.c_attn.weight']],
    newlyInitialized: ['score.weight'],
  },
  { repo: 'gpt2-lm', id: 'gpt2', tokenizer: 'gpt2', dropped: ['lm_head.weight'], renamed: [0, null], newlyInitialized: ['score.weight'] },
  {
    repo: 'bert', id: 'bert', tokenizer: 'bert-uncased',
    dropped: [
      'bert.embeddings.position_ids', 'cls.predictions.bias', 'cls.predictions.decoder.weight', 'cls.predictions.transform.LayerNorm.beta',
      'cls.predictions.transform.LayerNorm.gamma', 'cls.predictions.transform.dense.bias', 'cls.predictions.transform.dense.weight',
      'cls.seq_relationship.bias', 'cls.seq_relationship.weight',
    ],
    renamed: [10, ['bert.encoder.layer.1.output.LayerNorm.gamma', 'bert.encoder.layer.1.output.LayerNorm.weight']],
    newlyInitialized: ['classifier.weight', 'classifier.bias'],
  },
  {
    repo: 'bert-model', id: 'bert', tokenizer: 'bert-cased', dropped: ['embeddings.position_ids'],
    renamed: [39, ['pooler.dense.weight', 'bert.pooler.dense.weight']],
    newlyInitialized: ['classifier.weight', 'classifier.bias'],
  },
  {
    repo: 'distilbert', id: 'distilbert', tokenizer: 'bert-uncased',
    dropped: ['vocab_layer_norm.bias', 'vocab_layer_norm.weight', 'vocab_projector.bias', 'vocab_projector.weight', 'vocab_transform.bias', 'vocab_transform.weight'],
    renamed: [0, null],
    newlyInitialized: ['pre_classifier.weight', 'pre_classifier.bias', 'classifier.weight', 'classifier.bias'],
  },
  {
    repo: 'roberta', id: 'roberta', tokenizer: 'roberta',
    dropped: ['lm_head.bias', 'lm_head.decoder.weight', 'lm_head.dense.bias', 'lm_head.dense.weight', 'lm_head.layer_norm.bias', 'lm_head.layer_norm.weight', 'roberta.pooler.dense.bias', 'roberta.pooler.dense.weight'],
    renamed: [0, null],
    newlyInitialized: ['classifier.dense.weight', 'classifier.dense.bias', 'classifier.out_proj.weight', 'classifier.out_proj.bias'],
  },
];

export const caseOf = (repo: string): Case => {
  const c = CASES.find((k) => k.repo === repo);
  if (!c) throw new Error(`no hub_text case ${repo}`);
  return c;
};

/** The base model's last hidden state, and BERT's pooled output. */
export function backbone(model: TextClassifier, ids: Tensor, mask: Tensor, types: Tensor): [Tensor, Tensor | null] {
  if (model instanceof BertForSequenceClassification) {
    const h = model.bert.forward(ids, mask, types);
    return [h, model.bert.pooler!.forward(h)];
  }
  if (model instanceof RobertaForSequenceClassification) return [model.roberta.forward(ids, mask, types), null];
  if (model instanceof DistilBertForSequenceClassification) return [model.distilbert.forward(ids, mask), null];
  if (model instanceof T5EncoderForSequenceClassification) return [model.encoder.forward(ids, mask), null];
  return [model.transformer.forward(ids, mask), null];
}
