/**
 * Checkpoints survive a crash at every single store operation: the process "dies" at the k-th
 * write or rename (the store refuses everything from then on), and a fresh trainer resumes
 * from what is there. Every resume must start from the last checkpoint whose files were all
 * written and end with the weights of an uninterrupted run, bit for bit.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint } from '../src/checkpoint.js';
import { dirStore, MemoryStore, sgd, Trainer, TrainingError, type BlobStore, type TrainerOptions } from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';
import { model, toyData } from './toy.js';

beforeAll(setup);

class Crashed extends Error {}

/** A store whose process dies at operation `at` (0-based): that write or rename does not
 * happen, nor does anything after it. Without `canRename` it is a store like OPFS, where
 * checkpoints write their files a second time instead of moving them. */
class CrashingStore implements BlobStore {
  readonly description = 'crashing memory';
  ops = 0;
  readonly rename?: (from: string, to: string) => Promise<void>;
  constructor(private readonly inner: MemoryStore, private readonly at: number, canRename: boolean) {
    if (canRename) {
      this.rename = async (from, to) => {
        this.op();
        await this.inner.rename(from, to);
      };
    }
  }
  private op(): void {
    if (this.ops++ >= this.at) throw new Crashed(`crashed at store operation ${this.at}`);
  }
  async write(name: string, bytes: Uint8Array): Promise<void> {
    this.op();
    await this.inner.write(name, bytes);
  }
  read(name: string): Promise<Uint8Array | null> {
    return this.inner.read(name);
  }
}

const opts = { optimizer: sgd({ lr: 0.05, momentum: 0.9 }), epochs: 2, batchSize: 8, seed: 3, logger: () => {} } satisfies TrainerOptions;
const data = toyData(16, 5);

async function weights(t: Trainer): Promise<number[]> {
  const all: number[] = [];
  for (const v of t.model.stateDict().values()) all.push(...(await v.data()));
  return all;
}

describe('checkpoints under a crash at any store operation', () => {
  it.each([true, false])('resume continues from the last whole checkpoint and ends bit-identical (store renames: %s)', async (canRename) => {
    const straight = new Trainer(model(), { ...opts, checkpointStore: new CrashingStore(new MemoryStore(), Infinity, canRename) });
    await straight.fit(data);
    const want = await weights(straight);
    const total = (straight.opts.checkpointStore as CrashingStore).ops;
    // Two checkpoints of model, optimizer and trainer.json, each staged and then moved.
    expect(total).toBe(2 * 2 * 3);
    straight.model.dispose();
    const resumedAt: number[] = [];
    for (let at = 0; at < total; at++) {
      const mem = new MemoryStore();
      const first = new Trainer(model(), { ...opts, checkpointStore: new CrashingStore(mem, at, canRename) });
      await expect(first.fit(data)).rejects.toThrow(Crashed);
      first.model.dispose();
      // A whole staged set (after its trainer.json) counts, even before it is moved into place.
      const whole = Math.floor((at + 3) / 6);
      expect((await readCheckpoint(mem))?.state.nextEpoch ?? 0, `crash at ${at}`).toBe(whole);
      const again = new Trainer(model(), { ...opts, checkpointStore: mem });
      const resumed = await again.resume(mem);
      expect(resumed).toBe(whole > 0);
      resumedAt.push(again.history.length);
      await again.fit(data);
      expect(await weights(again), `crash at ${at}`).toEqual(want);
      // After the resume the set is settled in checkpoint/ again.
      expect((await readCheckpoint(mem))!.settled).toBe(true);
      again.model.dispose();
    }
    expect(new Set(resumedAt)).toEqual(new Set([0, 1, 2]));
  });

  it('refuses a set whose files belong to different checkpoints', async () => {
    const mem = new MemoryStore();
    const t = new Trainer(model(), { ...opts, checkpointStore: mem });
    await t.fit(data);
    const older = new MemoryStore();
    const t1 = new Trainer(model(), { ...opts, epochs: 1, checkpointStore: older });
    await t1.fit(data);
    await mem.write('checkpoint/model.safetensors', (await older.read('checkpoint/model.safetensors'))!);
    const e = await new Trainer(model(), opts).resume(mem).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(TrainingError);
    expect((e as Error).message).toBe('the checkpoint in memory is torn: checkpoint/trainer.json is checkpoint 2:4, but checkpoint/model.safetensors belongs to checkpoint 1:2 (interrupted while writing?); start the run afresh');
    t.model.dispose();
    t1.model.dispose();
  });
});

describe('dirStore', () => {
  it('removes the temporary files of writers that died mid-write, and only those', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tl-store-'));
    mkdirSync(join(dir, 'checkpoint'));
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    const living = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    try {
      const stale = `model.safetensors.tmp-${dead}-1`;
      const busy = `model.safetensors.tmp-${living.pid}-2`;
      const other = `optimizer.safetensors.tmp-${dead}-3`;
      for (const f of [stale, busy, other]) writeFileSync(join(dir, 'checkpoint', f), 'partial');
      await dirStore(dir).write('checkpoint/model.safetensors', new Uint8Array([1, 2]));
      expect(readdirSync(join(dir, 'checkpoint')).sort()).toEqual([busy, 'model.safetensors', other].sort());
    } finally {
      living.kill('SIGKILL');
    }
  });
});
