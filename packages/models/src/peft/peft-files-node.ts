/** PEFT's adapter folder on disk: written file by file under temporary names, then renamed. */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Module } from '../nn/module.js';
import { writeFileAtomic } from '../safetensors-node.js';
import type { LoraModel } from './lora.js';
import { ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, adapterFiles, loadAdapter } from './peft-files.js';

/** Writes adapter_config.json and adapter_model.safetensors into `dir`; returns the weights' size in bytes. */
export async function saveAdapter(lm: LoraModel, dir: string, name = lm.activeAdapter ?? 'default'): Promise<{ configPath: string; weightsPath: string; weightsBytes: number }> {
  const files = await adapterFiles(lm, name);
  await mkdir(dir, { recursive: true });
  const weightsPath = join(dir, ADAPTER_WEIGHTS_NAME);
  const configPath = join(dir, ADAPTER_CONFIG_NAME);
  await writeFileAtomic(weightsPath, files.weights);
  await writeFileAtomic(configPath, new TextEncoder().encode(`${JSON.stringify(files.config, null, 2)}\n`));
  return { configPath, weightsPath, weightsBytes: files.weights.byteLength };
}

/** Reads a PEFT adapter folder and adds it to `model` as adapter `name`. */
export async function loadAdapterFromDir(model: Module, dir: string, name = 'default'): Promise<LoraModel> {
  const read = async (file: string) => {
    try {
      return await readFile(join(dir, file));
    } catch (e) {
      throw new Error(`${dir} is not a PEFT adapter folder: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  };
  const config = (await read(ADAPTER_CONFIG_NAME)).toString('utf8');
  const weights = await read(ADAPTER_WEIGHTS_NAME);
  return loadAdapter(model, { config, weights: new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength) }, name, dir);
}
