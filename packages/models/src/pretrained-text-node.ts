/**
 * Text models from the Hugging Face Hub or a `save_pretrained` folder, in Node: where
 * config.json, tokenizer.json (+ tokenizer_config.json) and model.safetensors are on disk, after
 * a Hub download into huggingface_hub's cache when the reference is `hf:`. Everything else (the
 * network from config.json, the tokenizer, the checks, the strict load and its report) is
 * pretrained-text.ts, shared with the browser loader.
 */
import { readFile, stat } from 'node:fs/promises';
import { dirname, join, posix, relative, sep } from 'node:path';
import { cachedFile, hubCacheDir, hubDownload, HubError, isHubOffline, type HubOptions } from './hub/hub-node.js';
import { DEFAULT_WEIGHTS_FILE, parseWeightRef, repoFolderName, type HubRef } from './hub/ref.js';
import { checkNumClasses, loadPretrainedText, missingTextFile, textModelSpec, type NamedText, type PretrainedText, type TextCheckpointSource, type TextFiles, type TextWeightsFile } from './pretrained-text.js';
import { SafetensorsFileReader } from './safetensors-node.js';

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

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

const readText = async (path: string): Promise<NamedText> => ({ name: path, text: await readFile(path, 'utf8') });

async function openWeights(path: string): Promise<TextWeightsFile> {
  const reader = await SafetensorsFileReader.open(path);
  return { name: path, tensors: reader, close: () => reader.close() };
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

function hubSource(ref: HubRef, hub: HubOptions): TextCheckpointSource {
  const weightsFile = ref.file ?? DEFAULT_WEIGHTS_FILE;
  const dir = posix.dirname(weightsFile);
  const inDir = (f: string): string => (dir === '.' ? f : `${dir}/${f}`);
  let at = ref;
  return {
    config: async () => {
      const config = await hubDownload(ref, inDir('config.json'), hub);
      // The rest from the same commit, even if the branch moves meanwhile.
      const commit = relative(join(hubCacheDir(hub), repoFolderName(ref.repo), 'snapshots'), config).split(sep)[0]!;
      at = { ...ref, revision: commit };
      return readText(config);
    },
    tokenizer: async () => {
      const tokenizer = await readText(await hubDownload(at, inDir('tokenizer.json'), hub));
      const tokenizerConfig = await optionalHubFile(at, inDir('tokenizer_config.json'), hub);
      return { tokenizer, tokenizerConfig: tokenizerConfig === null ? null : await readText(tokenizerConfig) };
    },
    weights: async () => openWeights(await hubDownload(at, weightsFile, hub)),
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
  if (!(await isFile(config))) throw missingTextFile(dir, 'config.json');
  if (!(await isFile(tokenizer))) throw missingTextFile(dir, 'tokenizer.json');
  if (!(await isFile(weights))) {
    const bin = (await isFile(join(dir, 'pytorch_model.bin'))) ? ' (only pytorch_model.bin, which is not read here: convert it to safetensors)' : '';
    throw missingTextFile(dir, 'model.safetensors', bin);
  }
  return { weights, config, tokenizer, tokenizerConfig: (await isFile(tokenizerConfig)) ? tokenizerConfig : null };
}

function localSource(files: TextFiles): TextCheckpointSource {
  return {
    config: () => readText(files.config),
    tokenizer: async () => ({ tokenizer: await readText(files.tokenizer), tokenizerConfig: files.tokenizerConfig === null ? null : await readText(files.tokenizerConfig) }),
    weights: () => openWeights(files.weights),
  };
}

/**
 * A text model with its checkpoint loaded strictly, and its tokenizer (see loadPretrainedText),
 * from the Hub (through huggingface_hub's cache) or a local folder.
 */
export async function fromPretrainedText(id: string, opts: TextPretrainedOptions): Promise<PretrainedText> {
  const spec = textModelSpec(id, 'fromPretrainedText');
  if (typeof opts?.weights !== 'string' || opts.weights === '') {
    throw new TypeError(`fromPretrainedText("${id}"): weights must name a checkpoint, e.g. "hf:${spec.hubRepo}" or a local folder`);
  }
  checkNumClasses(opts.numClasses, 'fromPretrainedText');
  return loadPretrainedText(spec, await textCheckpointSource(opts.weights, opts.hub ?? {}), { label: opts.weights, numClasses: opts.numClasses });
}

/** The files of a text checkpoint at `weights` (hf:org/name[@revision][/file], a folder, or its model.safetensors). */
export async function textCheckpointSource(weights: string, hub: HubOptions): Promise<TextCheckpointSource> {
  const ref = parseWeightRef(weights);
  if (ref.kind === 'url') throw new Error(`${weights}: a text model needs config.json and tokenizer.json beside its weights; use hf:org/name or a local folder`);
  return ref.kind === 'hub' ? hubSource(ref, hub) : localSource(await localFiles(ref.path));
}
