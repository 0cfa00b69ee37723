/**
 * Learning-rate schedules as PyTorch's lr_scheduler computes them, in closed form of the step
 * (so a resumed run gets the same value). `factor(step)` multiplies each group's initial lr;
 * one-cycle gives absolute values relative to its own max lr. Steps count optimizer steps.
 */
export interface Schedule {
  readonly name: string;
  /** lr for a group whose initial lr is `baseLr`, at 0-based `step`. */
  lr(step: number, baseLr: number): number;
  /** Total steps, where the schedule needs it and the trainer supplies it. */
  withTotal?(totalSteps: number): Schedule;
}

export const constant = (): Schedule => ({ name: 'constant', lr: (_s, base) => base });

export const stepLR = (o: { stepSize: number; gamma?: number }): Schedule => ({
  name: 'step',
  lr: (s, base) => base * (o.gamma ?? 0.1) ** Math.floor(s / o.stepSize),
});

export const multiStep = (o: { milestones: number[]; gamma?: number }): Schedule => ({
  name: 'multistep',
  lr: (s, base) => base * (o.gamma ?? 0.1) ** o.milestones.filter((m) => m <= s).length,
});

export const exponential = (o: { gamma: number }): Schedule => ({ name: 'exponential', lr: (s, base) => base * o.gamma ** s });

/** PyTorch's LinearLR: the factor goes from startFactor to endFactor over totalIters steps. */
export const linear = (o: { startFactor?: number; endFactor?: number; totalIters?: number } = {}): Schedule => {
  const start = o.startFactor ?? 1 / 3;
  const end = o.endFactor ?? 1;
  const total = o.totalIters ?? 5;
  return { name: 'linear', lr: (s, base) => base * (start + (end - start) * Math.min(s, total) / total) };
};

export interface CosineOptions {
  /** Steps of one half-cosine (default: the rest of training after warmup). */
  tMax?: number;
  etaMin?: number;
  /** Linear warmup from 0 over these steps first. */
  warmupSteps?: number;
  /** Restarts (SGDR, CosineAnnealingWarmRestarts): first period and its growth factor. */
  restarts?: { t0: number; tMult?: number };
}

export function cosine(o: CosineOptions = {}): Schedule {
  const warm = o.warmupSteps ?? 0;
  const etaMin = o.etaMin ?? 0;
  const make = (tMax: number | undefined): Schedule => ({
    name: 'cosine',
    lr(s, base) {
      if (s < warm) return (base * (s + 1)) / warm;
      let t = s - warm;
      let period = tMax ?? Infinity;
      if (o.restarts) {
        const mult = o.restarts.tMult ?? 1;
        period = o.restarts.t0;
        if (mult === 1) t %= period;
        else {
          const n = Math.floor(Math.log(t / period * (mult - 1) + 1) / Math.log(mult));
          t -= (period * (mult ** n - 1)) / (mult - 1);
          period *= mult ** n;
        }
      }
      if (!Number.isFinite(period)) return base;
      // Past tMax the curve keeps going (back up), as PyTorch's CosineAnnealingLR does.
      return etaMin + ((base - etaMin) * (1 + Math.cos((Math.PI * t) / period))) / 2;
    },
    withTotal: (total) => make(o.tMax ?? Math.max(total - warm, 1)),
  });
  return make(o.tMax);
}

export interface OneCycleOptions {
  maxLr?: number;
  totalSteps?: number;
  pctStart?: number;
  annealStrategy?: 'cos' | 'linear';
  divFactor?: number;
  finalDivFactor?: number;
}

/** PyTorch's OneCycleLR (two phases): the group's initial lr is ignored unless maxLr is not set. */
export function oneCycle(o: OneCycleOptions = {}): Schedule {
  const make = (total: number | undefined): Schedule => ({
    name: 'onecycle',
    lr(s, base) {
      if (total === undefined) throw new Error('oneCycle needs totalSteps (the trainer supplies it from epochs x steps per epoch)');
      const maxLr = o.maxLr ?? base;
      const initial = maxLr / (o.divFactor ?? 25);
      const minLr = initial / (o.finalDivFactor ?? 1e4);
      const up = (o.pctStart ?? 0.3) * total - 1;
      const down = total - 1;
      const anneal = (a: number, b: number, pct: number): number =>
        (o.annealStrategy ?? 'cos') === 'cos' ? b + ((a - b) / 2) * (Math.cos(Math.PI * pct) + 1) : (b - a) * pct + a;
      if (s <= up) return anneal(initial, maxLr, s / up);
      return anneal(maxLr, minLr, (s - up) / (down - up));
    },
    withTotal: (t) => make(o.totalSteps ?? t),
  });
  return make(o.totalSteps);
}

/**
 * ReduceLROnPlateau: multiplies the lr by `factor` when the monitored metric has not improved
 * by more than `threshold` (relative) for `patience` evaluations. Stateful: call `observe`.
 */
export class ReduceOnPlateau implements Schedule {
  readonly name = 'plateau';
  private best: number;
  private bad = 0;
  private cooldownLeft = 0;
  private scale = 1;
  constructor(readonly o: { mode?: 'min' | 'max'; factor?: number; patience?: number; threshold?: number; cooldown?: number; minLr?: number } = {}) {
    this.best = (o.mode ?? 'min') === 'min' ? Infinity : -Infinity;
  }
  lr(_s: number, base: number): number {
    return Math.max(base * this.scale, this.o.minLr ?? 0);
  }
  observe(metric: number): void {
    const min = (this.o.mode ?? 'min') === 'min';
    const th = this.o.threshold ?? 1e-4;
    const better = min ? metric < this.best * (1 - th) : metric > this.best * (1 + th);
    if (better) {
      this.best = metric;
      this.bad = 0;
    } else this.bad++;
    if (this.cooldownLeft > 0) {
      this.cooldownLeft--;
      this.bad = 0;
    }
    if (this.bad > (this.o.patience ?? 10)) {
      this.scale *= this.o.factor ?? 0.1;
      this.cooldownLeft = this.o.cooldown ?? 0;
      this.bad = 0;
    }
  }
  state(): { best: number; bad: number; cooldownLeft: number; scale: number } {
    return { best: this.best, bad: this.bad, cooldownLeft: this.cooldownLeft, scale: this.scale };
  }
  setState(s: { best: number; bad: number; cooldownLeft: number; scale: number }): void {
    Object.assign(this, { best: s.best, bad: s.bad, cooldownLeft: s.cooldownLeft, scale: s.scale });
  }
}

export const plateau = (o: ConstructorParameters<typeof ReduceOnPlateau>[0] = {}): ReduceOnPlateau => new ReduceOnPlateau(o);
