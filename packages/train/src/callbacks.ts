/** Callbacks: early stopping with best-weights restore, gradual unfreezing, and hooks. */
import * as A from '@tl/autograd';
import { keep, Tensor } from '@tl/autograd';
import type { StateValue } from '@tl/models';
import type { EpochLogs, HeadLogs, Trainer } from './trainer.js';

/**
 * What a callback carries across an interrupted run, as Keras' and Lightning's callback state
 * dicts: small values go to the checkpoint's trainer.json, tensors (best weights) to a
 * safetensors file beside it.
 */
export interface CallbackState {
  /** Plain JSON; NaN and ±Infinity survive too. */
  json: unknown;
  /** Tensors come back from a checkpoint as host arrays (StateValue takes both). */
  tensors?: ReadonlyMap<string, StateValue>;
}

export interface Callback {
  readonly name: string;
  onTrainBegin?(t: Trainer): void | Promise<void>;
  onEpochBegin?(t: Trainer, epoch: number): void | Promise<void>;
  onEpochEnd?(t: Trainer, epoch: number, logs: EpochLogs): void | Promise<void>;
  onTrainEnd?(t: Trainer): void | Promise<void>;
  /**
   * The state a resumed run needs to continue exactly as an uninterrupted one; saved in every
   * checkpoint under the callback's name, which must then be unique among stateful callbacks.
   */
  stateDict?(): CallbackState;
  /** Puts back what stateDict returned, when `t` resumes from a checkpoint. */
  loadStateDict?(s: CallbackState, t: Trainer): void;
}

/** The numeric entries of the epoch logs. */
export type LogKey = { [K in keyof EpochLogs]-?: EpochLogs[K] extends number | undefined ? K : never }[keyof EpochLogs];

type HeadLogKey = { [K in keyof HeadLogs]-?: HeadLogs[K] extends number | undefined ? K : never }[keyof HeadLogs];

/** An entry of the epoch logs ('valLoss'), of one head's ('heads.species.valAccuracy'), or a
 * figure of the objective's in `metrics` ('valMAP', 'valPerplexity'). */
export type MonitorKey = LogKey | `heads.${string}.${HeadLogKey}` | (string & Record<never, never>);

/** The value of `key` in the logs, or undefined. */
function logValue(logs: EpochLogs, key: MonitorKey): number | undefined {
  const pick = (l: HeadLogs | undefined, k: string): number | undefined => {
    const v = (l as unknown as Record<string, unknown> | undefined)?.[k];
    return typeof v === 'number' ? v : l?.metrics?.[k];
  };
  if (!key.startsWith('heads.')) return pick(logs, key);
  const dot = key.lastIndexOf('.');
  return pick(logs.heads?.[key.slice('heads.'.length, dot)], key.slice(dot + 1));
}

/** Every numeric entry of the logs, heads' and metrics included, by the names `monitor` takes. */
function logKeys(logs: EpochLogs): string[] {
  const own = (l: HeadLogs): string[] => [...Object.entries(l).filter(([, v]) => typeof v === 'number').map(([k]) => k), ...Object.keys(l.metrics ?? {})];
  const heads = Object.entries(logs.heads ?? {}).flatMap(([h, l]) => own(l).map((k) => `heads.${h}.${k}`));
  return [...own(logs), ...heads];
}

export interface EarlyStoppingOptions {
  /** An entry of the epoch logs, or of a head's: 'heads.<name>.valAccuracy' (default 'valLoss',
   * or 'trainLoss' without validation). */
  monitor?: MonitorKey;
  /** Default 'min' for losses and mean absolute errors, else 'max'. */
  mode?: 'min' | 'max';
  patience?: number;
  minDelta?: number;
  /** Put back the weights of the best epoch when training ends (default true). */
  restoreBest?: boolean;
  /** Default 'earlyStopping'; checkpoints file the state of each stateful callback by name, so
   * two early stoppings in one run need distinct names. */
  name?: string;
}

interface EarlyStoppingJson {
  best: number;
  bestEpoch: number;
  wait: number;
  stopped: boolean;
}

/** Stops when the monitored metric has not improved for `patience` epochs. */
export function earlyStopping(o: EarlyStoppingOptions = {}): Callback & { bestEpoch: number; best: number } {
  const name = o.name ?? 'earlyStopping';
  const patience = o.patience ?? 3;
  let monitor = o.monitor;
  let mode = o.mode;
  let best = NaN;
  let bestEpoch = -1;
  let wait = 0;
  let stopped = false;
  // Host arrays after a resume: the best epoch may predate the interruption.
  let weights: Map<string, StateValue> | null = null;
  const release = (): void => {
    for (const w of weights?.values() ?? []) if (w instanceof Tensor) w.dispose();
    weights = null;
  };
  const cb = {
    name,
    get best() {
      return best;
    },
    get bestEpoch() {
      return bestEpoch;
    },
    onTrainBegin(t: Trainer) {
      monitor ??= t.hasValidation ? 'valLoss' : 'trainLoss';
      mode ??= /loss|mae/i.test(monitor) ? 'min' : 'max';
    },
    onEpochEnd(t: Trainer, epoch: number, logs: EpochLogs) {
      const v = logValue(logs, monitor!);
      if (v === undefined || Number.isNaN(v)) throw new Error(`${name}: the epoch logs have no "${monitor}" (have ${logKeys(logs).join(', ')})`);
      const improved = Number.isNaN(best) || (mode === 'min' ? v < best - (o.minDelta ?? 0) : v > best + (o.minDelta ?? 0));
      if (improved) {
        best = v;
        bestEpoch = epoch;
        wait = 0;
        if (o.restoreBest !== false) {
          release();
          weights = new Map([...t.model.stateDict()].map(([k, w]) => [k, keep(A.noGrad(() => w.clone()))]));
        }
      } else if (++wait >= patience) {
        t.stopTraining = true;
        stopped = true;
        t.log(`early stopping at epoch ${epoch + 1}: ${String(monitor)} has not improved for ${patience} epochs (best ${best.toFixed(4)} at epoch ${bestEpoch + 1})`);
      }
    },
    onTrainEnd(t: Trainer) {
      if (weights && o.restoreBest !== false) {
        t.model.loadStateDict(weights, { strict: false });
        t.log(`restored the weights of epoch ${bestEpoch + 1} (${String(monitor)} ${best.toFixed(4)})`);
        release();
      }
    },
    stateDict(): CallbackState {
      const json: EarlyStoppingJson = { best, bestEpoch, wait, stopped };
      return weights ? { json, tensors: weights } : { json };
    },
    loadStateDict(s: CallbackState, t: Trainer) {
      ({ best, bestEpoch, wait, stopped } = s.json as EarlyStoppingJson);
      release();
      if (o.restoreBest !== false && bestEpoch >= 0) {
        if (!s.tensors) throw new Error(`${name}: the checkpoint holds no best weights (it was saved with restoreBest: false), so they cannot be restored; resume with restoreBest: false`);
        weights = new Map(s.tensors);
      }
      // A run that had stopped early stays stopped: resuming it only restores the best weights.
      if (stopped) t.stopTraining = true;
    },
  };
  return cb;
}

/** At the start of `epoch` (1-based, as users count), unfreezes the parameters matching
 * `pattern`, optionally with their own learning rate. */
export function unfreezeAt(epoch: number, pattern: string, opts: { lr?: number } = {}): Callback {
  return {
    name: `unfreezeAt(${epoch}, ${pattern})`,
    onEpochBegin(t: Trainer, e: number) {
      if (e + 1 !== epoch) return;
      t.model.unfreeze(pattern);
      if (opts.lr !== undefined) t.setLr(pattern, opts.lr);
      t.log(`epoch ${epoch}: unfroze ${pattern}${opts.lr !== undefined ? ` (lr ${opts.lr})` : ''}; ${t.model.numParameters({ trainable: true }).toLocaleString('en')} trainable parameters`);
    },
  };
}

/** A callback from plain functions. */
export function lambdaCallback(hooks: Omit<Callback, 'name'> & { name?: string }): Callback {
  return { name: hooks.name ?? 'lambda', ...hooks };
}
