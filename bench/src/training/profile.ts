/**
 * A quick profile of one of our training steps, from outside the packages:
 *
 * - phases: forward+loss, backward, optimizer, each followed by `engine().sync()`, with the
 *   host time spent recording each phase (JS: building bind groups and dispatches) apart from
 *   the wait for the GPU;
 * - kernels: every dispatch of one step is captured (by wrapping `engine().dispatch` on the
 *   instance), then replayed one at a time with a sync after each, and the times are summed per
 *   kernel label. A replayed dispatch pays a submit and a host wait (~0.1 ms on lavapipe), so
 *   the per-dispatch floor (the fastest replay) is reported too (see dispatch-replay.ts).
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { captureAndReplay, timesByTag } from '../dispatch-replay.js';
import { median } from '../harness.js';
import { oursStep, type OursModel } from './ours.js';

export interface PhaseTimes {
  /** Wall milliseconds of each phase including its sync, and the host recording part of it. */
  forward: { ms: number; recordMs: number };
  backward: { ms: number; recordMs: number };
  optimizer: { ms: number; recordMs: number };
}

export interface KernelProfile {
  dispatches: number;
  /** Sum of the replayed dispatch times. */
  replayMs: number;
  /** Fastest single replay: roughly what submit + wait cost per dispatch. */
  floorMs: number;
  /** Per label: dispatch count, summed milliseconds, and summed milliseconds over the floor. */
  byLabel: { label: string; count: number; ms: number; overFloorMs: number }[];
  /** The slowest single dispatches, with their grid (workgroups x, y, z). */
  slowest: { label: string; ms: number; workgroups: number[] }[];
}

export interface Profile {
  phases: PhaseTimes;
  kernels: KernelProfile;
}

const now = (): number => performance.now();

export async function profileStep(m: OursModel, x: Tensor, y: Tensor, reps = 1): Promise<Profile> {
  const eng = A.engine();
  // Phases: the median of `reps` steps, each phase synced.
  const samples: PhaseTimes[] = [];
  for (let r = 0; r < reps; r++) {
    await eng.sync();
    A.engine().beginScope();
    let t0 = now();
    const out = m.module.forward(x);
    const loss = A.crossEntropy(out, y);
    const fRec = now() - t0;
    await eng.sync();
    const fMs = now() - t0;
    t0 = now();
    if (loss.requiresGrad) A.backward(loss);
    const bRec = now() - t0;
    await eng.sync();
    const bMs = now() - t0;
    A.engine().endScope();
    t0 = now();
    m.optimizer.step();
    m.optimizer.zeroGrad();
    const oRec = now() - t0;
    await eng.sync();
    const oMs = now() - t0;
    samples.push({ forward: { ms: fMs, recordMs: fRec }, backward: { ms: bMs, recordMs: bRec }, optimizer: { ms: oMs, recordMs: oRec } });
  }
  const med = (k: keyof PhaseTimes): { ms: number; recordMs: number } => ({
    ms: median(samples.map((s) => s[k].ms)),
    recordMs: median(samples.map((s) => s[k].recordMs)),
  });
  const phases = { forward: med('forward'), backward: med('backward'), optimizer: med('optimizer') };
  return { phases, kernels: await kernelProfile(m, x, y) };
}

async function kernelProfile(m: OursModel, x: Tensor, y: Tensor): Promise<KernelProfile> {
  const r = await captureAndReplay(async () => {
    const loss = oursStep(m, x, y);
    await loss.data();
    loss.dispose();
  });
  const byLabel = timesByTag(r).map((t) => ({ label: t.tag, count: t.count, ms: t.ms, overFloorMs: t.overFloorMs }));
  const slowest = r.captured
    .map((c, i) => ({ label: c.label, ms: r.times[i]!, workgroups: [c.workgroups[0], c.workgroups[1] ?? 1, c.workgroups[2] ?? 1] }))
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 8);
  return { dispatches: r.captured.length, replayMs: r.times.reduce((a, b) => a + b, 0), floorMs: r.floorMs, byLabel, slowest };
}
