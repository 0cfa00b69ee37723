/**
 * Dynamic loss scaling for float16 training, as torch.cuda.amp.GradScaler: the loss is
 * multiplied by `scale` before backward so that small float16 gradients do not flush to
 * zero; the optimizer sees the gradients divided by it again. A step whose gradients hold
 * an Inf or NaN (the scale was too large) is skipped and the scale halved; after
 * `growthInterval` clean steps in a row it doubles.
 */
import * as A from '@tl/autograd';
import { keep, type Tensor } from '@tl/autograd';

export interface GradScalerOptions {
  /** The first scale (PyTorch's default, 2^16). */
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  /** Clean steps in a row before the scale grows. */
  growthInterval?: number;
}

export interface GradScalerState {
  scale: number;
  growthTracker: number;
  skipped: number;
}

export class GradScaler {
  scale: number;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  /** Clean steps since the scale last changed. */
  private growthTracker = 0;
  /** Steps skipped for non-finite gradients, since construction. */
  skipped = 0;

  constructor(opts: GradScalerOptions = {}) {
    this.scale = positive('initScale', opts.initScale ?? 2 ** 16);
    this.growthFactor = positive('growthFactor', opts.growthFactor ?? 2);
    this.backoffFactor = positive('backoffFactor', opts.backoffFactor ?? 0.5);
    this.growthInterval = opts.growthInterval ?? 2000;
    if (this.growthFactor <= 1) throw new RangeError(`GradScaler: growthFactor must exceed 1, got ${this.growthFactor}`);
    if (this.backoffFactor >= 1) throw new RangeError(`GradScaler: backoffFactor must be below 1, got ${this.backoffFactor}`);
    if (!Number.isInteger(this.growthInterval) || this.growthInterval < 1) {
      throw new RangeError(`GradScaler: growthInterval must be a positive integer, got ${this.growthInterval}`);
    }
  }

  /** The loss times the scale, to call backward on. */
  scaleLoss(loss: Tensor): Tensor {
    return A.mul(loss, this.scale);
  }

  /**
   * One element on the GPU: 0 when every gradient is finite, NaN when any element is Inf or
   * NaN (x·0 is NaN exactly then), so the check costs one reduction per parameter and rides
   * along with the step's read-back.
   */
  nonFinite(params: readonly Tensor[]): Tensor {
    return A.noGrad(() => A.tidy(() => {
      const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
      if (grads.length === 0) return keep(A.zeros([1]));
      const parts = A.cat(grads.map((g) => A.sum(A.mul(g, 0)).reshape([1])));
      return keep(A.sum(parts).reshape([1]));
    }));
  }

  /** What a resumed run needs to scale as the interrupted one would have (PyTorch's
   * `GradScaler.state_dict`: the scale and the clean steps since it last changed). */
  stateDict(): GradScalerState {
    return { scale: this.scale, growthTracker: this.growthTracker, skipped: this.skipped };
  }

  loadStateDict(s: GradScalerState): void {
    this.scale = positive('scale', s.scale);
    if (!Number.isInteger(s.growthTracker) || s.growthTracker < 0) {
      throw new RangeError(`GradScaler: growthTracker must be a non-negative integer, got ${s.growthTracker}`);
    }
    if (!Number.isInteger(s.skipped) || s.skipped < 0) throw new RangeError(`GradScaler: skipped must be a non-negative integer, got ${s.skipped}`);
    this.growthTracker = s.growthTracker;
    this.skipped = s.skipped;
  }

  /** Records one optimizer step's check (`flag` read back from `nonFinite`); true when the
   * step should be taken. */
  update(flag: number): boolean {
    if (!Number.isFinite(flag)) {
      this.scale *= this.backoffFactor;
      this.growthTracker = 0;
      this.skipped++;
      return false;
    }
    if (++this.growthTracker >= this.growthInterval) {
      this.scale *= this.growthFactor;
      this.growthTracker = 0;
    }
    return true;
  }
}

function positive(name: string, v: number): number {
  if (!(Number.isFinite(v) && v > 0)) throw new RangeError(`GradScaler: ${name} must be a positive finite number, got ${v}`);
  return v;
}
