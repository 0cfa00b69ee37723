/**
 * Connectionist temporal classification loss, as PyTorch's `F.ctc_loss` (log-probabilities
 * [T, N, C], padded [N, S] or concatenated targets, input and target lengths, blank,
 * 'mean' | 'sum' | 'none', zero_infinity), with its backward, and the float64 references.
 *
 * One workgroup per sequence runs the alpha (forward) and beta (backward) recursions over the
 * extended label sequence l' = (blank, l1, blank, l2, …, blank) of length L = 2S + 1: the
 * invocations share the L positions of one time step and meet at a barrier between steps, so
 * a step costs ⌈L / 64⌉ iterations per invocation and T steps run in one dispatch. The
 * forward keeps alpha [N, T, 2·maxS + 1] for the backward (autograd saves it), which is small
 * beside the activations of the network that made the log-probabilities.
 *
 * "Impossible" is -1e38 in log space rather than -inf, so no infinity enters the arithmetic
 * (compilers may assume none, as they assume no NaN; see MATH_HELPERS): lse(-1e38, -1e38) and
 * -1e38 + log p stay at -1e38 in float32. A log-likelihood below -1e37 is an impossible
 * alignment (more labels and repeats than frames): its loss is +inf (0 with zeroInfinity) and
 * its gradient NaN (0 with zeroInfinity), as PyTorch's.
 *
 * The gradient follows PyTorch's CPU and CUDA kernels: d/d lp(t, c) = exp(lp) - exp(lcab + nll
 * - lp), where lcab = log Σ_{s: l'(s) = c} alpha_t(s)·beta_t(s). That is the gradient with
 * respect to the logits under a log-softmax (the exp(lp) term is what log-softmax's backward
 * adds), so through `logSoftmax` it equals the exact gradient, while on raw log-probabilities
 * it carries the extra exp(lp) — PyTorch's convention, kept so fixtures and users agree.
 * Frames at or past a sequence's input length get zero gradient.
 */
import { tensor } from '../creation.js';
import { engine } from '../engine.js';
import { host, type HostTensor } from '../host.js';
import { Params } from '../params.js';
import { fmt } from '../shape.js';
import { Tensor } from '../tensor.js';
import { checkFloat } from './check-float.js';
import { mean, sum } from './reduce.js';
import type { Reduction } from './softmax.js';
import { MATH_HELPERS, WG } from './wgsl.js';

export type Lengths = Int32Array | readonly number[];

export interface CtcLossOptions {
  /** The blank class (default 0, as PyTorch). */
  blank?: number;
  /** 'mean' (default) divides each sequence's loss by its target length (at least 1), then
   * averages over the batch, as PyTorch; 'sum' adds them; 'none' gives [N]. */
  reduction?: Reduction;
  /** Losses of impossible alignments (and their gradients) become 0 instead of inf (NaN). */
  zeroInfinity?: boolean;
}

/** What the backward needs besides the log-probabilities: alpha, per-sequence lengths and
 * offsets `meta` (int32 [N, 3]: input length, target length, offset into `targets`) and the
 * flat int32 targets. The caller disposes them. */
export interface CtcForwardResult {
  loss: Tensor;
  alpha: Tensor;
  meta: Tensor;
  targets: Tensor;
}

interface CtcGeometry {
  T: number;
  N: number;
  C: number;
  blank: number;
  reduction: Reduction;
  zeroInfinity: boolean;
  /** Where each sequence's labels start in the flat targets. */
  offsets: number[];
  inputLengths: number[];
  /** Null: padded targets on the GPU, whose labels >= 0 the kernel counts per row. */
  targetLengths: number[] | null;
  /** The padded targets' width (0 for concatenated targets). */
  width: number;
}

/** Checks the arguments as PyTorch does and says which value is wrong and what was expected. */
function ctcGeometry(op: string, lpShape: readonly number[], targets: Tensor | Lengths | HostTensor, inputLengths: Lengths, targetLengths: Lengths | null, opts: CtcLossOptions): CtcGeometry {
  if (lpShape.length !== 3) throw new RangeError(`${op}: logProbs must be [T, N, C] (time, batch, classes), got ${fmt(lpShape)}`);
  const [T, N, C] = lpShape as [number, number, number];
  const blank = opts.blank ?? 0;
  const reduction = opts.reduction ?? 'mean';
  if (!['mean', 'sum', 'none'].includes(reduction)) throw new RangeError(`${op}: reduction must be 'mean', 'sum' or 'none', got '${reduction}'`);
  if (!Number.isInteger(blank) || blank < 0 || blank >= C) throw new RangeError(`${op}: blank ${blank} must be a class index in [0, ${C})`);
  if (inputLengths.length !== N) throw new RangeError(`${op}: ${inputLengths.length} input lengths given for a batch of ${N}`);
  if (targetLengths && targetLengths.length !== N) throw new RangeError(`${op}: ${targetLengths.length} target lengths given for a batch of ${N}`);
  const targetShape = targetShapeOf(targets, targetLengths, N);
  if (!targetLengths && targetShape.length !== 2) {
    throw new RangeError(`${op}: without target lengths the targets must be padded [N, S] (labels >= 0 first, then negative padding such as -100), got ${fmt(targetShape)}`);
  }
  const ins = Array.from(inputLengths);
  const hostData = targets instanceof Tensor ? null : 'data' in targets ? targets.data : targets;
  const tls = targetLengths ? Array.from(targetLengths) : hostData ? countLabels(hostData, N, targetShape[1]!) : null;
  ins.forEach((l, n) => {
    if (!Number.isInteger(l) || l < 1 || l > T) throw new RangeError(`${op}: input length ${l} (sequence ${n}) must be an integer in [1, ${T}]`);
  });
  tls?.forEach((l, n) => {
    if (!Number.isInteger(l) || l < 0) throw new RangeError(`${op}: target length ${l} (sequence ${n}) must be a non-negative integer`);
  });
  const offsets: number[] = [];
  if (targetShape.length === 2) {
    if (targetShape[0] !== N) throw new RangeError(`${op}: padded targets ${fmt(targetShape)} must have one row per sequence (${N})`);
    const S = targetShape[1]!;
    for (let n = 0; n < N; n++) {
      const l = tls?.[n] ?? 0;
      if (l > S) throw new RangeError(`${op}: target length ${l} (sequence ${n}) exceeds the padded targets' width ${S}`);
      offsets.push(n * S);
    }
  } else if (targetShape.length === 1 && tls) {
    const total = tls.reduce((a, b) => a + b, 0);
    if (targetShape[0] !== total) throw new RangeError(`${op}: concatenated targets hold ${targetShape[0]} labels; the target lengths add up to ${total}`);
    let o = 0;
    for (const l of tls) {
      offsets.push(o);
      o += l;
    }
  } else {
    throw new RangeError(`${op}: targets must be [N, S] (padded) or [sum of target lengths] (concatenated), got ${fmt(targetShape)}`);
  }
  const g = { T, N, C, blank, reduction, zeroInfinity: opts.zeroInfinity ?? false, offsets, inputLengths: ins, targetLengths: tls, width: targetShape.length === 2 ? targetShape[1]! : 0 };
  if (hostData) checkTargetValues(op, g, hostData);
  return g;
}

/** Per row of padded targets, how many labels are >= 0 (transformers' `(labels >= 0).sum(-1)`). */
function countLabels(data: ArrayLike<number>, N: number, S: number): number[] {
  return Array.from({ length: N }, (_, n) => {
    let k = 0;
    for (let j = 0; j < S; j++) if (data[n * S + j]! >= 0) k++;
    return k;
  });
}

/** Host targets are concatenated when their count is the lengths' sum, else padded rows. */
function targetShapeOf(targets: Tensor | Lengths | HostTensor, targetLengths: Lengths | null, N: number): readonly number[] {
  if (targets instanceof Tensor || 'shape' in targets) return targets.shape;
  const total = targetLengths ? Array.from(targetLengths).reduce((a, b) => a + b, 0) : -1;
  if (targets.length === total) return [targets.length];
  return N > 0 && targets.length % N === 0 ? [N, targets.length / N] : [targets.length];
}

function checkTargetValues(op: string, g: CtcGeometry, data: ArrayLike<number>): void {
  g.targetLengths?.forEach((len, n) => {
    for (let k = 0; k < len; k++) {
      const v = data[g.offsets[n]! + k]!;
      if (!Number.isInteger(v) || v < 0 || v >= g.C || v === g.blank) {
        throw new RangeError(`${op}: target ${v} (sequence ${n}, position ${k}) must be a class index in [0, ${g.C}) other than the blank ${g.blank}`);
      }
    }
  });
}

const LOG_HELPERS = /* wgsl */ `
const NEG = -1e38;
fn lse2_(a: f32, b: f32) -> f32 {
  let m = max(a, b);
  return m + log(exp(a - m) + exp(b - m));
}
fn lse3_(a: f32, b: f32, c: f32) -> f32 {
  let m = max(max(a, b), c);
  return m + log(exp(a - m) + exp(b - m) + exp(c - m));
}
fn label_(s: u32, off: u32) -> u32 {
  if (s % 2u == 0u) { return p.blank; }
  return u32(tg[p.offT + off + s / 2u]);
}
// A label outside [0, C) (GPU targets are not checked on the host) reads NaN, as cross-entropy's.
fn logProb_(t: u32, n: u32, l: u32) -> f32 {
  if (l >= p.C) { return p.nan; }
  return maxNan_(lp[p.offX + t * p.sT + n * p.sN + l], NEG);
}`;

function ctcParams(g: CtcGeometry, x: Tensor, targets: Tensor, lmax: number): Params {
  return new Params()
    .u32('T', g.T).u32('N', g.N).u32('C', g.C).u32('Lmax', lmax).u32('blank', g.blank)
    .u32('sT', x.strides[0]!).u32('sN', x.strides[1]!).u32('offX', x.offset).u32('offT', targets.offset)
    .u32('count', g.targetLengths ? 0 : 1).u32('S', g.width)
    .u32('mean', g.reduction === 'mean' ? 1 : 0).u32('none', g.reduction === 'none' ? 1 : 0).u32('zeroInf', g.zeroInfinity ? 1 : 0)
    .f32('inf', Infinity).f32('nan', NaN);
}

const HEADER = (params: Params, outputs: string, seqAccess: 'read' | 'read_write'): string => `${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> lp: array<f32>;
@group(0) @binding(2) var<storage, ${seqAccess}> seq: array<i32>;
@group(0) @binding(3) var<storage, read> tg: array<i32>;
${outputs}
${MATH_HELPERS}
${LOG_HELPERS}`;

/** The sequence's lengths; `ll` reads its log-likelihood from the last frame of alpha. */
const SEQUENCE = `
  let n = wid.x;
  let tn = u32(seq[3u * n]);
  var sn = u32(seq[3u * n + 1u]);
  let off = u32(seq[3u * n + 2u]);
  if (p.count == 1u) {
    sn = 0u;
    for (var k = 0u; k < p.S; k++) { if (tg[p.offT + off + k] >= 0) { sn++; } }
  }
  let L = 2u * sn + 1u;
  let a0 = n * p.T * p.Lmax;`;

const LOG_LIKELIHOOD = `
  let last = a0 + (tn - 1u) * p.Lmax;
  var ll = alpha[last + L - 1u];
  if (L > 1u) { ll = lse2_(ll, alpha[last + L - 2u]); }
  let impossible = ll < -1e37;`;

/** Strides of `logProbs` the kernels can read directly: classes contiguous. */
function classContiguous(x: Tensor): Tensor {
  return x.strides[2] === 1 ? x.alias() : x.contiguous();
}

/** Targets as a flat int32 tensor the kernels index with the offsets (host targets were checked by `ctcGeometry`). */
function flatTargets(op: string, targets: Tensor | Lengths): Tensor {
  // A zero-length binding is not allowed; one unused label keeps the buffer valid.
  if (targets instanceof Tensor) {
    targets.assertAlive();
    if (targets.dtype !== 'int32') throw new TypeError(`${op}: targets must be int32, got ${targets.dtype}`);
    if (targets.size === 0) return tensor(Int32Array.from([0]), { dtype: 'int32' });
    const c = targets.contiguous();
    const flat = c.reshape([targets.size]);
    c.dispose();
    return flat;
  }
  return tensor(Int32Array.from(targets.length ? targets : [0]), { dtype: 'int32' });
}

/**
 * The loss (reduced as `opts.reduction` says) and what `ctcLossBackward` needs. `targets`:
 * int32 [N, S] padded or [Σ target lengths] concatenated, as a tensor or a host array (a host
 * array whose length is not the lengths' sum is read as N padded rows). Input lengths are host
 * values, as the dispatch is sized by them; target lengths are host values or null: then each
 * padded row's labels >= 0 count (transformers' Wav2Vec2ForCTC with its -100 padding), on the
 * GPU for GPU targets, so a training step reads nothing back.
 */
export function ctcLossForward(logProbs: Tensor, targets: Tensor | Lengths, inputLengths: Lengths, targetLengths: Lengths | null, opts: CtcLossOptions = {}): CtcForwardResult {
  const op = 'ctcLoss';
  checkFloat(op, 'logProbs', logProbs);
  const g = ctcGeometry(op, logProbs.shape, targets, inputLengths, targetLengths, opts);
  const lmax = 2 * (g.targetLengths ? Math.max(0, ...g.targetLengths) : g.width) + 1;
  const x = classContiguous(logProbs);
  const tg = flatTargets(op, targets);
  const meta = tensor(Int32Array.from(g.inputLengths.flatMap((l, n) => [l, g.targetLengths?.[n] ?? 0, g.offsets[n]!])), { shape: [g.N, 3], dtype: 'int32' });
  const alpha = Tensor.empty([g.N, g.T, lmax]);
  const perSeq = Tensor.empty([g.N]);
  const params = ctcParams(g, x, tg, lmax);
  const code = (): string => `${HEADER(params, `@group(0) @binding(4) var<storage, read_write> alpha: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;`, 'read_write')}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
${SEQUENCE}
  for (var t = 0u; t < p.T; t++) {
    if (t < tn) {
      for (var s = lid.x; s < L; s += ${WG}u) {
        let l = label_(s, off);
        let x = logProb_(t, n, l);
        var a = NEG;
        if (t == 0u) {
          if (s < 2u) { a = x; }
        } else {
          let q = a0 + (t - 1u) * p.Lmax + s;
          var a2 = NEG;
          var a3 = NEG;
          if (s > 0u) { a2 = alpha[q - 1u]; }
          if (s > 1u && l != p.blank && l != label_(s - 2u, off)) { a3 = alpha[q - 2u]; }
          a = lse3_(alpha[q], a2, a3) + x;
        }
        alpha[a0 + t * p.Lmax + s] = a;
      }
    }
    storageBarrier();
    workgroupBarrier();
  }
  if (lid.x == 0u) {
${LOG_LIKELIHOOD}
    var nll = select(-ll, p.inf, impossible);
    if (impossible && p.zeroInf == 1u) { nll = 0.0; }
    if (p.mean == 1u) { nll = nll / f32(max(sn, 1u)); }
    loss[n] = nll;
    // The backward reads the counted length from here.
    seq[3u * n + 1u] = i32(sn);
  }
}`;
  engine().dispatch({ key: op, get code() { return code(); }, params, buffers: [x.buffer, meta.buffer, tg.buffer, alpha.buffer, perSeq.buffer], workgroups: [g.N], label: op });
  x.dispose();
  let loss = perSeq;
  if (g.reduction !== 'none') {
    loss = g.reduction === 'mean' ? mean(perSeq) : sum(perSeq);
    perSeq.dispose();
  }
  return { loss, alpha, meta, targets: tg };
}

/** The loss alone; see `ctcLossForward`. */
export function ctcLoss(logProbs: Tensor, targets: Tensor | Lengths, inputLengths: Lengths, targetLengths: Lengths | null, opts: CtcLossOptions = {}): Tensor {
  const r = ctcLossForward(logProbs, targets, inputLengths, targetLengths, opts);
  r.alpha.dispose();
  r.meta.dispose();
  r.targets.dispose();
  return r.loss;
}

/**
 * dLoss/dlogProbs [T, N, C] (PyTorch's convention, see the header) from the forward's alpha,
 * meta and targets and the loss's gradient (one element, or [N] for 'none').
 */
export function ctcLossBackward(logProbs: Tensor, saved: Omit<CtcForwardResult, 'loss'>, gradLoss: Tensor, opts: CtcLossOptions = {}): Tensor {
  const op = 'ctcLossBackward';
  checkFloat(op, 'logProbs', logProbs);
  checkFloat(op, 'gradLoss', gradLoss);
  const [T, N, C] = logProbs.shape as [number, number, number];
  const { alpha, meta, targets } = saved;
  if (alpha.rank !== 3 || alpha.shape[0] !== N || alpha.shape[1] !== T) {
    throw new RangeError(`${op}: alpha ${fmt(alpha.shape)} does not belong to logProbs ${fmt(logProbs.shape)}`);
  }
  const reduction = opts.reduction ?? 'mean';
  if (reduction === 'none' ? gradLoss.size !== N : gradLoss.size !== 1) {
    throw new RangeError(`${op}: gradLoss has shape ${fmt(gradLoss.shape)}; expected ${reduction === 'none' ? `[${N}]` : 'one element'} for reduction '${reduction}'`);
  }
  // The forward left each sequence's target length in `meta`: nothing is counted again.
  const g: CtcGeometry = { T, N, C, blank: opts.blank ?? 0, reduction, zeroInfinity: opts.zeroInfinity ?? false, offsets: [], inputLengths: [], targetLengths: [], width: 0 };
  const lmax = alpha.shape[2]!;
  const x = classContiguous(logProbs);
  const gl = gradLoss.contiguous();
  const beta = Tensor.empty(alpha.shape);
  const dx = Tensor.empty([T, N, C]);
  const params = ctcParams(g, x, targets, lmax).u32('offG', gl.offset);
  const code = (): string => `${HEADER(params, `@group(0) @binding(4) var<storage, read> alpha: array<f32>;
@group(0) @binding(5) var<storage, read> gl: array<f32>;
@group(0) @binding(6) var<storage, read_write> beta: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;`, 'read')}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
${SEQUENCE}
  for (var k = 0u; k < p.T; k++) {
    let t = p.T - 1u - k;
    if (t < tn) {
      for (var s = lid.x; s < L; s += ${WG}u) {
        let l = label_(s, off);
        let x = logProb_(t, n, l);
        var b = NEG;
        if (t == tn - 1u) {
          if (s + 2u >= L) { b = x; }
        } else {
          let q = a0 + (t + 1u) * p.Lmax + s;
          var b2 = NEG;
          var b3 = NEG;
          if (s + 1u < L) { b2 = beta[q + 1u]; }
          if (s + 2u < L && l != p.blank && l != label_(s + 2u, off)) { b3 = beta[q + 2u]; }
          b = lse3_(beta[q], b2, b3) + x;
        }
        beta[a0 + t * p.Lmax + s] = b;
      }
    }
    storageBarrier();
    workgroupBarrier();
  }
${LOG_LIKELIHOOD}
  let nll = -ll;
  var scale = gl[p.offG + select(0u, n, p.none == 1u)];
  if (p.mean == 1u) { scale = scale / (f32(p.N) * f32(max(sn, 1u))); }
  for (var i = lid.x; i < p.T * p.C; i += ${WG}u) {
    let t = i / p.C;
    let c = i % p.C;
    var d = 0.0;
    if (t < tn) {
      if (impossible) {
        d = select(p.nan, 0.0, p.zeroInf == 1u);
      } else {
        // lcab = log Σ alpha·beta over the positions whose label is c (online log-sum-exp).
        var m = NEG;
        var sum = 0.0;
        let row = a0 + t * p.Lmax;
        for (var s = 0u; s < L; s++) {
          if (label_(s, off) != c) { continue; }
          let v = alpha[row + s] + beta[row + s];
          if (v > m) { sum = sum * exp(m - v) + 1.0; m = v; } else { sum += exp(v - m); }
        }
        let x = logProb_(t, n, c);
        var post = 0.0;
        if (sum > 0.0 && m > -1e37) { post = exp(m + log(sum) + nll - x); }
        d = (exp(x) - post) * scale;
      }
    }
    dx[t * p.N * p.C + n * p.C + c] = d;
  }
}`;
  engine().dispatch({ key: op, get code() { return code(); }, params, buffers: [x.buffer, meta.buffer, targets.buffer, alpha.buffer, gl.buffer, beta.buffer, dx.buffer], workgroups: [N], label: op });
  x.dispose();
  gl.dispose();
  beta.dispose();
  return dx;
}

// CPU references -----------------------------------------------------------------------

function logAdd(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  const m = Math.max(a, b);
  return m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}

interface CpuCtcSequence {
  labels: number[];
  alpha: number[][];
  beta: number[][];
  ll: number;
}

function cpuSequence(lp: HostTensor, n: number, tn: number, targets: number[], blank: number): CpuCtcSequence {
  const [, N, C] = lp.shape as [number, number, number];
  const labels = [blank, ...targets.flatMap((l) => [l, blank])];
  const L = labels.length;
  const at = (t: number, c: number): number => lp.data[(t * N + n) * C + c]!;
  const skip = (s: number, dir: 1 | -1): boolean => labels[s] !== blank && labels[s + 2 * dir] !== undefined && labels[s] !== labels[s + 2 * dir];
  const alpha = Array.from({ length: tn }, () => new Array<number>(L).fill(-Infinity));
  const beta = Array.from({ length: tn }, () => new Array<number>(L).fill(-Infinity));
  for (let s = 0; s < Math.min(2, L); s++) alpha[0]![s] = at(0, labels[s]!);
  for (let t = 1; t < tn; t++) {
    for (let s = 0; s < L; s++) {
      let a = alpha[t - 1]![s]!;
      if (s > 0) a = logAdd(a, alpha[t - 1]![s - 1]!);
      if (s > 1 && skip(s, -1)) a = logAdd(a, alpha[t - 1]![s - 2]!);
      alpha[t]![s] = a + at(t, labels[s]!);
    }
  }
  for (let s = Math.max(0, L - 2); s < L; s++) beta[tn - 1]![s] = at(tn - 1, labels[s]!);
  for (let t = tn - 2; t >= 0; t--) {
    for (let s = 0; s < L; s++) {
      let b = beta[t + 1]![s]!;
      if (s + 1 < L) b = logAdd(b, beta[t + 1]![s + 1]!);
      if (s + 2 < L && skip(s, 1)) b = logAdd(b, beta[t + 1]![s + 2]!);
      beta[t]![s] = b + at(t, labels[s]!);
    }
  }
  const ll = L > 1 ? logAdd(alpha[tn - 1]![L - 1]!, alpha[tn - 1]![L - 2]!) : alpha[tn - 1]![0]!;
  return { labels, alpha, beta, ll };
}

function cpuTargets(g: CtcGeometry, targets: ArrayLike<number>, n: number): number[] {
  return Array.from({ length: g.targetLengths![n]! }, (_, k) => targets[g.offsets[n]! + k]!);
}

/** Float64 `ctcLoss`; `targets` as a host tensor of shape [N, S] or [Σ target lengths]. */
export function cpuCtcLoss(logProbs: HostTensor, targets: HostTensor, inputLengths: Lengths, targetLengths: Lengths | null, opts: CtcLossOptions = {}): HostTensor {
  const g = ctcGeometry('cpuCtcLoss', logProbs.shape, targets, inputLengths, targetLengths, opts);
  const losses = g.inputLengths.map((tn, n) => {
    const { ll } = cpuSequence(logProbs, n, tn, cpuTargets(g, targets.data, n), g.blank);
    const nll = ll === -Infinity ? (g.zeroInfinity ? 0 : Infinity) : -ll;
    return g.reduction === 'mean' ? nll / Math.max(g.targetLengths![n]!, 1) : nll;
  });
  if (g.reduction === 'none') return host([g.N], losses);
  const total = losses.reduce((a, b) => a + b, 0);
  return host([], [g.reduction === 'mean' ? total / g.N : total]);
}

/** Float64 `ctcLossBackward` (PyTorch's convention); `gradLoss` one element or [N] for 'none'. */
export function cpuCtcLossBackward(logProbs: HostTensor, targets: HostTensor, inputLengths: Lengths, targetLengths: Lengths | null, gradLoss: HostTensor, opts: CtcLossOptions = {}): HostTensor {
  const g = ctcGeometry('cpuCtcLossBackward', logProbs.shape, targets, inputLengths, targetLengths, opts);
  const { T, N, C } = g;
  const out = host([T, N, C]);
  g.inputLengths.forEach((tn, n) => {
    const { labels, alpha, beta, ll } = cpuSequence(logProbs, n, tn, cpuTargets(g, targets.data, n), g.blank);
    let scale = gradLoss.data[g.reduction === 'none' ? n : 0]!;
    if (g.reduction === 'mean') scale /= N * Math.max(g.targetLengths![n]!, 1);
    for (let t = 0; t < tn; t++) {
      for (let c = 0; c < C; c++) {
        const i = (t * N + n) * C + c;
        if (ll === -Infinity) {
          out.data[i] = g.zeroInfinity ? 0 : NaN;
          continue;
        }
        let lcab = -Infinity;
        labels.forEach((l, s) => {
          if (l === c) lcab = logAdd(lcab, alpha[t]![s]! + beta[t]![s]!);
        });
        const x = logProbs.data[i]!;
        out.data[i] = (Math.exp(x) - Math.exp(lcab - ll - x)) * scale;
      }
    }
  });
  return out;
}
