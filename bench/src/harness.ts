/** Timing policy, statistics and output comparison. */
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Runner } from './runners.js';

/** bench/, the parent of this file's folder: src/ when run from source, and the folder of the
 * bundle that bench/device/pack.ts writes for machines without the workspace. */
export const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url));

export interface Policy {
  /** The first call is discarded as warm-up (pipeline compilation, JIT) when it took less
   * than this; a longer first call is kept as a sample, since a JIT compiles a hot loop in
   * its first milliseconds and a second full-size call would cost seconds. */
  warmupUnderMs: number;
  /** Calls per sample are raised until a sample takes about this long. */
  sampleMs: number;
  /** Samples are taken until about this much time is spent, within [minReps, maxReps]. */
  budgetMs: number;
  minReps: number;
  maxReps: number;
  maxIters: number;
}

export function policies(quick: boolean): { fast: Policy; slow: Policy } {
  return quick
    ? {
        fast: { warmupUnderMs: Infinity, sampleMs: 100, budgetMs: 800, minReps: 3, maxReps: 5, maxIters: 10 },
        slow: { warmupUnderMs: 300, sampleMs: 0, budgetMs: 1500, minReps: 1, maxReps: 3, maxIters: 1 },
      }
    : {
        fast: { warmupUnderMs: Infinity, sampleMs: 200, budgetMs: 3000, minReps: 5, maxReps: 15, maxIters: 20 },
        slow: { warmupUnderMs: 1000, sampleMs: 0, budgetMs: 6000, minReps: 3, maxReps: 7, maxIters: 1 },
      };
}

export interface Timing {
  /** Median milliseconds per call. */
  ms: number;
  reps: number;
  /** Calls per sample (enqueued back to back, then one wait). */
  iters: number;
}

const clamp = (x: number, lo: number, hi: number): number => Math.min(Math.max(x, lo), hi);

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export async function measure(r: Runner, p: Policy): Promise<Timing> {
  const sample = async (iters: number): Promise<number> => {
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) r.step();
    await r.wait();
    return (performance.now() - t0) / iters;
  };
  const samples: number[] = [];
  let first = await sample(1);
  if (first < p.warmupUnderMs) first = await sample(1);
  const iters = clamp(Math.round(p.sampleMs / first), 1, p.maxIters);
  const reps = clamp(Math.floor(p.budgetMs / (first * iters)), p.minReps, p.maxReps);
  if (iters === 1) samples.push(first);
  while (samples.length < reps) samples.push(await sample(iters));
  return { ms: median(samples), reps: samples.length, iters };
}

/** max |a - ref| / max |ref|: insensitive to the near-zero entries that make per-element
 * relative error meaningless, and NaN anywhere gives Infinity. */
export function maxRelError(a: Float32Array, ref: Float32Array): number {
  if (a.length !== ref.length) return Infinity;
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - ref[i]!);
    if (!(d <= maxDiff)) maxDiff = Number.isNaN(d) ? Infinity : d;
    const r = Math.abs(ref[i]!);
    if (r > maxRef) maxRef = r;
  }
  return maxRef > 0 ? maxDiff / maxRef : maxDiff;
}

/** What every benchmark records about the run's machine, so results can be told apart. */
export function machineMeta(adapter: string): { date: string; adapter: string; lpNumThreads: string | null; node: string; cpu: string } {
  return {
    date: new Date().toISOString(),
    adapter,
    lpNumThreads: process.env.LP_NUM_THREADS ?? null,
    node: process.version,
    cpu: `${os.cpus()[0]?.model ?? 'unknown'} x${os.cpus().length}`,
  };
}
