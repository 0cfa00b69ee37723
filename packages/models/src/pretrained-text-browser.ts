/**
 * Text models in the browser, the counterpart of fromPretrainedText in Node
 * (pretrained-text-node.ts): the same loader (pretrained-text.ts: the network from config.json,
 * the tokenizer, the checks, the strict load and its report) over files from the Hub, a base URL
 * or the user's file picker.
 * Downloads go through the Cache API like the weights, so a second load makes no request.
 */
import { DEFAULT_WEIGHTS_FILE, parseHubRef } from './hub/ref.js';
import {
  checkNumClasses, loadPretrainedText, missingTextFile, textModelSpec,
  type NamedText, type PretrainedText, type TextCheckpointFile, type TextCheckpointSource,
} from './pretrained-text.js';
import { parseSafetensors } from './safetensors.js';
import { fetchCached, type Fetched, type FetchWeightsOptions } from './fetch-cached.js';
import { hubResolveUrl } from './weights-browser.js';

/** A checkpoint's files as the user picked them (an `<input type="file" multiple>`, a drop). */
export interface PickedTextFiles {
  config: Blob;
  tokenizer: Blob;
  weights: Blob;
  tokenizerConfig?: Blob;
}

export interface TextPretrainedBrowserOptions extends FetchWeightsOptions {
  /**
   * `hf:org/name[@revision][/folder/model.safetensors]`, the URL of a folder holding config.json,
   * tokenizer.json and model.safetensors (or of that model.safetensors), or the picked files.
   * `onProgress` follows the model.safetensors download.
   */
  weights: string | URL | PickedTextFiles;
  /** A new head with this many classes (the checkpoint's head, if any, is replaced when it differs). */
  numClasses?: number;
}

export interface PretrainedTextBrowser extends PretrainedText {
  /** Whether every file came from the Cache API (false for picked files). */
  fromCache: boolean;
}

const CALLER = 'fromPretrainedTextBrowser';

/** The URLs of a checkpoint's files; `pin` moves them to the commit config.json came from. */
interface Locations {
  url(file: string): string;
  weights(): string;
  pin(commit: string): void;
}

function hubLocations(s: string, endpoint: string | undefined): Locations {
  let ref = parseHubRef(s);
  const weightsFile = ref.file ?? DEFAULT_WEIGHTS_FILE;
  const slash = weightsFile.lastIndexOf('/');
  const dir = slash < 0 ? '' : weightsFile.slice(0, slash + 1);
  return {
    url: (file) => hubResolveUrl({ ...ref, file: dir + file }, endpoint),
    weights: () => hubResolveUrl({ ...ref, file: weightsFile }, endpoint),
    // The rest from the same commit, even if the branch moves meanwhile.
    pin: (commit) => (ref = { ...ref, revision: commit }),
  };
}

function urlLocations(s: string): Locations {
  const given = new URL(s, globalThis.location?.href);
  const isWeights = given.pathname.endsWith('.safetensors');
  const dir = isWeights ? new URL('.', given) : new URL(given.pathname.endsWith('/') ? given.href : `${given.href}/`);
  return { url: (file) => new URL(file, dir).href, weights: () => (isWeights ? given.href : new URL(DEFAULT_WEIGHTS_FILE, dir).href), pin: () => {} };
}

function urlSource(where: string, at: Locations, o: FetchWeightsOptions, downloaded: { any: boolean }): TextCheckpointSource {
  // onProgress is the weights download's; the JSON files are small.
  const small = { ...o, onProgress: undefined };
  const note = (f: Fetched | null): Fetched | null => {
    if (f && !f.fromCache) downloaded.any = true;
    return f;
  };
  const required = async (file: TextCheckpointFile, url: string, opts: FetchWeightsOptions): Promise<Fetched> => {
    const f = note(await fetchCached(url, opts));
    if (!f) throw missingTextFile(where, file, ` (HTTP 404 from ${url})`);
    return f;
  };
  const text = (f: Fetched): NamedText => ({ name: f.url, text: new TextDecoder().decode(f.bytes) });
  return {
    config: async () => {
      const f = await required('config.json', at.url('config.json'), small);
      if (f.commit !== null) at.pin(f.commit);
      return text(f);
    },
    tokenizer: async () => {
      const tokenizer = text(await required('tokenizer.json', at.url('tokenizer.json'), small));
      const config = note(await fetchCached(at.url('tokenizer_config.json'), small, true));
      return { tokenizer, tokenizerConfig: config && text(config) };
    },
    weights: async () => {
      const f = await required('model.safetensors', at.weights(), o);
      return { name: f.url, tensors: parseSafetensors(f.bytes, f.url) };
    },
  };
}

const nameOf = (b: Blob, fallback: string): string => (b instanceof File && b.name !== '' ? b.name : fallback);

function typeName(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'function') return 'a function';
  return v === null || typeof v !== 'object' ? String(v) : (v as object).constructor?.name ?? 'an object';
}

function pickedSource(files: PickedTextFiles): TextCheckpointSource {
  const read = async (b: Blob, fallback: string): Promise<NamedText> => ({ name: nameOf(b, fallback), text: await b.text() });
  return {
    config: () => read(files.config, 'config.json'),
    tokenizer: async () => ({
      tokenizer: await read(files.tokenizer, 'tokenizer.json'),
      tokenizerConfig: files.tokenizerConfig ? await read(files.tokenizerConfig, 'tokenizer_config.json') : null,
    }),
    weights: async () => {
      const name = nameOf(files.weights, DEFAULT_WEIGHTS_FILE);
      return { name, tensors: parseSafetensors(new Uint8Array(await files.weights.arrayBuffer()), name) };
    },
  };
}

function checkPicked(caller: string, w: object): PickedTextFiles {
  const picked = w as Partial<Record<keyof PickedTextFiles, unknown>>;
  const files: [keyof PickedTextFiles, string, boolean][] = [
    ['config', 'config.json', true], ['tokenizer', 'tokenizer.json', true], ['weights', 'model.safetensors', true], ['tokenizerConfig', 'tokenizer_config.json', false],
  ];
  for (const [key, file, needed] of files) {
    const v = picked[key];
    if ((needed || v !== undefined) && !(v instanceof Blob)) {
      throw new TypeError(`${caller}: weights.${key} must be a File or Blob (the checkpoint's ${file}), got ${typeName(v)}`);
    }
  }
  return w as PickedTextFiles;
}

/**
 * A text model with its checkpoint loaded strictly, and its tokenizer, in the browser. config.json
 * comes first (a wrong model type fails before the weights download); for `hf:` references the
 * Hub's X-Repo-Commit pins tokenizer.json, tokenizer_config.json and model.safetensors to the
 * commit config.json came from. The key map, report and errors are fromPretrainedText's.
 */
export async function fromPretrainedTextBrowser(id: string, opts: TextPretrainedBrowserOptions): Promise<PretrainedTextBrowser> {
  const spec = textModelSpec(id, CALLER);
  const w: unknown = opts?.weights;
  checkNumClasses(opts?.numClasses, CALLER);
  const { source, label, downloaded } = browserTextSource(w, opts, `${CALLER}("${id}")`, `hf:${spec.hubRepo}`);
  const loaded = await loadPretrainedText(spec, source, { label, numClasses: opts.numClasses });
  return { ...loaded, fromCache: !downloaded.any };
}

/**
 * The files of a checkpoint named by `w` (`hf:`, a URL, or the picked files) as the text loaders
 * read them; `downloaded.any` turns true once a file came from the network rather than the Cache
 * API (always, for picked files). `caller` and `example` shape the errors.
 */
export function browserTextSource(w: unknown, opts: FetchWeightsOptions, caller: string, example: string): { source: TextCheckpointSource; label: string; downloaded: { any: boolean } } {
  if ((typeof w === 'string' && w !== '') || w instanceof URL) {
    const s = String(w);
    if (s.startsWith('opfs:')) throw new TypeError(`${caller}: ${s}: text models are not read from OPFS; pass hf:org/name, a URL or the picked files`);
    const downloaded = { any: false };
    const at = s.startsWith('hf:') ? hubLocations(s, opts.endpoint) : urlLocations(s);
    return { source: urlSource(s, at, opts, downloaded), label: s, downloaded };
  }
  if (typeof w === 'object' && w !== null && !(w instanceof Blob)) {
    const files = checkPicked(caller, w);
    return { source: pickedSource(files), label: nameOf(files.weights, DEFAULT_WEIGHTS_FILE), downloaded: { any: true } };
  }
  throw new TypeError(`${caller}: weights must be "${example}", the URL of a folder with config.json, tokenizer.json and model.safetensors, or { config, tokenizer, weights } files; got ${typeName(w)}`);
}
