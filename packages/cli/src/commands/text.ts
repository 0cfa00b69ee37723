/**
 * `tl train`, `tl eval` and `tl predict` for the text models (bert, distilbert, roberta, gpt2):
 * a CSV / JSONL file of texts and labels, the tokenizer of the checkpoint, and a run folder that
 * is also a `save_pretrained` folder: config.json (the model's, with id2label) beside
 * model.safetensors and tokenizer.json, so transformers' AutoModelForSequenceClassification and
 * AutoTokenizer load it as they are. The training configuration goes to train_config.json.
 */
import { existsSync, statSync } from 'node:fs';
import { copyFile, readFile, rename } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import * as A from '@tl/autograd';
import {
  fromPretrainedText, getModelSpec, GPT2ForSequenceClassification, isTextModelSpec, RobertaForSequenceClassification, StateDictError, Tokenizer,
  type TextClassifier, type TextModelSpec, type TokenizerConfigJSON, type TokenizerJSON,
} from '@tl/models';
import {
  DataError, readTextRows, stratifiedSplit, textClasses, textDataset, Trainer, type Dataset, type TensorDataset, type TextColumns, type TextRow,
} from '@tl/train';
import { startEngine } from '../engine.js';
import { CliError } from '../errors.js';
import type { Progress } from '../progress.js';
import { makeOut, writeAtomic } from '../run-folder.js';
import type { Mistake } from '../report.js';
import { fitRun, TRAIN_CONFIG_FILE, type RunStart, type TrainConfig } from './train.js';

/** run_glue's default max_seq_length. */
const DEFAULT_MAX_LENGTH = 128;

export function isTextModel(id: string): boolean {
  return isTextModelSpec(getModelSpec(id));
}

function textSpec(id: string): TextModelSpec {
  const spec = getModelSpec(id);
  if (!isTextModelSpec(spec)) throw new CliError(`${id} is not a text model`);
  return spec;
}

/** The longest sequence the model's position table takes. */
function maxPositions(model: TextClassifier): number {
  if (model instanceof GPT2ForSequenceClassification) return model.config.nPositions;
  // RoBERTa counts positions from padding_idx + 1.
  if (model instanceof RobertaForSequenceClassification) return model.config.maxPositions - model.config.padTokenId - 1;
  // T5's relative position buckets set no length limit.
  return 'maxPositions' in model.config ? model.config.maxPositions : Number.POSITIVE_INFINITY;
}

function columnsOf(c: TrainConfig): TextColumns {
  return { text: c.textColumn, label: c.labelColumn, ...(c.textPairColumn !== undefined ? { textPair: c.textPairColumn } : {}) };
}

async function readRows(file: string, flag: string, c: TrainConfig): Promise<TextRow[]> {
  if (!existsSync(file)) throw new CliError(`${flag} ${file} does not exist`);
  if (statSync(file).isDirectory() || !/\.(csv|jsonl|ndjson)$/i.test(file)) {
    throw new CliError(`${flag} ${file}: a text model trains on a .csv (with a header line) or .jsonl file of texts and labels`, 2);
  }
  try {
    return await readTextRows(file, columnsOf(c));
  } catch (e) {
    if (e instanceof DataError) throw new CliError(e.message);
    throw e;
  }
}

/** A label that occurs once is most often a typo, and can be in only one of train and val. */
function checkLabels(rows: readonly TextRow[], file: string): string[] {
  const count = new Map<string, number>();
  for (const r of rows) count.set(String(r.label), (count.get(String(r.label)) ?? 0) + 1);
  const once = [...count].find(([, n]) => n === 1);
  if (once) {
    const row = rows.find((r) => String(r.label) === once[0])!;
    const text = row.text.length > 60 ? `${row.text.slice(0, 60)}…` : row.text;
    throw new CliError(`${file}: the label "${once[0]}" appears only once (the text ${JSON.stringify(text)}); a class needs at least two examples, so fix or drop that row`);
  }
  const classes = textClasses(rows);
  if (classes.length < 2) throw new CliError(`${file} has only one label (${classes[0]}); classification needs at least two`);
  return classes;
}

function checkKnownLabels(rows: readonly TextRow[], classes: readonly string[], what: string): void {
  const known = new Set(classes);
  const stray = rows.find((r) => !known.has(String(r.label)));
  if (stray) throw new CliError(`${what} has the label "${stray.label}", which the training data does not have (classes: ${classes.join(', ')})`);
}

interface LoadedText {
  model: TextClassifier;
  tokenizer: Tokenizer;
  /** The model's config.json. */
  config: Record<string, unknown>;
  /** Parameters the checkpoint does not have (the new head), which `--freeze backbone` leaves trainable. */
  fresh: string[];
  /** tokenizer.json (and tokenizer_config.json), copied into the run folder. */
  tokenizerFiles: string[];
}

/** Messages of the checkpoint files themselves (a missing file, a wrong model type, a tokenizer
 * larger than the embedding); anything else is a bug and keeps its trace. */
function isCheckpointError(e: unknown): e is Error {
  return e instanceof StateDictError || e instanceof RangeError || e instanceof TypeError || (e instanceof Error && e.constructor === Error);
}

async function readJSON<T>(path: string): Promise<T> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (e) {
    throw new CliError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/** A model trained from scratch: the network of a config.json, the tokenizer.json beside it. */
async function fromConfigFile(spec: TextModelSpec, path: string, numClasses: number): Promise<LoadedText> {
  if (!existsSync(path)) throw new CliError(`--config-json ${path} does not exist`);
  const config = await readJSON<Record<string, unknown>>(path);
  const dir = dirname(path);
  const tokFile = join(dir, 'tokenizer.json');
  if (!existsSync(tokFile)) throw new CliError(`--config-json ${path}: no tokenizer.json beside it; save the tokenizer there (tokenizer.save_pretrained)`);
  const tokConfigFile = join(dir, 'tokenizer_config.json');
  const hasTokConfig = existsSync(tokConfigFile);
  const tokenizer = Tokenizer.fromJSON(await readJSON<TokenizerJSON>(tokFile), { config: hasTokConfig ? await readJSON<TokenizerConfigJSON>(tokConfigFile) : {} });
  let model: TextClassifier;
  try {
    model = spec.fromConfig(config, { numClasses });
  } catch (e) {
    if (isCheckpointError(e)) throw new CliError(`--config-json ${path}: ${e.message}`);
    throw e;
  }
  if (tokenizer.vocabSize > model.config.vocabSize) {
    model.dispose();
    throw new CliError(`--config-json ${path}: the tokenizer has ${tokenizer.vocabSize} tokens but vocab_size is ${model.config.vocabSize}; its ids would index past the embedding`);
  }
  return { model, tokenizer, config, fresh: [], tokenizerFiles: hasTokConfig ? [tokFile, tokConfigFile] : [tokFile] };
}

/** The weights, or a config.json to train from scratch: checked before any data is read. */
function checkSource(c: TrainConfig, spec: TextModelSpec): void {
  if (c.weights && c.configJson) throw new CliError("--config-json is for training from scratch; with --weights the checkpoint's own config.json is used", 2);
  if (!c.weights && !c.configJson) {
    throw new CliError(`tl train: ${c.model} needs pretrained weights: --weights hf:${spec.hubRepo} (or a save_pretrained folder with config.json, tokenizer.json and model.safetensors); to train from scratch, --config-json <config.json> with a tokenizer.json beside it`, 2);
  }
}

async function loadModel(c: TrainConfig, spec: TextModelSpec, numClasses: number): Promise<LoadedText> {
  if (c.configJson) return fromConfigFile(spec, c.configJson, numClasses);
  try {
    const p = await fromPretrainedText(c.model, { weights: c.weights!, numClasses });
    const { tokenizer, tokenizerConfig } = p.files;
    return { model: p.model, tokenizer: p.tokenizer, config: p.config, fresh: p.report.newlyInitialized, tokenizerFiles: tokenizerConfig ? [tokenizer, tokenizerConfig] : [tokenizer] };
  } catch (e) {
    if (e instanceof StateDictError) throw new CliError(`--weights ${c.weights} do not fit ${c.model}: ${e.message.split('\n').slice(1).map((l) => l.trim()).join('; ')}`);
    if (isCheckpointError(e)) throw new CliError(`--weights ${c.weights}: ${e.message.replace(`${c.weights}: `, '')}`);
    throw e;
  }
}

/** The model's config.json as transformers writes it for a sequence classifier with these classes. */
function runConfig(spec: TextModelSpec, base: Record<string, unknown>, classes: readonly string[], numClasses: number, tokenizer: Tokenizer): Record<string, unknown> {
  const names = Array.from({ length: numClasses }, (_, i) => classes[i] ?? `LABEL_${i}`);
  // GPT-2 has no padding token of its own; transformers finds each sequence's last token through
  // pad_token_id and refuses batches without one.
  const pad = spec.modelType === 'gpt2' && base.pad_token_id == null && tokenizer.padTokenId !== null ? { pad_token_id: tokenizer.padTokenId } : {};
  return {
    ...base,
    architectures: [spec.hfArchitecture],
    model_type: spec.modelType,
    num_labels: numClasses,
    id2label: Object.fromEntries(names.map((n, i) => [String(i), n])),
    label2id: Object.fromEntries(names.map((n, i) => [n, i])),
    problem_type: 'single_label_classification',
    ...pad,
  };
}

function argmax(outputs: ArrayLike<number>, width: number, row: number): number {
  let best = 0;
  for (let k = 1; k < width; k++) if (outputs[row * width + k]! > outputs[row * width + best]!) best = k;
  return best;
}

/** textDataset, with what the tokenizer cannot do (a --max-length shorter than its special tokens) as a CliError. */
function tokenize(rows: readonly TextRow[], tokenizer: Tokenizer, opts: { maxLength: number; classes: string[]; name?: string }): TensorDataset {
  try {
    return textDataset(rows, tokenizer, opts);
  } catch (e) {
    if (e instanceof RangeError) throw new CliError(`--max-length ${opts.maxLength}: ${e.message}`, 2);
    throw e;
  }
}

const shown = (r: { text: string; textPair?: string }): string => (r.textPair !== undefined ? `${r.text} | ${r.textPair}` : r.text);

export async function trainTextCommand(c: TrainConfig, progress: Progress, start: RunStart): Promise<void> {
  const spec = textSpec(c.model);
  checkSource(c, spec);
  await startEngine();
  const rows = await readRows(c.data, '--data', c);
  const classes = checkLabels(rows, c.data);
  const valRows = c.val ? await readRows(c.val, '--val', c) : null;
  if (valRows) checkKnownLabels(valRows, classes, `--val ${c.val}`);
  const numClasses = c.numClasses ?? classes.length;
  if (numClasses < classes.length) throw new CliError(`--num-classes ${numClasses} is fewer than the ${classes.length} labels of ${c.data} (${classes.join(', ')})`, 2);

  A.manualSeed(c.seed);
  const { model, tokenizer, config, fresh, tokenizerFiles } = await loadModel(c, spec, numClasses);
  const limit = maxPositions(model);
  if (c.maxLength !== undefined && c.maxLength > limit) {
    model.dispose();
    throw new CliError(`--max-length ${c.maxLength} is longer than ${c.model} takes (${limit} positions in its config.json); pass --max-length ${limit} or less`, 2);
  }
  const cfg: TrainConfig = { ...c, textColumn: c.textColumn ?? 'text', labelColumn: c.labelColumn ?? 'label', maxLength: c.maxLength ?? Math.min(DEFAULT_MAX_LENGTH, limit) };
  const opts = { maxLength: cfg.maxLength!, classes };
  const all = tokenize(rows, tokenizer, { ...opts, name: resolve(cfg.data) });
  let train: Dataset = all;
  let val: Dataset | null = null;
  let valTexts: string[] = [];
  if (valRows) {
    val = tokenize(valRows, tokenizer, { ...opts, name: resolve(cfg.val!) });
    valTexts = valRows.map(shown);
  } else if (cfg.valSplit > 0) {
    const split = stratifiedSplit(all, cfg.valSplit, cfg.seed);
    [train, val] = [split.train, split.val];
    valTexts = split.val.indices.map((i) => shown(rows[i]!));
  }

  await fitRun(cfg, {
    notes: c.weights ? [`${c.weights}: newly initialised (not in the checkpoint): ${fresh.length ? fresh.join(', ') : 'nothing'}`] : [],
    write: async (out) => {
      await writeAtomic(join(out, TRAIN_CONFIG_FILE), JSON.stringify({ ...cfg, task: 'text-classification' }, null, 2));
      await writeAtomic(join(out, 'config.json'), JSON.stringify(runConfig(spec, config, classes, numClasses, tokenizer), null, 2));
      for (const f of tokenizerFiles) {
        const tmp = join(out, `${basename(f)}.tmp-${process.pid}`);
        await copyFile(f, tmp);
        await rename(tmp, join(out, basename(f)));
      }
    },
    model, data: { train, val, classes }, head: [model.headPattern(), ...fresh], noun: 'texts', unit: 'samples/s',
    files: ['model.safetensors', 'config.json', 'tokenizer.json', TRAIN_CONFIG_FILE, 'metrics.jsonl', 'report.html', 'checkpoint/'],
    mistakes: async (trainer, ds) => {
      const { outputs, width } = await trainer.predict(ds);
      const labels = ds.labels() as number[];
      const found: Mistake[] = [];
      for (let i = 0; i < labels.length && found.length < 12; i++) {
        const p = argmax(outputs, width, i);
        if (p !== labels[i]) found.push({ text: valTexts[i]!, truth: classes[labels[i]!]!, predicted: classes[p] ?? String(p) });
      }
      return found;
    },
  }, progress, start);
}

/** The model and tokenizer of a text run folder (a save_pretrained folder), in eval mode. */
async function loadRun(dir: string, c: TrainConfig): Promise<{ model: TextClassifier; tokenizer: Tokenizer }> {
  try {
    const { model, tokenizer } = await fromPretrainedText(c.model, { weights: dir });
    return { model: model.eval(), tokenizer };
  } catch (e) {
    if (isCheckpointError(e)) throw new CliError(`${dir} is not a complete text run: ${e.message}`);
    throw e;
  }
}

/** The run's model and what `tl eval` scores it on: the validation texts of training, or all of `data`. */
export async function textEvalSet(dir: string, c: TrainConfig, classes: string[], data: string | undefined): Promise<{ model: TextClassifier; ds: Dataset }> {
  const { model, tokenizer } = await loadRun(dir, c);
  const opts = { maxLength: c.maxLength!, classes };
  const file = data ?? c.val;
  if (file) {
    const rows = await readRows(file, data ? '--data' : '--val', c);
    checkKnownLabels(rows, classes, file);
    return { model, ds: tokenize(rows, tokenizer, opts) };
  }
  const all = tokenize(await readRows(c.data, '--data', c), tokenizer, opts);
  return { model, ds: c.valSplit > 0 ? stratifiedSplit(all, c.valSplit, c.seed).val : all };
}

export interface TextInputs {
  /** --text values, and the --text-pair values that go with them. */
  texts: string[];
  pairs: string[];
  /** Files of one text per line (text<TAB>pair for a pair model). */
  files: string[];
}

async function collectTexts(inputs: TextInputs, pairModel: boolean): Promise<{ text: string; textPair?: string }[]> {
  if (inputs.pairs.length && !pairModel) throw new CliError('tl predict: --text-pair is for a model trained on text pairs (--text-pair-column); this one takes single texts', 2);
  if (pairModel && inputs.pairs.length !== inputs.texts.length) {
    throw new CliError(`tl predict: this model reads text pairs; give a --text-pair for each --text (got ${inputs.texts.length} and ${inputs.pairs.length})`, 2);
  }
  const items = inputs.texts.map((text, i) => (pairModel ? { text, textPair: inputs.pairs[i]! } : { text }));
  for (const f of inputs.files) {
    if (!existsSync(f)) throw new CliError(`tl predict: ${f} does not exist`);
    const lines = (await readFile(f, 'utf8')).split(/\r?\n/);
    lines.forEach((line, i) => {
      if (!line.trim()) return;
      if (!pairModel) {
        items.push({ text: line });
        return;
      }
      const tab = line.indexOf('\t');
      if (tab < 0) throw new CliError(`tl predict: ${f}, line ${i + 1} has no tab; this model reads text pairs, one "text<TAB>pair" per line`);
      items.push({ text: line.slice(0, tab), textPair: line.slice(tab + 1) });
    });
  }
  if (items.length === 0) throw new CliError('tl predict: give --text "..." or a file with one text per line', 2);
  return items;
}

export async function predictTextCommand(dir: string, c: TrainConfig, classes: string[], inputs: TextInputs, topK: number, json: boolean, logits: boolean): Promise<void> {
  const items = await collectTexts(inputs, c.textPairColumn !== undefined);
  const { model, tokenizer } = await loadRun(dir, c);
  // Labels are not known here; any class index will do for the data set's label field.
  const ds = tokenize(items.map((t) => ({ ...t, label: 0 })), tokenizer, { maxLength: c.maxLength!, classes });
  const { outputs, width } = await new Trainer(model, { batchSize: c.batchSize, logger: () => {} }).predict(ds);
  model.dispose();
  const results = items.map((item, i) => {
    const row = Array.from(outputs.subarray(i * width, (i + 1) * width));
    const max = Math.max(...row);
    const exp = row.map((v) => Math.exp(v - max));
    const sum = exp.reduce((a, b) => a + b, 0);
    const p = exp.map((v) => v / sum);
    const order = [...p.keys()].sort((a, b) => p[b]! - p[a]!);
    return {
      ...item, label: classes[order[0]!] ?? String(order[0]), index: order[0]!, prob: p[order[0]!]!,
      topk: order.slice(0, Math.min(topK, width)).map((k) => ({ label: classes[k] ?? String(k), index: k, prob: p[k]! })),
      ...(logits ? { logits: row } : {}),
    };
  });
  if (json) {
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    return;
  }
  for (const r of results) {
    const [top, ...rest] = r.topk.map((t) => `${t.label} ${(100 * t.prob).toFixed(1)}%`);
    const text = shown(r);
    process.stdout.write(`${top}${rest.length ? ` (${rest.join(', ')})` : ''}\t${text.length > 100 ? `${text.slice(0, 100)}…` : text}\n`);
  }
}

/** `tl export` of a text run: the folder is already what transformers loads; copy its files. */
export async function exportText(dir: string, out: string): Promise<string[]> {
  await makeOut(out);
  const files = ['model.safetensors', 'config.json', 'tokenizer.json', 'tokenizer_config.json'].filter((f) => existsSync(join(dir, f)));
  for (const f of files) await copyFile(join(dir, f), join(out, f));
  return files;
}
