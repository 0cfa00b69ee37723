/**
 * The text architectures against PyTorch: reduced configurations written by
 * fixtures/make_text_fixtures.py (plain-PyTorch references with transformers' module names,
 * checked there against transformers itself) load strictly, give the same logits, the same
 * gradient for every parameter, and survive a safetensors round trip.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { expectClose, setup } from '../../tensor/test/helpers.js';
import { closeToFixture, gpu } from './fixture-close.js';
import {
  BertForSequenceClassification,
  causalMask,
  DistilBertForSequenceClassification,
  GPT2ForSequenceClassification,
  MultiheadAttention,
  paddingMask,
  parseSafetensors,
  RobertaForSequenceClassification,
  serializeSafetensors,
  type ClassifierModel,
  type HostArray,
  type SafetensorsFile,
  type TensorToWrite,
} from '../src/index.js';

beforeAll(setup);

const RTOL = 1e-4;
const load = (name: string): SafetensorsFile => parseSafetensors(readFileSync(new URL(`../fixtures/text_${name}.safetensors`, import.meta.url)));

/**
 * Relative to the tensor's scale: elements near zero are held to 1e-4 of its largest. The 1e-6
 * floor is for the key biases, whose gradients are analytically zero (softmax ignores a constant
 * added to a row of scores): both sides hold rounding noise there.
 */
const close = (got: Tensor, h: HostArray, what: string): Promise<void> => closeToFixture(got, h, what, 1e-6, RTOL);

type TextClassifier = ClassifierModel & { forward(ids: Tensor, mask?: Tensor | null, types?: Tensor | null): Tensor };
const cases: [fixture: string, build: (config: Record<string, unknown>) => TextClassifier][] = [
  ['bert', (c) => new BertForSequenceClassification(c)],
  ['distilbert', (c) => new DistilBertForSequenceClassification(c)],
  ['roberta', (c) => new RobertaForSequenceClassification(c)],
  ['gpt2', (c) => new GPT2ForSequenceClassification(c)],
];

function inputsOf(f: SafetensorsFile): [Tensor, Tensor, Tensor | null] {
  return [gpu(f.get('input_ids')), gpu(f.get('attention_mask')), f.keys().includes('token_type_ids') ? gpu(f.get('token_type_ids')) : null];
}

describe('text architectures against PyTorch (reduced configurations)', () => {
  for (const [name, build] of cases) {
    it(`${name}: state dict keys, logits, every parameter gradient, safetensors round trip`, async () => {
      const f = load(name);
      const model = build(JSON.parse(f.metadata.config!) as Record<string, unknown>);
      const state = new Map(f.keys().filter((k) => k.startsWith('sd.')).map((k) => [k.slice(3), f.get(k)]));
      expect([...model.stateDict().keys()].sort()).toEqual([...state.keys()].sort());
      model.loadStateDict(state, { strict: true });
      model.eval();

      const [ids, mask, types] = inputsOf(f);
      const logits = model.forward(ids, mask, types);
      await close(logits, f.get('logits'), 'logits');
      A.backward(logits, gpu(f.get('r')));
      const params = model.namedParameters();
      expect(params.length).toBe(f.keys().filter((k) => k.startsWith('grad.')).length);
      for (const [k, p] of params) {
        expect(p.grad, `gradient of ${k}`).toBeTruthy();
        await close(p.grad!, f.get(`grad.${k}`), `gradient of ${k}`);
      }

      // stateDict -> safetensors bytes -> a fresh model gives the same logits.
      const tensors: Record<string, TensorToWrite> = {};
      for (const [k, t] of model.stateDict()) tensors[k] = { dtype: 'F32', shape: [...t.shape], data: (await t.data()) as Float32Array };
      const fresh = build(JSON.parse(f.metadata.config!) as Record<string, unknown>);
      const parsed = parseSafetensors(serializeSafetensors(tensors));
      fresh.loadStateDict(new Map(parsed.keys().map((k) => [k, parsed.get(k)])), { strict: true });
      fresh.eval();
      await close(A.noGrad(() => fresh.forward(ids, mask, types)), f.get('logits'), 'logits after the round trip');
      model.dispose();
      fresh.dispose();
    });
  }
});

describe('MultiheadAttention against torch.nn.MultiheadAttention', () => {
  const f = load('multihead_attention');
  const { embed_dim: e, num_heads: h } = JSON.parse(f.metadata.config!) as { embed_dim: number; num_heads: number };
  const stateOf = (prefix: string) => new Map(f.keys().filter((k) => k.startsWith(`${prefix}.sd.`)).map((k) => [k.slice(prefix.length + 4), f.get(k)]));
  const leaf = (key: string): Tensor => {
    const t = gpu(f.get(key));
    t.requiresGrad = true;
    return t;
  };
  async function checkGrads(m: MultiheadAttention, prefix: string): Promise<void> {
    for (const [k, p] of m.namedParameters()) await close(p.grad!, f.get(`${prefix}.grad.${k}`), `gradient of ${k}`);
  }

  it('cross-attention, batch first, boolean key padding mask and float attention mask', async () => {
    const m = new MultiheadAttention(e, h, { batchFirst: true });
    expect([...m.stateDict().keys()]).toEqual(['in_proj_weight', 'in_proj_bias', 'out_proj.weight', 'out_proj.bias']);
    m.loadStateDict(stateOf('cross'));
    const [q, k, v] = [leaf('cross.q'), leaf('cross.k'), leaf('cross.v')];
    const [out, w] = m.forward(q, k, v, { keyPaddingMask: gpu(f.get('cross.key_padding_mask')), attnMask: gpu(f.get('cross.attn_mask')) });
    await close(out, f.get('cross.out'), 'output');
    await close(w!, f.get('cross.weights'), 'weights');
    A.backward(A.add(A.sum(A.mul(out, gpu(f.get('cross.r')))), A.sum(A.mul(w!, gpu(f.get('cross.rw'))))));
    await close(q.grad!, f.get('cross.grad.q'), 'gradient of query');
    await close(k.grad!, f.get('cross.grad.k'), 'gradient of key');
    await close(v.grad!, f.get('cross.grad.v'), 'gradient of value');
    await checkGrads(m, 'cross');
  });

  it('self-attention, sequence first, boolean causal mask, per-head weights', async () => {
    const m = new MultiheadAttention(e, h);
    m.loadStateDict(stateOf('self'));
    const x = leaf('self.x');
    const [out, w] = m.forward(x, x, x, { attnMask: gpu(f.get('self.attn_mask')), averageAttnWeights: false });
    await close(out, f.get('self.out'), 'output');
    await close(w!, f.get('self.weights'), 'weights');
    A.backward(A.add(A.sum(A.mul(out, gpu(f.get('self.r')))), A.sum(A.mul(w!, gpu(f.get('self.rw'))))));
    await close(x.grad!, f.get('self.grad.x'), 'gradient of x');
    await checkGrads(m, 'self');
    const [, none] = m.forward(x, x, x, { needWeights: false });
    expect(none).toBeNull();
  });

  it('names the problem with a bad mask or input', () => {
    const m = new MultiheadAttention(8, 2, { batchFirst: true });
    const x = A.zeros([2, 3, 8]);
    expect(() => m.forward(x, x, x, { keyPaddingMask: A.zeros([2, 4], 'int32') })).toThrow(/keyPaddingMask must be \[2, 3\]/);
    expect(() => m.forward(x, x, x, { attnMask: A.zeros([3, 4]) })).toThrow(/attnMask must be \[3, 3\] or \[4, 3, 3\]/);
    expect(() => m.forward(A.zeros([2, 3, 7]), x, x)).toThrow(/query must be 3-D with 8 features/);
    expect(() => new MultiheadAttention(10, 3)).toThrow(/divisible/);
  });
});

describe('attention masks', () => {
  it('padding and causal masks are additive with 0 and float32 min', async () => {
    const min = -3.4028234663852886e38;
    const mask = A.tensor(new Int32Array([1, 1, 0, 1, 0, 0]), { shape: [2, 3] });
    expect([...(await paddingMask(mask).data())]).toEqual([0, 0, min, 0, min, min]);
    expect([...(await causalMask(3).data())]).toEqual([0, min, min, 0, 0, min, 0, 0, 0]);
    const both = causalMask(3, mask);
    expect(both.shape).toEqual([2, 1, 3, 3]);
    expect([...(await both.data())]).toEqual([0, min, min, 0, 0, min, 0, 0, min, 0, min, min, 0, min, min, 0, min, min]);
  });
});

describe('text classifiers: padding, heads, dropout', () => {
  /** A model with the fixture's weights, in eval mode. */
  function loaded(name: string, build: (c: Record<string, unknown>) => TextClassifier, patch: Record<string, unknown> = {}): TextClassifier {
    const f = load(name);
    const model = build({ ...(JSON.parse(f.metadata.config!) as Record<string, unknown>), ...patch });
    model.loadStateDict(new Map(f.keys().filter((k) => k.startsWith('sd.')).map((k) => [k.slice(3), f.get(k)])));
    return model.eval();
  }
  const ids = (rows: number[][]): Tensor => A.tensor(new Int32Array(rows.flat()), { shape: [rows.length, rows[0]!.length] });

  for (const [name, build] of cases) {
    const pad = name === 'roberta' ? 1 : 0;
    it(`${name}: right padding under the attention mask changes no logit`, async () => {
      const model = loaded(name, build);
      const alone = A.noGrad(() => model.forward(ids([[5, 17, 33, 9]]), ids([[1, 1, 1, 1]])));
      const padded = A.noGrad(() => model.forward(ids([[5, 17, 33, 9, pad, pad, pad], [7, 8, 9, 10, 11, 12, 13]]), ids([[1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]])));
      const a = await alone.data();
      await expectClose(padded.slice(0, 0, 1), { shape: [1, 3], data: Float64Array.from(a) }, 1e-4, 1e-5);
      model.dispose();
    });

    it(`${name}: resetClassifier keeps the key names, freeze/unfreeze the head, blockOrder`, async () => {
      const model = loaded(name, build);
      const keys = [...model.stateDict().keys()];
      model.resetClassifier(5);
      expect([...model.stateDict().keys()].sort()).toEqual([...keys].sort());
      expect(model.numClasses).toBe(5);
      expect(model.head().bias === null).toBe(name === 'gpt2');
      const logits = A.noGrad(() => model.forward(ids([[5, 6, 7], [8, 9, 10]])));
      expect(logits.shape).toEqual([2, 5]);
      model.freeze().unfreeze(model.headPattern());
      const trainable = model.namedParameters({ trainable: true }).map(([k]) => k);
      expect(trainable.length).toBeGreaterThan(0);
      expect(trainable.every((k) => k.startsWith(`${model.classifierPath}.`))).toBe(true);
      const blocks = (model as unknown as { blockOrder(): string[] }).blockOrder();
      const names = model.namedParameters().map(([k]) => k);
      for (const b of blocks) expect(names.some((k) => k.startsWith(`${b}.`)), b).toBe(true);
      model.dispose();
    });
  }

  it('dropout is active in training mode only', async () => {
    const model = loaded('bert', cases[0]![1]);
    const x = ids([[5, 6, 7, 8, 9]]);
    const evalA = await A.noGrad(() => model.forward(x)).data();
    const evalB = await A.noGrad(() => model.forward(x)).data();
    expect([...evalA]).toEqual([...evalB]);
    model.train();
    const trainA = await A.noGrad(() => model.forward(x)).data();
    expect([...trainA]).not.toEqual([...evalA]);
    model.dispose();
  });

  it('gpt2 without pad_token_id pools the last token the attention mask keeps, else the last position', async () => {
    const model = loaded('gpt2', cases[3]![1], { pad_token_id: null });
    const want = await A.noGrad(() => model.forward(ids([[5, 17, 33]]))).data();
    const masked = A.noGrad(() => model.forward(ids([[5, 17, 33, 60, 61]]), ids([[1, 1, 1, 0, 0]])));
    await expectClose(masked, { shape: [1, 3], data: Float64Array.from(want) }, 1e-4, 1e-5);
    const unmasked = await A.noGrad(() => model.forward(ids([[5, 17, 33, 60, 61]]))).data();
    expect([...unmasked]).not.toEqual([...want]);
    model.dispose();
  });

  it('names the problem with bad inputs and configs', () => {
    const model = new BertForSequenceClassification({ vocab_size: 20, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16, max_position_embeddings: 6, num_labels: 2 });
    expect(() => model.forward(A.zeros([1, 4]))).toThrow(/inputIds must be an int32 tensor \[batch, seq\], got float32/);
    expect(() => model.forward(ids([[1, 2, 3, 4, 5, 6, 7]]))).toThrow(/sequence length 7 exceeds max_position_embeddings \(6\)/);
    expect(() => model.forward(ids([[1, 2, 3]]), ids([[1, 1]]))).toThrow(/attentionMask must be \[1, 3\] as inputIds, got \[1, 2\]/);
    expect(() => new BertForSequenceClassification({ hidden_size: 10, num_attention_heads: 3 })).toThrow(/divisible/);
    expect(() => new BertForSequenceClassification({ hidden_size: 8, num_attention_heads: 2, hidden_act: 'mish' })).toThrow(/activation "mish" is not supported/);
    expect(() => new BertForSequenceClassification({ position_embedding_type: 'relative_key' })).toThrow(/only "absolute"/);
    expect(() => new DistilBertForSequenceClassification({ sinusoidal_pos_embds: true })).toThrow(/sinusoidal/);
    model.dispose();
  });
});
