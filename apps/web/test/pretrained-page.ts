/**
 * @tl/models' browser loaders in a real page: fromPretrainedTextBrowser loads a text checkpoint
 * (from a Hub endpoint, or as picked files) and the page runs the backbone on a batch of texts;
 * fromPretrained loads image weights from `hf:`, a URL, a File or OPFS. Built with esbuild
 * (browser conditions) by pretrained.test.ts, which drives `window.__text`.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { batchTensors, ClassifierModel, fromPretrained, fromPretrainedTextBrowser, saveToOpfs, type PickedTextFiles, type TextLoadReport, type WeightsInfo } from '@tl/models';
import { init } from '@tl/tensor';
import { backbone } from '../../../packages/models/test/hub-text-cases.js';

export interface Output {
  shape: number[];
  data: number[];
}

export interface TextRun {
  report: TextLoadReport;
  numClasses: number;
  fromCache: boolean;
  modelType: unknown;
  files: { config: string; tokenizer: string; tokenizerConfig: string | null; weights: string };
  inputIds: number[];
  attentionMask: number[];
  hidden: Output;
  pooled: Output | null;
}

export interface TextLoadArgs {
  id: string;
  /** `hf:` reference or URL; or file name -> base64 bytes, made picked Files. */
  weights: string | Record<string, string>;
  endpoint?: string;
  numClasses?: number;
  texts: string[];
}

const output = async (t: Tensor): Promise<Output> => ({ shape: [...t.shape], data: [...(await t.data())] });

const bytesOf = (b64: string): Uint8Array<ArrayBuffer> => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));

function picked(files: Record<string, string>): PickedTextFiles {
  const file = (name: string): File | undefined => {
    const b64 = files[name];
    return b64 === undefined ? undefined : new File([bytesOf(b64)], name);
  };
  return { config: file('config.json')!, tokenizer: file('tokenizer.json')!, weights: file('model.safetensors')!, tokenizerConfig: file('tokenizer_config.json') };
}

async function load(a: TextLoadArgs): Promise<TextRun | { error: string; name: string }> {
  try {
    const weights = typeof a.weights === 'string' ? a.weights : picked(a.weights);
    const loaded = await fromPretrainedTextBrowser(a.id, { weights, endpoint: a.endpoint, numClasses: a.numClasses });
    const batch = loaded.tokenizer.encodeBatch(a.texts, { padding: 'longest' });
    const { inputIds, attentionMask, tokenTypeIds } = batchTensors(batch);
    const model = loaded.model.eval();
    const [hidden, pooled] = A.noGrad(() => backbone(model, inputIds, attentionMask, tokenTypeIds));
    const run: TextRun = {
      report: loaded.report, numClasses: model.numClasses, fromCache: loaded.fromCache, modelType: loaded.config.model_type, files: loaded.files,
      inputIds: batch.inputIds.flat(), attentionMask: batch.attentionMask.flat(), hidden: await output(hidden), pooled: pooled && (await output(pooled)),
    };
    model.dispose();
    return run;
  } catch (e) {
    return { error: (e as Error).message, name: (e as Error).name };
  }
}

export interface ImageLoadArgs {
  id: string;
  /** `hf:` reference, URL or `opfs:` path; or a file's name and base64 bytes, made a File. */
  weights: string | { name: string; base64: string };
  endpoint?: string;
  numClasses?: number;
  /** Written to OPFS before loading. */
  opfs?: { path: string; base64: string };
}

export interface ImageRun {
  info: WeightsInfo;
  numClasses: number;
  /** The model's tensors after loading. */
  tensors: Record<string, Output>;
}

async function loadImage(a: ImageLoadArgs): Promise<ImageRun | { error: string; name: string }> {
  try {
    if (a.opfs) await saveToOpfs(a.opfs.path, bytesOf(a.opfs.base64));
    const weights = typeof a.weights === 'string' ? a.weights : new File([bytesOf(a.weights.base64)], a.weights.name);
    let info: WeightsInfo | null = null;
    const model = await fromPretrained(a.id, { weights, endpoint: a.endpoint, numClasses: a.numClasses, onWeights: (w) => (info = w) });
    const tensors: Record<string, Output> = {};
    for (const [k, t] of model.stateDict()) tensors[k] = await output(t);
    const numClasses = model instanceof ClassifierModel ? model.numClasses : 0;
    model.dispose();
    return { info: info!, numClasses, tensors };
  } catch (e) {
    return { error: (e as Error).message, name: (e as Error).name };
  }
}

declare global {
  interface Window {
    __text?: { adapter: string; load: typeof load; loadImage: typeof loadImage } | { error: string };
  }
}

init().then(
  (e) => (window.__text = { adapter: e.adapterDescription, load, loadImage }),
  (err: Error) => (window.__text = { error: String(err.stack ?? err) }),
);
