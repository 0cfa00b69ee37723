/**
 * The files of a checkpoint in a BlobStore, written so that a process killed at any moment
 * (`kill -9`, a power cut after the store's atomic write) leaves a checkpoint that resumes from
 * the last complete epoch, and so that a mixed set is never loaded.
 *
 * A checkpoint is `trainer.json` (the loop's state) and the safetensors blobs it goes with, each
 * carrying the checkpoint's tag in its metadata. Writing is two-phase: the new set goes to
 * `checkpoint/staged/` (trainer.json last, so a staged trainer.json means a whole staged set),
 * then into `checkpoint/` (renamed where the store can, else written again; trainer.json last).
 * A kill in the first phase leaves the old set in `checkpoint/` whole; a kill in the second
 * leaves every blob of the new set in one of the two folders. Reading takes the newest
 * trainer.json of the two whose blobs are all found with its tag, each looked up in that
 * trainer.json's folder first; each store write is atomic, so no file is ever half written.
 */
import type * as A from '@tl/autograd';
import { parseSafetensors, type SafetensorsFile } from '@tl/models';
import { TrainingError } from './errors.js';
import type { GradScalerState } from './grad-scaler.js';
import type { OptimizerState } from './optim.js';
import type { ReduceOnPlateau } from './schedule.js';
import type { BlobStore } from './store.js';
import type { EpochLogs } from './trainer.js';

export const CHECKPOINT_VERSION = 2;
const DIR = 'checkpoint/';
const STAGED = 'checkpoint/staged/';
const STATE = 'trainer.json';
export const BLOB = { model: 'model.safetensors', optimizer: 'optimizer.safetensors', callbacks: 'callbacks.safetensors' } as const;
type BlobName = (typeof BLOB)[keyof typeof BLOB];

/** trainer.json. */
export interface CheckpointState {
  version: number;
  /** `nextEpoch:globalStep`, also in each safetensors blob's metadata. */
  tag: string;
  nextEpoch: number;
  globalStep: number;
  rng: ReturnType<typeof A.getRngState>;
  /** Its tensors are in optimizer.safetensors. */
  optimizer: Omit<OptimizerState, 'tensors'>;
  schedule: ReturnType<ReduceOnPlateau['state']> | null;
  /** The loss scaler of an fp16 run; absent in float32 runs and in checkpoints written before
   * it was kept (a resumed fp16 run then starts from the initial scale). */
  scaler?: GradScalerState;
  /** By callback name: the JSON state, and the keys of its tensors in callbacks.safetensors
   * (stored as `<name>/<key>`). */
  callbacks: Record<string, { json: unknown; tensors: string[] }>;
  trainable: string[];
  history: EpochLogs[];
}

export interface CheckpointBlobs {
  model: Uint8Array;
  optimizer: Uint8Array;
  /** Only when a callback keeps tensors. */
  callbacks: Uint8Array | null;
}

export interface LoadedCheckpoint {
  state: CheckpointState;
  model: SafetensorsFile;
  optimizer: SafetensorsFile;
  callbacks: SafetensorsFile | null;
  /** Whether the set was whole in `checkpoint/`; otherwise the caller should write it again
   * (`writeCheckpoint`) before the next one, which reuses staged/. */
  settled: boolean;
  bytes: CheckpointBlobs;
}

/** Writes a checkpoint; `state.tag` must be the tag in each blob's metadata. */
export async function writeCheckpoint(store: BlobStore, state: CheckpointState, blobs: CheckpointBlobs): Promise<void> {
  const files: [string, Uint8Array][] = [[BLOB.model, blobs.model], [BLOB.optimizer, blobs.optimizer]];
  if (blobs.callbacks) files.push([BLOB.callbacks, blobs.callbacks]);
  files.push([STATE, new TextEncoder().encode(encodeJson(state))]);
  for (const [name, bytes] of files) await store.write(STAGED + name, bytes);
  for (const [name, bytes] of files) {
    if (store.rename) await store.rename(STAGED + name, DIR + name);
    else await store.write(DIR + name, bytes);
  }
}

/** The newest whole checkpoint in the store, null when there is none; throws a TrainingError
 * when there are checkpoint files but no whole set among them. */
export async function readCheckpoint(store: BlobStore): Promise<LoadedCheckpoint | null> {
  const candidates: { state: CheckpointState; dir: string }[] = [];
  for (const dir of [STAGED, DIR]) {
    const bytes = await store.read(dir + STATE);
    if (!bytes) continue;
    let state: CheckpointState;
    try {
      state = decodeJson(new TextDecoder().decode(bytes)) as CheckpointState;
    } catch (e) {
      throw new TrainingError(`the checkpoint in ${store.description} is damaged: ${dir}${STATE} is not JSON (${(e as Error).message})`);
    }
    if (state.version !== CHECKPOINT_VERSION) {
      throw new TrainingError(`the checkpoint in ${store.description} has format version ${state.version}; this trainer resumes version ${CHECKPOINT_VERSION} (callback state with tensors) only, so start the run afresh`);
    }
    candidates.push({ state, dir });
  }
  if (candidates.length === 0) return null;
  candidates.sort((a, b) => b.state.nextEpoch - a.state.nextEpoch || b.state.globalStep - a.state.globalStep);
  let why = '';
  for (const { state, dir } of candidates) {
    const found = new Map<BlobName, { file: SafetensorsFile; bytes: Uint8Array; dir: string }>();
    const needed: BlobName[] = [BLOB.model, BLOB.optimizer];
    if (Object.values(state.callbacks).some((c) => c.tensors.length > 0)) needed.push(BLOB.callbacks);
    for (const name of needed) {
      const blob = await findBlob(store, name, state.tag, dir === DIR ? [DIR, STAGED] : [STAGED, DIR]);
      if (typeof blob === 'string') {
        why ||= `${dir}${STATE} is checkpoint ${state.tag}, but ${blob}`;
        break;
      }
      found.set(name, blob);
    }
    if (found.size < needed.length) continue;
    const settled = dir === DIR && [...found.values()].every((b) => b.dir === DIR);
    const cb = found.get(BLOB.callbacks) ?? null;
    return {
      state, settled,
      model: found.get(BLOB.model)!.file,
      optimizer: found.get(BLOB.optimizer)!.file,
      callbacks: cb?.file ?? null,
      bytes: { model: found.get(BLOB.model)!.bytes, optimizer: found.get(BLOB.optimizer)!.bytes, callbacks: cb?.bytes ?? null },
    };
  }
  throw new TrainingError(`the checkpoint in ${store.description} is torn: ${why} (interrupted while writing?); start the run afresh`);
}

/** The blob of checkpoint `tag` from the first of `dirs` that has it, or why none has. */
async function findBlob(store: BlobStore, name: BlobName, tag: string, dirs: string[]): Promise<{ file: SafetensorsFile; bytes: Uint8Array; dir: string } | string> {
  const seen: string[] = [];
  for (const dir of dirs) {
    const bytes = await store.read(dir + name);
    if (!bytes) continue;
    const file = parseSafetensors(bytes, dir + name);
    if (file.metadata.checkpoint === tag) return { file, bytes, dir };
    seen.push(`${dir}${name} belongs to checkpoint ${file.metadata.checkpoint ?? '(none)'}`);
  }
  return seen.length > 0 ? seen.join(' and ') : `${DIR}${name} is missing`;
}

/** JSON writes NaN and ±Infinity as null, yet histories (a head without targets) and plateau
 * bests hold them; they are written as { "$nonFinite": "NaN" } to come back as they were. */
const NON_FINITE = '$nonFinite';

function encodeJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'number' && !Number.isFinite(x) ? { [NON_FINITE]: String(x) } : x));
}

function decodeJson(text: string): unknown {
  return JSON.parse(text, (_k, x: unknown) => {
    if (typeof x !== 'object' || x === null || !(NON_FINITE in x)) return x;
    return Number((x as Record<string, unknown>)[NON_FINITE]);
  });
}
