/**
 * Optimizers with PyTorch's update rules, each step one fused kernel per parameter tensor,
 * state on the GPU. Parameter groups carry their own lr and weight decay (discriminative
 * learning rates); `step()` skips parameters without a gradient or frozen ones.
 */
import * as T from '@tl/autograd';
import { keep, type Tensor } from '@tl/autograd';

export interface GroupOptions {
  lr?: number;
  weightDecay?: number;
  /** A label shown in logs (e.g. "head", "layer4"). */
  name?: string;
}

export interface ParamGroup extends GroupOptions {
  params: Tensor[];
}

export interface ResolvedGroup {
  params: Tensor[];
  lr: number;
  /** The group's lr before any schedule; schedules scale from it. */
  initialLr: number;
  weightDecay: number;
  name: string;
}

/** Serialisable optimizer state: per parameter (by group and index) the state tensors' values. */
export interface OptimizerState {
  kind: string;
  step: number;
  groups: { lr: number; initialLr: number; weightDecay: number; name: string }[];
  /** `${group}.${index}.${stateName}` -> values */
  tensors: Record<string, Float32Array>;
}

export abstract class Optimizer {
  readonly groups: ResolvedGroup[] = [];
  /** Steps taken (Adam's bias correction uses it). */
  stepCount = 0;
  protected state = new Map<Tensor, Record<string, Tensor>>();
  /** Multiplies every gradient (global-norm clipping sets it); a one-element tensor. */
  gradScale: Tensor | null = null;

  constructor(params: Tensor[] | ParamGroup[], readonly defaults: Required<Omit<GroupOptions, 'name'>>) {
    const groups: ParamGroup[] = params.length > 0 && !('params' in (params[0] as object)) ? [{ params: params as Tensor[] }] : (params as ParamGroup[]);
    for (const g of groups) this.addParamGroup(g);
  }

  abstract readonly kind: string;

  addParamGroup(g: ParamGroup): void {
    const lr = g.lr ?? this.defaults.lr;
    if (!(lr >= 0)) throw new RangeError(`${this.constructor.name}: lr must be >= 0, got ${lr}`);
    const seen = new Set(this.groups.flatMap((x) => x.params));
    for (const p of g.params) {
      if (seen.has(p)) throw new Error(`${this.constructor.name}: a parameter appears in more than one group (${p})`);
    }
    this.groups.push({ params: [...g.params], lr, initialLr: lr, weightDecay: g.weightDecay ?? this.defaults.weightDecay, name: g.name ?? `group${this.groups.length}` });
  }

  /** Applies one update to every parameter that has a gradient. */
  step(): void {
    this.stepCount++;
    T.noGrad(() => {
      for (const g of this.groups) {
        for (const p of g.params) {
          if (!p.grad || !p.requiresGrad) continue;
          this.update(p, p.grad, g, this.stateFor(p));
        }
      }
    });
  }

  zeroGrad(): void {
    for (const g of this.groups) T.zeroGrad(g.params);
  }

  protected abstract update(p: Tensor, grad: Tensor, group: ResolvedGroup, state: Record<string, Tensor>): void;
  protected abstract initState(p: Tensor): Record<string, Tensor>;

  private stateFor(p: Tensor): Record<string, Tensor> {
    let s = this.state.get(p);
    if (!s) {
      s = this.initState(p);
      for (const t of Object.values(s)) keep(t);
      this.state.set(p, s);
    }
    return s;
  }

  async stateDict(): Promise<OptimizerState> {
    const tensors: Record<string, Float32Array> = {};
    for (const [gi, g] of this.groups.entries()) {
      for (const [pi, p] of g.params.entries()) {
        const s = this.state.get(p);
        if (!s) continue;
        for (const [k, t] of Object.entries(s)) tensors[`${gi}.${pi}.${k}`] = (await t.data()) as Float32Array;
      }
    }
    return {
      kind: this.kind,
      step: this.stepCount,
      groups: this.groups.map(({ lr, initialLr, weightDecay, name }) => ({ lr, initialLr, weightDecay, name })),
      tensors,
    };
  }

  loadStateDict(s: OptimizerState): void {
    if (s.kind !== this.kind) throw new Error(`cannot load ${s.kind} optimizer state into ${this.kind}`);
    if (s.groups.length !== this.groups.length) throw new Error(`optimizer state has ${s.groups.length} parameter groups, this optimizer ${this.groups.length}`);
    this.stepCount = s.step;
    s.groups.forEach((g, i) => Object.assign(this.groups[i]!, g));
    for (const [key, values] of Object.entries(s.tensors)) {
      const [gi, pi, name] = key.split('.');
      const p = this.groups[Number(gi)]?.params[Number(pi)];
      if (!p) throw new Error(`optimizer state names parameter ${gi}.${pi}, which this optimizer does not have`);
      const st = this.stateFor(p);
      const t = st[name!];
      if (!t) throw new Error(`optimizer state ${key}: unknown state "${name}" for ${this.kind}`);
      if (values.length !== t.size) throw new Error(`optimizer state ${key} has ${values.length} values; this parameter's needs ${t.size}`);
      t.engine.write(t.buffer, values, t.offset * 4);
    }
  }

  dispose(): void {
    for (const s of this.state.values()) for (const t of Object.values(s)) t.dispose();
    this.state.clear();
    this.gradScale?.dispose();
    this.gradScale = null;
  }
}

export interface SgdOptions extends GroupOptions {
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
}

export class SGD extends Optimizer {
  readonly kind = 'SGD';
  constructor(params: Tensor[] | ParamGroup[], readonly opts: SgdOptions = {}) {
    super(params, { lr: opts.lr ?? 0.01, weightDecay: opts.weightDecay ?? 0 });
    if (opts.nesterov && (!opts.momentum || opts.dampening)) throw new RangeError('SGD: Nesterov momentum requires momentum > 0 and zero dampening');
  }
  protected initState(p: Tensor): Record<string, Tensor> {
    return this.opts.momentum ? { momentum_buffer: T.zeros(p.shape) } : {};
  }
  protected update(p: Tensor, grad: Tensor, g: ResolvedGroup, s: Record<string, Tensor>): void {
    const momentum = this.opts.momentum ?? 0;
    T.sgdStep(p, grad, s.momentum_buffer ?? null, {
      lr: g.lr, momentum, dampening: this.opts.dampening ?? 0, weightDecay: g.weightDecay,
      nesterov: this.opts.nesterov ?? false, firstStep: momentum !== 0 && !this.started.has(p),
    }, this.gradScale);
    this.started.add(p);
  }
  private started = new WeakSet<Tensor>();

  override loadStateDict(s: OptimizerState): void {
    super.loadStateDict(s);
    for (const key of Object.keys(s.tensors)) {
      const [gi, pi] = key.split('.');
      const p = this.groups[Number(gi)]?.params[Number(pi)];
      if (p) this.started.add(p);
    }
  }
}

export interface AdamOptions extends GroupOptions {
  betas?: [number, number];
  eps?: number;
}

export class Adam extends Optimizer {
  readonly kind: string = 'Adam';
  protected readonly decoupled: boolean = false;
  constructor(params: Tensor[] | ParamGroup[], readonly opts: AdamOptions = {}) {
    super(params, { lr: opts.lr ?? 1e-3, weightDecay: opts.weightDecay ?? 0 });
    const [b1, b2] = opts.betas ?? [0.9, 0.999];
    if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) throw new RangeError(`${this.constructor.name}: betas must be in [0, 1), got [${b1}, ${b2}]`);
  }
  protected initState(p: Tensor): Record<string, Tensor> {
    return { exp_avg: T.zeros(p.shape), exp_avg_sq: T.zeros(p.shape), step: T.zeros([1]) };
  }
  protected update(p: Tensor, grad: Tensor, g: ResolvedGroup, s: Record<string, Tensor>): void {
    const [beta1, beta2] = this.opts.betas ?? [0.9, 0.999];
    const step = (this.steps.get(p) ?? 0) + 1;
    this.steps.set(p, step);
    T.adamStep(p, grad, s.exp_avg!, s.exp_avg_sq!, {
      lr: g.lr, beta1, beta2, eps: this.opts.eps ?? 1e-8, weightDecay: g.weightDecay, decoupled: this.decoupled, step,
    }, this.gradScale);
  }
  /** Per-parameter step counts (a parameter unfrozen later starts its bias correction then). */
  private steps = new Map<Tensor, number>();

  override async stateDict(): Promise<OptimizerState> {
    for (const [p, n] of this.steps) {
      const st = this.state.get(p)?.step;
      if (st) T.assign(st, n);
    }
    return super.stateDict();
  }

  override loadStateDict(s: OptimizerState): void {
    super.loadStateDict(s);
    for (const [key, values] of Object.entries(s.tensors)) {
      const [gi, pi, name] = key.split('.');
      if (name !== 'step') continue;
      const p = this.groups[Number(gi)]?.params[Number(pi)];
      if (p) this.steps.set(p, values[0]!);
    }
  }
}

export class AdamW extends Adam {
  override readonly kind = 'AdamW';
  protected override readonly decoupled = true;
  constructor(params: Tensor[] | ParamGroup[], opts: AdamOptions = {}) {
    super(params, { ...opts, weightDecay: opts.weightDecay ?? 1e-2 });
  }
}

/** What `Trainer` takes: the optimizer kind and its options, built once the groups are known. */
export interface OptimizerSpec {
  readonly kind: 'sgd' | 'adam' | 'adamw';
  readonly options: SgdOptions & AdamOptions;
  create(groups: ParamGroup[]): Optimizer;
}

export const sgd = (options: SgdOptions = {}): OptimizerSpec => ({ kind: 'sgd', options, create: (g) => new SGD(g, options) });
export const adam = (options: AdamOptions = {}): OptimizerSpec => ({ kind: 'adam', options, create: (g) => new Adam(g, options) });
export const adamw = (options: AdamOptions = {}): OptimizerSpec => ({ kind: 'adamw', options, create: (g) => new AdamW(g, options) });

/**
 * Scales every gradient so their global L2 norm is at most `maxNorm` (as
 * torch.nn.utils.clip_grad_norm_), on the GPU: returns the total norm before clipping as a
 * one-element tensor, and leaves no host round trip in the step.
 */
export function clipGradNorm(params: Tensor[], maxNorm: number): Tensor {
  return T.noGrad(() => T.tidy(() => {
    const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
    if (grads.length === 0) return T.zeros([1]);
    const squares = grads.map((g) => T.sum(T.square(g)).reshape([1]));
    const total = T.sqrt(squares.length === 1 ? squares[0]! : T.sum(T.cat(squares)).reshape([1]));
    const scale = clipFactor(total, maxNorm);
    for (const g of grads) T.scaleInPlace(g, scale);
    return total;
  }));
}

/** min(1, maxNorm / norm), and NaN when the norm is NaN, as PyTorch's clamp gives: a NaN
 * gradient then spoils every weight visibly instead of passing through unclipped (WGSL's min
 * drops NaN). */
export function clipFactor(norm: Tensor, maxNorm: number): Tensor {
  return T.map([norm], ([n]) => `minNan_(1.0, ${maxNorm} / (${n} + 1e-6))`, { label: 'clipScale' });
}
