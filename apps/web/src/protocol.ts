/** Messages between the page and the training worker (structured-clone friendly). */
import type { EpochLogs, TrainerEvent } from '@tl/train';
import type { AdaptFromWorker, AdaptToWorker } from './protocol-adapt.js';
import type { GenerateFromWorker, GenerateToWorker } from './protocol-generate.js';
import type { Strategy } from './strategies.js';

export type ModelChoice =
  | { kind: 'embedded' }
  | { kind: 'url'; url: string; arch: string; /** Hub endpoint for `hf:` references (default https://huggingface.co). */ endpoint?: string }
  | { kind: 'file'; file: Blob; name: string; arch: string }
  | { kind: 'opfs'; path: string; arch: string };

export type DataChoice =
  | { kind: 'digits'; labelsPerClass: number; testPerClass: number }
  | { kind: 'images'; classes: { name: string; images: Blob[] }[]; valSplit: number; augment: boolean };

export interface TrainRequest {
  type: 'train';
  model: ModelChoice;
  data: DataChoice;
  strategy: Strategy;
  epochs: number;
  batchSize: number;
  /** Default: the strategy's. */
  lr?: number;
  seed: number;
}

export type ToWorker =
  | { type: 'init' }
  | TrainRequest
  | { type: 'stop' }
  | { type: 'predict'; id: number; images: Blob[] }
  | { type: 'export' }
  | { type: 'save-opfs'; path: string }
  | AdaptToWorker
  | GenerateToWorker;

export interface AdapterInfo {
  description: string;
  /** 'core' or 'compatibility'. */
  featureLevel: string;
  fallback: boolean;
  features: string[];
  maxBufferMB: number;
}

export interface Preview {
  /** 28x28 (or the model's size) grayscale/RGB bytes, row-major, for drawing. */
  pixels: Uint8ClampedArray;
  width: number;
  height: number;
  label: number;
  predicted: number;
}

export type FromWorker =
  /** `embedded`: the architecture id of the embedded default, which its exports load back with. */
  | { type: 'ready'; adapter: AdapterInfo; models: { id: string; description: string; inputSize: number; channels: number }[]; embedded: string }
  | { type: 'unsupported'; message: string }
  | { type: 'log'; line: string }
  | { type: 'stage'; text: string; loaded?: number; total?: number | null }
  | { type: 'event'; event: TrainerEvent }
  | {
      type: 'done';
      history: EpochLogs[];
      test: { accuracy: number; correct: number; total: number; loss: number } | null;
      classes: string[];
      seconds: number;
      trainableParams: number;
      totalParams: number;
      previews: Preview[];
    }
  | { type: 'predictions'; id: number; results: { probs: number[] | null; error?: string }[] }
  | { type: 'exported'; bytes: ArrayBuffer; name: string }
  | { type: 'saved'; where: string }
  | AdaptFromWorker
  | GenerateFromWorker
  | { type: 'error'; message: string; during: string };
