/**
 * Bad input, the way a user types it: the built CLI on bad numbers, missing and wrong files,
 * PyTorch pickles, unsafe Hub references, unknown models and flags, broken run folders and
 * existing outputs. Each case must end with its exit code and exactly one stderr line that
 * names the value and what was expected, no stack trace, and no file changed: the working
 * folder (an existing run folder in it included) is hashed before and after.
 * Most cases fail before the GPU starts; the few that need a model share one tiny run.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { repoData } from '../../../test-data.js';
import { writeTinyImages } from './tiny-images.js';
import { spawnNode } from './spawn-node.js';

const TL = new URL('../dist/tl.js', import.meta.url).pathname;
const WEIGHTS = repoData('pretrained/cifar10-resnet20.safetensors');
const work = mkdtempSync(join(tmpdir(), 'tl-bad-'));
const p = (...s: string[]): string => join(work, ...s);

async function tl(args: string[]): Promise<{ code: number; out: string; lines: string[]; err: string }> {
  const r = await spawnNode([TL, ...args], {
    cwd: work, encoding: 'utf8', timeout: 300_000,
    env: { ...process.env, CI: '1', HF_HOME: p('hf'), HF_HUB_OFFLINE: '1', TL_DEBUG: '' },
  });
  // Dawn's notes about lowered limits are the adapter's, not ours.
  const lines = r.stderr.split('\n').filter((l) => l && !l.startsWith('Warning: max'));
  return { code: r.status ?? -1, out: r.stdout, lines, err: lines.join('\n') };
}

/** Every file under the working folder with the hash of its bytes. */
function snapshot(): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const f = join(dir, e.name);
      if (e.isDirectory()) walk(f);
      else out.set(relative(work, f), createHash('sha256').update(readFileSync(f)).digest('hex'));
    }
  };
  walk(work);
  return out;
}

function expectOneLineError(r: Awaited<ReturnType<typeof tl>>, code: number, msg: RegExp): void {
  expect(r.lines, r.err).toHaveLength(1);
  expect(r.lines[0]).toMatch(/^error: /);
  expect(r.lines[0]).toMatch(msg);
  expect(r.err).not.toMatch(/\n\s+at |please report/);
  expect(r.code, r.err).toBe(code);
}

/** Runs a failing case: its one line and code, and the working folder unchanged. */
async function failsCleanly(args: string[], code: number, msg: RegExp): Promise<void> {
  const before = snapshot();
  expectOneLineError(await tl(args), code, msg);
  expect(snapshot()).toEqual(before);
}

/** A safetensors file: header JSON, then the raw bytes. */
function safetensors(path: string, header: Record<string, unknown>, bytes: number): void {
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  writeFileSync(path, Buffer.concat([len, h, Buffer.alloc(bytes)]));
}

const W = 'w'; // folder of weight files

beforeAll(async () => {
  await writeTinyImages(p('tiny'));
  await writeTinyImages(p('odd'));
  // Classes that a model trained on red/blue does not know.
  await writeTinyImages(p('unknown'));
  mkdirSync(p('unknown', 'purple'));
  copyFileSync(p('tiny', 'red', '0.png'), p('unknown', 'purple', '0.png'));
  mkdirSync(p('one-class', 'red'), { recursive: true });
  copyFileSync(p('tiny', 'red', '0.png'), p('one-class', 'red', '0.png'));
  mkdirSync(p(W));
  // torch.save since PyTorch 1.6 writes a zip; before, a bare pickle (protocol 2).
  writeFileSync(p(W, 'model.pth'), Buffer.concat([Buffer.from('PK\x03\x04'), Buffer.alloc(60)]));
  writeFileSync(p(W, 'model.pt'), Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20]));
  writeFileSync(p(W, 'pytorch_model.bin'), Buffer.concat([Buffer.from('PK\x03\x04'), Buffer.alloc(60)]));
  writeFileSync(p(W, 'notes.safetensors'), 'these are not weights\n');
  writeFileSync(p(W, 'empty.safetensors'), '');
  safetensors(p(W, 'truncated.safetensors'), { 'a.weight': { dtype: 'F32', shape: [100], data_offsets: [0, 400] } }, 40);
  mkdirSync(p(W, 'folder.safetensors'));
  writeFileSync(p('a-file'), 'x');
  mkdirSync(p('not-a-run'));
  writeFileSync(p('not-a-run', 'notes.txt'), 'mine');
  mkdirSync(p('broken-run'));
  writeFileSync(p('broken-run', 'config.json'), '{"model": "cifar_resnet20", "data": "tiny"');
  mkdirSync(p('half-run'));
  writeFileSync(p('half-run', 'config.json'), JSON.stringify({ model: 'cifar_resnet20', data: 'tiny' }));
  mkdirSync(p('alien-run'));
  writeFileSync(p('alien-run', 'config.json'), JSON.stringify({ model: 'resnet99', data: 'tiny' }));
  writeFileSync(p('bad.json'), '{ "epochs": ');
  // The run that broken commands must leave byte-identical (trained once, below, on tiny data).
}, 60_000);

const T = ['train', '--model', 'cifar_resnet20', '--data', 'tiny'];
const EVAL = ['eval', '--model', 'cifar_resnet20', '--weights'];

/** [name, argv, exit code, the one line (it names the value and what was expected)] */
const BEFORE_GPU: [string, () => string[], number, RegExp][] = [
  // numbers
  ['--val-split 1.5', () => [...T, '--val-split', '1.5'], 2, /--val-split must be a fraction in \[0, 1\), got 1\.5/],
  ['--val-split -0.1', () => [...T, '--val-split', '-0.1'], 2, /--val-split must be a fraction in \[0, 1\), got -0\.1/],
  ['--image-size 0', () => [...T, '--image-size', '0'], 2, /--image-size must be a positive integer number of pixels.*got 0/],
  ['--image-size -3', () => [...T, '--image-size', '-3'], 2, /--image-size must be .*got -3/],
  ['--image-size 2.5', () => [...T, '--image-size', '2.5'], 2, /--image-size must be .*got 2\.5/],
  ['--image-size 100000', () => [...T, '--image-size', '100000'], 2, /--image-size must be .*at most 4096.*got 100000/],
  ['--epochs 0', () => [...T, '--epochs', '0'], 2, /--epochs must be a positive integer, got 0/],
  ['--epochs NaN', () => [...T, '--epochs', 'NaN'], 2, /--epochs expects a number, got "NaN"/],
  ['--epochs abc', () => [...T, '--epochs', 'abc'], 2, /--epochs expects a number, got "abc"/],
  ['--epochs= (empty)', () => [...T, '--epochs='], 2, /--epochs expects a number, got ""/],
  ['--batch-size -1', () => [...T, '--batch-size', '-1'], 2, /--batch-size must be a positive integer, got -1/],
  ['--lr 0', () => [...T, '--lr', '0'], 2, /--lr must be a positive number, got 0/],
  ['--lr -1e-3', () => [...T, '--lr', '-1e-3'], 2, /--lr must be a positive number, got -0\.001/],
  ['--lr Infinity', () => [...T, '--lr', 'Infinity'], 2, /--lr expects a number, got "Infinity"/],
  ['--momentum 1.5', () => [...T, '--optimizer', 'sgd', '--momentum', '1.5'], 2, /--momentum must be a number in \[0, 1\), got 1\.5/],
  ['--dropout 1', () => [...T, '--dropout', '1'], 2, /--dropout must be a probability in \[0, 1\), got 1/],
  ['--label-smoothing -0.1', () => [...T, '--label-smoothing', '-0.1'], 2, /--label-smoothing must be a number in \[0, 1\), got -0\.1/],
  ['--num-classes 1', () => [...T, '--num-classes', '1'], 2, /--num-classes must be an integer of at least 2, got 1/],
  ['--seed -1', () => [...T, '--seed', '-1'], 2, /--seed must be a whole number, got -1/],
  ['--warmup 2.5', () => [...T, '--warmup', '2.5'], 2, /--warmup must be a whole number of steps, got 2\.5/],
  ['--grad-clip 0', () => [...T, '--grad-clip', '0'], 2, /--grad-clip must be a positive number, got 0/],
  ['--layer-decay 2', () => [...T, '--layer-decay', '2'], 2, /--layer-decay must be a factor in \(0, 1\], got 2/],
  ['--early-stop 0', () => [...T, '--early-stop', '0'], 2, /--early-stop must be a positive integer, got 0/],
  ['--unfreeze-at 3layer4', () => [...T, '--unfreeze-at', '3layer4'], 2, /--unfreeze-at 3layer4: expected <epoch>:<glob>\[:lr\]/],
  ['--unfreeze-at 3:layer4:-1', () => [...T, '--unfreeze-at', '3:layer4:-1'], 2, /--unfreeze-at 3:layer4:-1: expected/],
  // choices, models, flags, commands
  ['--optimizer adamm', () => [...T, '--optimizer', 'adamm'], 2, /--optimizer adamm is not one of sgd, adam, adamw; did you mean adam\?/],
  ['--schedule cosin', () => [...T, '--schedule', 'cosin'], 2, /--schedule cosin is not one of .*did you mean cosine\?/],
  ['--model resnet99', () => ['train', '--model', 'resnet99', '--data', 'tiny'], 2, /unknown model "resnet99" \(did you mean resnet\d+\?\); known models: .*resnet18/],
  ['--lrr', () => [...T, '--lrr', '0.1'], 2, /unknown flag --lrr; did you mean --lr\?/],
  ['-x', () => [...T, '-x'], 2, /unknown flag -x/],
  ['--epochs without a value', () => [...T, '--epochs'], 2, /--epochs needs a value \(n\)/],
  ['--data followed by a flag', () => ['train', '--model', 'cifar_resnet20', '--data', '--epochs', '3'], 2, /--data needs a value \(path\), got the flag --epochs/],
  ['--augment=maybe', () => [...T, '--augment=maybe'], 2, /--augment is a switch; got "maybe", expected true or false/],
  ['unknown command', () => ['trian'], 2, /unknown command "trian"; did you mean `tl train`\?/],
  ['tl help trian', () => ['help', 'trian'], 2, /unknown command "trian"; did you mean `tl help train`\?/],
  ['a stray argument', () => [...T, 'extra'], 2, /unexpected argument "extra"/],
  ['--text-column on an image model', () => [...T, '--text-column', 'review'], 2, /--text-column is for text models; cifar_resnet20 is an image model/],
  ['default job with --lr', () => ['train', '--lr', '0.1'], 2, /--lr needs --model and --data; the default job .* takes only --epochs/],
  ['default job with --labels-per-class 0', () => ['train', '--labels-per-class', '0'], 2, /--labels-per-class must be a positive integer, got 0/],
  ['tl models --task video', () => ['models', '--task', 'video'], 2, /--task video is not one of image, text, audio/],
  // data and weights files
  ['--data missing', () => ['train', '--model', 'cifar_resnet20', '--data', 'nowhere'], 2, /--data nowhere does not exist/],
  ['--val missing', () => [...T, '--val', 'nowhere'], 2, /--val nowhere does not exist/],
  ['--weights missing', () => [...T, '--weights', 'missing.safetensors'], 2, /--weights missing\.safetensors does not exist; expected a \.safetensors file or hf:org\/name/],
  ['--weights a .pth zip pickle', () => [...T, '--weights', 'w/model.pth'], 2, /--weights w\/model\.pth is a PyTorch pickle .*safetensors\.torch\.save_file\(torch\.load\('w\/model\.pth'/],
  ['--weights a .pt protocol-2 pickle', () => [...T, '--weights', 'w/model.pt'], 2, /w\/model\.pt is a PyTorch pickle .*save_file/],
  ['--weights pytorch_model.bin', () => [...T, '--weights', 'w/pytorch_model.bin'], 2, /pytorch_model\.bin is a PyTorch pickle/],
  ['--weights a text file', () => [...T, '--weights', 'w/notes.safetensors'], 2, /--weights w\/notes\.safetensors is not a safetensors file/],
  ['--weights an empty file', () => [...T, '--weights', 'w/empty.safetensors'], 2, /--weights w\/empty\.safetensors is not a safetensors file/],
  ['--weights a truncated file', () => [...T, '--weights', 'w/truncated.safetensors'], 2, /--weights w\/truncated\.safetensors is not a safetensors file/],
  ['--weights a folder', () => [...T, '--weights', 'w/folder.safetensors'], 2, /--weights w\/folder\.safetensors is a folder; expected a \.safetensors file/],
  ['--weights hf:../../etc/passwd', () => [...T, '--weights', 'hf:../../etc/passwd'], 2, /"hf:\.\.\/\.\.\/etc\/passwd" is not a Hub reference; expected hf:org\/name/],
  ['--weights hf:x/y@..', () => [...T, '--weights', 'hf:x/y@..'], 2, /the revision "\.\." is not a branch, tag or commit name/],
  ['--weights hf:org--x/y', () => [...T, '--weights', 'hf:org--x/y'], 2, /"org--x\/y" is not a Hub repo id/],
  ['--weights hf:x/y@main/../../z', () => [...T, '--weights', 'hf:x/y@main/../../z'], 2, /must not contain empty, "\." or "\.\." segments/],
  // --out and run folders
  ['--out an existing file', () => [...T, '--out', 'a-file'], 2, /--out a-file is a file; expected a folder for the run/],
  ['--out below a file', () => [...T, '--out', 'a-file/run'], 2, /--out a-file\/run: .*a-file is a file, so no folder can be made below it/],
  ['--out /proc/x', () => [...T, '--out', '/proc/x'], 2, /--out \/proc\/x: cannot write in \/proc/],
  ['--out /proc/x/y/z', () => [...T, '--out', '/proc/x/y/z'], 2, /--out \/proc\/x\/y\/z: cannot write in \/proc/],
  ['--out a folder of other files', () => [...T, '--out', 'not-a-run'], 2, /--out not-a-run already holds 1 files; pass --overwrite to replace it, or choose another folder/],
  ['--out an existing run', () => [...T, '--out', 'half-run'], 2, /--out half-run already holds a run; pass --overwrite to replace it, --resume half-run to continue it/],
  ['--resume missing', () => ['train', '--resume', 'nowhere'], 2, /--resume nowhere does not exist; expected a run folder/],
  ['--resume a file', () => ['train', '--resume', 'a-file'], 2, /--resume a-file is a file; expected a run folder/],
  ['--resume a folder without config.json', () => ['train', '--resume', 'not-a-run'], 2, /--resume not-a-run is not a run folder \(no config\.json\)/],
  ['--resume a broken config.json', () => ['train', '--resume', 'broken-run'], 2, /--resume broken-run: its config\.json is not valid JSON/],
  ['--resume a run of an unknown model', () => ['train', '--resume', 'alien-run'], 2, /--resume alien-run: its config\.json names no known model \(model: "resnet99"\)/],
  ['--resume with --out', () => ['train', '--resume', 'half-run', '--out', 'elsewhere'], 2, /--resume continues the run in its own folder; leave out --out/],
  ['--resume with --image-size 0', () => ['train', '--resume', 'half-run', '--image-size', '0'], 2, /--image-size must be .*got 0/],
  ['--config missing', () => [...T, '--config', 'nowhere.json'], 2, /--config nowhere\.json does not exist/],
  ['--config not JSON', () => [...T, '--config', 'bad.json'], 2, /bad\.json is not valid JSON/],
  // eval, predict, inspect, export
  ['eval without a model', () => ['eval', '--data', 'tiny'], 2, /tl eval: name the model: --run <run folder>, or --model <id> --weights/],
  ['eval --run and --model', () => ['eval', '--run', 'half-run', '--model', 'cifar_resnet20'], 2, /give --run, or --model with --weights, not both/],
  ['eval --model resnet99', () => ['eval', '--model', 'resnet99', '--weights', WEIGHTS, '--data', 'tiny'], 2, /--model resnet99 is not a known model \(did you mean resnet\d+\?\); `tl models` lists them/],
  ['eval --model without --weights', () => ['eval', '--model', 'cifar_resnet20', '--data', 'tiny'], 2, /--model cifar_resnet20 needs --weights <file\|hf:org\/name>/],
  ['eval --model without --data', () => [...EVAL, WEIGHTS], 2, /tl eval: --model needs --data/],
  ['eval --model bert', () => ['eval', '--model', 'bert', '--weights', WEIGHTS, '--data', 'tiny'], 2, /--model takes image models; bert is a text model/],
  ['eval --weights a pickle', () => [...EVAL, 'w/model.pth', '--data', 'tiny'], 2, /w\/model\.pth is a PyTorch pickle/],
  ['eval --data missing', () => [...EVAL, WEIGHTS, '--data', 'nowhere'], 2, /--data nowhere does not exist/],
  ['eval --image-size 0', () => [...EVAL, WEIGHTS, '--data', 'tiny', '--image-size', '0'], 2, /--image-size must be a positive integer, got 0/],
  ['eval --batch-size 0', () => [...EVAL, WEIGHTS, '--data', 'tiny', '--batch-size', '0'], 2, /--batch-size must be a positive integer, got 0/],
  ['eval --run missing', () => ['eval', '--run', 'nowhere'], 2, /--run nowhere does not exist; expected a run folder/],
  ['eval --run without model.safetensors', () => ['eval', '--run', 'half-run'], 2, /--run half-run has no model\.safetensors \(did training finish\?\)/],
  ['eval --run broken config.json', () => ['eval', '--run', 'broken-run'], 2, /--run broken-run: its config\.json is not valid JSON/],
  ['eval --classes with --run', () => ['eval', '--run', 'half-run', '--classes', 'a,b'], 2, /--classes is for --model checkpoints/],
  ['predict --top-k 0', () => ['predict', '--model', 'cifar_resnet20', '--weights', WEIGHTS, '--top-k', '0', 'tiny/red/0.png'], 2, /--top-k must be a positive integer, got 0/],
  ['predict without images', () => ['predict', '--model', 'cifar_resnet20', '--weights', WEIGHTS], 2, /tl predict: name at least one image file/],
  ['predict a missing image', () => ['predict', '--model', 'cifar_resnet20', '--weights', WEIGHTS, 'nowhere.png'], 2, /tl predict: nowhere\.png does not exist/],
  ['predict a folder', () => ['predict', '--model', 'cifar_resnet20', '--weights', WEIGHTS, 'tiny'], 2, /tl predict: tiny is a folder; name image files/],
  ['inspect a folder', () => ['inspect', 'tiny'], 2, /tl inspect tiny is a folder; expected a \.safetensors file/],
  ['inspect a missing file', () => ['inspect', 'nowhere.safetensors'], 2, /tl inspect nowhere\.safetensors does not exist/],
  ['inspect a pickle', () => ['inspect', 'w/model.pth'], 2, /w\/model\.pth is a PyTorch pickle/],
  ['inspect a text file', () => ['inspect', 'w/notes.safetensors'], 2, /w\/notes\.safetensors is not a safetensors file/],
  ['inspect hf:../../etc/passwd', () => ['inspect', 'hf:../../etc/passwd'], 2, /is not a Hub reference/],
  ['inspect hf:x/y@..', () => ['inspect', 'hf:x/y@..'], 2, /the revision "\.\." is not a branch, tag or commit name/],
  ['inspect two files', () => ['inspect', WEIGHTS, WEIGHTS], 2, /tl inspect: name one \.safetensors file or hf:org\/name, got 2/],
  ['export without --out', () => ['export', '--run', 'half-run'], 2, /--run <run folder> and --out <folder> are required/],
];

describe('bad input fails with one line and exit code 2, and changes nothing', () => {
  for (const [name, args, code, msg] of BEFORE_GPU) it(name, () => failsCleanly(args(), code, msg));

  it('--help, tl help and tl <command> --help are not errors', async () => {
    for (const args of [['--help'], ['help'], ['-h'], ['help', 'eval'], ['train', '--help'], ['eval', '-h'], ['models', '--help']]) {
      const r = await tl(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.err).toBe('');
      expect(r.out).toMatch(/usage: tl/);
    }
    const train = (await tl(['train', '--help'])).out;
    for (const group of ['data:', 'model:', 'strategy:', 'optimisation:', 'output:', 'examples:']) expect(train).toContain(group);
    expect(train).toMatch(/--val-split <fraction> .*\(default: 0\.2\)/);
    expect(train).toMatch(/--overwrite .*exit 2/);
  });
});

describe('bad input that needs a model: one tiny run, kept byte-identical', () => {
  const RUN = 'run';
  beforeAll(async () => {
    const r = await tl(['train', '--model', 'cifar_resnet20', '--weights', WEIGHTS, '--data', 'tiny', '--epochs', '1', '--batch-size', '4', '--image-size', '16', '--out', RUN]);
    expect(r.code, r.err).toBe(0);
  }, 300_000);

  const AFTER_GPU: [string, () => string[], number, RegExp][] = [
    ['--out an existing run (a real one)', () => [...T, '--weights', WEIGHTS, '--out', RUN], 2, /--out run already holds a run; pass --overwrite/],
    ['--resume with --image-size 0', () => ['train', '--resume', RUN, '--image-size', '0'], 2, /--image-size must be .*got 0/],
    ['--overwrite, then data of one class', () => ['train', '--model', 'cifar_resnet20', '--weights', WEIGHTS, '--data', 'one-class', '--out', RUN, '--overwrite'], 2, /only one class \(red\)/],
    ['--overwrite, then weights of another architecture', () => ['train', '--model', 'resnet18', '--weights', WEIGHTS, '--data', 'tiny', '--out', RUN, '--overwrite'], 2,
      /--weights .*cifar10-resnet20\.safetensors do not fit resnet18: conv1\.weight is \[16, 3, 3, 3\] in the checkpoint, resnet18 expects \[64, 3, 7, 7\]/],
    ['--overwrite, then a bad --freeze glob', () => [...T, '--weights', WEIGHTS, '--out', RUN, '--overwrite', '--freeze', 'nothing.matches.this'], 2, /--freeze/],
    ['eval --model with weights of another architecture', () => ['eval', '--model', 'cifar_resnet56', '--weights', WEIGHTS, '--data', 'tiny'], 2,
      /do not fit cifar_resnet56: cifar_resnet56 expects layer1\.3\.conv1\.weight \[16, 16, 3, 3\], which the checkpoint lacks/],
    ['eval --model on classes it does not know', () => [...EVAL, WEIGHTS, '--data', 'tiny'], 2,
      /--data tiny has classes "blue", "red" that cifar_resnet20 does not know; it knows airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck/],
    ['eval --run on a class the run does not know', () => ['eval', '--run', RUN, '--data', 'unknown'], 2, /--data unknown has the class "purple" that cifar_resnet20 does not know; it knows blue, red/],
    ['eval --classes of the wrong count', () => [...EVAL, WEIGHTS, '--data', 'tiny', '--classes', 'a,b'], 2, /--classes names 2 classes but the checkpoint's head has 10 outputs/],
  ];
  for (const [name, args, code, msg] of AFTER_GPU) it(name, () => failsCleanly(args(), code, msg), 120_000);

  it('eval --classes maps a checkpoint onto data by name; a subset of the classes is scored over those present', async () => {
    const r = await tl([...EVAL, WEIGHTS, '--data', 'tiny', '--classes', 'red,b,c,d,e,f,g,h,i,blue', '--json']);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.total).toBe(12);
    expect(j.perClass.map((c: { class: string }) => c.class)).toEqual(['red', 'blue']);
    expect(Number.isFinite(j.loss)).toBe(true);
    expect(j.classMapping).toMatch(/matched by name to --classes \(2 of 10 present\)/);
  }, 120_000);

  it('the run still loads after all of the above', async () => {
    const r = await tl(['eval', '--run', RUN, '--data', 'odd', '--json']);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out).total).toBe(12);
    expect(statSync(p(RUN, 'model.safetensors')).size).toBeGreaterThan(0);
  }, 120_000);
});
