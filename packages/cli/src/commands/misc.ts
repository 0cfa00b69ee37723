/** `tl inspect`, `tl export`, `tl doctor`. */
import { copyFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as A from '@tl/autograd';
import { getModelSpec, isImageModelSpec, isTextModelSpec, listModels, parseWeightRef, SafetensorsFileReader, textCheckpointFits } from '@tl/models';
import { startEngine } from '../engine.js';
import { CliError } from '../errors.js';
import { table } from '../progress.js';
import { checkOut, makeOut } from '../run-folder.js';
import { checkWeightsRef, localWeights } from '../weights.js';
import { readRun } from './eval.js';
import { exportText } from './text.js';

export async function inspectCommand(ref: string, json: boolean): Promise<void> {
  await checkWeightsRef(ref, 'tl inspect');
  if (parseWeightRef(ref).kind === 'url') throw new CliError(`tl inspect ${ref}: expected a file path or hf:org/name[@revision][/file], not a URL`, 2);
  const path = await localWeights(ref, 'tl inspect');
  await startEngine();
  const f = await SafetensorsFileReader.open(path);
  const keys = f.keys().sort();
  const infos = keys.map((k) => ({ key: k, ...f.info(k) }));
  const params = infos.reduce((a, i) => a + i.shape.reduce((x, d) => x * d, 1), 0);
  const keySet = new Set(keys);
  const matches: string[] = [];
  for (const spec of listModels('image')) {
    if (spec.id.startsWith('vgg') || spec.id === 'vit_b_16') continue;
    const m = spec.create();
    const own = [...m.stateDict().keys()].filter((k) => !k.endsWith('num_batches_tracked'));
    if (own.every((k) => keySet.has(k)) && own.length === [...keySet].filter((k) => !k.endsWith('num_batches_tracked')).length) matches.push(spec.id);
    m.dispose();
  }
  // Text checkpoints are matched through their key map on a miniature of their depth: a
  // full-size BERT or GPT-2 takes far too long to build just for its key names.
  for (const spec of listModels('text')) if (isTextModelSpec(spec) && textCheckpointFits(spec, keys)) matches.push(spec.id);
  await f.close();
  const summary = { file: path, tensors: keys.length, parameters: params, metadata: f.metadata, architectures: matches, keys: infos.map((i) => ({ key: i.key, dtype: i.dtype, shape: i.shape })) };
  if (json) {
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    return;
  }
  process.stdout.write(`${path}\n${keys.length} tensors, ${params.toLocaleString('en')} values\n`);
  for (const [k, v] of Object.entries(f.metadata)) process.stdout.write(`  ${k}: ${v.length > 100 ? `${v.slice(0, 100)}…` : v}\n`);
  process.stdout.write(`matches: ${matches.length ? matches.join(', ') : 'no registered architecture (key sets differ)'}\n`);
  process.stdout.write(`${table(['key', 'dtype', 'shape'], infos.map((i) => [i.key, i.dtype, `[${i.shape.join(', ')}]`]))}\n`);
}

/** A folder ready for PyTorch / transformers: model.safetensors (PyTorch keys) + config.json. */
export async function exportCommand(run: string, out: string, overwrite: boolean): Promise<void> {
  const info = await readRun(run);
  const spec = getModelSpec(info.config.model);
  const dir = resolve(out);
  await checkOut(out, '--out', overwrite);
  await makeOut(dir);
  if (isTextModelSpec(spec)) {
    const files = await exportText(info.dir, dir);
    process.stdout.write(`exported ${info.config.model} to ${dir} (${files.join(', ')}): AutoModelForSequenceClassification.from_pretrained and AutoTokenizer.from_pretrained load it\n`);
    return;
  }
  await copyFile(info.weights, join(dir, 'model.safetensors'));
  const image = isImageModelSpec(spec) ? spec : null;
  const config = {
    architecture: info.config.model,
    library: 'tl (transfer learning on WebGPU)',
    num_labels: info.classes.length,
    id2label: Object.fromEntries(info.classes.map((c, i) => [String(i), c])),
    label2id: Object.fromEntries(info.classes.map((c, i) => [c, i])),
    ...(image ? { image_size: info.config.imageSize ?? image.inputSize, num_channels: image.channels ?? 3, image_mean: image.mean, image_std: image.std } : {}),
    pytorch_load: 'state_dict = safetensors.torch.load_file("model.safetensors"); model.load_state_dict(state_dict, strict=True)',
  };
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  process.stdout.write(`exported ${info.config.model} to ${dir} (model.safetensors, config.json)\n`);
}

export async function doctorCommand(): Promise<void> {
  let e;
  try {
    e = await A.init();
  } catch (err) {
    throw new CliError(`no WebGPU adapter: ${(err as Error).message}`, 1);
  }
  const limits = e.device.limits as unknown as Record<string, number>;
  process.stdout.write(`adapter: ${e.adapterDescription}\nbackend: Dawn (npm "webgpu") on ${process.platform}\n`);
  process.stdout.write(`features: ${[...e.device.features].sort().join(', ')}\n`);
  for (const k of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupsPerDimension', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupStorageSize']) {
    process.stdout.write(`  ${k}: ${limits[k]}\n`);
  }
  if (process.env.LP_NUM_THREADS) process.stdout.write(`LP_NUM_THREADS=${process.env.LP_NUM_THREADS} (lavapipe threads)\n`);
  const t = A.add(A.tensor([1, 2]), 1);
  const v = [...(await t.data())];
  process.stdout.write(`a test kernel ran: [1, 2] + 1 = [${v.join(', ')}]\n`);
}
