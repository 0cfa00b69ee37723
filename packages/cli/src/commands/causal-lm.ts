/**
 * `tl train --task causal-lm` and text generation in `tl predict`: a Llama or GPT-2 causal LM
 * from a save_pretrained folder or the Hub (or a config.json to train from scratch), fine-tuned
 * on a text file or a CSV / JSONL column, with its held-out perplexity before and after; the
 * run folder is itself a save_pretrained folder (config.json, model.safetensors,
 * tokenizer.json), so `tl predict --run` and transformers both read it.
 */
import { existsSync } from 'node:fs';
import { copyFile, readFile, rename } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import * as A from '@tl/autograd';
import {
  CAUSAL_LM_TYPES, causalLMFromConfig, fromPretrainedCausalLM, generate, StateDictError, Tokenizer,
  type CausalLM, type TokenizerConfigJSON, type TokenizerJSON,
} from '@tl/models';
import { Rng } from '@tl/tensor';
import {
  adamw, causalLMDataset, CausalLMObjective, cosine, DataError, eosIdOf, readCausalLMRows, Subset, Trainer, type CausalLMRow, type Dataset,
} from '@tl/train';
import { startEngine } from '../engine.js';
import { CliError } from '../errors.js';
import type { Flags } from '../flags.js';
import { table, type Progress } from '../progress.js';
import { renderReport } from '../report.js';
import { checkOut, freshRunFolder, prepareRunFolder, writeAtomic } from '../run-folder.js';
import { generationOptions, positiveFlag, positiveIntFlag } from './generation-flags.js';
import { TRAIN_CONFIG_FILE } from './train.js';

interface Loaded {
  model: CausalLM;
  tokenizer: Tokenizer;
  config: Record<string, unknown>;
  /** tokenizer.json (and tokenizer_config.json), copied into the run folder. */
  tokenizerFiles: string[];
}

const isType = (s: string): boolean => (CAUSAL_LM_TYPES as readonly string[]).includes(s);

function checkpointError(e: unknown, what: string): never {
  if (e instanceof StateDictError) throw new CliError(`${what} does not load strictly: ${e.message.split('\n').slice(1).map((l) => l.trim()).join('; ') || e.message}`);
  if (e instanceof RangeError || e instanceof TypeError || (e instanceof Error && e.constructor === Error)) throw new CliError(`${what}: ${e.message}`);
  throw e;
}

async function readJSON<T>(path: string): Promise<T> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (e) {
    throw new CliError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/** A causal LM from `--model <id|folder|hf:>` with `--weights`, or from `--config-json` (random init). */
async function loadCausalLM(model: string, weights: string | undefined, configJson: string | undefined): Promise<Loaded> {
  if (configJson) {
    if (!existsSync(configJson)) throw new CliError(`--config-json ${configJson} does not exist`, 2);
    const config = await readJSON<Record<string, unknown>>(configJson);
    const tokFile = join(dirname(configJson), 'tokenizer.json');
    if (!existsSync(tokFile)) throw new CliError(`--config-json ${configJson}: no tokenizer.json beside it`, 2);
    const tokConfig = join(dirname(configJson), 'tokenizer_config.json');
    const hasTokConfig = existsSync(tokConfig);
    const tokenizer = Tokenizer.fromJSON(await readJSON<TokenizerJSON>(tokFile), { config: hasTokConfig ? await readJSON<TokenizerConfigJSON>(tokConfig) : {} });
    let m: CausalLM;
    try {
      m = causalLMFromConfig(config, isType(model) ? model : undefined);
    } catch (e) {
      return checkpointError(e, `--config-json ${configJson}`);
    }
    return { model: m, tokenizer, config, tokenizerFiles: hasTokConfig ? [tokFile, tokConfig] : [tokFile] };
  }
  const ref = isType(model) ? weights : model;
  if (!ref) throw new CliError(`--model ${model} needs --weights (a save_pretrained folder or hf:org/name), or --config-json to train from scratch`, 2);
  try {
    const p = await fromPretrainedCausalLM(isType(model) ? model : null, { weights: ref });
    return { model: p.model, tokenizer: p.tokenizer, config: p.config, tokenizerFiles: [p.files.tokenizer, ...(p.files.tokenizerConfig ? [p.files.tokenizerConfig] : [])] };
  } catch (e) {
    return checkpointError(e, ref);
  }
}

/** config.json's eos_token_id (the first, when it lists several). */
function configEos(config: Record<string, unknown>): number | undefined {
  const e = config.eos_token_id;
  const v = Array.isArray(e) ? e[0] : e;
  return typeof v === 'number' ? v : undefined;
}


interface SplitOptions {
  data: string;
  maxLength: number;
  valSplit: number;
  seed: number;
}

/** The samples of `rows` and their seeded split into training and held-out samples (tl train, and tl eval of a run). */
function splitData(rows: CausalLMRow[], tokenizer: Tokenizer, config: Record<string, unknown>, o: SplitOptions): { built: ReturnType<typeof causalLMDataset>; train: Dataset; val: Dataset | null } {
  let built;
  try {
    built = causalLMDataset(rows, tokenizer, { maxLength: o.maxLength, eosTokenId: configEos(config), name: resolve(o.data) });
  } catch (e) {
    if (e instanceof RangeError) throw new CliError(e.message, 2);
    throw e;
  }
  const all = built.dataset;
  const order = new Rng(o.seed).shuffle(Array.from({ length: all.length }, (_, i) => i));
  const nVal = o.valSplit > 0 ? Math.max(1, Math.round(all.length * o.valSplit)) : 0;
  if (nVal >= all.length) throw new CliError(`${o.data} gives ${all.length} samples of ${o.maxLength} tokens: too few to hold ${nVal} out (--val-split ${o.valSplit}); add text or lower --max-length`, 2);
  if (nVal === 0) return { built, train: all, val: null };
  return { built, train: new Subset(all, order.slice(nVal).sort((a, b) => a - b), `train${o.seed}`), val: new Subset(all, order.slice(0, nVal).sort((a, b) => a - b), `val${o.seed}`) };
}

async function readRows(data: string, text: string | undefined, prompt: string | undefined): Promise<CausalLMRow[]> {
  if (!existsSync(data)) throw new CliError(`--data ${data} does not exist`, 2);
  try {
    return await readCausalLMRows(data, { text, prompt });
  } catch (e) {
    if (e instanceof DataError) throw new CliError(e.message, 2);
    throw e;
  }
}

/** Whether `dir` is a run of tl train --task causal-lm. */
export async function isCausalLMRun(dir: string | undefined): Promise<boolean> {
  if (!dir || !existsSync(join(dir, TRAIN_CONFIG_FILE))) return false;
  return (await readJSON<{ task?: string }>(join(dir, TRAIN_CONFIG_FILE))).task === 'causal-lm';
}

/** `tl eval --run` of a causal-LM run: loss and perplexity on --data, else on the run's held-out samples. */
export async function evalCausalLMCommand(dir: string, data: string | undefined, json: boolean): Promise<void> {
  const c = await readJSON<{ data: string; textColumn?: string; promptColumn?: string; maxLength: number; valSplit: number; seed: number }>(join(dir, TRAIN_CONFIG_FILE));
  await startEngine();
  const { model, tokenizer, config } = await loadCausalLM(dir, undefined, undefined);
  const rows = await readRows(data ?? c.data, c.textColumn, c.promptColumn);
  const { val, train } = splitData(rows, tokenizer, config, { data: data ?? c.data, maxLength: c.maxLength, valSplit: data ? 0 : c.valSplit, seed: c.seed });
  const ds = val ?? train;
  const r = await new Trainer(model, { objective: new CausalLMObjective(), batchSize: 16, logger: () => {} }).evaluate(ds);
  model.dispose();
  const result = { loss: r.loss, perplexity: r.metrics.perplexity, tokens: r.total, samples: ds.length, data: data ?? `${c.data} (the run's held-out samples)` };
  process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : `${result.data}: loss ${r.loss.toFixed(4)}, perplexity ${ppl(r.metrics.perplexity!)} over ${r.total} tokens in ${ds.length} samples\n`);
}

const ppl = (v: number): string => (v >= 1e4 ? v.toExponential(3) : v.toFixed(2));

/** `tl train --task causal-lm`. */
export async function trainCausalLMCommand(flags: Flags, progress: Progress): Promise<void> {
  const model = flags.model as string | undefined;
  const data = flags.data as string | undefined;
  if (!model) throw new CliError('tl train --task causal-lm: --model is required: llama or gpt2 with --weights, or a save_pretrained folder or hf:org/name', 2);
  if (!data) throw new CliError('tl train --task causal-lm: --data is required: a .txt file, or a .csv / .jsonl file with a text column', 2);
  const epochs = positiveIntFlag(flags, 'epochs', 'epochs', 3);
  const batchSize = positiveIntFlag(flags, 'batchSize', 'batch-size', 8);
  const lr = positiveFlag(flags, 'lr', 'lr', 5e-4);
  const seed = (flags.seed as number | undefined) ?? 0;
  const valSplit = (flags.valSplit as number | undefined) ?? 0.1;
  if (!(valSplit >= 0 && valSplit < 1)) throw new CliError(`--val-split must be in [0, 1), got ${valSplit}`, 2);
  const weightDecay = (flags.weightDecay as number | undefined) ?? 0.01;
  const warmup = (flags.warmup as number | undefined) ?? 0;
  const out = resolve((flags.out as string | undefined) ?? freshRunFolder(`causal-lm-${isType(model) ? model : basename(model)}`));
  const overwrite = !!flags.overwrite;
  await checkOut(out, '--out', overwrite);
  const rows = await readRows(data, flags.textColumn as string | undefined, flags.promptColumn as string | undefined);
  await startEngine();
  A.manualSeed(seed);
  const { model: lm, tokenizer, config, tokenizerFiles } = await loadCausalLM(model, flags.weights as string | undefined, flags.configJson as string | undefined);
  const limit = lm.maxPositions ?? Infinity;
  const maxLength = (flags.maxLength as number | undefined) ?? Math.min(128, limit);
  if (!(Number.isInteger(maxLength) && maxLength >= 2)) throw new CliError(`--max-length must be an integer >= 2, got ${maxLength}`, 2);
  if (maxLength > limit) throw new CliError(`--max-length ${maxLength} is longer than the model's context (${limit} positions); pass --max-length ${limit} or less`, 2);
  const { built, train, val } = splitData(rows, tokenizer, config, { data, maxLength, valSplit, seed });
  progress.unit = 'samples/s';
  const trainer = new Trainer(lm, {
    objective: new CausalLMObjective(), optimizer: adamw({ lr, weightDecay }), schedule: cosine({ warmupSteps: warmup }), epochs, batchSize, seed,
    gradClip: flags.gradClip as number | undefined, logger: (l) => progress.line(l), onEvent: (e) => progress.event(e),
  });
  const before = val ? await trainer.evaluate(val) : null;
  await prepareRunFolder(out, overwrite);
  const cfg = { task: 'causal-lm', model, weights: flags.weights, configJson: flags.configJson, data, textColumn: flags.textColumn, promptColumn: flags.promptColumn, maxLength, epochs, batchSize, lr, weightDecay, warmup, valSplit, seed };
  await writeAtomic(join(out, TRAIN_CONFIG_FILE), JSON.stringify(cfg, null, 2));
  await writeAtomic(join(out, 'config.json'), JSON.stringify(config, null, 2));
  for (const f of tokenizerFiles) {
    const tmp = join(out, `${basename(f)}.tmp-${process.pid}`);
    await copyFile(f, tmp);
    await rename(tmp, join(out, basename(f)));
  }
  progress.line(`${model}: ${lm.numParameters().toLocaleString('en')} parameters; ${train.length} training and ${val?.length ?? 0} validation samples of ${maxLength} tokens${built.truncated ? `; ${built.truncated} rows cut to ${maxLength} tokens` : ''}`);
  if (before) progress.line(`before fine-tuning: validation loss ${before.loss.toFixed(4)}, perplexity ${ppl(before.metrics.perplexity!)} over ${before.total} tokens`);
  await trainer.fit(train, val);
  await lm.save(join(out, 'model.safetensors'));
  const after = val ? await trainer.evaluate(val) : null;
  await writeAtomic(join(out, 'results.json'), JSON.stringify({
    parameters: lm.numParameters(), trainSamples: train.length, valSamples: val?.length ?? 0, valTokens: after?.total ?? 0, truncatedRows: built.truncated,
    perplexity: before && after ? { before: before.metrics.perplexity, after: after.metrics.perplexity } : null,
    history: trainer.history,
  }, null, 2));
  await writeAtomic(join(out, 'report.html'), renderReport({
    title: `${model} on ${data} (causal LM)`, config: cfg, history: trainer.history, steps: [], classes: [], report: null, mistakes: [],
    parameters: { total: lm.numParameters(), trainable: lm.numParameters({ trainable: true }) },
    evaluation: {
      title: 'Held-out perplexity',
      rows: before && after ? [['before fine-tuning', `${ppl(before.metrics.perplexity!)} (loss ${before.loss.toFixed(4)})`], ['after fine-tuning', `${ppl(after.metrics.perplexity!)} (loss ${after.loss.toFixed(4)})`], ['tokens', String(after.total)]] : [['validation', 'none (--val-split 0)']],
    },
  }));
  progress.line('');
  progress.line(table(['epoch', 'train loss', 'train ppl', 'val loss', 'val ppl', 'lr', 'samples/s'], trainer.history.map((e) => [
    String(e.epoch + 1), e.trainLoss.toFixed(4), e.metrics?.trainPerplexity !== undefined ? ppl(e.metrics.trainPerplexity) : '', e.valLoss?.toFixed(4) ?? '',
    e.metrics?.valPerplexity !== undefined ? ppl(e.metrics.valPerplexity) : '', e.lr.toExponential(2), e.samplesPerSec.toFixed(1),
  ])));
  if (before && after) progress.line(`validation perplexity: ${ppl(before.metrics.perplexity!)} before, ${ppl(after.metrics.perplexity!)} after (${after.total} tokens)`);
  progress.line(`run folder: ${out} (model.safetensors, config.json, tokenizer.json, ${TRAIN_CONFIG_FILE}, results.json, report.html, checkpoint/)`);
  lm.dispose();
}

/** Whether `tl predict` should generate text: a causal-LM run, a causal-LM id, or a generation flag. */
export async function isGenerationRequest(flags: Flags): Promise<boolean> {
  if (flags.maxNewTokens !== undefined || flags.sample || flags.numBeams !== undefined) return true;
  if (typeof flags.model === 'string' && flags.model === 'llama') return true;
  return isCausalLMRun(flags.run as string | undefined);
}

/** `tl predict` generating: each --text continued by the model, greedily unless --sample. */
export async function generateCommand(flags: Flags): Promise<void> {
  const texts = (flags.text as string[] | undefined) ?? [];
  if (texts.length === 0) throw new CliError('tl predict: give --text "..." to continue (repeatable)', 2);
  const run = flags.run as string | undefined;
  const model = run ? 'run' : (flags.model as string | undefined);
  if (!model) throw new CliError('tl predict: --run <folder> or --model <llama|gpt2> --weights <folder|hf:org/name> is required', 2);
  if (run && !existsSync(run)) throw new CliError(`--run ${run} does not exist`, 2);
  const opts = generationOptions(flags, 20);
  await startEngine();
  const { model: lm, tokenizer, config } = run ? await loadCausalLM(run, undefined, undefined) : await loadCausalLM(model, flags.weights as string | undefined, undefined);
  lm.eval();
  let eos: number | undefined;
  try {
    eos = eosIdOf(tokenizer, configEos(config));
  } catch {
    eos = undefined;
  }
  const prompts = texts.map((t) => tokenizer.encode(t, { addSpecialTokens: true, truncation: false }).inputIds);
  let result;
  try {
    result = await generate(lm, prompts, { ...opts, ...(eos !== undefined ? { eosTokenId: eos } : {}) });
  } catch (e) {
    if (e instanceof RangeError) throw new CliError(`tl predict: ${e.message}`, 2);
    throw e;
  } finally {
    lm.dispose();
  }
  const outputs = texts.map((text, i) => {
    // Decoded with the prompt, so that the tokenizer places the spaces between the two.
    const head = tokenizer.decode(prompts[i]!, { skipSpecialTokens: true });
    const full = tokenizer.decode([...prompts[i]!, ...result.sequences[i]!], { skipSpecialTokens: true });
    return { text, output: full, generated: full.startsWith(head) ? full.slice(head.length) : full, tokens: result.sequences[i]!, score: result.scores[i]! };
  });
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(outputs, null, 2)}\n`);
    return;
  }
  for (const o of outputs) process.stdout.write(`${o.output}\n`);
}
