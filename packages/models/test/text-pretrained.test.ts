/**
 * Text models from Hugging Face checkpoints in the layouts the Hub really serves
 * (fixtures/make_hub_text_fixtures.py: gpt2's unprefixed keys and mask buffers, a GPT2LMHeadModel
 * file, bert-base-uncased's gamma/beta and pretraining heads, a prefix-less BertModel,
 * DistilBERT's and RoBERTa's masked-LM files), served by a local Hub: built from config.json,
 * loaded strictly through the key map, with their tokenizer, whose batch gives the backbone
 * output PyTorch gives for the same weights.
 */
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { setup } from '../../tensor/test/helpers.js';
import { closeToFixture } from './fixture-close.js';
import {
  batchTensors,
  DistilBertForSequenceClassification,
  fromPretrained,
  fromPretrainedText,
  getModelSpec,
  isTextModelSpec,
  listModels,
  mapTextCheckpointKeys,
  parseSafetensors,
  serializeSafetensors,
  StateDictError,
  textCheckpointFits,
  type HostArray,
  type PretrainedText,
  type TensorToWrite,
  type TextModelSpec,
} from '../src/node.js';
import { startFakeHub, type FakeHub } from './hub-server.js';
import { backbone, CASES, type Case } from './hub-text-cases.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/hub_text/', import.meta.url));
const reference = parseSafetensors(readFileSync(new URL('../fixtures/hub_text_reference.safetensors', import.meta.url)));
const tokenizerFixtures = JSON.parse(readFileSync(new URL('../fixtures/tokenizers.json', import.meta.url), 'utf8')) as Record<string, { batch: { texts: string[] } }>;
const COMMIT = 'c'.repeat(40);

const close = (got: Tensor, want: HostArray, what: string): Promise<void> => closeToFixture(got, want, what);


/** The tokenizer's batch of the case's texts matches the reference's, and the backbone's output PyTorch's. */
async function checkAgainstPyTorch(c: Case, loaded: PretrainedText): Promise<void> {
  const batch = loaded.tokenizer.encodeBatch(tokenizerFixtures[c.tokenizer]!.batch.texts, { padding: 'longest' });
  expect(batch.inputIds.flat()).toEqual([...reference.get(`${c.repo}.input_ids`).data]);
  expect(batch.attentionMask.flat()).toEqual([...reference.get(`${c.repo}.attention_mask`).data]);
  const { inputIds, attentionMask, tokenTypeIds } = batchTensors(batch);
  const model = loaded.model.eval();
  const [hidden, pooled] = A.noGrad(() => backbone(model, inputIds, attentionMask, tokenTypeIds));
  await close(hidden, reference.get(`${c.repo}.last_hidden_state`), `${c.repo}: last hidden state`);
  if (pooled) await close(pooled, reference.get(`${c.repo}.pooler_output`), `${c.repo}: pooled output`);
}

const repoFiles = (repo: string): Record<string, Uint8Array> =>
  Object.fromEntries(readdirSync(join(FIXTURES, repo)).map((f) => [f, new Uint8Array(readFileSync(join(FIXTURES, repo, f)))]));

const scratch: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tl-text-'));
  scratch.push(dir);
  return dir;
}

/** A copy of a fixture repo in a temporary folder, with its model.safetensors rewritten by `edit`. */
function editedCopy(repo: string, edit: (tensors: Map<string, TensorToWrite>) => void): string {
  const dir = join(tempDir(), repo);
  cpSync(join(FIXTURES, repo), dir, { recursive: true });
  const file = parseSafetensors(readFileSync(join(dir, 'model.safetensors')));
  const tensors = new Map<string, TensorToWrite>(file.keys().map((k) => {
    const h = file.get(k);
    return [k, { dtype: h.dtype === 'int32' ? 'I32' : 'F32', shape: h.shape, data: h.data }];
  }));
  edit(tensors);
  writeFileSync(join(dir, 'model.safetensors'), serializeSafetensors(tensors));
  return dir;
}

async function loadError(id: string, weights: string): Promise<Error> {
  try {
    (await fromPretrainedText(id, { weights })).model.dispose();
  } catch (e) {
    return e as Error;
  }
  throw new Error(`loading ${weights} as ${id} did not fail`);
}

let hub: FakeHub;
let cacheDir = '';
beforeAll(async () => {
  await setup();
  const repos: Record<string, Record<string, Uint8Array>> = Object.fromEntries(CASES.map((c) => [`tiny/${c.repo}`, repoFiles(c.repo)]));
  const { 'model.safetensors': _, ...noWeights } = repoFiles('gpt2');
  repos['tiny/no-weights'] = noWeights;
  hub = await startFakeHub(repos, { commit: COMMIT, renamed: { 'tiny-gpt2': 'tiny/gpt2' } });
  cacheDir = tempDir();
});
afterAll(async () => {
  await hub.close();
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

describe('text models from the Hub, in the checkpoint layouts people have', () => {
  for (const c of CASES) {
    it(`${c.repo} (${c.id}): key map, strict load, a new head, the tokenizer, the backbone output of PyTorch`, async () => {
      const loaded = await fromPretrainedText(c.id, { weights: `hf:tiny/${c.repo}`, numClasses: 4, hub: { cacheDir, endpoint: hub.url } });
      const { model, report } = loaded;
      expect(report.dropped.map((d) => d.key).sort()).toEqual([...c.dropped].sort());
      expect(report.renamed.length).toBe(c.renamed[0]);
      if (c.renamed[1]) expect(report.renamed).toContainEqual(c.renamed[1]);
      expect(report.newlyInitialized).toEqual(c.newlyInitialized);
      expect(model.numClasses).toBe(4);
      expect(loaded.config.model_type).toBe(c.id);
      await checkAgainstPyTorch(c, loaded);
      const ids = A.tensor(new Int32Array([5, 6, 7, 8, 9, 10]), { shape: [2, 3] });
      expect(A.noGrad(() => model.forward(ids)).shape).toEqual([2, 4]);

      // Every file in the huggingface_hub cache layout, from one commit.
      const snapshot = join(cacheDir, `models--tiny--${c.repo}`, 'snapshots', COMMIT);
      expect(readdirSync(snapshot).sort()).toEqual(Object.keys(repoFiles(c.repo)).sort());
      model.dispose();
    });
  }

  it('says why each key was dropped', async () => {
    const keys = (repo: string): string[] => parseSafetensors(readFileSync(join(FIXTURES, repo, 'model.safetensors'))).keys();
    const reasons = (id: 'bert' | 'gpt2' | 'roberta', repo: string) => Object.fromEntries(mapTextCheckpointKeys(id, keys(repo)).dropped.map((d) => [d.key, d.reason]));
    expect(reasons('gpt2', 'gpt2')['h.1.attn.bias']).toMatch(/causal-mask buffer/);
    expect(reasons('gpt2', 'gpt2-lm')['lm_head.weight']).toMatch(/tied to transformer\.wte\.weight/);
    expect(reasons('bert', 'bert')['cls.seq_relationship.weight']).toMatch(/next-sentence pretraining head/);
    expect(reasons('bert', 'bert')['cls.predictions.bias']).toMatch(/masked-LM pretraining head/);
    expect(reasons('roberta', 'roberta')['roberta.pooler.dense.weight']).toMatch(/RobertaForSequenceClassification does not have/);
  });

  it('follows the redirect of a renamed repo (hf:gpt2 is openai-community/gpt2 now)', async () => {
    const loaded = await fromPretrainedText('gpt2', { weights: 'hf:tiny-gpt2', hub: { cacheDir, endpoint: hub.url } });
    expect(readdirSync(join(cacheDir, 'models--tiny-gpt2', 'snapshots', COMMIT)).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
    await checkAgainstPyTorch(CASES[0]!, loaded);
    loaded.model.dispose();
  });

  it('loads offline from the cache, with no request', async () => {
    const before = hub.requests.length;
    const loaded = await fromPretrainedText('gpt2', { weights: `hf:tiny/gpt2@${COMMIT}`, hub: { cacheDir, endpoint: hub.url, offline: true } });
    expect(hub.requests.length).toBe(before);
    await checkAgainstPyTorch(CASES[0]!, loaded);
    loaded.model.dispose();
  });
});

describe('text models from a local folder', () => {
  it('a save_pretrained folder, or the path of its model.safetensors; fromPretrained gives the model alone', async () => {
    for (const weights of [join(FIXTURES, 'roberta'), join(FIXTURES, 'roberta', 'model.safetensors')]) {
      const loaded = await fromPretrainedText('roberta', { weights });
      expect(loaded.model.numClasses).toBe(2);
      await checkAgainstPyTorch(CASES[5]!, loaded);
      loaded.model.dispose();
    }
    const model = await fromPretrained('distilbert', { weights: join(FIXTURES, 'distilbert'), numClasses: 3 });
    expect(model).toBeInstanceOf(DistilBertForSequenceClassification);
    expect((model as DistilBertForSequenceClassification).numClasses).toBe(3);
    model.dispose();
  });

  it('a fine-tuned classifier keeps its head; numClasses replaces it', async () => {
    const base = await fromPretrainedText('bert', { weights: join(FIXTURES, 'bert'), numClasses: 3 });
    const dir = tempDir();
    await base.model.save(join(dir, 'model.safetensors'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...base.config, architectures: ['BertForSequenceClassification'], num_labels: 3 }));
    cpSync(join(FIXTURES, 'bert', 'tokenizer.json'), join(dir, 'tokenizer.json'));
    const ids = A.tensor(new Int32Array([2, 40, 41, 3]), { shape: [1, 4] });
    const want = await A.noGrad(() => base.model.eval().forward(ids)).data();

    const tuned = await fromPretrainedText('bert', { weights: dir });
    expect(tuned.report).toEqual({ renamed: [], dropped: [], newlyInitialized: [] });
    expect([...(await A.noGrad(() => tuned.model.eval().forward(ids)).data())]).toEqual([...want]);
    const wider = await fromPretrainedText('bert', { weights: dir, numClasses: 5 });
    expect(wider.report.newlyInitialized).toEqual(['classifier.weight', 'classifier.bias']);
    expect(wider.model.numClasses).toBe(5);
    for (const m of [base.model, tuned.model, wider.model]) m.dispose();
  });
});

describe('what does not fit is named', () => {
  it('a missing, a mis-shaped and an unknown key, and half a head', async () => {
    const dir = editedCopy('gpt2', (t) => {
      t.delete('h.1.mlp.c_fc.weight');
      t.set('wpe.weight', { dtype: 'F32', shape: [16, 8], data: new Float32Array(128) });
      t.set('h.0.attn.rotary', { dtype: 'F32', shape: [2], data: new Float32Array(2) });
    });
    const e = await loadError('gpt2', dir);
    expect(e).toBeInstanceOf(StateDictError);
    expect((e as StateDictError).missing).toEqual(['transformer.h.1.mlp.c_fc.weight']);
    expect((e as StateDictError).unexpected).toEqual(['transformer.h.0.attn.rotary']);
    expect(e.message).toContain(dir);
    expect(e.message).toContain('shape mismatch for transformer.wpe.weight: the model has [32, 8], the checkpoint [16, 8]');

    const half = editedCopy('bert', (t) => t.set('classifier.weight', { dtype: 'F32', shape: [2, 8], data: new Float32Array(16) }));
    expect(((await loadError('bert', half)) as StateDictError).missing).toEqual(['classifier.bias']);
  });

  it('a checkpoint of another architecture, a missing file, a bad option', async () => {
    expect((await loadError('bert', join(FIXTURES, 'roberta'))).message).toMatch(/model_type "roberta", not "bert"; load it as "roberta"/);
    expect((await loadError('resnet18', join(FIXTURES, 'bert'))).message).toMatch(/"resnet18" is not a text model \(task "image"\); text models: bert, distilbert, roberta, gpt2/);
    expect((await loadError('gpt2', 'https://example.org/model.safetensors')).message).toMatch(/needs config.json and tokenizer.json beside its weights/);
    expect((await loadError('gpt2', '/nonexistent/gpt2')).message).toMatch(/\/nonexistent\/gpt2 does not exist/);
    const noTokenizer = editedCopy('gpt2', () => {});
    rmSync(join(noTokenizer, 'tokenizer.json'));
    expect((await loadError('gpt2', noTokenizer)).message).toMatch(/has no tokenizer\.json/);
    const hubOpts = { cacheDir, endpoint: hub.url };
    await expect(fromPretrainedText('gpt2', { weights: 'hf:tiny/no-weights', hub: hubOpts })).rejects.toThrow(/file "model.safetensors" not found/);
    await expect(fromPretrainedText('gpt2', { weights: join(FIXTURES, 'gpt2'), numClasses: 0 })).rejects.toThrow(/numClasses must be a positive integer, got 0/);
    const small = editedCopy('bert', () => {});
    writeFileSync(join(small, 'config.json'), JSON.stringify({ ...JSON.parse(readFileSync(join(small, 'config.json'), 'utf8')), vocab_size: 100 }));
    expect((await loadError('bert', small)).message).toMatch(/the tokenizer has 160 tokens but the model's vocab_size is 100/);
  });
});

describe('the text models in the registry', () => {
  it('are listed as text models and match checkpoints by their keys without being built full size', () => {
    const specs = listModels('text');
    expect(specs.map((s) => s.id)).toEqual(['bert', 'distilbert', 'roberta', 'gpt2', 't5']);
    expect(specs.every(isTextModelSpec)).toBe(true);
    const keys = (dir: string): string[] => parseSafetensors(readFileSync(join(dir, 'model.safetensors'))).keys();
    const fits = (dir: string): string[] => (specs as TextModelSpec[]).filter((s) => textCheckpointFits(s, keys(dir))).map((s) => s.id);
    expect(fits(join(FIXTURES, 'gpt2'))).toEqual(['gpt2']);
    expect(fits(join(FIXTURES, 'gpt2-lm'))).toEqual(['gpt2']);
    expect(fits(join(FIXTURES, 'bert'))).toEqual(['bert']);
    expect(fits(join(FIXTURES, 'distilbert'))).toEqual(['distilbert']);
    // A bare BertModel file has RoBERTa's key names too; config.json tells them apart.
    expect(fits(join(FIXTURES, 'bert-model'))).toEqual(['bert', 'roberta']);
    expect(fits(editedCopy('roberta', (t) => t.delete('roberta.encoder.layer.1.output.dense.bias')))).toEqual([]);
    expect(textCheckpointFits(getModelSpec('gpt2') as TextModelSpec, ['wte.weight', 'transformer.wte.weight'])).toBe(false);
    expect(() => (getModelSpec('gpt2') as TextModelSpec).fromConfig({ model_type: 'llama' })).toThrow(/model_type "llama", not "gpt2"$/);
  });

  it('maps the keys of base-model files without the prefix', () => {
    const d = mapTextCheckpointKeys('distilbert', ['embeddings.word_embeddings.weight', 'transformer.layer.0.ffn.lin1.weight', 'pre_classifier.weight']);
    expect([...d.keys.keys()]).toEqual(['distilbert.embeddings.word_embeddings.weight', 'distilbert.transformer.layer.0.ffn.lin1.weight', 'pre_classifier.weight']);
    const r = mapTextCheckpointKeys('roberta', ['embeddings.position_ids', 'encoder.layer.0.output.LayerNorm.gamma', 'pooler.dense.bias', 'classifier.out_proj.weight']);
    expect(r.renamed).toEqual([['encoder.layer.0.output.LayerNorm.gamma', 'roberta.encoder.layer.0.output.LayerNorm.weight']]);
    expect(r.dropped.map((x) => x.key)).toEqual(['embeddings.position_ids', 'pooler.dense.bias']);
    expect([...r.keys.keys()]).toEqual(['roberta.encoder.layer.0.output.LayerNorm.weight', 'classifier.out_proj.weight']);
    expect(() => mapTextCheckpointKeys('gpt2', ['wte.weight', 'transformer.wte.weight'])).toThrow(/"wte.weight" and "transformer.wte.weight" both map to transformer.wte.weight/);
    expect(() => mapTextCheckpointKeys('mt5' as 'gpt2', [])).toThrow(/model type "mt5" has no key map; expected one of bert, distilbert, roberta, gpt2, t5/);
    const t = mapTextCheckpointKeys('t5', ['shared.weight', 'encoder.embed_tokens.weight', 'encoder.block.0.layer.0.SelfAttention.q.weight', 'decoder.block.0.layer.0.SelfAttention.q.weight', 'lm_head.weight']);
    expect([...t.keys.keys()]).toEqual(['shared.weight', 'encoder.block.0.layer.0.SelfAttention.q.weight']);
    expect(t.dropped.map((x) => x.key)).toEqual(['encoder.embed_tokens.weight', 'decoder.block.0.layer.0.SelfAttention.q.weight', 'lm_head.weight']);
  });
});

