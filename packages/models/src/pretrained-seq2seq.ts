/**
 * T5 checkpoints as Hugging Face writes them, into T5ForConditionalGeneration: config.json shapes
 * the network, tokenizer.json becomes the tokenizer (checked to hold the pad and eos tokens the
 * model starts and stops with), and model.safetensors loads strictly through a key map. The
 * map drops only what is no parameter here: the tied copies of `shared.weight` that
 * pytorch_model.bin files carry (`encoder.embed_tokens`, `decoder.embed_tokens`, and
 * `lm_head.weight` when the head is tied) and the cross-attention position bias of the original
 * checkpoints, which T5 never uses. A file holding the embedding only under a tied name (a
 * saver that kept that one) has it read as `shared.weight`.
 */
import { T5ForConditionalGeneration } from './arch/t5.js';
import { checkVocabSize, loadTextCheckpointWith, type LoadedTextCheckpoint, type TextCheckpointSource } from './pretrained-text.js';
import type { HostArray } from './safetensors.js';
import type { DroppedKey, TensorSource, TextLoadReport } from './text-checkpoint.js';
import type { Tokenizer } from './tokenizers/tokenizer.js';

const EMBEDDING_NAMES = ['shared.weight', 'encoder.embed_tokens.weight', 'decoder.embed_tokens.weight'];

/** Checkpoint keys -> model keys of T5 (tied: the head is the embedding), and the keys left out with the reason. */
export function mapT5Keys(checkpointKeys: Iterable<string>, opts: { tied: boolean; encoderOnly?: boolean }): { keys: Map<string, string>; renamed: [string, string][]; dropped: DroppedKey[] } {
  const all = [...checkpointKeys];
  const embedding = EMBEDDING_NAMES.find((k) => all.includes(k));
  const keys = new Map<string, string>();
  const renamed: [string, string][] = [];
  const dropped: DroppedKey[] = [];
  for (const key of all) {
    let reason: string | null = null;
    if (EMBEDDING_NAMES.includes(key) && key !== embedding) reason = 'tied copy of shared.weight';
    else if (key === 'lm_head.weight' && opts.tied) reason = 'language-model head, tied to shared.weight';
    else if (/^decoder\.block\.\d+\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$/.test(key)) reason = 'cross-attention position bias, which T5 never applies';
    else if (opts.encoderOnly && (key.startsWith('decoder.') || key.startsWith('lm_head.'))) reason = 'decoder and language-model head, not part of the encoder';
    if (reason) {
      dropped.push({ key, reason });
      continue;
    }
    const k = key === embedding ? 'shared.weight' : key;
    keys.set(k, key);
    if (k !== key) renamed.push([key, k]);
  }
  return { keys, renamed, dropped };
}

/** Loads a checkpoint into T5 strictly (every parameter from the file, nothing else). */
export async function loadT5Checkpoint(model: T5ForConditionalGeneration, source: TensorSource): Promise<TextLoadReport> {
  const map = mapT5Keys(source.keys(), { tied: model.lmHead === null });
  const dict = new Map<string, HostArray>();
  for (const [k, ck] of map.keys) dict.set(k, await source.get(ck));
  model.loadStateDict(dict, { strict: true });
  return { renamed: map.renamed, dropped: map.dropped, newlyInitialized: [] };
}

export type PretrainedSeq2Seq = LoadedTextCheckpoint<T5ForConditionalGeneration>;

/**
 * The special tokens the model needs (pad starts the decoder, eos ends the target) missing from
 * the tokenizer, as one error. An id that holds an ordinary token (a tokenizer of another model,
 * say GPT-2's, beside a T5 config) is missing too: the model would end targets on a word piece.
 */
export function checkSeq2SeqTokenizer(model: T5ForConditionalGeneration, tokenizer: Tokenizer, label: string): void {
  const c = model.config;
  const missing = ([['pad_token_id', c.padTokenId], ['eos_token_id', c.eosTokenId]] as const).flatMap(([name, id]) => {
    const token = tokenizer.idToToken(id);
    if (token === undefined) return [`${name} ${id}`];
    // A tokenizer that flags no token special (a bare vocabulary) is taken at its word.
    return tokenizer.specialIds.size && !tokenizer.specialIds.has(id) ? [`${name} ${id} (the tokenizer's ${JSON.stringify(token)} there is not a special token)`] : [];
  });
  if (missing.length) throw new RangeError(`${label}: the tokenizer has no token for ${missing.join(' and ')} of config.json, which T5 needs to start and end a target`);
  checkVocabSize(tokenizer, model.vocabSize, label);
}

/** T5 with its checkpoint loaded strictly, and its tokenizer; `label` names the checkpoint in errors. */
export function loadPretrainedSeq2Seq(source: TextCheckpointSource, opts: { label: string }): Promise<PretrainedSeq2Seq> {
  return loadTextCheckpointWith(source, opts.label, {
    build: (config) => {
      if (config.model_type !== undefined && config.model_type !== 't5') throw new RangeError(`${opts.label}: config.json has model_type ${JSON.stringify(config.model_type)}; the sequence-to-sequence models here are T5 ("t5")`);
      return new T5ForConditionalGeneration(config);
    },
    checkTokenizer: (model, tokenizer) => checkSeq2SeqTokenizer(model, tokenizer, opts.label),
    load: loadT5Checkpoint,
  });
}
