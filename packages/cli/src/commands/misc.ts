/** `tl eval`, `tl predict`, `tl inspect`, `tl export`, `tl doctor`. */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as A from '@tl/autograd';
import {
  ClassifierModel, fromPretrained, getModelSpec, hubDownload, isImageModelSpec, isTextModelSpec, listModels, parseWeightRef, SafetensorsFileReader,
  textCheckpointFits,
  type ImageModelSpec,
} from '@tl/models';
import { decodeImage, evalTransform, Trainer, type Dataset } from '@tl/train';
import { CliError } from '../errors.js';
import { table } from '../progress.js';
import { exportText, isTextModel, predictTextCommand, textEvalSet, type TextInputs } from './text.js';
import { loadData, readTrainConfig, type TrainConfig } from './train.js';

interface RunInfo {
  dir: string;
  config: TrainConfig;
  classes: string[];
  weights: string;
}

export async function readRun(run: string): Promise<RunInfo> {
  const dir = resolve(run);
  const config = await readTrainConfig(dir);
  if (!config) throw new CliError(`${run} is not a run folder (no config.json); train one with \`tl train --out ${run}\``);
  const weights = join(dir, 'model.safetensors');
  if (!existsSync(weights)) throw new CliError(`${run} has no model.safetensors (did training finish?)`);
  const r = await SafetensorsFileReader.open(weights);
  const classes = JSON.parse(r.metadata.classes ?? '[]') as string[];
  await r.close();
  return { dir, config, classes, weights };
}

async function modelFromRun(info: RunInfo): Promise<{ model: ClassifierModel; spec: ImageModelSpec }> {
  const spec = getModelSpec(info.config.model);
  if (!isImageModelSpec(spec)) throw new CliError(`${info.config.model} is not an image model`);
  const model = await fromPretrained(info.config.model, { weights: info.weights, imgSize: info.config.imageSize });
  if (!(model instanceof ClassifierModel)) throw new CliError(`${info.config.model} has no classification head`);
  return { model: model.eval(), spec };
}

async function imageEvalSet(info: RunInfo, dataOverride: string | undefined): Promise<{ model: ClassifierModel; ds: Dataset }> {
  const { model, spec } = await modelFromRun(info);
  const cfg = { ...info.config, data: dataOverride ?? info.config.data, augment: false };
  const data = await loadData(spec, dataOverride ? { ...cfg, valSplit: 0.5, val: undefined } : cfg);
  return { model, ds: dataOverride ? mergeSplit(data) : (data.val ?? data.train) };
}

export async function evalCommand(run: string, dataOverride: string | undefined, json: boolean): Promise<void> {
  const info = await readRun(run);
  const { model, ds } = isTextModel(info.config.model) ? await textEvalSet(info.dir, info.config, info.classes, dataOverride) : await imageEvalSet(info, dataOverride);
  const trainer = new Trainer(model, { batchSize: info.config.batchSize, logger: () => {} });
  const r = await trainer.evaluate(ds);
  const perClass = r.report!.perClass.map((m, i) => ({ class: info.classes[i] ?? String(i), ...m }));
  if (json) {
    process.stdout.write(`${JSON.stringify({ accuracy: r.accuracy, correct: r.correct, total: r.total, loss: r.loss, macroF1: r.report!.macroF1, perClass, confusion: r.report!.confusion }, null, 2)}\n`);
  } else {
    process.stdout.write(`accuracy ${(100 * r.accuracy!).toFixed(2)}% (${r.correct}/${r.total}), loss ${r.loss.toFixed(4)}, macro F1 ${(100 * r.report!.macroF1).toFixed(2)}%\n`);
    process.stdout.write(`${table(['class', 'precision', 'recall', 'f1', 'support'], perClass.map((m) => [m.class, pct(m.precision), pct(m.recall), pct(m.f1), String(m.support)]))}\n`);
  }
  model.dispose();
}

function mergeSplit(d: { train: Dataset; val: Dataset | null }): Dataset {
  // Evaluating a whole folder: the split above only served to list classes; use both halves.
  if (!d.val) return d.train;
  const parts = [d.train, d.val];
  return {
    length: d.train.length + d.val.length,
    inputShape: d.train.inputShape,
    classes: d.train.classes,
    fingerprint: `${d.train.fingerprint}+${d.val.fingerprint}`,
    augments: false,
    labels: () => [...parts[0]!.labels(), ...parts[1]!.labels()],
    get: (i: number) => (i < parts[0]!.length ? parts[0]!.get(i) : parts[1]!.get(i - parts[0]!.length)),
  };
}

const pct = (v: number): string => `${(100 * v).toFixed(1)}%`;

export async function predictCommand(files: string[], run: string, topK: number, json: boolean, logits: boolean, text: Omit<TextInputs, 'files'>): Promise<void> {
  const info = await readRun(run);
  if (isTextModel(info.config.model)) return predictTextCommand(info.dir, info.config, info.classes, { ...text, files }, topK, json, logits);
  if (text.texts.length || text.pairs.length) throw new CliError(`tl predict: --text is for text models; ${run} holds ${info.config.model}, an image model`, 2);
  if (files.length === 0) throw new CliError('tl predict: name at least one image file', 2);
  const { model, spec } = await modelFromRun(info);
  const pre = { imageSize: info.config.imageSize ?? spec.inputSize, mean: spec.mean, std: spec.std, channels: spec.channels ?? 3, augment: false as const };
  const results: unknown[] = [];
  for (const f of files) {
    if (!existsSync(f)) throw new CliError(`tl predict: ${f} does not exist`);
    let img;
    try {
      img = await decodeImage(f, pre.channels === 1 ? 1 : 3);
    } catch (e) {
      results.push({ file: f, error: (e as Error).message });
      continue;
    }
    const x = A.tensor(evalTransform(img, pre), { shape: [1, pre.channels, pre.imageSize, pre.imageSize] });
    const out = A.tidy(() => A.noGrad(() => model.forward(x)));
    const raw = (await out.data()) as Float32Array;
    const probs = A.tidy(() => A.softmax(out, -1));
    const p = (await probs.data()) as Float32Array;
    const order = [...p.keys()].sort((a, b) => p[b]! - p[a]!);
    const k = Math.min(topK, p.length);
    results.push({
      file: f, label: info.classes[order[0]!] ?? String(order[0]), index: order[0], prob: p[order[0]!],
      topk: order.slice(0, k).map((i) => ({ label: info.classes[i] ?? String(i), index: i, prob: p[i] })),
      ...(logits ? { logits: [...raw] } : {}),
    });
    for (const t of [x, out, probs]) t.dispose();
  }
  if (json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  else {
    for (const r of results as { file: string; error?: string; topk?: { label: string; prob: number }[] }[]) {
      process.stdout.write(r.error ? `${r.file}: skipped (${r.error})\n` : `${r.file}: ${r.topk!.map((t) => `${t.label} ${(100 * t.prob).toFixed(1)}%`).join(', ')}\n`);
    }
  }
  const bad = (results as { error?: string }[]).filter((r) => r.error).length;
  if (bad) process.stderr.write(`${bad} of ${files.length} images could not be read and were skipped\n`);
  model.dispose();
}

export async function inspectCommand(ref: string, json: boolean): Promise<void> {
  const r = parseWeightRef(ref);
  const path = r.kind === 'hub' ? await hubDownload(r) : r.kind === 'path' ? r.path : null;
  if (!path) throw new CliError('tl inspect takes a file path or hf:org/name');
  if (!existsSync(path)) throw new CliError(`${path} does not exist`);
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
export async function exportCommand(run: string, out: string): Promise<void> {
  const info = await readRun(run);
  const spec = getModelSpec(info.config.model);
  const dir = resolve(out);
  if (isTextModelSpec(spec)) {
    const files = await exportText(info.dir, dir);
    process.stdout.write(`exported ${info.config.model} to ${dir} (${files.join(', ')}): AutoModelForSequenceClassification.from_pretrained and AutoTokenizer.from_pretrained load it\n`);
    return;
  }
  await mkdir(dir, { recursive: true });
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
    throw new CliError(`no WebGPU adapter: ${(err as Error).message}`);
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
