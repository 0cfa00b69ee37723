/**
 * `tl train --lora r=8,alpha=16,targets=query,value[,dropout=0.1]`: LoRA adapters on the chosen
 * modules with the new head trained in full (PEFT's modules_to_save), saved into the run folder
 * as PEFT's adapter_config.json + adapter_model.safetensors; model.safetensors is the merged model,
 * so eval, predict and export read the run as any other.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ADAPTER_WEIGHTS_NAME, loadAdapterFromDir, lora, SafetensorsFileReader, saveAdapter, type ClassifierModel, type LoraModel, type LoraOptions } from '@tl/models';
import { CliError, nearest } from './errors.js';

const KEYS = ['r', 'alpha', 'targets', 'dropout'] as const;
const USAGE = 'expected r=<rank>,alpha=<a>,targets=<name>[,<name>…][,dropout=<p>], e.g. r=8,alpha=16,targets=query,value';

/** The options of a --lora value; a comma-separated item without "=" continues the target list. */
export function parseLoraFlag(value: string): Required<Pick<LoraOptions, 'r' | 'alpha' | 'dropout'>> & { targetModules: string[] } {
  const got: Record<string, string[]> = {};
  let key: string | null = null;
  for (const item of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = item.indexOf('=');
    if (eq < 0) {
      if (key !== 'targets') throw new CliError(`--lora ${value}: "${item}" has no key; ${USAGE}`, 2);
      got.targets!.push(item);
      continue;
    }
    key = item.slice(0, eq);
    if (!(KEYS as readonly string[]).includes(key)) {
      const near = nearest(key, KEYS);
      throw new CliError(`--lora ${value}: unknown key "${key}"${near ? ` (did you mean ${near}?)` : ''}; ${USAGE}`, 2);
    }
    if (got[key]) throw new CliError(`--lora ${value}: "${key}" is given twice`, 2);
    got[key] = [item.slice(eq + 1)];
  }
  const num = (k: string, fallback: number, ok: (v: number) => boolean, expected: string): number => {
    if (!got[k]) return fallback;
    const v = Number(got[k]![0]);
    if (got[k]![0] === '' || !ok(v)) throw new CliError(`--lora: ${k}=${got[k]![0]} must be ${expected}`, 2);
    return v;
  };
  const targets = (got.targets ?? []).filter(Boolean);
  if (targets.length === 0) throw new CliError(`--lora ${value}: no targets; ${USAGE}`, 2);
  const r = num('r', 8, (v) => Number.isInteger(v) && v >= 1, 'a positive integer');
  return {
    r,
    alpha: num('alpha', r, (v) => v > 0, 'a positive number'),
    dropout: num('dropout', 0, (v) => v >= 0 && v < 1, 'a probability in [0, 1)'),
    targetModules: targets,
  };
}

/** Settings that contradict --lora: it freezes the base itself and trains through it. */
export function checkLoraConflicts(c: { lora?: string; freeze: string; unfreezeAt: string[]; cacheFeatures: boolean }): void {
  if (c.lora === undefined) return;
  if (typeof c.lora !== 'string') throw new CliError(`--lora must be a string such as r=8,alpha=16,targets=query,value, got ${JSON.stringify(c.lora)}`, 2);
  parseLoraFlag(c.lora);
  if (c.freeze !== 'none') throw new CliError(`--lora freezes the base itself and trains the adapters and the head; leave out --freeze ${c.freeze}`, 2);
  if (c.unfreezeAt.length > 0) throw new CliError('--lora keeps the base frozen; leave out --unfreeze-at', 2);
  if (c.cacheFeatures) throw new CliError('--lora trains inside the backbone, so its features cannot be cached; leave out --cache-features', 2);
}

/** LoRA on `model` as --lora asks, the head trained in full and saved with the adapter. */
export function applyLora(model: ClassifierModel, value: string, base: { weights?: string; text: boolean }): LoraModel {
  const opts = parseLoraFlag(value);
  try {
    return lora(model, {
      ...opts,
      modulesToSave: [model.classifierPath],
      baseModelNameOrPath: base.weights ? base.weights.replace(/^hf:/, '') : null,
      taskType: base.text ? 'SEQ_CLS' : null,
    });
  } catch (e) {
    throw new CliError(`--lora: ${(e as Error).message.replace(/^lora: /, '')}`, 2);
  }
}

/** Writes the PEFT files into the run folder and folds the adapter into the model for model.safetensors. */
export async function finishLora(lm: LoraModel, out: string): Promise<{ files: string[]; adapterBytes: number }> {
  const { weightsBytes } = await saveAdapter(lm, out);
  lm.mergeAndUnload();
  return { files: [join(out, 'adapter_config.json'), join(out, 'adapter_model.safetensors')], adapterBytes: weightsBytes };
}

/**
 * `--adapter DIR` of eval and predict: PEFT's files from `dir` onto the model, merged into its
 * weights. An adapter that carries its own head (modules_to_save) decides the number of classes,
 * as PEFT users load the base with the adapter's num_labels.
 */
export async function mergeAdapterDir(model: ClassifierModel, dir: string): Promise<void> {
  if (!existsSync(dir)) throw new CliError(`--adapter ${dir} does not exist; expected a folder with adapter_config.json and adapter_model.safetensors`, 2);
  let lm: LoraModel;
  try {
    const weights = join(dir, ADAPTER_WEIGHTS_NAME);
    if (existsSync(weights)) {
      const file = await SafetensorsFileReader.open(weights);
      const head = file.header.tensors.get(`base_model.model.${model.classifierPath}.weight`);
      await file.close();
      if (head && head.shape.length === 2 && head.shape[0] !== model.numClasses) model.resetClassifier(head.shape[0]!);
    }
    lm = await loadAdapterFromDir(model, dir);
  } catch (e) {
    throw new CliError(`--adapter ${(e as Error).message.replace(/^lora: /, '')}`, 2);
  }
  lm.mergeAndUnload();
}
