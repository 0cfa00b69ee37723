/**
 * A LoRA adapter as Hugging Face PEFT saves it, so `PeftModel.from_pretrained(base, dir)` loads
 * it: `adapter_config.json` (LoraConfig's fields) and `adapter_model.safetensors` whose keys drop
 * the adapter name (`base_model.model.<module>.lora_A.weight`). Loading checks every key and
 * shape against the base before anything is copied.
 */
import * as A from '@tl/autograd';
import type { Module } from '../nn/module.js';
import { parseSafetensors, serializeSafetensors, type HostArray, type TensorToWrite } from '../safetensors.js';
import { lora, LoraModel, loraOf, nearestModuleNames } from './lora.js';

export const ADAPTER_CONFIG_NAME = 'adapter_config.json';
export const ADAPTER_WEIGHTS_NAME = 'adapter_model.safetensors';

/** The fields of PEFT's LoraConfig written to adapter_config.json. */
export interface PeftLoraConfigJson {
  peft_type: 'LORA';
  task_type: string | null;
  base_model_name_or_path: string | null;
  revision: string | null;
  inference_mode: boolean;
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  target_modules: string[] | string;
  modules_to_save: string[] | null;
  fan_in_fan_out: boolean;
  bias: 'none';
  init_lora_weights: boolean;
  layers_to_transform: null;
  layers_pattern: null;
}

export interface AdapterFiles {
  config: PeftLoraConfigJson;
  /** adapter_model.safetensors, float32 as PEFT saves a float32 model's adapter. */
  weights: Uint8Array<ArrayBuffer>;
}

export function adapterConfigJson(lm: LoraModel, name: string): PeftLoraConfigJson {
  const c = lm.config(name);
  return {
    peft_type: 'LORA',
    task_type: c.taskType,
    base_model_name_or_path: c.baseModelNameOrPath,
    revision: null,
    inference_mode: true,
    r: c.r,
    lora_alpha: c.alpha,
    lora_dropout: c.dropout,
    target_modules: c.targetModules,
    modules_to_save: c.modulesToSave.length > 0 ? c.modulesToSave : null,
    fan_in_fan_out: lm.fanInFanOut(name),
    bias: 'none',
    init_lora_weights: true,
    layers_to_transform: null,
    layers_pattern: null,
  };
}

/** The two PEFT files of adapter `name` (the active one by default). */
export async function adapterFiles(lm: LoraModel, name = lm.activeAdapter ?? 'default'): Promise<AdapterFiles> {
  const tensors = new Map<string, TensorToWrite>();
  for (const [k, t] of lm.adapterStateDict(name)) tensors.set(k, { dtype: 'F32', shape: [...t.shape], data: await t.data() as Float32Array });
  return { config: adapterConfigJson(lm, name), weights: serializeSafetensors(tensors, { format: 'pt' }) };
}

function field<T>(json: Record<string, unknown>, key: string, ok: (v: unknown) => boolean, expected: string, fallback?: T): T {
  const v = json[key];
  if (v === undefined && fallback !== undefined) return fallback;
  if (!ok(v)) throw new Error(`${ADAPTER_CONFIG_NAME}: "${key}" is ${JSON.stringify(v)}; expected ${expected}`);
  return v as T;
}

/** Reads adapter_config.json's text, refusing what is not a LoRA adapter this package can apply. */
export function parseAdapterConfig(text: string): PeftLoraConfigJson {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${ADAPTER_CONFIG_NAME} is not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new Error(`${ADAPTER_CONFIG_NAME} is not a JSON object`);
  const j = json as Record<string, unknown>;
  const peftType = field<string>(j, 'peft_type', (v) => typeof v === 'string', 'a string');
  if (peftType !== 'LORA') throw new Error(`${ADAPTER_CONFIG_NAME}: peft_type is "${peftType}"; only LORA adapters are supported`);
  const bias = field<string>(j, 'bias', (v) => typeof v === 'string', 'a string', 'none');
  if (bias !== 'none') throw new Error(`${ADAPTER_CONFIG_NAME}: bias is "${bias}"; only bias "none" is supported`);
  for (const k of ['use_dora', 'use_rslora'] as const) {
    if (j[k] === true) throw new Error(`${ADAPTER_CONFIG_NAME}: ${k} is true; only plain LoRA is supported`);
  }
  const strList = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'string');
  const opt = (v: unknown) => v === null || v === undefined;
  const modulesToSave = j.modules_to_save;
  if (!opt(modulesToSave) && !strList(modulesToSave)) throw new Error(`${ADAPTER_CONFIG_NAME}: "modules_to_save" is ${JSON.stringify(modulesToSave)}; expected a list of names or null`);
  return {
    peft_type: 'LORA',
    task_type: field<string | null>(j, 'task_type', (v) => v === null || typeof v === 'string', 'a string or null', null),
    base_model_name_or_path: field<string | null>(j, 'base_model_name_or_path', (v) => v === null || typeof v === 'string', 'a string or null', null),
    revision: field<string | null>(j, 'revision', (v) => v === null || typeof v === 'string', 'a string or null', null),
    inference_mode: field<boolean>(j, 'inference_mode', (v) => typeof v === 'boolean', 'true or false', true),
    r: field<number>(j, 'r', (v) => Number.isInteger(v) && (v as number) > 0, 'a positive integer'),
    lora_alpha: field<number>(j, 'lora_alpha', (v) => typeof v === 'number' && v > 0, 'a positive number'),
    lora_dropout: field<number>(j, 'lora_dropout', (v) => typeof v === 'number' && v >= 0 && v < 1, 'a number in [0, 1)', 0),
    target_modules: field<string[] | string>(j, 'target_modules', (v) => typeof v === 'string' || strList(v), 'a list of module names or a regular expression'),
    modules_to_save: (modulesToSave ?? null) as string[] | null,
    fan_in_fan_out: field<boolean>(j, 'fan_in_fan_out', (v) => typeof v === 'boolean', 'true or false', false),
    bias: 'none',
    init_lora_weights: true,
    layers_to_transform: null,
    layers_pattern: null,
  };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Adds the adapter in PEFT's files to `model` as `name` (LoRA is applied first if the model has
 * none) and returns the handle. A file whose keys or shapes do not fit the base is refused with
 * the first mismatched key, and the model is left as it was.
 */
export function loadAdapter(model: Module, files: { config: string | PeftLoraConfigJson; weights: ArrayBuffer | Uint8Array }, name = 'default', source = 'adapter'): LoraModel {
  const cfg = typeof files.config === 'string' ? parseAdapterConfig(files.config) : files.config;
  const tensors = parseSafetensors(files.weights, `${source}/${ADAPTER_WEIGHTS_NAME}`).all();
  const opts = {
    r: cfg.r, alpha: cfg.lora_alpha, dropout: cfg.lora_dropout, targetModules: cfg.target_modules,
    modulesToSave: cfg.modules_to_save ?? [], adapterName: name,
    baseModelNameOrPath: cfg.base_model_name_or_path, taskType: cfg.task_type,
  };
  const existing = loraOf(model);
  const lm = existing ? existing.addAdapter(name, opts) : lora(model, opts);
  try {
    if (cfg.fan_in_fan_out !== lm.fanInFanOut(name)) {
      throw new Error(`${source}: fan_in_fan_out is ${cfg.fan_in_fan_out} but the targeted layers of ${model.constructor.name} store their weights ${lm.fanInFanOut(name) ? '[in, out] (Conv1D)' : '[out, in]'}; the adapter was made for another base`);
    }
    copyAdapterWeights(lm, name, tensors, source);
  } catch (e) {
    if (existing) existing.deleteAdapter(name);
    else lm.mergeAndUnload();
    throw e;
  }
  return lm;
}

function copyAdapterWeights(lm: LoraModel, name: string, tensors: Map<string, HostArray>, source: string): void {
  const own = lm.adapterStateDict(name);
  for (const [k, v] of tensors) {
    const t = own.get(k);
    if (!t) {
      const near = nearestModuleNames(k, [...own.keys()], 2);
      throw new Error(`${source}: key ${k} has no counterpart in ${lm.model.constructor.name} (the base does not match the adapter); the nearest keys are ${near.join(', ')}`);
    }
    if (!sameShape(v.shape, t.shape)) {
      throw new Error(`${source}: ${k} is [${v.shape.join(', ')}] in the adapter but [${t.shape.join(', ')}] on this base (the base does not match the adapter)`);
    }
  }
  const missing = [...own.keys()].find((k) => !tensors.has(k));
  if (missing) throw new Error(`${source}: the adapter has no ${missing}, which its config targets on this base (the base does not match the adapter)`);
  A.noGrad(() => {
    for (const [k, v] of tensors) {
      const t = own.get(k)!;
      t.engine.write(t.buffer, v.data instanceof Float32Array ? v.data : Float32Array.from(v.data), t.offset * 4);
    }
  });
}
