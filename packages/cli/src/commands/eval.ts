/**
 * `tl eval` and `tl predict`: a run folder's model, or a registered architecture with a
 * checkpoint (`--model cifar_resnet20 --weights file|hf:org/name`), scored on labelled data
 * whose classes are matched to the model's by name.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import * as A from '@tl/autograd';
import { ClassifierModel, fromPretrained, getModelSpec, isImageModelSpec, listModels, SafetensorsFileReader, StateDictError, type ImageModelSpec } from '@tl/models';
import {
  argmaxRows, classificationReport, DataError, decodeImage, evalResizeSize, evalTransform, idxDataset, IMAGE_EXTENSIONS, imageFolder, imageList, ImageListDataset, Trainer, type Dataset, type Preprocess,
} from '@tl/train';
import { startEngine } from '../engine.js';
import { CliError, nearest } from '../errors.js';
import { table } from '../progress.js';
import { audioEvalSet, isAudioModel, loadAudioRun, predictAudio } from './audio.js';
import { isTextModel, predictTextCommand, textEvalSet, type TextInputs } from './text.js';
import { loadData, readRunConfig, type TrainConfig } from './train.js';
import { checkWeightsRef, describeMismatch, localWeights } from '../weights.js';
import { mergeAdapterDir } from '../lora-flag.js';

/** Where a model to score comes from: a run folder, or an architecture and its checkpoint. */
export interface ModelSource {
  run?: string;
  model?: string;
  weights?: string;
  /** `--classes a,b,c`: names of the checkpoint's outputs. */
  classes?: string;
  imageSize?: number;
  batchSize?: number;
  /** `--adapter DIR`: a PEFT LoRA adapter merged into the model before scoring. */
  adapter?: string;
}

interface RunInfo {
  dir: string;
  config: TrainConfig;
  classes: string[];
  weights: string;
}

export async function readRun(run: string): Promise<RunInfo> {
  const dir = resolve(run);
  const config = await readRunConfig(run, '--run');
  const weights = join(dir, 'model.safetensors');
  if (!existsSync(weights)) throw new CliError(`--run ${run} has no model.safetensors (did training finish?)`, 2);
  let classes: string[];
  try {
    const r = await SafetensorsFileReader.open(weights);
    classes = JSON.parse(r.metadata.classes ?? '[]') as string[];
    await r.close();
  } catch (e) {
    throw new CliError(`--run ${run}: model.safetensors is not readable (${(e as Error).message})`, 2);
  }
  return { dir, config, classes, weights };
}

function positiveInt(v: number | undefined, flag: string): void {
  if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new CliError(`${flag} must be a positive integer, got ${v}`, 2);
}

/** What can be checked before the GPU starts: one source, a known model, the weights file, the numbers. */
export async function checkSource(s: ModelSource, command: string): Promise<void> {
  positiveInt(s.imageSize, '--image-size');
  positiveInt(s.batchSize, '--batch-size');
  if (s.run && (s.model || s.weights)) throw new CliError(`tl ${command}: give --run, or --model with --weights, not both`, 2);
  if (s.run) {
    if (s.classes) throw new CliError(`tl ${command}: --classes is for --model checkpoints; a run folder names its classes`, 2);
    return;
  }
  if (!s.model) throw new CliError(`tl ${command}: name the model: --run <run folder>, or --model <id> --weights <file|hf:org/name>`, 2);
  const known = listModels().map((m) => m.id);
  if (!known.includes(s.model)) {
    const near = nearest(s.model, known);
    throw new CliError(`--model ${s.model} is not a known model${near ? ` (did you mean ${near}?)` : ''}; \`tl models\` lists them`, 2);
  }
  if (!isImageModelSpec(getModelSpec(s.model))) throw new CliError(`tl ${command} --model takes image models; ${s.model} is a ${getModelSpec(s.model).task} model: train a run and use --run`, 2);
  if (!s.weights) throw new CliError(`tl ${command}: --model ${s.model} needs --weights <file|hf:org/name> (a random model has nothing to score)`, 2);
  await checkWeightsRef(s.weights, '--weights');
}

export interface Scorer {
  model: ClassifierModel;
  spec: ImageModelSpec;
  id: string;
  /** Names of the model's outputs, in index order; null when nothing names them. */
  classes: string[] | null;
  /** Where the names came from, for the output. */
  classSource: string;
  imageSize: number;
  batchSize: number;
  /** The run's own data settings, when scoring a run without --data. */
  run?: RunInfo;
}

function parseClassList(s: string, width: number): string[] {
  const names = s.split(',').map((c) => c.trim());
  if (names.some((n) => !n) || new Set(names).size !== names.length) throw new CliError(`--classes ${s}: expected distinct comma-separated names`, 2);
  if (names.length !== width) throw new CliError(`--classes names ${names.length} classes but the checkpoint's head has ${width} outputs`, 2);
  return names;
}

export async function scorer(s: ModelSource): Promise<Scorer> {
  if (s.run) {
    const info = await readRun(s.run);
    const spec = getModelSpec(info.config.model);
    if (!isImageModelSpec(spec)) throw new CliError(`${info.config.model} is not an image model`);
    await startEngine();
    const model = await fromPretrained(info.config.model, { weights: info.weights, imgSize: info.config.imageSize });
    if (!(model instanceof ClassifierModel)) throw new CliError(`${info.config.model} has no classification head`);
    if (s.adapter) await mergeAdapterDir(model, s.adapter);
    return {
      model: model.eval(), spec, id: info.config.model, classes: info.classes.length ? info.classes : null, classSource: 'the run',
      imageSize: s.imageSize ?? info.config.imageSize ?? spec.inputSize, batchSize: s.batchSize ?? info.config.batchSize ?? 32, run: info,
    };
  }
  const id = s.model!;
  const spec = getModelSpec(id) as ImageModelSpec;
  const path = await localWeights(s.weights!, '--weights');
  await startEngine();
  let model;
  try {
    model = await fromPretrained(id, { weights: path, imgSize: s.imageSize });
  } catch (e) {
    if (e instanceof StateDictError) throw await describeMismatch(e, id, s.weights!, path);
    throw e;
  }
  if (!(model instanceof ClassifierModel)) throw new CliError(`${id} has no classification head`);
  if (s.adapter) await mergeAdapterDir(model, s.adapter);
  const r = await SafetensorsFileReader.open(path);
  const meta = r.metadata.classes;
  await r.close();
  let classes: string[] | null = null;
  let classSource = '';
  if (s.classes) [classes, classSource] = [parseClassList(s.classes, model.numClasses), '--classes'];
  else if (meta) {
    try {
      const parsed = JSON.parse(meta) as unknown;
      if (Array.isArray(parsed) && parsed.length === model.numClasses) [classes, classSource] = [parsed.map(String), 'the checkpoint'];
    } catch {
      // A checkpoint's free-form metadata is not ours to insist on; other sources name the classes.
    }
  }
  if (!classes && spec.labels && spec.labels.length === model.numClasses) [classes, classSource] = [[...spec.labels], `${id}'s known labels`];
  return { model: model.eval(), spec, id, classes, classSource, imageSize: s.imageSize ?? spec.inputSize, batchSize: s.batchSize ?? 32 };
}

/** Labelled images of `data` (folder, list, IDX), their class names and labels by name. */
/** The split of a labelled folder or list that evaluation scores: its test split, else its
 * validation split, else (class folders, a plain list) everything. */
function heldOut(r: { train: Dataset; val: Dataset | null; test?: Dataset | null; classes: string[] }, data: string): { ds: Dataset; names: string[]; split: string } {
  if (r.test && r.test.length > 0) return { ds: r.test, names: r.classes, split: `the test split of ${data}` };
  if (r.val && r.val.length > 0) return { ds: r.val, names: r.classes, split: `the validation split of ${data}` };
  return { ds: r.train, names: r.classes, split: data };
}

async function loadLabelled(data: string, sc: Scorer): Promise<{ ds: Dataset; names: string[]; split?: string }> {
  if (!existsSync(data)) throw new CliError(`--data ${data} does not exist`, 2);
  const pre = { imageSize: sc.imageSize, mean: sc.spec.mean, std: sc.spec.std, channels: sc.spec.channels ?? 3, cropPct: sc.spec.cropPct, interpolation: sc.spec.interpolation, augment: false as const, valSplit: undefined };
  try {
    if (statSync(data).isDirectory()) {
      const one = oneClassFolder(data, pre);
      if (one) return one;
      return heldOut(await imageFolder(data, pre), data);
    }
    if (/\.(csv|jsonl|ndjson)$/i.test(data)) {
      return heldOut(await imageList(data, pre), data);
    }
    if (/images-idx3-ubyte(\.gz)?$/.test(data)) {
      const ds = await idxDataset(data, data.replace('images-idx3', 'labels-idx1'), pre);
      // IDX labels are the digits themselves: class i is named "i".
      const top = Math.max(...(ds.labels() as number[]));
      return { ds, names: Array.from({ length: top + 1 }, (_, i) => String(i)) };
    }
  } catch (e) {
    if (e instanceof DataError) throw new CliError(e.message, 2);
    throw e;
  }
  throw new CliError(`--data ${data}: expected an image folder, a .csv/.jsonl list or an *-images-idx3-ubyte(.gz) file`, 2);
}

/** A folder of one class: training needs two (imageFolder says so), scoring a model on one is fine. */
function oneClassFolder(data: string, pre: Omit<Preprocess, 'augment'>): { ds: Dataset; names: string[] } | null {
  const dirs = readdirSync(data, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.startsWith('.'));
  if (dirs.length !== 1) return null;
  const name = dirs[0]!.name;
  const files = readdirSync(join(data, name)).filter((f) => IMAGE_EXTENSIONS.has(extname(f).toLowerCase())).sort().map((f) => join(data, name, f));
  if (!files.length) throw new CliError(`class folder ${join(data, name)} has no images (${[...IMAGE_EXTENSIONS].join(', ')})`, 2);
  return { ds: new ImageListDataset(files, files.map(() => 0), [name], { ...pre, augment: false }, `${resolve(data)}:${statSync(data).mtimeMs}`), names: [name] };
}

/** Index of each data class among the model's classes, by name; refuses names the model lacks. */
export function matchClasses(dataClasses: readonly string[], modelClasses: readonly string[], what: string, model: string): number[] {
  const unknown = dataClasses.filter((c) => !modelClasses.includes(c));
  if (unknown.length) {
    throw new CliError(`${what} has ${unknown.length === 1 ? 'the class' : 'classes'} ${unknown.map((c) => `"${c}"`).join(', ')} that ${model} does not know; it knows ${modelClasses.join(', ')}`, 2);
  }
  return dataClasses.map((c) => modelClasses.indexOf(c));
}

export interface EvalReport {
  model: string;
  data: string;
  /** How the data's class names were tied to the model's outputs. */
  classMapping: string;
  correct: number;
  total: number;
  accuracy: number;
  loss: number;
  /** Over the classes present in the data. */
  macroF1: number;
  perClass: { class: string; precision: number; recall: number; f1: number; support: number }[];
  /** Rows: the classes present (perClass order); columns: every class the model knows (`classes`). */
  confusion: number[][];
  classes: string[];
}

/** Scores logits against targets (model indices) over the classes present in the targets. */
export function scoreOutputs(outputs: Float32Array, width: number, targets: number[], classes: string[]): Omit<EvalReport, 'model' | 'data' | 'classMapping'> {
  const pred = argmaxRows(outputs, width);
  const rep = classificationReport(pred, targets, width);
  let loss = 0;
  for (let i = 0; i < targets.length; i++) {
    const row = outputs.subarray(i * width, (i + 1) * width);
    const max = row.reduce((a, v) => Math.max(a, v), -Infinity);
    const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0));
    loss += lse - row[targets[i]!]!;
  }
  const present = [...new Set(targets)].sort((a, b) => a - b);
  return {
    correct: rep.correct, total: rep.total, accuracy: rep.accuracy, loss: targets.length ? loss / targets.length : 0, macroF1: rep.macroF1,
    perClass: present.map((c) => ({ class: classes[c]!, ...rep.perClass[c]! })),
    confusion: present.map((c) => rep.confusion[c]!),
    classes,
  };
}

const pct = (v: number): string => `${(100 * v).toFixed(1)}%`;

function printReport(r: EvalReport, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    return;
  }
  process.stdout.write(`${r.model} on ${r.data}: ${r.classMapping}\n`);
  process.stdout.write(`accuracy ${(100 * r.accuracy).toFixed(2)}% (${r.correct}/${r.total}), loss ${r.loss.toFixed(4)}, macro F1 ${(100 * r.macroF1).toFixed(2)}% over ${r.perClass.length} classes\n`);
  process.stdout.write(`${table(['class', 'precision', 'recall', 'f1', 'support'], r.perClass.map((m) => [m.class, pct(m.precision), pct(m.recall), pct(m.f1), String(m.support)]))}\n`);
}

export async function evalCommand(s: ModelSource, data: string | undefined, json: boolean): Promise<void> {
  await checkSource(s, 'eval');
  if (!s.run && !data) throw new CliError('tl eval: --model needs --data <image folder|list> to score it on', 2);
  if (data && !existsSync(data)) throw new CliError(`--data ${data} does not exist`, 2);
  if (s.run) {
    const info = await readRun(s.run);
    if (isTextModel(info.config.model)) {
      if (s.adapter) throw new CliError(`tl eval: --adapter is for image models; ${s.run} holds ${info.config.model}, a text model`, 2);
      await startEngine();
      const { model, ds } = await textEvalSet(info.dir, info.config, info.classes, data);
      const { outputs, width } = await new Trainer(model, { batchSize: s.batchSize ?? info.config.batchSize, logger: () => {} }).predict(ds);
      model.dispose();
      const classes = Array.from({ length: width }, (_, i) => info.classes[i] ?? String(i));
      const scored = scoreOutputs(outputs, width, ds.labels() as number[], classes);
      printReport({ model: info.config.model, data: data ?? 'the validation texts of the run', classMapping: 'labels matched by name to the run\'s classes', ...scored }, json);
      return;
    }
    if (isAudioModel(info.config.model)) {
      if (s.adapter) throw new CliError(`tl eval: --adapter is for image models; ${s.run} holds ${info.config.model}, an audio model`, 2);
      const { model, spec } = await loadAudioRun(info.config.model, info.weights);
      try {
        const { ds, names, label } = await audioEvalSet(info.config, spec, data);
        const labels = ds.labels() as number[];
        const present = [...new Set(labels)].sort((a, b) => a - b);
        const toModel = new Map(present.map((i, k) => [i, matchClasses(present.map((j) => names[j]!), info.classes, `--data ${label}`, info.config.model)[k]!]));
        const { outputs, width } = await new Trainer(model, { batchSize: s.batchSize ?? info.config.batchSize, logger: () => {} }).predict(ds);
        const scored = scoreOutputs(outputs, width, labels.map((l) => toModel.get(l)!), info.classes);
        printReport({ model: info.config.model, data: label, classMapping: `classes matched by name to the run (${present.length} of ${info.classes.length} present)`, ...scored }, json);
      } finally {
        model.dispose();
      }
      return;
    }
  }
  const sc = await scorer(s);
  try {
    let ds: Dataset;
    let names: string[];
    let label: string;
    if (data) {
      let split: string | undefined;
      ({ ds, names, split } = await loadLabelled(data, sc));
      label = split ?? data;
    } else {
      ({ ds, names } = await runValidationSet(sc.run!, sc));
      label = 'the validation split of the run';
    }
    const labels = ds.labels() as number[];
    const present = [...new Set(labels)].sort((a, b) => a - b);
    let modelClasses = sc.classes;
    let toModel: number[];
    let classMapping: string;
    if (modelClasses) {
      toModel = matchClasses(present.map((i) => names[i]!), modelClasses, `--data ${label}`, sc.id);
      classMapping = `classes matched by name to ${sc.classSource} (${present.length} of ${modelClasses.length} present)`;
    } else {
      if (names.length !== sc.model.numClasses) {
        throw new CliError(`nothing names the ${sc.model.numClasses} outputs of --weights ${s.weights} and --data ${label} has ${names.length} classes; give --classes <${sc.model.numClasses} names in output order>`, 2);
      }
      modelClasses = names;
      toModel = present;
      classMapping = `the checkpoint names no classes: the ${names.length} folder names were taken by position (${names.join(', ')})`;
    }
    const map = new Map(present.map((i, k) => [i, toModel[k]!]));
    const { outputs, width } = await new Trainer(sc.model, { batchSize: sc.batchSize, logger: () => {} }).predict(ds);
    const targets = labels.map((l) => map.get(l)!);
    printReport({ model: sc.id, data: label, classMapping, ...scoreOutputs(outputs, width, targets, modelClasses) }, json);
  } finally {
    sc.model.dispose();
  }
}

/** The validation images of a run, as training split them. */
async function runValidationSet(info: RunInfo, sc: Scorer): Promise<{ ds: Dataset; names: string[] }> {
  const c = info.config;
  const d = await loadData(sc.spec, { ...c, augment: false, imageSize: sc.imageSize }).catch((e: unknown) => {
    if (e instanceof DataError) throw new CliError(`the run's data: ${e.message}`, 2);
    throw e;
  });
  return { ds: d.val ?? d.train, names: d.classes };
}

export async function predictCommand(files: string[], s: ModelSource, topK: number, json: boolean, logits: boolean, text: Omit<TextInputs, 'files'>): Promise<void> {
  await checkSource(s, 'predict');
  if (!Number.isInteger(topK) || topK < 1) throw new CliError(`--top-k must be a positive integer, got ${topK}`, 2);
  if (s.run) {
    const info = await readRun(s.run);
    if (isTextModel(info.config.model)) {
      if (s.adapter) throw new CliError(`tl predict: --adapter is for image models; ${s.run} holds ${info.config.model}, a text model`, 2);
      await startEngine();
      return predictTextCommand(info.dir, info.config, info.classes, { ...text, files }, topK, json, logits);
    }
    if (isAudioModel(info.config.model)) return predictAudioCommand(files, info, topK, json, logits);
    if (text.texts.length || text.pairs.length) throw new CliError(`tl predict: --text is for text models; ${s.run} holds ${info.config.model}, an image model`, 2);
  }
  if (files.length === 0) throw new CliError('tl predict: name at least one image file', 2);
  for (const f of files) {
    if (!existsSync(f)) throw new CliError(`tl predict: ${f} does not exist`, 2);
    if (statSync(f).isDirectory()) throw new CliError(`tl predict: ${f} is a folder; name image files (e.g. ${f}/*.jpg)`, 2);
  }
  const sc = await scorer(s);
  const names = sc.classes ?? [];
  const channels = sc.spec.channels ?? 3;
  const pre = { imageSize: sc.imageSize, mean: sc.spec.mean, std: sc.spec.std, channels, cropPct: sc.spec.cropPct, interpolation: sc.spec.interpolation, augment: false as const };
  const results: unknown[] = [];
  for (const f of files) {
    let img;
    try {
      img = await decodeImage(f, channels === 1 ? 1 : 3, evalResizeSize(pre.imageSize, pre.cropPct), pre.interpolation);
    } catch (e) {
      results.push({ file: f, error: (e as Error).message });
      continue;
    }
    const x = A.tensor(evalTransform(img, pre), { shape: [1, channels, pre.imageSize, pre.imageSize] });
    const out = A.tidy(() => A.noGrad(() => sc.model.forward(x)));
    const raw = (await out.data()) as Float32Array;
    const probs = A.tidy(() => A.softmax(out, -1));
    const p = (await probs.data()) as Float32Array;
    const order = [...p.keys()].sort((a, b) => p[b]! - p[a]!);
    const k = Math.min(topK, p.length);
    results.push({
      file: f, label: names[order[0]!] ?? String(order[0]), index: order[0], prob: p[order[0]!],
      topk: order.slice(0, k).map((i) => ({ label: names[i] ?? String(i), index: i, prob: p[i] })),
      ...(logits ? { logits: [...raw] } : {}),
    });
    for (const t of [x, out, probs]) t.dispose();
  }
  sc.model.dispose();
  if (json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  else {
    for (const r of results as { file: string; error?: string; topk?: { label: string; prob: number }[] }[]) {
      process.stdout.write(r.error ? `${r.file}: skipped (${r.error})\n` : `${r.file}: ${r.topk!.map((t) => `${t.label} ${(100 * t.prob).toFixed(1)}%`).join(', ')}\n`);
    }
  }
  const bad = (results as { error?: string }[]).filter((r) => r.error).length;
  if (bad) process.stderr.write(`${bad} of ${files.length} images could not be read and were skipped\n`);
}

async function predictAudioCommand(files: string[], info: RunInfo, topK: number, json: boolean, logits: boolean): Promise<void> {
  if (files.length === 0) throw new CliError(`tl predict: name at least one audio file (${info.config.model} is an audio model)`, 2);
  for (const f of files) {
    if (!existsSync(f)) throw new CliError(`tl predict: ${f} does not exist`, 2);
    if (statSync(f).isDirectory()) throw new CliError(`tl predict: ${f} is a folder; name audio files (e.g. ${f}/*.wav)`, 2);
  }
  const { model, spec } = await loadAudioRun(info.config.model, info.weights);
  let r;
  try {
    r = await predictAudio(files, model, spec, info.classes, topK, logits);
  } finally {
    model.dispose();
  }
  if (r.notice) process.stderr.write(`${r.notice}\n`);
  if (json) process.stdout.write(`${JSON.stringify(r.results, null, 2)}\n`);
  else for (const p of r.results) process.stdout.write(p.error ? `${p.file}: skipped (${p.error})\n` : `${p.file}: ${p.topk!.map((t) => `${t.label} ${(100 * t.prob).toFixed(1)}%`).join(', ')}\n`);
  const bad = r.results.filter((p) => p.error).length;
  if (bad) process.stderr.write(`${bad} of ${files.length} clips could not be read and were skipped\n`);
}
