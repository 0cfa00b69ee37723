import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import {
  BertForSequenceClassification, GPT2ForSequenceClassification, LlamaForCausalLM, T5ForConditionalGeneration, Wav2Vec2ForSequenceClassification,
  type Module,
} from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

// Each family with its own weight initialisation (transformers' `_init_weights`), at a toy size.
const families: [string, () => Module][] = [
  ['BERT', () => new BertForSequenceClassification({ num_labels: 2, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, vocab_size: 50 })],
  ['GPT-2', () => new GPT2ForSequenceClassification({ n_embd: 16, n_layer: 1, n_head: 2, vocab_size: 50, n_positions: 32, num_labels: 2 })],
  ['Llama', () => new LlamaForCausalLM({ hidden_size: 8, num_attention_heads: 2, num_hidden_layers: 1, intermediate_size: 8, vocab_size: 8 })],
  ['T5', () => new T5ForConditionalGeneration({ d_model: 16, d_kv: 8, d_ff: 32, num_layers: 1, num_heads: 2, vocab_size: 50 })],
  ['Wav2Vec2', () => new Wav2Vec2ForSequenceClassification({
    conv_dim: [8], conv_kernel: [4], conv_stride: [4], hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16,
    num_conv_pos_embeddings: 4, num_conv_pos_embedding_groups: 2, num_labels: 2,
  })],
];

describe('a model holds no GPU memory after dispose()', () => {
  for (const [name, make] of families) {
    it(name, async () => {
      await A.sync();
      const before = A.memory();
      make().dispose();
      const after = A.memory();
      expect(after.liveTensors).toBe(before.liveTensors);
      expect(after.liveBytes).toBe(before.liveBytes);
    });
  }
});
