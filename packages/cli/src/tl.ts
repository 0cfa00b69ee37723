/** The `tl` command. */
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { init } from '@tl/autograd';
import { parseArgs, type FlagSpec, type Flags } from './args.js';
import { defaultJob, DEFAULT_JOB } from './commands/default-job.js';
import { doctorCommand, evalCommand, exportCommand, inspectCommand, predictCommand } from './commands/misc.js';
import { isTextModel, trainTextCommand } from './commands/text.js';
import { readConfigFile, readTrainConfig, trainCommand, validateConfig, type TrainConfig } from './commands/train.js';
import { CliError, nearest } from './errors.js';
import { pretrain } from './pretrain.js';
import { Progress } from './progress.js';

const TRAIN_FLAGS: FlagSpec = {
  model: 'string', weights: 'string', data: 'string', val: 'string', 'val-split': 'number', 'num-classes': 'number', freeze: 'string',
  'unfreeze-at': 'list', epochs: 'number', 'batch-size': 'number', lr: 'number', 'head-lr': 'number', 'layer-decay': 'number',
  optimizer: 'string', momentum: 'number', 'weight-decay': 'number', schedule: 'string', warmup: 'number', 'label-smoothing': 'number',
  dropout: 'number', 'early-stop': 'number', 'image-size': 'number', augment: 'boolean', 'cache-features': 'boolean', 'grad-clip': 'number',
  seed: 'number', resume: 'string', out: 'string', config: 'string', 'labels-per-class': 'number', 'test-per-class': 'number', help: 'boolean',
  'text-column': 'string', 'text-pair-column': 'string', 'label-column': 'string', 'max-length': 'number', 'config-json': 'string',
};

const COMMANDS: Record<string, { flags: FlagSpec; help: string }> = {
  train: { flags: TRAIN_FLAGS, help: 'tl train [--model <id> --data <folder|csv|jsonl|idx> ...]   (no arguments: the embedded default job)\n'
    + '  text models (bert, distilbert, roberta, gpt2): --weights <hf:org/name|folder> --data <texts.csv|jsonl> [--text-column text --label-column label --max-length 128]' },
  pretrain: { flags: { epochs: 'number', 'batch-size': 'number', lr: 'number', seed: 'number', out: 'string', help: 'boolean' }, help: 'tl pretrain [--epochs 6 --batch-size 128 --lr 0.1 --seed 0 --out <file>]: retrain the embedded weights on digits 0-4' },
  eval: { flags: { run: 'string', data: 'string', json: 'boolean', help: 'boolean' }, help: 'tl eval --run <run folder> [--data <folder|csv|jsonl>] [--json]' },
  predict: {
    flags: { run: 'string', 'top-k': 'number', json: 'boolean', logits: 'boolean', text: 'list', 'text-pair': 'list', help: 'boolean' },
    help: 'tl predict --run <run folder> <images...> [--top-k 3] [--json] [--logits]\n  text runs: --text "..." [--text-pair "..."] or <files of one text per line (text<TAB>pair for pairs)>',
  },
  inspect: { flags: { json: 'boolean', help: 'boolean' }, help: 'tl inspect <file.safetensors|hf:org/name>' },
  export: { flags: { run: 'string', out: 'string', help: 'boolean' }, help: 'tl export --run <run folder> --out <folder>' },
  doctor: { flags: { help: 'boolean' }, help: 'tl doctor: the WebGPU adapter, features and limits, or what to install' },
  bench: { flags: { quick: 'boolean', only: 'string', help: 'boolean' }, help: 'tl bench [--quick] [--only matmul,conv,softmax]: kernel benchmarks against TensorFlow.js' },
};

function toTrainConfig(f: Flags): Partial<TrainConfig> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(f)) if (v !== undefined && !['config', 'resume', 'help', 'labelsPerClass', 'testPerClass'].includes(k)) out[k] = v;
  return out as Partial<TrainConfig>;
}

function train(c: TrainConfig, progress: Progress, resume?: string): Promise<void> {
  return (isTextModel(c.model) ? trainTextCommand : trainCommand)(c, progress, resume);
}

async function main(argv: string[]): Promise<void> {
  const [command = 'train', ...rest] = argv;
  const spec = COMMANDS[command];
  if (!spec) {
    const near = nearest(command, Object.keys(COMMANDS));
    throw new CliError(`unknown command "${command}"${near ? `; did you mean \`tl ${near}\`?` : ''}\n${Object.values(COMMANDS).map((c) => `  ${c.help}`).join('\n')}`, 2);
  }
  const { flags, positional } = parseArgs(rest, spec.flags, command);
  if (flags.help) {
    process.stdout.write(`${spec.help}\n${Object.entries(spec.flags).map(([k, t]) => `  --${k}${t === 'boolean' ? '' : ` <${t}>`}`).join('\n')}\n`);
    return;
  }
  const progress = new Progress();
  if (command === 'bench') {
    const root = fileURLToPath(new URL('../../../', import.meta.url));
    const args = ['--filter', '@tl/bench', 'kernels', ...(flags.quick ? ['--quick'] : []), ...(flags.only ? ['--only', String(flags.only)] : [])];
    const r = spawnSync('pnpm', args, { cwd: root, stdio: 'inherit' });
    process.exitCode = r.status ?? 1;
    return;
  }
  try {
    await init();
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  switch (command) {
    case 'train': {
      const cfgPath = (flags.config as string | undefined) ?? 'tl.config.json';
      if (flags.config && !existsSync(cfgPath)) throw new CliError(`--config ${cfgPath} does not exist`);
      const fileCfg = await readConfigFile(cfgPath);
      const flagCfg = toTrainConfig(flags);
      if (flags.resume) {
        const saved = await readTrainConfig(String(flags.resume));
        if (!saved) throw new CliError(`--resume ${flags.resume}: not a run folder (no config.json)`);
        await train(validateConfig({ ...saved, ...flagCfg, out: String(flags.resume) }), progress, String(flags.resume));
        return;
      }
      if (!flagCfg.model && !flagCfg.data && !fileCfg.model) {
        await defaultJob({
          ...DEFAULT_JOB,
          ...(flags.epochs !== undefined ? { epochs: Number(flags.epochs) } : {}),
          ...(flags.labelsPerClass !== undefined ? { labelsPerClass: Number(flags.labelsPerClass) } : {}),
          ...(flags.testPerClass !== undefined ? { testPerClass: Number(flags.testPerClass) } : {}),
          ...(flags.seed !== undefined ? { seed: Number(flags.seed) } : {}),
        }, progress);
        return;
      }
      await train(validateConfig({ ...fileCfg, ...flagCfg }), progress);
      return;
    }
    case 'pretrain': {
      const r = await pretrain({
        out: flags.out as string | undefined, epochs: flags.epochs as number | undefined, batchSize: flags.batchSize as number | undefined,
        lr: flags.lr as number | undefined, seed: flags.seed as number | undefined,
      }, progress);
      progress.line(`wrote ${r.path}; held-out accuracy on digits 0-4: ${(100 * r.accuracy).toFixed(2)}%`);
      return;
    }
    case 'eval':
      if (!flags.run) throw new CliError('tl eval: --run <run folder> is required', 2);
      return evalCommand(String(flags.run), flags.data as string | undefined, !!flags.json);
    case 'predict':
      if (!flags.run) throw new CliError('tl predict: --run <run folder> is required', 2);
      return predictCommand(positional, String(flags.run), Number(flags.topK ?? 3), !!flags.json, !!flags.logits, {
        texts: (flags.text as string[] | undefined) ?? [], pairs: (flags.textPair as string[] | undefined) ?? [],
      });
    case 'inspect':
      if (positional.length !== 1) throw new CliError('tl inspect: name one file or hf:org/name', 2);
      return inspectCommand(positional[0]!, !!flags.json);
    case 'export':
      if (!flags.run || !flags.out) throw new CliError('tl export: --run <run folder> and --out <folder> are required', 2);
      return exportCommand(String(flags.run), String(flags.out));
    case 'doctor':
      return doctorCommand();
  }
}

main(process.argv.slice(2)).then(
  () => process.exit(process.exitCode ?? 0),
  (e: unknown) => {
    if (e instanceof CliError) {
      process.stderr.write(`error: ${e.message}\n`);
      process.exit(e.exitCode);
    }
    const err = e as Error;
    const known = ['DataError', 'SafetensorsError', 'HubError', 'StateDictError', 'TrainingError'].includes(err.name);
    process.stderr.write(`error: ${err.message}\n`);
    if (!known || process.env.TL_DEBUG) process.stderr.write(`${err.stack ?? ''}\n(an unexpected error: please report it with this trace)\n`);
    process.exit(1);
  },
);
