/**
 * `tl train --task text2text`: T5 from a save_pretrained folder or the Hub (or a config.json with
 * a tokenizer.json beside it, to train from scratch) fine-tuned on source -> target pairs of a
 * CSV / JSONL file, with the held-out loss, exact match and ROUGE-L of greedy generation before
 * and after; the run folder is a save_pretrained folder (config.json, model.safetensors,
 * tokenizer.json).
 */
import { existsSync } from 'node:fs';
import { copyFile, readFile, rename } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import * as A from '@tl/autograd';
import { checkSeq2SeqTokenizer, fromPretrainedSeq2Seq, StateDictError, T5ForConditionalGeneration, Tokenizer, type TokenizerJSON } from '@tl/models';
import { Rng } from '@tl/tensor';
import { adamw, cosine, DataError, readTextColumns, Subset, Text2TextObjective, text2textDataset, Trainer, type Dataset, type EvalMetrics } from '@tl/train';
import { startEngine } from '../engine.js';
import { CliError } from '../errors.js';
import type { Flags } from '../flags.js';
import { table, type Progress } from '../progress.js';
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

const fmt = (r: EvalMetrics): string => `loss ${r.loss.toFixed(4)}, exact match ${(100 * (r.metrics.exactMatch ?? 0)).toFixed(1)}%, ROUGE-L ${(100 * (r.metrics.rougeL ?? 0)).toFixed(1)}`;

/** `tl train --task text2text`. */
export async function trainText2TextCommand(flags: Flags, progress: Progress): Promise<void> {
  const model = flags.model as string | undefined;
  const data = flags.data as string | undefined;
  if (!model) throw new CliError('tl train --task text2text: --model t5 is required (with --weights or --config-json)', 2);
  if (!data) throw new CliError('tl train --task text2text: --data is required: a .csv or .jsonl file with source and target columns', 2);
  if (!existsSync(data)) throw new CliError(`--data ${data} does not exist`, 2);
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
  let rows;
  try {
    rows = (await readTextColumns(data, [sourceColumn, targetColumn])).map((r) => ({ source: r[sourceColumn]!, target: r[targetColumn]! }));
  } catch (e) {
    if (e instanceof DataError) throw new CliError(e.message, 2);
    throw e;
  }
  await startEngine();
  A.manualSeed(seed);
  const { t5, tokenizer, config, tokenizerFile } = await loadT5(model, flags.weights as string | undefined, flags.configJson as string | undefined);
  let built;
  try {
    built = text2textDataset(rows, tokenizer, { maxSourceLength, maxTargetLength, name: resolve(data) });
  } catch (e) {
    if (e instanceof RangeError || e instanceof TypeError) throw new CliError(e.message, 2);
    throw e;
  }
  const all = built.dataset;
  const order = new Rng(seed).shuffle(Array.from({ length: all.length }, (_, i) => i));
  const nVal = Math.max(1, Math.round(all.length * valSplit));
  if (nVal >= all.length) throw new CliError(`${data} has ${all.length} rows: too few to hold ${nVal} out (--val-split ${valSplit})`, 2);
  const val: Dataset = new Subset(all, order.slice(0, nVal).sort((a, b) => a - b), `val${seed}`);
  const train = new Subset(all, order.slice(nVal).sort((a, b) => a - b), `train${seed}`);
  progress.unit = 'samples/s';
  const trainer = new Trainer(t5, {
    objective: new Text2TextObjective({ tokenizer, maxNewTokens: maxTargetLength }), optimizer: adamw({ lr, weightDecay }), schedule: cosine({ warmupSteps: warmup }),
    epochs, batchSize, seed, gradClip: flags.gradClip as number | undefined, logger: (l) => progress.line(l), onEvent: (e) => progress.event(e),
  });
  progress.line(`t5: ${t5.numParameters().toLocaleString('en')} parameters; ${train.length} training and ${val.length} validation pairs${built.truncatedSources ? `; ${built.truncatedSources} sources cut to ${maxSourceLength} tokens` : ''}${built.truncatedTargets ? `; ${built.truncatedTargets} targets cut to ${maxTargetLength} tokens` : ''}`);
  const before = await trainer.evaluate(val);
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
  const after = await trainer.evaluate(val);
  await writeAtomic(join(out, 'results.json'), JSON.stringify({
    parameters: t5.numParameters(), trainPairs: train.length, valPairs: val.length, truncatedSources: built.truncatedSources, truncatedTargets: built.truncatedTargets,
    before: { loss: before.loss, ...before.metrics }, after: { loss: after.loss, ...after.metrics }, history: trainer.history,
  }, null, 2));
  progress.line('');
  progress.line(table(['', 'val loss', 'exact match', 'ROUGE-L'], [before, after].map((r, i) => [i ? 'after' : 'before', r.loss.toFixed(4), `${(100 * (r.metrics.exactMatch ?? 0)).toFixed(1)}%`, (100 * (r.metrics.rougeL ?? 0)).toFixed(1)])));
  progress.line(`after fine-tuning: ${fmt(after)}`);
  progress.line(`run folder: ${out} (model.safetensors, config.json, tokenizer.json, ${TRAIN_CONFIG_FILE}, results.json)`);
  t5.dispose();
}
