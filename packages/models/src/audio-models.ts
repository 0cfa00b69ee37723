/**
 * Speech models of the registry. No pretrained speech checkpoint can be downloaded where this
 * project is built, so the one it ships is its own: speech_w2v2_tiny, a small Wav2Vec2 that
 * packages/train/scripts/speech-transfer.ts pretrains on words spoken by espeak-ng (the CLI
 * carries its weights in assets/, with a model card).
 */
import { Wav2Vec2ForSequenceClassification } from './arch/wav2vec2.js';
import type { Wav2Vec2Config } from './arch/wav2vec2-config.js';
import { registerModel, type ModelSpec } from './registry.js';

export interface AudioModelSpec extends ModelSpec<Wav2Vec2ForSequenceClassification> {
  task: 'audio';
  /** Rate of the waveform the model takes, in Hz. */
  sampleRate: number;
  /** Samples per clip it was trained on (clips are padded or cut to it). */
  clipSamples: number;
  /** The transformers config.json fields of its shape. */
  config: Wav2Vec2Config;
}

export function isAudioModelSpec(spec: ModelSpec): spec is AudioModelSpec {
  return spec.task === 'audio';
}

/** wav2vec2-base's seven convs (stride 320: 49 frames a second of 16 kHz audio) at width 32,
 * two post-norm transformer layers of width 64. */
export const SPEECH_TINY_CONFIG: Wav2Vec2Config = {
  conv_dim: [32, 32, 32, 32, 32, 32, 32],
  hidden_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  intermediate_size: 128,
  num_conv_pos_embeddings: 16,
  num_conv_pos_embedding_groups: 4,
  classifier_proj_size: 32,
  mask_time_length: 5,
  layerdrop: 0,
};

/** The 15 words of the source task (the words of the project's Speech Commands sample), in head order. */
export const SPEECH_TINY_WORDS: readonly string[] = ['bed', 'bird', 'cat', 'dog', 'eight', 'five', 'four', 'happy', 'nine', 'one', 'seven', 'six', 'three', 'two', 'zero'];

export const SPEECH_W2V2_TINY: AudioModelSpec = registerModel({
  id: 'speech_w2v2_tiny',
  task: 'audio',
  description: 'Wav2Vec2 sequence classifier, 32-channel convs and two 64-wide layers (transformers keys), pretrained on espeak-ng words: the speech default',
  parameters: 105_119,
  checkpoints: ['tl speech-transfer'],
  labels: SPEECH_TINY_WORDS,
  numClasses: SPEECH_TINY_WORDS.length,
  sampleRate: 16000,
  clipSamples: 16000,
  config: SPEECH_TINY_CONFIG,
  create: (opts = {}) => new Wav2Vec2ForSequenceClassification(SPEECH_TINY_CONFIG, { numLabels: opts.numClasses ?? SPEECH_TINY_WORDS.length }),
});
