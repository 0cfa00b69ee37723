/**
 * `tl train --task text2text`: T5 from a save_pretrained folder or the Hub (or a config.json with
 * a tokenizer.json beside it, to train from scratch) fine-tuned on source -> target pairs of a
 * CSV / JSONL file, with the held-out loss, exact match, ROUGE-L and chrF of greedy generation
 * before and after; the run folder is a save_pretrained folder (config.json, model.safetensors,
 * tokenizer.json) with results.json and report.html. `tl eval --run` scores such a run again and
 * `tl predict` generates targets from it (or from `--model t5 --weights`).
 */
import { existsSync } from 'node:fs';
import { copyFile, readFile, rename } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import * as A from '@tl/autograd';
import { checkSeq2SeqTokenizer, fromPretrainedSeq2Seq, generate, StateDictError, T5ForConditionalGeneration, Tokenizer, type TokenizerJSON } from '@tl/models';
import { Rng } from '@tl/tensor';
import {
  adamw, cosine, DataError, readTextColumns, Subset, Text2TextObjective, text2textDataset, Trainer,
  type Dataset, type EvalMetrics, type GeneratedPair, type Text2TextRow,
} from '@tl/train';
import { startEngine } from '../engine.js';
import { CliError } from '../errors.js';
import type { Flags } from '../flags.js';
import { table, type Progress } from '../progress.js';
import { renderReport } from '../report.js';
import { generationOptions } from './generation-flags.js';
import { checkOut, freshRunFolder, prepareRunFolder, writeAtomic } from '../run-folder.js';
import { TRAIN_CONFIG_FILE } from './train.js';

function int(flags: Flags, key: string, flag: string, fallback: number, min = 1): number {
  const v = flags[key] ?? fallback;
  if (!(typeof v === 'number' && Number.isInteger(v) && v >= min)) throw new CliError(`--${flag} must be an integer >= ${min}, got ${v}`, 2);
  return v;
}

async function loadT5(model: string, weights: string | undefined, configJson: string | undefined): Promise<{ t5: T5ForConditionalGeneration; tokenizer: Tokenizer; config: Record<string, unknown>; tokenizerFile: string }> {
  if (model !== 't5') throw new CliError(`tl train --task text2text: --model ${model} is not an encoder-decoder; the one here is t5`, 2);
  try {
    if (configJson) {
      if (!existsSync(configJson)) throw new CliError(`--config-json ${configJson} does not exist`, 2);
      const tokenizerFile = join(dirname(configJson), 'tokenizer.json');
      if (!existsSync(tokenizerFile)) throw new CliError(`--config-json ${configJson}: no tokenizer.json beside it`, 2);
      const config = JSON.parse(await readFile(configJson, 'utf8')) as Record<string, unknown>;
      const tokenizer = Tokenizer.fromJSON(JSON.parse(await readFile(tokenizerFile, 'utf8')) as TokenizerJSON);
      const t5 = new T5ForConditionalGeneration(config);
      checkSeq2SeqTokenizer(t5, tokenizer, configJson);
      return { t5, tokenizer, config, tokenizerFile };
    }
    if (!weights) throw new CliError('--model t5 needs --weights (a save_pretrained folder or hf:org/name), or --config-json to train from scratch', 2);
    const p = await fromPretrainedSeq2Seq({ weights });
    return { t5: p.model, tokenizer: p.tokenizer, config: p.config, tokenizerFile: p.files.tokenizer };
  } catch (e) {
    if (e instanceof CliError) throw e;
    if (e instanceof StateDictError || e instanceof RangeError || e instanceof TypeError || e instanceof SyntaxError) throw new CliError(`${configJson ?? weights}: ${e.message}`, 2);
    throw e;
  }
}

const pct = (v: number | undefined): string => (100 * (v ?? 0)).toFixed(1);
const fmt = (r: EvalMetrics): string => `loss ${r.loss.toFixed(4)}, exact match ${pct(r.metrics.exactMatch)}%, ROUGE-L ${pct(r.metrics.rougeL)}, chrF ${pct(r.metrics.chrF)}`;
const scoreRow = (name: string, r: EvalMetrics): string[] => [name, r.loss.toFixed(4), `${pct(r.metrics.exactMatch)}%`, pct(r.metrics.rougeL), pct(r.metrics.chrF)];
const SCORE_COLUMNS = ['', 'loss', 'exact match', 'ROUGE-L', 'chrF'];
/** Held-out generations shown in report.html. */
const REPORT_SAMPLES = 12;

async function readPairs(data: string, sourceColumn: string, targetColumn: string): Promise<Text2TextRow[]> {
  if (!existsSync(data)) throw new CliError(`--data ${data} does not exist`, 2);
  try {
    return (await readTextColumns(data, [sourceColumn, targetColumn])).map((r) => ({ source: r[sourceColumn]!, target: r[targetColumn]! }));
  } catch (e) {
    if (e instanceof DataError) throw new CliError(e.message, 2);
    throw e;
  }
}

function pairsDataset(rows: Text2TextRow[], tokenizer: Tokenizer, maxSourceLength: number, maxTargetLength: number, data: string): ReturnType<typeof text2textDataset> {
  try {
    return text2textDataset(rows, tokenizer, { maxSourceLength, maxTargetLength, name: resolve(data) });
  } catch (e) {
    if (e instanceof RangeError || e instanceof TypeError) throw new CliError(e.message, 2);
    throw e;
  }
}

/** The seeded split of tl train: the first round(n * valSplit) of a shuffled order are held out. */
function splitPairs(all: Dataset, seed: number, valSplit: number, data: string): { train: Dataset; val: Dataset } {
  const order = new Rng(seed).shuffle(Array.from({ length: all.length }, (_, i) => i));
  const nVal = Math.max(1, Math.round(all.length * valSplit));
  if (nVal >= all.length) throw new CliError(`${data} has ${all.length} rows: too few to hold ${nVal} out (--val-split ${valSplit})`, 2);
  return {
    val: new Subset(all, order.slice(0, nVal).sort((a, b) => a - b), `val${seed}`),
    train: new Subset(all, order.slice(nVal).sort((a, b) => a - b), `train${seed}`),
  };
}

/** `tl train --task text2text`. */
export async function trainText2TextCommand(flags: Flags, progress: Progress): Promise<void> {
  const model = flags.model as string | undefined;
  const data = flags.data as string | undefined;
  if (!model) throw new CliError('tl train --task text2text: --model t5 is required (with --weights or --config-json)', 2);
  if (!data) throw new CliError('tl train --task text2text: --data is required: a .csv or .jsonl file with source and target columns', 2);
  const sourceColumn = (flags.sourceColumn as string | undefined) ?? 'source';
  const targetColumn = (flags.targetColumn as string | undefined) ?? 'target';
  const maxSourceLength = int(flags, 'maxSourceLength', 'max-source-length', 128);
  const maxTargetLength = int(flags, 'maxTargetLength', 'max-target-length', 32);
  const epochs = int(flags, 'epochs', 'epochs', 3);
  const batchSize = int(flags, 'batchSize', 'batch-size', 16);
  const seed = int(flags, 'seed', 'seed', 0, 0);
  const lr = (flags.lr as number | undefined) ?? 1e-3;
  if (!(lr > 0)) throw new CliError(`--lr must be a positive number, got ${lr}`, 2);
  const valSplit = (flags.valSplit as number | undefined) ?? 0.2;
  if (!(valSplit > 0 && valSplit < 1)) throw new CliError(`--val-split must be in (0, 1) for text2text (the before/after scores are on it), got ${valSplit}`, 2);
  const weightDecay = (flags.weightDecay as number | undefined) ?? 0.01;
  const warmup = (flags.warmup as number | undefined) ?? 0;
  const out = resolve((flags.out as string | undefined) ?? freshRunFolder('text2text-t5'));
  await checkOut(out, '--out', !!flags.overwrite);
  const rows = await readPairs(data, sourceColumn, targetColumn);
  await startEngine();
  A.manualSeed(seed);
  const { t5, tokenizer, config, tokenizerFile } = await loadT5(model, flags.weights as string | undefined, flags.configJson as string | undefined);
  const built = pairsDataset(rows, tokenizer, maxSourceLength, maxTargetLength, data);
  const { train, val } = splitPairs(built.dataset, seed, valSplit, data);
  progress.unit = 'samples/s';
  // The first held-out generations before and after training, for the report; none from the per-epoch evaluations.
  let samples: GeneratedPair[] | null = [];
  const beforeSamples = samples;
  const trainer = new Trainer(t5, {
    objective: new Text2TextObjective({ tokenizer, maxNewTokens: maxTargetLength, onGenerated: (g) => { if (samples && samples.length < REPORT_SAMPLES) samples.push(g); } }), optimizer: adamw({ lr, weightDecay }), schedule: cosine({ warmupSteps: warmup }),
    epochs, batchSize, seed, gradClip: flags.gradClip as number | undefined, logger: (l) => progress.line(l), onEvent: (e) => progress.event(e),
  });
  progress.line(`t5: ${t5.numParameters().toLocaleString('en')} parameters; ${train.length} training and ${val.length} validation pairs${built.truncatedSources ? `; ${built.truncatedSources} sources cut to ${maxSourceLength} tokens` : ''}${built.truncatedTargets ? `; ${built.truncatedTargets} targets cut to ${maxTargetLength} tokens` : ''}`);
  const before = await trainer.evaluate(val);
  samples = null;
  progress.line(`before fine-tuning: ${fmt(before)} (${before.total} pairs)`);
  await prepareRunFolder(out, !!flags.overwrite);
  const cfg = { task: 'text2text', model, weights: flags.weights, configJson: flags.configJson, data, sourceColumn, targetColumn, maxSourceLength, maxTargetLength, epochs, batchSize, lr, weightDecay, warmup, valSplit, seed };
  await writeAtomic(join(out, TRAIN_CONFIG_FILE), JSON.stringify(cfg, null, 2));
  await writeAtomic(join(out, 'config.json'), JSON.stringify(config, null, 2));
  const tmp = join(out, `tokenizer.json.tmp-${process.pid}`);
  await copyFile(tokenizerFile, tmp);
  await rename(tmp, join(out, basename(tokenizerFile)));
  await trainer.fit(train, val);
  await t5.save(join(out, 'model.safetensors'));
  const afterSamples: GeneratedPair[] = [];
  samples = afterSamples;
  const after = await trainer.evaluate(val);
  await writeAtomic(join(out, 'results.json'), JSON.stringify({
    parameters: t5.numParameters(), trainPairs: train.length, valPairs: val.length, truncatedSources: built.truncatedSources, truncatedTargets: built.truncatedTargets,
    before: { loss: before.loss, ...before.metrics }, after: { loss: after.loss, ...after.metrics }, samples: afterSamples, history: trainer.history,
  }, null, 2));
  await writeAtomic(join(out, 'report.html'), renderReport({
    title: `t5 on ${data} (text-to-text)`, config: cfg, history: trainer.history, steps: [], classes: [], report: null, mistakes: [],
    parameters: { total: t5.numParameters(), trainable: t5.numParameters({ trainable: true }) },
    evaluation: {
      title: `Held-out pairs (${val.length}): greedy generation`, columns: SCORE_COLUMNS, rows: [scoreRow('before fine-tuning', before), scoreRow('after fine-tuning', after)],
      samples: {
        title: 'Sample generations (held out)', columns: ['source', 'target', 'before', 'after'],
        rows: afterSamples.map((g, i) => [g.source, g.reference, beforeSamples[i]?.prediction ?? '', g.prediction]),
      },
    },
  }));
  progress.line('');
  progress.line(table(['', 'val loss', 'exact match', 'ROUGE-L', 'chrF'], [scoreRow('before', before), scoreRow('after', after)]));
  progress.line(`after fine-tuning: ${fmt(after)}`);
  progress.line(`run folder: ${out} (model.safetensors, config.json, tokenizer.json, ${TRAIN_CONFIG_FILE}, results.json, report.html)`);
  t5.dispose();
}

/** Whether `dir` is a run of tl train --task text2text. */
export async function isText2TextRun(dir: string | undefined): Promise<boolean> {
  if (!dir || !existsSync(join(dir, TRAIN_CONFIG_FILE))) return false;
  return (JSON.parse(await readFile(join(dir, TRAIN_CONFIG_FILE), 'utf8')) as { task?: string }).task === 'text2text';
}

interface Text2TextRunConfig {
  data: string;
  sourceColumn: string;
  targetColumn: string;
  maxSourceLength: number;
  maxTargetLength: number;
  valSplit: number;
  seed: number;
}

/** `tl eval --run` of a text2text run: loss, exact match, ROUGE-L and chrF on --data (all of it), else on the run's held-out pairs. */
export async function evalText2TextCommand(dir: string, data: string | undefined, json: boolean): Promise<void> {
  const c = JSON.parse(await readFile(join(dir, TRAIN_CONFIG_FILE), 'utf8')) as Text2TextRunConfig;
  const file = data ?? c.data;
  const rows = await readPairs(file, c.sourceColumn, c.targetColumn);
  await startEngine();
  const { t5, tokenizer } = await loadT5('t5', dir, undefined);
  const built = pairsDataset(rows, tokenizer, c.maxSourceLength, c.maxTargetLength, file);
  const ds = data ? built.dataset : splitPairs(built.dataset, c.seed, c.valSplit, file).val;
  const r = await new Trainer(t5, { objective: new Text2TextObjective({ tokenizer, maxNewTokens: c.maxTargetLength }), batchSize: 16, logger: () => {} }).evaluate(ds);
  t5.dispose();
  const result = {
    loss: r.loss, exactMatch: r.metrics.exactMatch, rougeL: r.metrics.rougeL, chrF: r.metrics.chrF, pairs: ds.length,
    truncatedSources: built.truncatedSources, truncatedTargets: built.truncatedTargets, data: data ?? `${c.data} (the run's held-out pairs)`,
  };
  const cut = [built.truncatedSources ? `${built.truncatedSources} sources cut to ${c.maxSourceLength} tokens` : '', built.truncatedTargets ? `${built.truncatedTargets} targets cut to ${c.maxTargetLength} tokens` : ''].filter(Boolean).join(', ');
  process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : `${result.data}: ${fmt(r)} over ${ds.length} pairs${cut ? ` (${cut})` : ''}\n`);
}

/** `tl predict` of a text2text run or `--model t5 --weights`: the target generated for each --text, greedily unless --sample. */
export async function generateText2TextCommand(flags: Flags): Promise<void> {
  const texts = (flags.text as string[] | undefined) ?? [];
  if (texts.length === 0) throw new CliError('tl predict: give --text "..." to generate a target for (repeatable)', 2);
  const run = flags.run as string | undefined;
  const weights = run ?? (flags.weights as string | undefined);
  if (!weights) throw new CliError('tl predict --model t5 needs --weights (a save_pretrained folder or hf:org/name), or give --run <folder>', 2);
  const runConfig = run ? (JSON.parse(await readFile(join(run, TRAIN_CONFIG_FILE), 'utf8')) as Text2TextRunConfig) : null;
  const opts = generationOptions(flags, runConfig?.maxTargetLength ?? 20);
  await startEngine();
  const { t5, tokenizer } = await loadT5('t5', weights, undefined);
  t5.eval();
  const prompts = texts.map((t) => tokenizer.encode(t, { truncation: false }).inputIds);
  let result;
  try {
    result = await generate(t5, prompts, { ...opts, eosTokenId: t5.config.eosTokenId, padTokenId: t5.config.padTokenId });
  } catch (e) {
    if (e instanceof RangeError) throw new CliError(`tl predict: ${e.message}`, 2);
    throw e;
  } finally {
    t5.dispose();
  }
  const outputs = texts.map((text, i) => ({ text, output: tokenizer.decode(result.sequences[i]!, { skipSpecialTokens: true }), tokens: result.sequences[i]!, score: result.scores[i]! }));
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(outputs, null, 2)}\n`);
    return;
  }
  for (const o of outputs) process.stdout.write(`${o.output}\n`);
}
