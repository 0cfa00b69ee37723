/**
 * Text LoRA as the page runs it, written once for the browser and Node (it imports only @tl/*):
 * the user's labelled sentences, a text model loaded by the caller (fromPretrainedTextBrowser in
 * the worker, fromPretrainedText in a Node test), LoRA adapters on the named modules plus a new
 * head, the Trainer, an evaluation, and PEFT's two files. The seed is set before the head and the
 * adapters are initialised, so the same call gives the same adapter on both platforms.
 */
import * as A from '@tl/autograd';
import { adapterFiles, lora, type AdapterFiles, type LoraModel, type PretrainedText, type TextClassifier, type Tokenizer } from '@tl/models';
import { adamw, constant, stratifiedSplit, Trainer, textDataset, type Callback, type Dataset, type EpochLogs, type TrainerEvent } from '@tl/train';
import { checkLabelledSentences, type LabelledSentence } from './labelled-text.js';

export interface TextLoraOptions {
  /** Rank of each adapter. */
  r: number;
  /** The update is scaled by alpha / r. */
  alpha: number;
  dropout: number;
  /** Module names (exact, or the last part of a name, as PEFT matches them). */
  targets: string[];
  epochs: number;
  lr: number;
  batchSize: number;
  /** Tokens per sentence, special tokens included. */
  maxLength: number;
  /** Fraction of each label held out for evaluation (0: evaluate on the training sentences). */
  valSplit: number;
  seed: number;
  /** Recorded in adapter_config.json (base_model_name_or_path) so PEFT finds the base. */
  baseModel: string | null;
}

export const DEFAULT_TEXT_LORA: TextLoraOptions = {
  r: 4, alpha: 8, dropout: 0, targets: ['query', 'value'], epochs: 10, lr: 3e-2, batchSize: 8, maxLength: 32, valSplit: 0.2, seed: 0, baseModel: null,
};

export interface TextLoraHooks {
  onEvent?: (e: TrainerEvent) => void;
  logger?: (line: string) => void;
  /** Checked after each epoch: true stops training there. */
  shouldStop?: () => boolean;
}

export interface TextLoraRun {
  model: TextClassifier;
  tokenizer: Tokenizer;
  lm: LoraModel;
  trainer: Trainer;
  classes: string[];
  history: EpochLogs[];
  evaluation: { on: 'validation' | 'training'; accuracy: number; correct: number; total: number; loss: number };
  trainableParams: number;
  totalParams: number;
  files: AdapterFiles;
  seconds: number;
  options: TextLoraOptions;
}

/** "query, value" as a target list; an empty list is refused. */
export function parseTargets(s: string): string[] {
  const names = s.split(/[\s,]+/).filter((t) => t !== '');
  if (names.length === 0) throw new Error(`LoRA targets: ${JSON.stringify(s)} names no module; give module names such as "query, value"`);
  return names;
}

function checkOptions(o: TextLoraOptions): void {
  const int = (v: number, what: string, min: number): void => {
    if (!Number.isInteger(v) || v < min) throw new RangeError(`${what} must be an integer of at least ${min}, got ${v}`);
  };
  int(o.r, 'the LoRA rank r', 1);
  int(o.epochs, 'epochs', 1);
  int(o.batchSize, 'the batch size', 1);
  int(o.maxLength, 'the maximum length in tokens', 3);
  if (!(o.alpha > 0)) throw new RangeError(`LoRA alpha must be a positive number, got ${o.alpha}`);
  if (!(o.lr > 0)) throw new RangeError(`the learning rate must be a positive number, got ${o.lr}`);
  if (!(o.dropout >= 0 && o.dropout < 1)) throw new RangeError(`LoRA dropout must be in [0, 1), got ${o.dropout}`);
  if (!(o.valSplit >= 0 && o.valSplit < 1)) throw new RangeError(`the validation split must be in [0, 1), got ${o.valSplit}`);
}

/**
 * Loads the base with a head for the sentences' labels (through `load`), adds the adapters,
 * trains and evaluates. The classes are the labels, sorted, as textDataset orders them.
 */
export async function trainTextLora(
  load: (numClasses: number) => Promise<PretrainedText>,
  rows: readonly LabelledSentence[],
  o: TextLoraOptions,
  hooks: TextLoraHooks = {},
): Promise<TextLoraRun> {
  checkOptions(o);
  const classes = checkLabelledSentences(rows).sort();
  const t0 = performance.now();
  A.manualSeed(o.seed);
  const { model, tokenizer } = await load(classes.length);
  try {
    const lm = lora(model, {
      r: o.r, alpha: o.alpha, dropout: o.dropout, targetModules: o.targets, modulesToSave: [model.classifierPath], taskType: 'SEQ_CLS', baseModelNameOrPath: o.baseModel,
    });
    const all = textDataset(rows, tokenizer, { maxLength: o.maxLength, classes, name: 'page' });
    const { train, val } = splitFor(all, o.valSplit, o.seed);
    const callbacks: Callback[] = hooks.shouldStop ? [{ name: 'stop', onEpochEnd: (t) => { if (hooks.shouldStop!()) t.stopTraining = true; } }] : [];
    const trainer = new Trainer(model, {
      optimizer: adamw({ lr: o.lr }), schedule: constant(), epochs: o.epochs, batchSize: o.batchSize, seed: o.seed, callbacks,
      onEvent: hooks.onEvent, logger: hooks.logger ?? (() => {}),
    });
    const history = await trainer.fit(train, val);
    const ev = await trainer.evaluate(val ?? train);
    const { trainable, total } = lm.trainableParameters();
    return {
      model, tokenizer, lm, trainer, classes, history, options: o,
      evaluation: { on: val ? 'validation' : 'training', accuracy: ev.accuracy ?? NaN, correct: ev.correct ?? 0, total: ev.total, loss: ev.loss },
      trainableParams: trainable, totalParams: total, files: await adapterFiles(lm), seconds: (performance.now() - t0) / 1000,
    };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** A stratified hold-out when every label keeps a sentence on both sides; none otherwise. */
function splitFor(ds: Dataset, valSplit: number, seed: number): { train: Dataset; val: Dataset | null } {
  if (valSplit === 0) return { train: ds, val: null };
  const perClass = new Map<unknown, number>();
  for (const l of ds.labels()) perClass.set(l, (perClass.get(l) ?? 0) + 1);
  if (Math.min(...perClass.values()) * valSplit < 1) return { train: ds, val: null };
  return stratifiedSplit(ds, valSplit, seed);
}

/** Class probabilities of each sentence under the trained model, encoded as in training. */
export async function classifySentences(run: Pick<TextLoraRun, 'trainer' | 'tokenizer' | 'classes' | 'options'>, texts: readonly string[]): Promise<number[][]> {
  if (texts.length === 0) return [];
  const ds = textDataset(texts.map((text) => ({ text, label: 0 })), run.tokenizer, { maxLength: run.options.maxLength, classes: run.classes, name: 'try' });
  const { outputs, width } = await run.trainer.predict(ds);
  return texts.map((_, i) => softmax(outputs.subarray(i * width, (i + 1) * width)));
}

function softmax(logits: Float32Array): number[] {
  const max = Math.max(...logits);
  const e = Array.from(logits, (v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}
