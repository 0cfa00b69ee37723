/**
 * Text models from the Hugging Face Hub or a `save_pretrained` folder: the network is built
 * from config.json, the weights of model.safetensors load strictly through the key map of
 * text-checkpoint.ts, and tokenizer.json (with tokenizer_config.json when there is one) gives
 * the tokenizer that goes with them.
 */
import { readFile, stat } from 'node:fs/promises';
import { dirname, join, posix, relative, sep } from 'node:path';
import { cachedFile, hubCacheDir, hubDownload, HubError, isHubOffline, type HubOptions } from './hub/hub-node.js';
import { DEFAULT_WEIGHTS_FILE, parseWeightRef, repoFolderName, type HubRef } from './hub/ref.js';
import { StateDictError } from './nn/module.js';
import { getModelSpec, isTextModelSpec, listModels, type TextClassifier } from './registry.js';
import { SafetensorsFileReader } from './safetensors-node.js';
import { loadTextCheckpoint, type TextLoadReport } from './text-checkpoint.js';
import { Tokenizer, type TokenizerConfigJSON, type TokenizerJSON } from './tokenizers/tokenizer.js';

export interface TextPretrainedOptions {
  /**
   * `hf:org/name[@revision][/folder/model.safetensors]`, a local folder holding config.json,
   * tokenizer.json and model.safetensors, or the path of such a folder's model.safetensors.
   */
  weights: string;
  /** A new head with this many classes (the checkpoint's head, if any, is replaced when it differs). */
  numClasses?: number;
  hub?: HubOptions;
}

export interface PretrainedText {
  model: TextClassifier;
  tokenizer: Tokenizer;
  /** The config.json the model was built from. */
  config: Record<string, unknown>;
  /** What the key map renamed and dropped, and which keys are newly initialised. */
  report: TextLoadReport;
  /** Where the files were read from (the Hub cache for `hf:` references), e.g. to copy the
   * tokenizer next to fine-tuned weights. */
  files: TextFiles;
}

export interface TextFiles {
  weights: string;
  config: string;
  tokenizer: string;
  tokenizerConfig: string | null;
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

/** An optional file of the repo (tokenizer_config.json): null when the repo has none. */
async function optionalHubFile(ref: HubRef, file: string, hub: HubOptions): Promise<string | null> {
  if (isHubOffline(hub)) return cachedFile(ref, file, hub);
  try {
    return await hubDownload(ref, file, hub);
  } catch (e) {
    if (e instanceof HubError && e.status === 404) return null;
    throw e;
  }
}

async function hubFiles(ref: HubRef, hub: HubOptions): Promise<TextFiles> {
  const weightsFile = ref.file ?? DEFAULT_WEIGHTS_FILE;
  const dir = posix.dirname(weightsFile);
  const inDir = (f: string): string => (dir === '.' ? f : `${dir}/${f}`);
  // config.json first: a wrong model type fails before the weights download.
  const config = await hubDownload(ref, inDir('config.json'), hub);
  // The rest from the same commit, even if the branch moves meanwhile.
  const commit = relative(join(hubCacheDir(hub), repoFolderName(ref.repo), 'snapshots'), config).split(sep)[0]!;
  const at: HubRef = { ...ref, revision: commit };
  return {
    config,
    tokenizer: await hubDownload(at, inDir('tokenizer.json'), hub),
    tokenizerConfig: await optionalHubFile(at, inDir('tokenizer_config.json'), hub),
    weights: await hubDownload(at, weightsFile, hub),
  };
}

async function localFiles(path: string): Promise<TextFiles> {
  let folder: boolean;
  try {
    folder = (await stat(path)).isDirectory();
  } catch {
    throw new Error(`${path} does not exist; expected a folder with config.json, tokenizer.json and model.safetensors, or hf:org/name`);
  }
  const dir = folder ? path : dirname(path);
  const weights = folder ? join(dir, DEFAULT_WEIGHTS_FILE) : path;
  const config = join(dir, 'config.json');
  const tokenizer = join(dir, 'tokenizer.json');
  const tokenizerConfig = join(dir, 'tokenizer_config.json');
  if (!(await isFile(config))) throw new Error(`${dir} has no config.json; a text model is built from the config.json saved with its weights`);
  if (!(await isFile(tokenizer))) throw new Error(`${dir} has no tokenizer.json; save the (fast) tokenizer beside the weights with tokenizer.save_pretrained`);
  if (!(await isFile(weights))) {
    const bin = (await isFile(join(dir, 'pytorch_model.bin'))) ? ' (only pytorch_model.bin, which is not read here: convert it to safetensors)' : '';
    throw new Error(`${dir} has no ${DEFAULT_WEIGHTS_FILE}${bin}`);
  }
  return { weights, config, tokenizer, tokenizerConfig: (await isFile(tokenizerConfig)) ? tokenizerConfig : null };
}

async function readJSON<T>(path: string, what: string): Promise<T> {
  const text = await readFile(path, 'utf8');
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(`${path}: ${what} is not valid JSON (${(e as Error).message})`);
  }
}

/**
 * A text model with its checkpoint loaded strictly, and its tokenizer. The key map reads the
 * files people have (gpt2's unprefixed keys and mask buffers, bert-base-uncased's gamma/beta and
 * pretraining heads, base-model files without a prefix); the classifier head is new unless the
 * checkpoint has one, and `numClasses` replaces a head of another size.
 */
export async function fromPretrainedText(id: string, opts: TextPretrainedOptions): Promise<PretrainedText> {
  const spec = getModelSpec(id);
  if (!isTextModelSpec(spec)) {
    const textIds = listModels('text').map((s) => s.id).join(', ');
    throw new RangeError(`fromPretrainedText: "${id}" is not a text model (task "${spec.task}"); text models: ${textIds}`);
  }
  if (typeof opts?.weights !== 'string' || opts.weights === '') {
    throw new TypeError(`fromPretrainedText("${id}"): weights must name a checkpoint, e.g. "hf:${spec.hubRepo}" or a local folder`);
  }
  const n = opts.numClasses;
  if (n !== undefined && !(Number.isInteger(n) && n >= 1)) throw new RangeError(`fromPretrainedText: numClasses must be a positive integer, got ${n}`);
  const ref = parseWeightRef(opts.weights);
  if (ref.kind === 'url') throw new Error(`${opts.weights}: a text model needs config.json and tokenizer.json beside its weights; use hf:org/name or a local folder`);
  const files = ref.kind === 'hub' ? await hubFiles(ref, opts.hub ?? {}) : await localFiles(ref.path);

  const json = await readJSON<unknown>(files.config, 'config.json');
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new TypeError(`${files.config}: config.json must hold an object, got ${JSON.stringify(json)}`);
  const config = json as Record<string, unknown>;
  const tokenizer = Tokenizer.fromJSON(await readJSON<TokenizerJSON>(files.tokenizer, 'tokenizer.json'), {
    config: files.tokenizerConfig ? await readJSON<TokenizerConfigJSON>(files.tokenizerConfig, 'tokenizer_config.json') : {},
  });
  const model = spec.fromConfig(config);
  try {
    if (tokenizer.vocabSize > model.config.vocabSize) {
      throw new RangeError(`${opts.weights}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${model.config.vocabSize}; its ids would index past the embedding`);
    }
    const reader = await SafetensorsFileReader.open(files.weights);
    let report: TextLoadReport;
    try {
      report = await loadTextCheckpoint(model, reader);
    } catch (e) {
      if (e instanceof StateDictError) throw new StateDictError(`${opts.weights}: ${e.message}`, e.missing, e.unexpected, e.mismatched);
      throw e;
    } finally {
      await reader.close();
    }
    if (n !== undefined && n !== model.numClasses) {
      model.resetClassifier(n);
      const head = model.namedParameters().map(([k]) => k).filter((k) => k.startsWith(`${model.classifierPath}.`));
      report.newlyInitialized = [...new Set([...report.newlyInitialized, ...head])];
    }
    return { model, tokenizer, config, report, files };
  } catch (e) {
    model.dispose();
    throw e;
  }
}
