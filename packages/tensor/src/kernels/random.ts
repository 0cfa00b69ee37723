/**
 * Seeded random numbers from a counter-based hash (PCG output function), so every element
 * is a pure function of (seed, stream, index): reproducible on any adapter, identical to
 * the CPU reference bit for bit for `rand`, and cheap to regenerate (dropout masks).
 */
import { engine } from '../engine.js';
import { host, type HostTensor } from '../host.js';
import { Params } from '../params.js';
import { numel, type Shape } from '../shape.js';
import { Tensor } from '../tensor.js';
import { linearIndex, MAIN_ARGS, WG } from './wgsl.js';

export const HASH_WGSL = /* wgsl */ `
fn pcg_(x: u32) -> u32 {
  let s = x * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}
fn rand_(seed: u32, stream: u32, i: u32) -> f32 {
  return f32(pcg_(i ^ pcg_(seed ^ pcg_(stream))) >> 8u) * 5.9604644775390625e-8;
}
`;

export function pcg(x: number): number {
  const s = (Math.imul(x >>> 0, 747796405) + 2891336453) >>> 0;
  const w = Math.imul((s >>> ((s >>> 28) + 4)) ^ s, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}

export function randValue(seed: number, stream: number, i: number): number {
  return (pcg((i ^ pcg((seed ^ pcg(stream)) >>> 0)) >>> 0) >>> 8) * 2 ** -24;
}

/** The global generator: `manualSeed` as in PyTorch; each draw advances the stream. */
const generator = { seed: 0x2545f491, stream: 0 };

export function manualSeed(seed: number): void {
  generator.seed = seed >>> 0;
  generator.stream = 0;
}

/** Takes the next (seed, stream) pair; ops that need fresh randomness call this. */
export function nextRandomKey(seed?: number): { seed: number; stream: number } {
  if (seed !== undefined) return { seed: seed >>> 0, stream: 0 };
  return { seed: generator.seed, stream: generator.stream++ };
}

/** Generator state, for checkpoints that must resume bit for bit. */
export function getRngState(): { seed: number; stream: number } {
  return { ...generator };
}

export function setRngState(s: { seed: number; stream: number }): void {
  generator.seed = s.seed >>> 0;
  generator.stream = s.stream >>> 0;
}

export interface RandomOptions {
  seed?: number;
  /** rand: [low, high); randn: mean and std. */
  low?: number;
  high?: number;
  mean?: number;
  std?: number;
}

function randomKernel(shape: Shape, normal: boolean, opts: RandomOptions): Tensor {
  const e = engine();
  const out = Tensor.empty(shape);
  const n = numel(shape);
  const key = nextRandomKey(opts.seed);
  const label = normal ? 'randn' : 'rand';
  const value = normal
    ? `p.a + p.b * sqrt(-2.0 * log(1.0 - rand_(p.seed, p.stream, 2u * i))) * cos(6.283185307179586 * rand_(p.seed, p.stream, 2u * i + 1u))`
    : `p.a + p.b * rand_(p.seed, p.stream, i)`;
  // Each element's value depends on its index in the whole tensor, so chunks pass theirs.
  for (const { start, count } of e.elementRuns(n, out.fitsBinding)) {
    const bound = e.bindElements(out.buffer, start, count, label);
    const params = new Params()
      .u32('n', count)
      .u32('start', start)
      .u32('off', bound.offset)
      .u32('seed', key.seed)
      .u32('stream', key.stream)
      .f32('a', normal ? (opts.mean ?? 0) : (opts.low ?? 0))
      .f32('b', normal ? (opts.std ?? 1) : (opts.high ?? 1) - (opts.low ?? 0));
    const code = (): string => /* wgsl */ `
${params.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${HASH_WGSL}
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let j = ${linearIndex()};
  if (j >= p.n) { return; }
  let i = p.start + j;
  out[p.off + j] = ${value};
}`;
    e.dispatch({ key: label, get code() { return code(); }, params, buffers: [bound.resource], workgroups: e.grid(Math.ceil(count / WG)), label });
  }
  return out;
}

/** Uniform on [low, high) (default [0, 1)). */
export function rand(shape: Shape, opts: RandomOptions = {}): Tensor {
  return randomKernel(shape, false, opts);
}

/** Normal with `mean` and `std` (default 0, 1), by Box–Muller. */
export function randn(shape: Shape, opts: RandomOptions = {}): Tensor {
  return randomKernel(shape, true, opts);
}

export function cpuRand(shape: Shape, seed: number, stream: number, low = 0, high = 1): HostTensor {
  const out = host(shape);
  for (let i = 0; i < out.data.length; i++) out.data[i] = low + (high - low) * randValue(seed, stream, i);
  return out;
}

export function cpuRandn(shape: Shape, seed: number, stream: number, mean = 0, std = 1): HostTensor {
  const out = host(shape);
  for (let i = 0; i < out.data.length; i++) {
    const u1 = randValue(seed, stream, 2 * i);
    const u2 = randValue(seed, stream, 2 * i + 1);
    out.data[i] = mean + std * Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2);
  }
  return out;
}
