/**
 * Loading a text model, whatever holds its files: config.json parsed and the network built from
 * it, tokenizer.json (with tokenizer_config.json when there is one) made a tokenizer, the two
 * checked against each other, and model.safetensors loaded strictly through the key map of
 * text-checkpoint.ts. The Node loader (file system, Hub cache) and the browser loader (fetch,
 * Cache API, picked files) supply only the files, so both give the same errors and report.
 */
import { StateDictError } from './nn/module.js';
import { getModelSpec, isTextModelSpec, listModels, type TextClassifier, type TextModelSpec } from './registry.js';
import { loadTextCheckpoint, type TensorSource, type TextLoadReport } from './text-checkpoint.js';
import { Tokenizer, type TokenizerConfigJSON, type TokenizerJSON } from './tokenizers/tokenizer.js';

/** A text classifier with its tokenizer, as `fromPretrained` gives it. */
export type PretrainedText = LoadedTextCheckpoint<TextClassifier>;

export interface TextFiles {
  weights: string;
  config: string;
  tokenizer: string;
  tokenizerConfig: string | null;
}

/** A JSON file's text, and where it came from (for messages and `PretrainedText.files`). */
export interface NamedText {
  name: string;
  text: string;
}

/** The weights file, open for reading; `close` is called once the load is over. */
export interface TextWeightsFile {
  name: string;
  tensors: TensorSource;
  close?(): Promise<void>;
}

/**
 * The files of a text checkpoint, each read when the loader asks for it, once and in this order:
 * config.json first, so that a wrong model type fails before the tokenizer and weights download,
 * and a source may pin the later files to the revision config.json came from.
 */
export interface TextCheckpointSource {
  config(): Promise<NamedText>;
  /** tokenizer.json, and tokenizer_config.json or null when the checkpoint has none. */
  tokenizer(): Promise<{ tokenizer: NamedText; tokenizerConfig: NamedText | null }>;
  weights(): Promise<TextWeightsFile>;
}

export type TextCheckpointFile = 'config.json' | 'tokenizer.json' | 'model.safetensors';

const MISSING_HINT: Record<TextCheckpointFile, string> = {
  'config.json': '; a text model is built from the config.json saved with its weights',
  'tokenizer.json': '; save the (fast) tokenizer beside the weights with tokenizer.save_pretrained',
  'model.safetensors': '',
};

/** The error for a checkpoint (`where`) that lacks one of the files a text model needs. */
export function missingTextFile(where: string, file: TextCheckpointFile, detail = ''): Error {
  return new Error(`${where} has no ${file}${detail}${MISSING_HINT[file]}`);
}

/** The spec of text model `id`, or an error that lists the text models. */
export function textModelSpec(id: string, caller: string): TextModelSpec {
  const spec = getModelSpec(id);
  if (!isTextModelSpec(spec)) {
    const textIds = listModels('text').map((s) => s.id).join(', ');
    throw new RangeError(`${caller}: "${id}" is not a text model (task "${spec.task}"); text models: ${textIds}`);
  }
  return spec;
}

/** Checked before any file is read, so that a bad option costs no download. */
export function checkNumClasses(n: number | undefined, caller: string): void {
  if (n !== undefined && !(Number.isInteger(n) && n >= 1)) throw new RangeError(`${caller}: numClasses must be a positive integer, got ${n}`);
}

/** A JSON file parsed, or an error naming the file. */
export function parseJSON<T>(file: NamedText, what: string): T {
  try {
    return JSON.parse(file.text) as T;
  } catch (e) {
    throw new Error(`${file.name}: ${what} is not valid JSON (${(e as Error).message})`);
  }
}

/** A model built from a text checkpoint's config.json, with its tokenizer and the load's report. */
export interface LoadedTextCheckpoint<M> {
  model: M;
  tokenizer: Tokenizer;
  /** The config.json the model was built from. */
  config: Record<string, unknown>;
  /** What the key map renamed and dropped, and which keys are newly initialised. */
  report: TextLoadReport;
  /** Where the files were read from (paths in the Hub cache for `hf:` references in Node, URLs or
   * file names in the browser), e.g. to copy the tokenizer next to fine-tuned weights. */
  files: TextFiles;
}

/** What differs between the text model families: how config.json becomes a network, what
 * the tokenizer must offer it, and how the weights load (strictly) into it. */
export interface TextCheckpointSteps<M> {
  build(config: Record<string, unknown>): M;
  checkTokenizer(model: M, tokenizer: Tokenizer): void;
  load(model: M, tensors: TensorSource): Promise<TextLoadReport>;
}

/**
 * The order every text checkpoint loads in: config.json parsed to an object and built, the
 * tokenizer read and checked against the model before the weights are asked for, the weights
 * loaded and their file closed whatever happens, and a StateDictError prefixed with `label`.
 * The model is disposed when any step fails.
 */
export async function loadTextCheckpointWith<M extends { dispose(): void }>(source: TextCheckpointSource, label: string, steps: TextCheckpointSteps<M>): Promise<LoadedTextCheckpoint<M>> {
  const configFile = await source.config();
  const json = parseJSON<unknown>(configFile, 'config.json');
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new TypeError(`${configFile.name}: config.json must hold an object, got ${JSON.stringify(json)}`);
  const config = json as Record<string, unknown>;
  const model = steps.build(config);
  try {
    const tok = await source.tokenizer();
    const tokenizer = Tokenizer.fromJSON(parseJSON<TokenizerJSON>(tok.tokenizer, 'tokenizer.json'), {
      config: tok.tokenizerConfig ? parseJSON<TokenizerConfigJSON>(tok.tokenizerConfig, 'tokenizer_config.json') : {},
    });
    steps.checkTokenizer(model, tokenizer);
    const weights = await source.weights();
    let report: TextLoadReport;
    try {
      report = await steps.load(model, weights.tensors);
    } catch (e) {
      if (e instanceof StateDictError) throw new StateDictError(`${label}: ${e.message}`, e.missing, e.unexpected, e.mismatched);
      throw e;
    } finally {
      await weights.close?.();
    }
    const files: TextFiles = { config: configFile.name, tokenizer: tok.tokenizer.name, tokenizerConfig: tok.tokenizerConfig?.name ?? null, weights: weights.name };
    return { model, tokenizer, config, report, files };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** The error for a tokenizer whose ids would index past the model's embedding. */
export function checkVocabSize(tokenizer: Tokenizer, vocabSize: number, label: string): void {
  if (tokenizer.vocabSize > vocabSize) {
    throw new RangeError(`${label}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${vocabSize}; its ids would index past the embedding`);
  }
}

/**
 * A text model with its checkpoint loaded strictly, and its tokenizer. The key map reads the
 * files people have (gpt2's unprefixed keys and mask buffers, bert-base-uncased's gamma/beta and
 * pretraining heads, base-model files without a prefix); the classifier head is new unless the
 * checkpoint has one, and `numClasses` replaces a head of another size. `label` names the
 * checkpoint in errors.
 */
export function loadPretrainedText(spec: TextModelSpec, source: TextCheckpointSource, opts: { label: string; numClasses?: number }): Promise<PretrainedText> {
  return loadTextCheckpointWith<TextClassifier>(source, opts.label, {
    build: (config) => spec.fromConfig(config),
    checkTokenizer: (model, tokenizer) => checkVocabSize(tokenizer, model.config.vocabSize, opts.label),
    load: async (model, tensors) => {
      const report = await loadTextCheckpoint(model, tensors);
      const n = opts.numClasses;
      if (n !== undefined && n !== model.numClasses) {
        model.resetClassifier(n);
        const head = model.namedParameters().map(([k]) => k).filter((k) => k.startsWith(`${model.classifierPath}.`));
        report.newlyInitialized = [...new Set([...report.newlyInitialized, ...head])];
      }
      return report;
    },
  });
}
