/**
 * Captures the dispatches that a piece of work records (by wrapping `engine().dispatch` on the
 * instance) and replays them one at a time with a sync after each, so each gets a wall time of
 * its own. A replayed dispatch pays a submit and a host wait (~0.1 ms on lavapipe): the
 * fastest replay is reported as the per-dispatch floor. Buffers released during the captured
 * work stay alive until the replay ends (pool destruction is deferred).
 */
import * as A from '@tl/autograd';

export interface CapturedDispatch {
  key: string;
  code: string;
  buffers: readonly A.StorageBinding[];
  bytes: Uint8Array | null;
  workgroups: readonly [number, number?, number?];
  label: string;
  /** What the caller's `tag` said when the dispatch was recorded. */
  tag: string;
}

export interface Replay {
  captured: CapturedDispatch[];
  /** Wall milliseconds of each replayed dispatch, in capture order. */
  times: number[];
  floorMs: number;
}

const now = (): number => performance.now();

/** Runs `work` (which must wait for its own results) while capturing its dispatches, then
 * replays them one by one. `tag` names the context of each dispatch (e.g. the layer type). */
export async function captureAndReplay(work: () => Promise<void>, tag: (label: string) => string = (l) => l): Promise<Replay> {
  const eng = A.engine();
  await eng.sync();
  const captured: CapturedDispatch[] = [];
  const proto = Object.getPrototypeOf(eng) as A.Engine;
  const dispatch = proto.dispatch;
  const pool = eng.pool as unknown as { afterSubmit(): void };
  // Hold buffers that the pool would destroy: the replay reads and writes them.
  pool.afterSubmit = () => {};
  try {
    (eng as unknown as { dispatch: A.Engine['dispatch'] }).dispatch = function (this: A.Engine, d: A.Dispatch) {
      const bytes = d.params && !d.params.empty ? d.params.bytes().slice() : null;
      const label = d.label ?? 'unlabelled';
      captured.push({ key: d.key, code: d.code, buffers: [...d.buffers], bytes, workgroups: d.workgroups, label, tag: tag(label) });
      dispatch.call(this, d);
    };
    try {
      await work();
    } finally {
      delete (eng as unknown as { dispatch?: unknown }).dispatch;
    }
    const times: number[] = [];
    for (const c of captured) {
      const params = c.bytes ? ({ empty: false, bytes: () => c.bytes! } as unknown as A.Dispatch['params']) : undefined;
      const t0 = now();
      dispatch.call(eng, { key: c.key, code: c.code, buffers: c.buffers, params, workgroups: c.workgroups, label: c.label });
      await eng.sync();
      times.push(now() - t0);
    }
    return { captured, times, floorMs: times.length ? Math.min(...times) : 0 };
  } finally {
    // The method lives on the prototype: deleting the own property restores it.
    delete (pool as unknown as { afterSubmit?: unknown }).afterSubmit;
    eng.pool.afterSubmit();
  }
}

export interface TagTime {
  tag: string;
  count: number;
  ms: number;
  /** Summed milliseconds over the per-dispatch floor. */
  overFloorMs: number;
}

/** Replay times summed per tag, slowest first. */
export function timesByTag(r: Replay): TagTime[] {
  const by = new Map<string, { count: number; ms: number }>();
  r.captured.forEach((c, i) => {
    const e = by.get(c.tag) ?? { count: 0, ms: 0 };
    e.count++;
    e.ms += r.times[i]!;
    by.set(c.tag, e);
  });
  return [...by.entries()]
    .map(([tag, e]) => ({ tag, count: e.count, ms: e.ms, overFloorMs: Math.max(0, e.ms - e.count * r.floorMs) }))
    .sort((a, b) => b.ms - a.ms);
}

/** Counts the dispatches that synchronous recording `work` makes. */
export function countDispatches<T>(work: () => T): { result: T; dispatches: number } {
  const eng = A.engine();
  const dispatch = (Object.getPrototypeOf(eng) as A.Engine).dispatch;
  let dispatches = 0;
  (eng as unknown as { dispatch: A.Engine['dispatch'] }).dispatch = function (this: A.Engine, d: A.Dispatch) {
    dispatches++;
    dispatch.call(this, d);
  };
  try {
    return { result: work(), dispatches };
  } finally {
    delete (eng as unknown as { dispatch?: unknown }).dispatch;
  }
}
