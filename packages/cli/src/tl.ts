/** The `tl` command. */
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { COMMANDS } from './commands-table.js';
import { defaultJob, DEFAULT_JOB, type DefaultJobOptions } from './commands/default-job.js';
import { adaptCommand } from './commands/adapt.js';
import { AUDIO_DEFAULTS, isAudioFolder, isAudioModel, trainAudioCommand } from './commands/audio.js';
import { evalText2TextCommand, generateText2TextCommand, isText2TextRun, trainText2TextCommand } from './commands/text2text.js';
import { evalCausalLMCommand, generateCommand, isCausalLMRun, isGenerationRequest, trainCausalLMCommand } from './commands/causal-lm.js';
import { evalCommand, predictCommand, type ModelSource } from './commands/eval.js';
import { doctorCommand, exportCommand, inspectCommand } from './commands/misc.js';
import { modelsCommand, needsEngine } from './commands/models.js';
import { tuneCommand } from './commands/tune.js';
import { isTextModel, trainTextCommand } from './commands/text.js';
import { checkInputs, readConfigFile, readRunConfig, trainCommand, validateConfig, type RunStart, type TrainConfig } from './commands/train.js';
import { SPEECH_ID, SPEECH_WEIGHTS } from './embedded.js';
import { startEngine } from './engine.js';
import { CliError, nearest } from './errors.js';
import { parseFlags, type Flags } from './flags.js';
import { commandHelp, overviewHelp } from './help.js';
import { pretrain } from './pretrain.js';
import { Progress } from './progress.js';
import { checkOut } from './run-folder.js';

/** Flags that steer the command rather than the training configuration saved in config.json. */
const NOT_CONFIG = ['config', 'resume', 'help', 'labelsPerClass', 'testPerClass', 'overwrite'];
const DEFAULT_JOB_FLAGS = ['epochs', 'labelsPerClass', 'testPerClass', 'seed', 'out', 'overwrite', 'config'];

function toTrainConfig(f: Flags): Partial<TrainConfig> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(f)) if (v !== undefined && !NOT_CONFIG.includes(k)) out[k] = v;
  return out as Partial<TrainConfig>;
}

const kebab = (s: string): string => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

function train(c: TrainConfig, progress: Progress, start: RunStart): Promise<void> {
  if (isAudioModel(c.model)) return trainAudioCommand(c, progress, start);
  return (isTextModel(c.model) ? trainTextCommand : trainCommand)(c, progress, start);
}

/** An audio folder without --model starts from the shipped speech backbone, as `tl train` alone starts from the digits network. */
function speechDefault(c: Partial<TrainConfig>): Partial<TrainConfig> {
  if (c.model || typeof c.data !== 'string' || !isAudioFolder(c.data)) return c;
  return { ...AUDIO_DEFAULTS, weights: SPEECH_WEIGHTS, ...c, model: SPEECH_ID };
}

async function resumeRun(dir: string, flagCfg: Partial<TrainConfig>, progress: Progress): Promise<void> {
  const saved = await readRunConfig(dir, '--resume');
  if (flagCfg.out !== undefined) throw new CliError('--resume continues the run in its own folder; leave out --out', 2);
  const cfg = validateConfig({ ...saved, ...flagCfg, out: dir });
  await checkInputs(cfg);
  await train(cfg, progress, { resume: dir, overwrite: false });
}

function defaultJobOptions(flags: Flags): DefaultJobOptions {
  const stray = Object.keys(flags).filter((k) => flags[k] !== undefined && !DEFAULT_JOB_FLAGS.includes(k));
  if (stray.length) {
    throw new CliError(`--${kebab(stray[0]!)} needs --model and --data; the default job (tl train without them) takes only ${DEFAULT_JOB_FLAGS.filter((k) => k !== 'config').map((k) => `--${kebab(k)}`).join(', ')}`, 2);
  }
  const o: DefaultJobOptions = { ...DEFAULT_JOB, overwrite: !!flags.overwrite };
  for (const k of ['epochs', 'labelsPerClass', 'testPerClass', 'seed'] as const) {
    const v = flags[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < (k === 'seed' ? 0 : 1)) throw new CliError(`--${kebab(k)} must be a ${k === 'seed' ? 'whole number' : 'positive integer'}, got ${v}`, 2);
    o[k] = v;
  }
  if (typeof flags.out === 'string') o.out = flags.out;
  return o;
}

async function trainMain(flags: Flags, progress: Progress): Promise<void> {
  const cfgPath = (flags.config as string | undefined) ?? 'tl.config.json';
  if (flags.config && !existsSync(cfgPath)) throw new CliError(`--config ${cfgPath} does not exist`, 2);
  const fileCfg = await readConfigFile(cfgPath);
  if (flags.task === 'causal-lm') return trainCausalLMCommand(flags, progress);
  if (flags.task === 'text2text') return trainText2TextCommand(flags, progress);
  if (flags.task !== undefined && flags.task !== 'classification') throw new CliError(`--task ${String(flags.task)} is not one of classification, causal-lm, text2text`, 2);
  if (flags.promptColumn !== undefined) throw new CliError('--prompt-column is for --task causal-lm', 2);
  const flagCfg = toTrainConfig(flags);
  if (flags.resume) return resumeRun(String(flags.resume), flagCfg, progress);
  if (!flagCfg.model && !flagCfg.data && !fileCfg.model && !fileCfg.data) {
    const o = defaultJobOptions(flags);
    if (o.out) await checkOut(o.out, '--out', !!flags.overwrite);
    await startEngine();
    await defaultJob(o, progress);
    return;
  }
  const cfg = validateConfig(speechDefault({ ...fileCfg, ...flagCfg }));
  await checkOut(cfg.out, '--out', !!flags.overwrite);
  await checkInputs(cfg);
  await train(cfg, progress, { overwrite: !!flags.overwrite });
}

function modelSource(flags: Flags): ModelSource {
  return {
    run: flags.run as string | undefined, model: flags.model as string | undefined, weights: flags.weights as string | undefined,
    classes: flags.classes as string | undefined, imageSize: flags.imageSize as number | undefined, batchSize: flags.batchSize as number | undefined,
    adapter: flags.adapter as string | undefined,
  };
}

async function main(argv: string[]): Promise<void> {
  const [first, ...more] = argv;
  if (first === '--help' || first === '-h' || (first === 'help' && more.length === 0)) {
    process.stdout.write(overviewHelp());
    return;
  }
  if (first === 'help') {
    const name = more[0]!;
    if (!COMMANDS[name]) {
      const near = nearest(name, Object.keys(COMMANDS));
      throw new CliError(`tl help: unknown command "${name}"${near ? `; did you mean \`tl help ${near}\`?` : `; commands: ${Object.keys(COMMANDS).join(', ')}`}`, 2);
    }
    process.stdout.write(commandHelp(name));
    return;
  }
  // `tl` alone, or `tl --epochs 3`, is `tl train`.
  const [command, rest] = first === undefined || first.startsWith('-') ? ['train', argv] : [first, more];
  const def = COMMANDS[command];
  if (!def) {
    const near = nearest(command, Object.keys(COMMANDS));
    throw new CliError(`unknown command "${command}"${near ? `; did you mean \`tl ${near}\`?` : ''}; commands: ${Object.keys(COMMANDS).join(', ')} (tl --help)`, 2);
  }
  const { flags, positional } = parseFlags(rest, def.flags, command);
  if (flags.help) {
    process.stdout.write(commandHelp(command));
    return;
  }
  if (positional.length && !['predict', 'inspect'].includes(command)) {
    throw new CliError(`tl ${command}: unexpected argument "${positional[0]}"; flags start with -- (tl ${command} --help)`, 2);
  }
  const progress = new Progress();
  switch (command) {
    case 'train':
      return trainMain(flags, progress);
    case 'pretrain': {
      for (const k of ['epochs', 'batchSize'] as const) {
        const v = flags[k];
        if (v !== undefined && (!Number.isInteger(v) || (v as number) < 1)) throw new CliError(`--${kebab(k)} must be a positive integer, got ${v}`, 2);
      }
      if (flags.lr !== undefined && !((flags.lr as number) > 0)) throw new CliError(`--lr must be a positive number, got ${flags.lr}`, 2);
      await startEngine();
      const r = await pretrain({
        out: flags.out as string | undefined, epochs: flags.epochs as number | undefined, batchSize: flags.batchSize as number | undefined,
        lr: flags.lr as number | undefined, seed: flags.seed as number | undefined,
      }, progress);
      progress.line(`wrote ${r.path}; held-out accuracy on digits 0-4: ${(100 * r.accuracy).toFixed(2)}%`);
      return;
    }
    case 'eval':
      if (await isCausalLMRun(flags.run as string | undefined)) return evalCausalLMCommand(String(flags.run), flags.data as string | undefined, !!flags.json);
      if (await isText2TextRun(flags.run as string | undefined)) return evalText2TextCommand(String(flags.run), flags.data as string | undefined, !!flags.json);
      return evalCommand(modelSource(flags), flags.data as string | undefined, !!flags.json);
    case 'predict':
      if (flags.model === 't5' || (await isText2TextRun(flags.run as string | undefined))) return generateText2TextCommand(flags);
      if (await isGenerationRequest(flags)) return generateCommand(flags);
      return predictCommand(positional, modelSource(flags), Number(flags.topK ?? 3), !!flags.json, !!flags.logits, {
        texts: (flags.text as string[] | undefined) ?? [], pairs: (flags.textPair as string[] | undefined) ?? [],
      });
    case 'adapt':
      return adaptCommand(modelSource(flags), flags.data as string | undefined, flags.out as string | undefined, !!flags.overwrite, progress);
    case 'models':
      if (needsEngine(flags.task as string | undefined)) await startEngine();
      return modelsCommand(flags.task as string | undefined, !!flags.json);
    case 'inspect':
      if (positional.length !== 1) throw new CliError(`tl inspect: name one .safetensors file or hf:org/name, got ${positional.length}`, 2);
      return inspectCommand(positional[0]!, !!flags.json);
    case 'export':
      if (!flags.run || !flags.out) throw new CliError('tl export: --run <run folder> and --out <folder> are required', 2);
      return exportCommand(String(flags.run), String(flags.out), !!flags.overwrite);
    case 'doctor':
      return doctorCommand();
    case 'tune': {
      const o = {
        model: flags.model as string | undefined, batchSize: flags.batchSize as number | undefined, imageSize: flags.imageSize as number | undefined,
        shapes: flags.shapes as string | undefined, json: !!flags.json,
      };
      await tuneCommand(o);
      return;
    }
    case 'bench': {
      const root = fileURLToPath(new URL('../../../', import.meta.url));
      const args = ['--filter', '@tl/bench', 'kernels', ...(flags.quick ? ['--quick'] : []), ...(flags.only ? ['--only', String(flags.only)] : [])];
      const r = spawnSync('pnpm', args, { cwd: root, stdio: 'inherit' });
      process.exitCode = r.status ?? 1;
      return;
    }
  }
}

/** Library errors whose message is meant for the user, and the exit code each gets. */
const USER_ERRORS: Record<string, number> = { DataError: 2, SafetensorsError: 2, StateDictError: 2, HubError: 1, TrainingError: 1 };
/** File-system refusals on a path the user gave. */
const FS_CODES = new Set(['ENOENT', 'EACCES', 'EPERM', 'EISDIR', 'ENOTDIR', 'EROFS', 'ENOSPC', 'EEXIST', 'ENAMETOOLONG', 'ELOOP', 'EMFILE']);
/** A connection that failed or broke off (undici's "terminated" carries one of these as its cause). */
const NET_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'EPIPE']);

const oneLine = (s: string): string => s.split('\n').map((l) => l.trim()).filter(Boolean).join('; ');

function exitCodeOf(e: unknown): { code: number; message: string; bug: boolean } {
  if (e instanceof CliError) return { code: e.exitCode, message: e.message, bug: false };
  const err = e instanceof Error ? e : new Error(String(e));
  const errno = (err as NodeJS.ErrnoException).code;
  const cause = (err.cause as NodeJS.ErrnoException | undefined)?.code;
  if (err.name in USER_ERRORS) return { code: USER_ERRORS[err.name]!, message: err.message, bug: false };
  if (errno && FS_CODES.has(errno)) return { code: 2, message: err.message, bug: false };
  if ((errno && NET_CODES.has(errno)) || (cause && NET_CODES.has(cause))) return { code: 1, message: `network error: ${err.message}${cause ? ` (${cause})` : ''}`, bug: false };
  return { code: 1, message: err.message, bug: true };
}

main(process.argv.slice(2)).then(
  () => process.exit(process.exitCode ?? 0),
  (e: unknown) => {
    const { code, message, bug } = exitCodeOf(e);
    process.stderr.write(`error: ${oneLine(message)}\n`);
    if (bug || process.env.TL_DEBUG) process.stderr.write(`${(e as Error).stack ?? ''}\n${bug ? '(an unexpected error: please report it with this trace)\n' : ''}`);
    process.exit(code);
  },
);
