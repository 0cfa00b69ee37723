/**
 * Kernel autotuning, as torch.backends.cudnn.benchmark: a kernel family (matmul's tilings,
 * the algorithms of 3x3 convolutions) offers candidate variants that all compute the same
 * result; the first time a shape class is seen with tuning on, each candidate is timed on
 * the adapter and the fastest is kept, per adapter, in a store (a JSON file in Node,
 * IndexedDB in the browser; the entries register theirs). Without a stored choice a default
 * fixed per problem runs, so results and speed never depend on whether tuning ran, beyond
 * float rounding.
 *
 * Ops record their dispatches synchronously and cannot wait for a measurement, so a new
 * shape class runs the default at once and is measured at the next wait on the GPU
 * (`await t.data()`, `sync()`), or when `tunePending()` is awaited (`tl tune`).
 */
import { onEngineInit, type Engine } from './engine.js';
import type { Tensor } from './tensor.js';

/** A matmul as the kernel sees it, after batch folding and the matrix-vector swap. */
export interface MatmulProblem {
  M: number;
  N: number;
  K: number;
  /** Batch slices the kernel runs (1 when the batch folded into M). */
  batch: number;
  transA: boolean;
  transB: boolean;
  vecA: boolean;
  vecB: boolean;
}

/** A 3x3 stride-1 dense convolution pass (the forward pass or a gradient) as the choice
 * between the direct kernel and Winograd's algorithm sees it: `height` x `width` is the
 * plane it produces (the weight gradient's: the output's). */
export interface ConvProblem {
  kind: 'conv3x3';
  pass: 'forward' | 'inputGrad' | 'weightGrad';
  batch: number;
  inChannels: number;
  outChannels: number;
  height: number;
  width: number;
  half: boolean;
}

/** What a family measures: matmul problems carry no `kind` (stores written before the
 * convolution family have them so). */
export type TuneProblem = MatmulProblem | ConvProblem;

/** What the store keeps per shape class: the choice, the median milliseconds of every
 * candidate, and the problem that was measured. */
export interface TuneEntry {
  variant: string;
  ms: Record<string, number>;
  problem: TuneProblem;
}

export interface TuneResult extends TuneEntry {
  shapeClass: string;
}

/** Where choices persist: one record of entries per adapter key. */
export interface TuneStore {
  /** A path or name for messages (`tl tune` prints it). */
  readonly location: string;
  load(adapter: string): Promise<Record<string, TuneEntry>>;
  /** Adds `entries` to the adapter's record (entries of other processes are kept). */
  save(adapter: string, entries: Record<string, TuneEntry>): Promise<void>;
}

/** Inputs for one problem, kept while its candidates are timed. */
export interface TuneBench<V extends string> {
  /** Milliseconds per run of `reps` runs of `variant`, waiting for the GPU to finish them. */
  time(variant: V, reps: number): Promise<number>;
  dispose(): void;
}

/** Milliseconds per run of the `reps` runs that `record` records, waiting for the GPU to
 * finish them. `record` runs synchronously, so a variant it forces applies to its runs alone. */
export async function timeRecorded(e: Engine, reps: number, record: () => Tensor[]): Promise<number> {
  const t0 = performance.now();
  const outs = record().map((t) => e.keep(t));
  await e.sync();
  const ms = (performance.now() - t0) / reps;
  for (const o of outs) o.dispose();
  return ms;
}

/** A kernel family as the tuner sees it. */
export interface TuneFamily<V extends string, P extends TuneProblem> {
  variants: readonly V[];
  /** Problems of one class share a choice. */
  shapeClass(p: P): string;
  /** What runs without a stored choice. */
  fallback(p: P): V;
  /** Inputs laid out as `p` describes. */
  bench(p: P): TuneBench<V>;
}

/** Nonzero while candidates are timed: the ops they run (a Winograd convolution's matmul)
 * take the stored choice or the default and queue nothing, since a bench's classes are not
 * the run's. */
let measuring = 0;

const SAMPLES = 5;
/** Each sample runs a candidate this long (a submit and a wait cost ~0.1 ms on lavapipe). */
const SAMPLE_MS = 5;

/** Median milliseconds per run of each variant. Samples go round the candidates in turn,
 * so a change of load on a shared machine hits all of them alike. */
async function measure<V extends string, P extends TuneProblem>(family: TuneFamily<V, P>, p: P): Promise<Record<string, number>> {
  measuring++;
  const bench = family.bench(p);
  try {
    const reps = new Map<V, number>();
    for (const v of family.variants) {
      await bench.time(v, 1); // compiles the pipeline
      reps.set(v, Math.min(50, Math.max(1, Math.ceil(SAMPLE_MS / (await bench.time(v, 1))))));
    }
    const samples = new Map<V, number[]>(family.variants.map((v) => [v, []]));
    for (let i = 0; i < SAMPLES; i++) for (const v of family.variants) samples.get(v)!.push(await bench.time(v, reps.get(v)!));
    const ms: Record<string, number> = {};
    for (const [v, t] of samples) ms[v] = t.sort((x, y) => x - y)[SAMPLES >> 1]!;
    return ms;
  } finally {
    bench.dispose();
    measuring--;
  }
}

interface Pending {
  problem: TuneProblem;
  fallback: string;
  variants: readonly string[];
  measure(): Promise<Record<string, number>>;
}

interface AdapterState {
  key: string;
  entries: Record<string, TuneEntry>;
  pending: Map<string, Pending>;
  /** Classes the tuned families met in this process, in order (what `tl tune` reports). */
  seen: Set<string>;
}

let store: TuneStore | null = null;
let autotune: boolean | null = null;
let forced: string | null = null;
const states = new WeakMap<Engine, AdapterState>();

/** The identity choices are kept under: vendor, architecture, device and the description,
 * which carries the driver (e.g. "llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)"), since a driver
 * update can change which kernel wins. */
export function adapterKey(e: Engine): string {
  const info = e.adapter.info;
  return [info?.vendor, info?.architecture, info?.device, info?.description].map((s) => s || '-').join(' | ');
}

function state(e: Engine): AdapterState {
  let s = states.get(e);
  if (!s) states.set(e, (s = { key: adapterKey(e), entries: {}, pending: new Map(), seen: new Set() }));
  return s;
}

/** Registers where choices persist and loads the adapter's choices on every `init`. Called
 * by the package's node and browser entries. */
export function registerTuneStore(s: TuneStore): void {
  if (!store) {
    onEngineInit(async (e) => {
      if (!store) return;
      const st = state(e);
      try {
        Object.assign(st.entries, await store.load(st.key));
      } catch (err) {
        // A damaged store must not stop the engine: the defaults run, and tuning rewrites it.
        console.warn(`@tl/tensor: ignoring the kernel autotune store ${store.location}: ${(err as Error).message}`);
      }
    });
  }
  store = s;
}

/** Where choices persist, or null where no store is registered. */
export function tuneStoreLocation(): string | null {
  return store?.location ?? null;
}

/** Turns measuring new shape classes on or off (null: the TL_AUTOTUNE environment variable,
 * off unless it is 1 or true). Stored choices are used either way. */
export function setAutotune(on: boolean | null): void {
  autotune = on;
}

export function autotuneEnabled(): boolean {
  if (autotune !== null) return autotune;
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.TL_AUTOTUNE;
  return env === '1' || env?.toLowerCase() === 'true';
}

/** Runs every matmul with `variant` (tests and benchmarks; null restores the choice). */
export function forceMatmulVariant(variant: string | null): void {
  forced = variant;
}

const bucket = (n: number): number => (n <= 1 ? 1 : 2 ** Math.ceil(Math.log2(n)));

/** Problems in one class share a choice: storage order, vec4 loads, and each of M, N, K
 * and the batch rounded up to a power of two. */
export function matmulShapeClass(p: MatmulProblem): string {
  const order = `${p.transA ? 'T' : 'N'}${p.transB ? 'T' : 'N'}`;
  const vec = `${p.vecA ? 'v' : 's'}${p.vecB ? 'v' : 's'}`;
  return `matmul ${order} ${vec} M${bucket(p.M)} N${bucket(p.N)} K${bucket(p.K)} B${bucket(p.batch)}`;
}

/** Convolutions in one class share an algorithm: the pass, the dtype, and batch, channels
 * and plane sides rounded up to a power of two. */
export function convShapeClass(p: ConvProblem): string {
  return `conv3x3 ${p.pass} ${p.half ? 'f16' : 'f32'} N${bucket(p.batch)} C${bucket(p.inChannels)} O${bucket(p.outChannels)} H${bucket(p.height)} W${bucket(p.width)}`;
}

/** The variant for a matmul problem: the forced one, else as `tunedChoice`. */
export function matmulChoice<V extends string>(e: Engine, p: MatmulProblem, family: TuneFamily<V, MatmulProblem>): V {
  if (forced !== null) {
    if (!family.variants.includes(forced as V)) {
      throw new RangeError(`forceMatmulVariant: unknown variant '${forced}'; expected one of ${family.variants.join(', ')}`);
    }
    return forced as V;
  }
  return tunedChoice(e, p, family);
}

/** The variant stored for class `cls` when it is one of the family's. */
function storedVariant<V extends string>(st: AdapterState, cls: string, variants: readonly V[]): V | undefined {
  const stored = st.entries[cls]?.variant;
  return stored !== undefined && variants.includes(stored as V) ? (stored as V) : undefined;
}

/** The stored choice for `p`'s class, else the family's fallback; queues nothing. */
export function storedChoice<V extends string, P extends TuneProblem>(e: Engine, p: P, family: TuneFamily<V, P>): V {
  return storedVariant(state(e), family.shapeClass(p), family.variants) ?? family.fallback(p);
}

/** The variant for a problem: the stored choice, else the fallback (and, with tuning on,
 * the class is queued to be measured at the next wait on the GPU). */
export function tunedChoice<V extends string, P extends TuneProblem>(e: Engine, p: P, family: TuneFamily<V, P>): V {
  if (measuring > 0) return storedChoice(e, p, family);
  const st = state(e);
  const cls = family.shapeClass(p);
  st.seen.add(cls);
  const stored = storedVariant(st, cls, family.variants);
  if (stored !== undefined) return stored;
  const fallback = family.fallback(p);
  if (autotuneEnabled() && !st.pending.has(cls)) {
    if (st.pending.size === 0) {
      e.whenIdle(async () => {
        try {
          await tunePending(e);
        } catch (err) {
          console.warn(`@tl/tensor: kernel autotuning: ${(err as Error).message} (classes without a choice run the default kernel)`);
        }
      });
    }
    const problem = { ...p };
    st.pending.set(cls, { problem, fallback, variants: family.variants, measure: () => measure(family, problem) });
  }
  return fallback;
}

/** Measures every shape class queued since the last tuning, keeps the fastest variant of
 * each, and writes them to the store. Returns what was measured. */
export async function tunePending(e: Engine): Promise<TuneResult[]> {
  const st = state(e);
  const results: TuneResult[] = [];
  const added: Record<string, TuneEntry> = {};
  // Taken up front: the measurements wait on the GPU, which runs the queued idle task, and
  // that must find nothing left to do.
  const queued = [...st.pending];
  st.pending.clear();
  const failures: string[] = [];
  for (const [cls, { problem, fallback, variants, measure: run }] of queued) {
    let ms: Record<string, number>;
    try {
      ms = await run();
    } catch (err) {
      // Kept in memory only: the class is not measured again in this process, and a later
      // process tries again.
      st.entries[cls] = { variant: fallback, ms: {}, problem };
      failures.push(`${cls}: ${(err as Error).message}`);
      continue;
    }
    // A variant must win by 5 % (above the noise of a busy machine) to replace the fallback
    // or an earlier candidate, so noise does not flip choices between runs.
    let best = fallback;
    for (const v of variants) if (ms[v]! < ms[best]! * 0.95) best = v;
    const entry: TuneEntry = { variant: best, ms, problem };
    st.entries[cls] = added[cls] = entry;
    results.push({ shapeClass: cls, ...entry });
  }
  if (store && results.length > 0) await store.save(st.key, added);
  if (failures.length > 0) throw new Error(`measuring kernel variants failed for ${failures.join('; ')}`);
  return results;
}

/** The choices the engine's adapter has (stored and measured in this process). */
export function tuneChoices(e: Engine): { adapter: string; entries: Readonly<Record<string, TuneEntry>>; seen: readonly string[] } {
  const st = state(e);
  return { adapter: st.key, entries: st.entries, seen: [...st.seen] };
}
