/**
 * Messages of the two private-adaptation panels (text LoRA, AdaBN on photos) between the page
 * and the worker. The user's sentences and photos travel only here, page to worker, in memory.
 */
import type { EpochLogs } from '@tl/train';
import type { AdaBNReport } from './adabn-job.js';
import type { LabelledSentence } from './labelled-text.js';
import type { ModelChoice } from './protocol.js';
import type { TextLoraOptions } from './text-lora-job.js';

/** A text checkpoint: `hf:org/name` or a folder URL, or the user's own files. */
export type TextModelChoice =
  | { kind: 'url'; arch: string; ref: string; /** Hub endpoint for `hf:` references. */ endpoint?: string }
  | { kind: 'files'; arch: string; config: Blob; tokenizer: Blob; weights: Blob; tokenizerConfig?: Blob };

export type AdaptToWorker =
  | { type: 'lora-models' }
  | { type: 'lora-train'; model: TextModelChoice; rows: LabelledSentence[]; options: TextLoraOptions }
  | { type: 'lora-predict'; id: number; texts: string[] }
  | { type: 'lora-export' }
  | { type: 'adabn'; model: ModelChoice; photos: { blob: Blob; name: string }[]; batchSize: number }
  | { type: 'adabn-export' };

export interface LoraDone {
  type: 'lora-done';
  classes: string[];
  history: EpochLogs[];
  evaluation: { on: 'validation' | 'training'; accuracy: number; correct: number; total: number; loss: number };
  trainableParams: number;
  totalParams: number;
  /** Modules that got an adapter. */
  adaptedModules: string[];
  /** adapter_model.safetensors and adapter_config.json, in bytes. */
  adapterBytes: number;
  configBytes: number;
  seconds: number;
}

export type AdaptFromWorker =
  /** The text architectures a checkpoint can be loaded as. */
  | { type: 'lora-models'; models: { id: string; description: string }[] }
  | LoraDone
  | { type: 'lora-predictions'; id: number; probs: number[][] }
  | { type: 'lora-exported'; config: string; weights: ArrayBuffer }
  | { type: 'adabn-done'; report: AdaBNReport; classes: string[]; model: string; names: string[] }
  | { type: 'adabn-exported'; bytes: ArrayBuffer; name: string };

const TYPES: ReadonlySet<string> = new Set<AdaptToWorker['type']>(['lora-models', 'lora-train', 'lora-predict', 'lora-export', 'adabn', 'adabn-export']);

export function isAdaptRequest(m: { type: string }): m is AdaptToWorker {
  return TYPES.has(m.type);
}
