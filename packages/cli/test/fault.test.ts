/**
 * `kill -9` at random points of a `tl train` run, eight times in a row, each time going on
 * with `--resume`: half the kills after a seeded random delay, half the moment a checkpoint
 * starts being written over an earlier one. Every attempt must be killed, finish, or refuse
 * with one clear line (only "nothing to resume yet", when no checkpoint was written); every
 * resume must start at the last epoch the killed attempt finished (or the one after it, when
 * its checkpoint was written whole); and every finished run must end with weights
 * bit-identical to an uninterrupted run.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '@tl/tensor';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeTinyImages } from './tiny-images.js';

const TL = new URL('../dist/tl.js', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'tl-fault-'));
const data = join(work, 'images');
const EPOCHS = 4;
const TRAIN = ['--model', 'cifar_resnet20', '--data', data, '--epochs', String(EPOCHS), '--batch-size', '4', '--lr', '0.01', '--seed', '1', '--image-size', '8'];
const KILLS = 8;

interface Attempt {
  code: number | null;
  killed: boolean;
  output: string;
}

/** Runs `tl`, killing it with SIGKILL after `afterMs`, or as soon as the files in the `watch`
 * folders change once `armed` exists (a checkpoint being written over a whole one), whichever
 * is given. */
function tl(args: string[], kill: { afterMs: number } | { watch: string[]; armed: string } | null): Promise<Attempt> {
  const child = spawn(process.execPath, [TL, ...args], { cwd: work, env: { ...process.env, CI: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  const stop = (): void => void child.kill('SIGKILL');
  let timer: NodeJS.Timeout | undefined;
  if (kill && 'afterMs' in kill) timer = setTimeout(stop, kill.afterMs);
  if (kill && 'watch' in kill) {
    const now = (): string => kill.watch.map(listing).join('\n');
    let before: string | null = null;
    timer = setInterval(() => {
      if (!existsSync(kill.armed)) return;
      const files = now();
      if (before === null) before = files;
      else if (files !== before) stop();
    }, 1);
  }
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      clearInterval(timer);
      resolve({ code, killed: signal === 'SIGKILL', output });
    });
  });
}

/** Names, sizes and times of the files in `dir` (empty when it does not exist). */
function listing(dir: string): string {
  try {
    return readdirSync(dir).map((f) => {
      const s = statSync(join(dir, f), { throwIfNoEntry: false });
      return `${f}:${s?.size}:${s?.mtimeMs}`;
    }).join('|');
  } catch {
    return '';
  }
}

/** The tensors of a safetensors file: its header without __metadata__, and its data bytes. */
function tensors(path: string): { header: string; data: Buffer } {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  delete header.__metadata__;
  return { header: JSON.stringify(header), data: bytes.subarray(8 + n) };
}

/** The last epoch the progress output says was finished, and the epoch a resume started at. */
const lastEpochDone = (out: string): number => Math.max(0, ...[...out.matchAll(/^epoch (\d+) +loss/gm)].map((m) => Number(m[1])));
const resumedAt = (out: string): number | null => {
  const m = /resumed from .* at epoch (\d+)/.exec(out);
  return m ? Number(m[1]) : null;
};

beforeAll(() => writeTinyImages(data), 60_000);

describe('tl train under kill -9', () => {
  it(`resumes after ${KILLS} kills, during checkpoint writes too, to the weights of an uninterrupted run`, async () => {
    const reference = join(work, 'reference');
    const t0 = performance.now();
    const ref = await tl(['train', ...TRAIN, '--out', reference], null);
    const fullMs = performance.now() - t0;
    expect(ref.code, ref.output).toBe(0);
    const want = tensors(join(reference, 'model.safetensors'));

    const run = join(work, 'run');
    const rng = new Rng(2024);
    const log: string[] = [];
    let kills = 0;
    let fresh = true;
    let lastDone = 0;
    // After the last kill, attempts run to the end.
    for (;;) {
      const args = fresh ? ['train', ...TRAIN, '--out', run] : ['train', '--resume', run];
      const kill = kills === KILLS ? null
        : kills % 2 === 0 ? { afterMs: Math.round(200 + rng.next() * 0.7 * fullMs) }
        : { watch: [join(run, 'checkpoint', 'staged'), join(run, 'checkpoint')], armed: join(run, 'checkpoint', 'trainer.json') };
      const a = await tl(args, kill);
      const at = resumedAt(a.output);
      if (!fresh && at !== null) {
        // The killed attempt's last printed epoch may not have reached its checkpoint.
        expect([lastDone - 1, lastDone], a.output).toContain(at - 1);
      }
      lastDone = Math.max(lastDone, at === null ? 0 : at - 1, lastEpochDone(a.output));
      if (a.killed) {
        kills++;
        log.push(`${kill && 'afterMs' in kill ? `${kill.afterMs} ms` : 'checkpoint write'}: killed${at !== null ? ` (resumed at epoch ${at})` : ''}, ${lastDone} epochs done`);
        fresh = false;
        continue;
      }
      const errors = a.output.split('\n').filter((l) => l.startsWith('error:'));
      expect(a.output).not.toMatch(/^\s+at |unexpected error/m);
      if (a.code === 0) {
        expect(tensors(join(run, 'model.safetensors'))).toEqual(want);
        expect(existsSync(join(run, 'checkpoint', 'trainer.json'))).toBe(true);
        log.push(`${kill ? 'finished before the kill' : 'ran to the end'}${at !== null ? ` (resumed at epoch ${at})` : ''}: weights equal`);
        if (!kill) break;
      } else {
        // Only a run killed before its first checkpoint may be refused, and then in one line.
        expect(errors, a.output).toHaveLength(1);
        expect(errors[0]).toMatch(/no checkpoint in|not a run folder \(no config\.json\)/);
        log.push(`refused: ${errors[0]}`);
      }
      rmSync(run, { recursive: true, force: true });
      fresh = true;
      lastDone = 0;
    }
    console.log(`kill -9 fault test (uninterrupted run ${(fullMs / 1000).toFixed(1)} s):\n  ${log.join('\n  ')}`);
    expect(kills).toBe(KILLS);
  }, 400_000);
});
