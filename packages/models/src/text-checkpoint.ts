/**
 * Hugging Face text checkpoints as people have them, into the sequence classifiers here. Files
 * saved from the base model lack its prefix (`h.0.attn.c_attn.weight`, `embeddings.…`), TF-era
 * BERT files name LayerNorm's affine `gamma`/`beta`, and pretraining files carry heads and
 * buffers that are not parameters of a classifier (`cls.*`, `lm_head.*`, `h.N.attn.bias`). The
 * key map renames and drops exactly those, names why, and leaves anything else for the strict
 * load to report; the classifier's own head is freshly initialised when the file has none of
 * it, as transformers' `from_pretrained` does.
 */
import { BertForSequenceClassification } from './arch/bert.js';
import { DistilBertForSequenceClassification } from './arch/distilbert.js';
import { GPT2ForSequenceClassification } from './arch/gpt2.js';
import { RobertaForSequenceClassification } from './arch/roberta.js';
import { T5EncoderForSequenceClassification } from './arch/t5.js';
import type { TextClassifier, TextModelSpec } from './registry.js';
import type { HostArray } from './safetensors.js';

/** config.json's `model_type` of the text architectures here. */
export type TextModelType = 'bert' | 'distilbert' | 'roberta' | 'gpt2' | 't5';

export const TEXT_MODEL_TYPES: readonly TextModelType[] = ['bert', 'distilbert', 'roberta', 'gpt2', 't5'];

interface KeyRules {
  /** The base model's attribute in the sequence classifier. */
  prefix: string;
  /** First segments of the base model's own keys: a file saved from the base model has them
   * without the prefix. */
  roots: readonly string[];
  /** Keys (prefix added) that are no parameter of the classifier, and why. */
  drop: readonly (readonly [RegExp, string])[];
  /** Modules the classifier has and a base or pretraining checkpoint may not: each is freshly
   * initialised when the file has none of its keys. */
  fresh: readonly string[];
  /** Where the layer index sits in the classifier's keys. */
  layers: RegExp;
  /** A config.json of the smallest network with `numLayers` layers (key names do not depend on widths). */
  miniature(numLayers: number): Record<string, unknown>;
}

const ID_BUFFERS = 'id buffer (position_ids / token_type_ids), not a parameter';

const RULES: Record<TextModelType, KeyRules> = {
  bert: {
    prefix: 'bert',
    roots: ['embeddings', 'encoder', 'pooler'],
    drop: [
      [/^cls\.predictions\./, 'masked-LM pretraining head'],
      [/^cls\.seq_relationship\./, 'next-sentence pretraining head'],
      [/^bert\.embeddings\.(position_ids|token_type_ids)$/, ID_BUFFERS],
    ],
    // BertForMaskedLM and add_pooling_layer=False files have no pooler.
    fresh: ['classifier', 'bert.pooler'],
    layers: /^bert\.encoder\.layer\.(\d+)\./,
    miniature: (n) => ({ vocab_size: 4, hidden_size: 2, num_hidden_layers: n, num_attention_heads: 1, intermediate_size: 2, max_position_embeddings: 4 }),
  },
  distilbert: {
    prefix: 'distilbert',
    roots: ['embeddings', 'transformer'],
    drop: [
      [/^vocab_(transform|layer_norm|projector)\./, 'masked-LM head'],
      [/^distilbert\.embeddings\.position_ids$/, ID_BUFFERS],
    ],
    fresh: ['pre_classifier', 'classifier'],
    layers: /^distilbert\.transformer\.layer\.(\d+)\./,
    miniature: (n) => ({ vocab_size: 4, dim: 2, n_layers: n, n_heads: 1, hidden_dim: 2, max_position_embeddings: 4 }),
  },
  roberta: {
    prefix: 'roberta',
    roots: ['embeddings', 'encoder', 'pooler'],
    drop: [
      [/^lm_head\./, 'masked-LM head'],
      [/^roberta\.pooler\./, 'pooler, which RobertaForSequenceClassification does not have'],
      [/^roberta\.embeddings\.(position_ids|token_type_ids)$/, ID_BUFFERS],
    ],
    fresh: ['classifier'],
    layers: /^roberta\.encoder\.layer\.(\d+)\./,
    miniature: (n) => ({ vocab_size: 4, hidden_size: 2, num_hidden_layers: n, num_attention_heads: 1, intermediate_size: 2, max_position_embeddings: 4 }),
  },
  gpt2: {
    prefix: 'transformer',
    roots: ['wte', 'wpe', 'h', 'ln_f'],
    drop: [
      [/^transformer\.h\.\d+\.attn\.(bias|masked_bias)$/, 'causal-mask buffer, not a parameter'],
      [/^lm_head\.weight$/, 'language-model head, tied to transformer.wte.weight'],
    ],
    fresh: ['score'],
    layers: /^transformer\.h\.(\d+)\./,
    miniature: (n) => ({ vocab_size: 4, n_embd: 2, n_layer: n, n_head: 1, n_positions: 4 }),
  },
  // T5EncoderModel's keys have no prefix: `shared`, `encoder.*`.
  t5: {
    prefix: '',
    roots: [],
    drop: [
      [/^(decoder\.|lm_head\.)/, 'decoder and language-model head, not part of the encoder classifier'],
      [/^encoder\.embed_tokens\.weight$/, 'tied copy of shared.weight'],
    ],
    fresh: ['classifier'],
    layers: /^encoder\.block\.(\d+)\./,
    miniature: (n) => ({ vocab_size: 4, d_model: 2, d_kv: 1, d_ff: 2, num_layers: Math.max(n, 1), num_heads: 1, relative_attention_num_buckets: 4 }),
  },
};

function rulesOf(modelType: string): KeyRules {
  if (!(TEXT_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw new RangeError(`model type "${modelType}" has no key map; expected one of ${TEXT_MODEL_TYPES.join(', ')}`);
  }
  return RULES[modelType as TextModelType];
}

export interface DroppedKey {
  key: string;
  reason: string;
}

export interface TextKeyMap {
  /** Model key -> checkpoint key, for every checkpoint key that is loaded. */
  keys: Map<string, string>;
  /** [checkpoint key, model key] of the keys loaded under another name. */
  renamed: [string, string][];
  /** Checkpoint keys left out, with the reason. */
  dropped: DroppedKey[];
}

/**
 * Maps a Hugging Face checkpoint's keys to the keys of `modelType`'s sequence classifier: the
 * base model's prefix added where the file lacks it, `gamma`/`beta` read as `weight`/`bias`,
 * and the heads and buffers no classifier has dropped. Other keys pass unchanged, so a strict
 * load still names them.
 */
export function mapTextCheckpointKeys(modelType: TextModelType, checkpointKeys: Iterable<string>): TextKeyMap {
  const rules = rulesOf(modelType);
  const out: TextKeyMap = { keys: new Map(), renamed: [], dropped: [] };
  for (const key of checkpointKeys) {
    let k = rules.roots.includes(key.split('.', 1)[0]!) ? `${rules.prefix}.${key}` : key;
    const drop = rules.drop.find(([re]) => re.test(k));
    if (drop) {
      out.dropped.push({ key, reason: drop[1] });
      continue;
    }
    // transformers reads TF-era names the same way when loading.
    k = k.replace(/\.gamma$/, '.weight').replace(/\.beta$/, '.bias');
    const twin = out.keys.get(k);
    if (twin !== undefined) throw new RangeError(`the checkpoint keys "${twin}" and "${key}" both map to ${k}; the file holds the ${modelType} weights twice`);
    out.keys.set(k, key);
    if (k !== key) out.renamed.push([key, k]);
  }
  return out;
}

export interface TextLoadReport {
  /** [checkpoint key, model key] of the keys loaded under another name. */
  renamed: [string, string][];
  /** Checkpoint keys left out, with the reason. */
  dropped: DroppedKey[];
  /** Model keys the checkpoint does not have, freshly initialised (the new head). */
  newlyInitialized: string[];
}

/** The model type of a text classifier. */
function textModelTypeOf(model: TextClassifier): TextModelType {
  if (model instanceof BertForSequenceClassification) return 'bert';
  if (model instanceof DistilBertForSequenceClassification) return 'distilbert';
  if (model instanceof RobertaForSequenceClassification) return 'roberta';
  if (model instanceof GPT2ForSequenceClassification) return 'gpt2';
  if (model instanceof T5EncoderForSequenceClassification) return 't5';
  throw new TypeError(`${(model as object).constructor.name} is not one of the text classifiers (bert, distilbert, roberta, gpt2, t5)`);
}

/** The model's keys under a `fresh` module the mapped checkpoint has none of. */
function freshKeys(modelType: TextModelType, ownKeys: readonly string[], mapped: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  for (const m of rulesOf(modelType).fresh) {
    const under = ownKeys.filter((k) => k.startsWith(`${m}.`));
    if (!under.some((k) => mapped.has(k))) out.push(...under);
  }
  return out;
}

/** What tensors are read from: a safetensors file in memory or on disk. */
export interface TensorSource {
  keys(): string[];
  get(key: string): HostArray | Promise<HostArray>;
}

/**
 * Loads a Hugging Face checkpoint into a text classifier strictly, through the key map: only the
 * mapped keys are read, a head the file lacks is freshly initialised, and any other missing,
 * unexpected or mis-shaped key throws one StateDictError naming each.
 */
export async function loadTextCheckpoint(model: TextClassifier, source: TensorSource): Promise<TextLoadReport> {
  const modelType = textModelTypeOf(model);
  const map = mapTextCheckpointKeys(modelType, source.keys());
  const fresh = freshKeys(modelType, [...model.stateDict().keys()], map.keys);
  const dict = new Map<string, HostArray>();
  for (const [k, ck] of map.keys) dict.set(k, await source.get(ck));
  model.loadStateDict(dict, { strict: true, ignoreMissing: fresh });
  return { renamed: map.renamed, dropped: map.dropped, newlyInitialized: fresh };
}

/**
 * Whether a checkpoint with these keys loads into `spec`'s classifier (its head possibly new),
 * judged on a miniature of the checkpoint's depth so that no full-size model is built.
 */
export function textCheckpointFits(spec: TextModelSpec, checkpointKeys: readonly string[]): boolean {
  const rules = rulesOf(spec.modelType);
  let map: TextKeyMap;
  try {
    map = mapTextCheckpointKeys(spec.modelType, checkpointKeys);
  } catch {
    // Two keys for one parameter: no strict load accepts that file.
    return false;
  }
  let numLayers = 0;
  for (const k of map.keys.keys()) {
    const m = rules.layers.exec(k);
    if (m) numLayers = Math.max(numLayers, Number(m[1]) + 1);
  }
  const model = spec.fromConfig(rules.miniature(numLayers));
  const own = [...model.stateDict().keys()];
  model.dispose();
  const fresh = new Set(freshKeys(spec.modelType, own, map.keys));
  return own.every((k) => map.keys.has(k) || fresh.has(k)) && [...map.keys.keys()].every((k) => own.includes(k));
}
