/**
 * Fused optimizer updates: one kernel per parameter tensor reads the gradient and the state
 * and writes the parameter and the state in place, matching torch.optim's update rules
 * (SGD with momentum/dampening/Nesterov and L2 weight decay; Adam with L2 weight decay;
 * AdamW with decoupled decay). Hyper-parameters travel as uniforms, so a schedule changing
 * the learning rate every step compiles nothing. An optional one-element `gradScale` tensor
 * multiplies the gradient on the GPU (global-norm clipping without a host readback).
 */
import { engine } from '../engine.js';
import { Params } from '../params.js';
import type { Tensor } from '../tensor.js';
import { linearIndex, MAIN_ARGS, WG } from './wgsl.js';

export interface SgdHyper {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  /** The momentum buffer is initialised to the gradient on the first step, as PyTorch. */
  firstStep: boolean;
}

export interface AdamHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** AdamW: decay the weights directly instead of adding weightDecay·p to the gradient. */
  decoupled: boolean;
  /** 1-based step count, for the bias corrections. */
  step: number;
}

function checkParam(op: string, p: Tensor, g: Tensor, state: Tensor[]): void {
  for (const t of [p, g, ...state]) {
    t.assertAlive();
    if (!t.isContiguous || t.dtype !== 'float32' || t.size !== p.size) {
      throw new Error(`${op}: parameter, gradient and state must be contiguous float32 tensors of ${p.size} elements; got ${t}`);
    }
  }
}

/** Dispatches `body` over the parameter's elements; tensors over the binding limit run in
 * ranges, one dispatch each (every tensor is contiguous, so a range is one per tensor). */
function run(op: string, p: Tensor, g: Tensor, state: Tensor[], hyper: () => Params, body: string, gradScale?: Tensor | null): void {
  const e = engine();
  const n = p.size;
  if (n === 0) return;
  const tensors = [p, g, ...state];
  const scale = gradScale ? gradScale.binding(op) : null;
  const decls = [
    '@group(0) @binding(1) var<storage, read_write> param: array<f32>;',
    '@group(0) @binding(2) var<storage, read> grad: array<f32>;',
    ...state.map((_, i) => `@group(0) @binding(${3 + i}) var<storage, read_write> s${i}: array<f32>;`),
    ...(scale ? [`@group(0) @binding(${3 + state.length}) var<storage, read> scale: array<f32>;`] : []),
  ];
  for (const { start, count } of e.elementRuns(n, tensors.every((t) => t.fitsBinding))) {
    const [bp, bg, ...bs] = tensors.map((t) => e.bindElements(t.buffer, t.offset + start, count, op));
    const ps = hyper().u32('n', count).u32('offP', bp!.offset).u32('offG', bg!.offset);
    bs.forEach((b, i) => ps.u32(`offS${i}`, b.offset));
    if (scale) ps.u32('offScale', scale.offset);
    const code = (): string => /* wgsl */ `
${ps.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
${decls.join('\n')}
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let i = ${linearIndex()};
  if (i >= p.n) { return; }
  let w = param[p.offP + i];
  let g0 = grad[p.offG + i]${scale ? ' * scale[p.offScale]' : ''};
${body}
}`;
    e.dispatch({
      key: `${op}/${state.length}/${scale ? 'scaled' : ''}/${body}`,
      get code() { return code(); },
      params: ps, label: op,
      buffers: [bp!.resource, bg!.resource, ...bs.map((b) => b.resource), ...(scale ? [scale.resource] : [])],
      workgroups: e.grid(Math.ceil(count / WG)),
    });
  }
}

/** One SGD step on `param` in place; `momentumBuffer` is required when momentum != 0. */
export function sgdStep(param: Tensor, grad: Tensor, momentumBuffer: Tensor | null, h: SgdHyper, gradScale?: Tensor | null): void {
  const state = momentumBuffer && h.momentum !== 0 ? [momentumBuffer] : [];
  checkParam('sgdStep', param, grad, state);
  const hyper = (): Params => new Params().f32('lr', h.lr).f32('momentum', h.momentum).f32('dampening', h.dampening).f32('wd', h.weightDecay);
  const mom = state.length > 0;
  const body = `
  var d = g0 + p.wd * w;
${mom ? `  let buf = ${h.firstStep ? 'd' : 's0[p.offS0 + i] * p.momentum + (1.0 - p.dampening) * d'};
  s0[p.offS0 + i] = buf;
  d = ${h.nesterov ? 'd + p.momentum * buf' : 'buf'};` : ''}
  param[p.offP + i] = w - p.lr * d;`;
  run('sgdStep', param, grad, state, hyper, body, gradScale);
}

/** One Adam / AdamW step on `param` in place, with first and second moment buffers. */
export function adamStep(param: Tensor, grad: Tensor, expAvg: Tensor, expAvgSq: Tensor, h: AdamHyper, gradScale?: Tensor | null): void {
  checkParam('adamStep', param, grad, [expAvg, expAvgSq]);
  if (!Number.isInteger(h.step) || h.step < 1) throw new RangeError(`adamStep: step must be a positive integer, got ${h.step}`);
  const bc1 = 1 - h.beta1 ** h.step;
  const bc2 = 1 - h.beta2 ** h.step;
  const hyper = (): Params => new Params()
    .f32('lr', h.lr).f32('b1', h.beta1).f32('b2', h.beta2).f32('eps', h.eps).f32('wd', h.weightDecay)
    .f32('stepSize', h.lr / bc1).f32('bc2Sqrt', Math.sqrt(bc2));
  const body = `
  ${h.decoupled ? 'let w0 = w * (1.0 - p.lr * p.wd);\n  let g = g0;' : 'let w0 = w;\n  let g = g0 + p.wd * w;'}
  let m = p.b1 * s0[p.offS0 + i] + (1.0 - p.b1) * g;
  let v = p.b2 * s1[p.offS1 + i] + (1.0 - p.b2) * g * g;
  s0[p.offS0 + i] = m;
  s1[p.offS1 + i] = v;
  param[p.offP + i] = w0 - p.stepSize * m / (sqrt(v) / p.bc2Sqrt + p.eps);`;
  run('adamStep', param, grad, [expAvg, expAvgSq], hyper, body, gradScale);
}

/** Multiplies `t` in place by the scalar held in the one-element tensor `scale`. */
export function scaleInPlace(t: Tensor, scale: Tensor): void {
  t.assertAlive();
  if (!t.isContiguous || t.dtype !== 'float32') throw new Error(`scaleInPlace: expected a contiguous float32 tensor, got ${t}`);
  const e = engine();
  const n = t.size;
  if (n === 0) return;
  const s = scale.binding('scaleInPlace');
  for (const { start, count } of e.elementRuns(n, t.fitsBinding)) {
    const x = e.bindElements(t.buffer, t.offset + start, count, 'scaleInPlace');
    const params = new Params().u32('n', count).u32('off', x.offset).u32('offScale', s.offset);
    const code = (): string => /* wgsl */ `
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let i = ${linearIndex()};
  if (i >= p.n) { return; }
  x[p.off + i] = x[p.off + i] * scale[p.offScale];
}`;
    e.dispatch({ key: 'scaleInPlace', get code() { return code(); }, params, buffers: [x.resource, s.resource], workgroups: e.grid(Math.ceil(count / WG)), label: 'scaleInPlace' });
  }
}

// CPU references (float64), the same rules.

export function cpuSgdStep(p: Float64Array, g: Float64Array, buf: Float64Array | null, h: SgdHyper): void {
  for (let i = 0; i < p.length; i++) {
    let d = g[i]! + h.weightDecay * p[i]!;
    if (buf && h.momentum !== 0) {
      buf[i] = h.firstStep ? d : h.momentum * buf[i]! + (1 - h.dampening) * d;
      d = h.nesterov ? d + h.momentum * buf[i]! : buf[i]!;
    }
    p[i] = p[i]! - h.lr * d;
  }
}

export function cpuAdamStep(p: Float64Array, g: Float64Array, m: Float64Array, v: Float64Array, h: AdamHyper): void {
  const bc1 = 1 - h.beta1 ** h.step;
  const bc2 = 1 - h.beta2 ** h.step;
  for (let i = 0; i < p.length; i++) {
    let w = p[i]!;
    let gi = g[i]!;
    if (h.decoupled) w *= 1 - h.lr * h.weightDecay;
    else gi += h.weightDecay * w;
    m[i] = h.beta1 * m[i]! + (1 - h.beta1) * gi;
    v[i] = h.beta2 * v[i]! + (1 - h.beta2) * gi * gi;
    p[i] = w - (h.lr / bc1) * m[i]! / (Math.sqrt(v[i]!) / Math.sqrt(bc2) + h.eps);
  }
}
