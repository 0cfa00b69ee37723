/**
 * Elementwise ops: one table of unary, binary and ternary ops (forward WGSL, float64 CPU
 * reference and backward expressions), one generic strided/broadcasting kernel that all of
 * them compile to, and the strided copy behind `contiguous()`.
 */
import { engine, type BoundElements } from '../engine.js';
import { broadcastIndex, host, type HostTensor } from '../host.js';
import { Params } from '../params.js';
import { broadcastShapes, collapseDims, contiguousStrides, numel, shapeEq, type Shape } from '../shape.js';
import { registerCast, registerContiguousCopy, Tensor, type DType } from '../tensor.js';
import { transposedCopy } from './transpose.js';
import { enableF16, erf, linearIndex, MAIN_ARGS, MATH_HELPERS, storageType, usedDims, WG } from './wgsl.js';

type Expr1 = (x: string) => string;
type Expr2 = (a: string, b: string) => string;

/** Backward expressions take the WGSL names of the inputs, the output y and the upstream g. */
export interface UnaryOp {
  wgsl: Expr1;
  cpu: (x: number, alpha: number, beta: number) => number;
  /** dL/dx in terms of x, y, g (null: not differentiable, the gradient is zero). */
  grad: ((x: string, y: string, g: string) => string) | null;
  int?: boolean;
}

export interface BinaryOp {
  wgsl: Expr2;
  /** The expression on int32 operands, where it differs (no NaN to keep). */
  wgslInt?: Expr2;
  cpu: (a: number, b: number) => number;
  gradA: ((a: string, b: string, y: string, g: string) => string) | null;
  gradB: ((a: string, b: string, y: string, g: string) => string) | null;
  int?: boolean;
  /** Output is a 0/1 float32 mask whatever the input dtype. */
  compare?: boolean;
}

const SQRT1_2 = Math.SQRT1_2;
const SQRT_2_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const sigmoidF = (x: number): number => 1 / (1 + Math.exp(-x));
const step = (c: string): string => `select(0.0, 1.0, ${c})`;

export const UNARY = {
  identity: { wgsl: (x) => x, cpu: (x) => x, grad: (_x, _y, g) => g, int: true },
  neg: { wgsl: (x) => `-(${x})`, cpu: (x) => -x, grad: (_x, _y, g) => `-(${g})`, int: true },
  abs: { wgsl: (x) => `abs(${x})`, cpu: Math.abs, grad: (x, _y, g) => `${g} * sign(${x})`, int: true },
  sign: { wgsl: (x) => `sign(${x})`, cpu: Math.sign, grad: null, int: true },
  exp: { wgsl: (x) => `exp(${x})`, cpu: Math.exp, grad: (_x, y, g) => `${g} * ${y}` },
  log: { wgsl: (x) => `log(${x})`, cpu: Math.log, grad: (x, _y, g) => `${g} / ${x}` },
  sqrt: { wgsl: (x) => `sqrt(${x})`, cpu: Math.sqrt, grad: (_x, y, g) => `${g} * 0.5 / ${y}` },
  rsqrt: { wgsl: (x) => `inverseSqrt(${x})`, cpu: (x) => 1 / Math.sqrt(x), grad: (_x, y, g) => `${g} * -0.5 * ${y} * ${y} * ${y}` },
  square: { wgsl: (x) => `${x} * ${x}`, cpu: (x) => x * x, grad: (x, _y, g) => `2.0 * ${x} * ${g}`, int: true },
  reciprocal: { wgsl: (x) => `1.0 / ${x}`, cpu: (x) => 1 / x, grad: (_x, y, g) => `-${g} * ${y} * ${y}` },
  sin: { wgsl: (x) => `sin(${x})`, cpu: Math.sin, grad: (x, _y, g) => `${g} * cos(${x})` },
  cos: { wgsl: (x) => `cos(${x})`, cpu: Math.cos, grad: (x, _y, g) => `-${g} * sin(${x})` },
  floor: { wgsl: (x) => `floor(${x})`, cpu: Math.floor, grad: null },
  ceil: { wgsl: (x) => `ceil(${x})`, cpu: Math.ceil, grad: null },
  round: { wgsl: (x) => `round(${x})`, cpu: roundHalfEven, grad: null },
  relu: { wgsl: (x) => `keepNan_(${x}, max(${x}, 0.0))`, cpu: (x) => Math.max(x, 0), grad: (x, _y, g) => `${g} * ${step(`${x} > 0.0 || isNan_(${x})`)}` },
  relu6: { wgsl: (x) => `keepNan_(${x}, clamp(${x}, 0.0, 6.0))`, cpu: (x) => Math.min(Math.max(x, 0), 6), grad: (x, _y, g) => `${g} * ${step(`(${x} > 0.0 && ${x} < 6.0) || isNan_(${x})`)}` },
  // PyTorch's gradients: hardsigmoid's is 1/6 strictly inside (-3, 3); hardswish's is
  // x/3 + 1/2 on [-3, 3] and 1 above, so a NaN input passes g through as PyTorch's does.
  hardsigmoid: { wgsl: (x) => `keepNan_(${x}, clamp(${x} / 6.0 + 0.5, 0.0, 1.0))`, cpu: (x) => Math.min(Math.max(x / 6 + 0.5, 0), 1), grad: (x, _y, g) => `${g} * ${step(`${x} > -3.0 && ${x} < 3.0`)} / 6.0` },
  hardswish: {
    wgsl: (x) => `keepNan_(${x}, ${x} * clamp(${x} + 3.0, 0.0, 6.0) / 6.0)`,
    cpu: (x) => (x * Math.min(Math.max(x + 3, 0), 6)) / 6,
    grad: (x, _y, g) => `${g} * select(select(1.0, ${x} / 3.0 + 0.5, ${x} <= 3.0), 0.0, ${x} < -3.0)`,
  },
  leakyRelu: { wgsl: (x) => `select(p.alpha * ${x}, ${x}, ${x} > 0.0)`, cpu: (x, a) => (x > 0 ? x : a * x), grad: (x, _y, g) => `${g} * select(p.alpha, 1.0, ${x} > 0.0)` },
  gelu: {
    wgsl: (x) => `0.5 * ${x} * (1.0 + erf_(${x} * ${SQRT1_2}))`,
    cpu: (x) => 0.5 * x * (1 + erf(x * SQRT1_2)),
    grad: (x, _y, g) => `${g} * (0.5 * (1.0 + erf_(${x} * ${SQRT1_2})) + ${x} * exp(-0.5 * ${x} * ${x}) * ${INV_SQRT_2PI})`,
  },
  geluTanh: {
    wgsl: (x) => `0.5 * ${x} * (1.0 + tanh_(${SQRT_2_PI} * (${x} + 0.044715 * ${x} * ${x} * ${x})))`,
    cpu: (x) => 0.5 * x * (1 + Math.tanh(SQRT_2_PI * (x + 0.044715 * x ** 3))),
    grad: (x, _y, g) =>
      `${g} * geluTanhGrad_(${x})`,
  },
  silu: { wgsl: (x) => `${x} * sigmoid_(${x})`, cpu: (x) => x * sigmoidF(x), grad: (x, _y, g) => `${g} * sigmoid_(${x}) * (1.0 + ${x} * (1.0 - sigmoid_(${x})))` },
  sigmoid: { wgsl: (x) => `sigmoid_(${x})`, cpu: sigmoidF, grad: (_x, y, g) => `${g} * ${y} * (1.0 - ${y})` },
  tanh: { wgsl: (x) => `tanh_(${x})`, cpu: Math.tanh, grad: (_x, y, g) => `${g} * (1.0 - ${y} * ${y})` },
  softplus: { wgsl: (x) => `select(log(1.0 + exp(${x})), ${x}, ${x} > 20.0)`, cpu: (x) => (x > 20 ? x : Math.log1p(Math.exp(x))), grad: (x, _y, g) => `${g} * sigmoid_(${x})` },
  clamp: { wgsl: (x) => `keepNan_(${x}, clamp(${x}, p.alpha, p.beta))`, cpu: (x, a, b) => Math.min(Math.max(x, a), b), grad: (x, _y, g) => `${g} * ${step(`${x} >= p.alpha && ${x} <= p.beta`)}` },
  powScalar: { wgsl: (x) => `pow_(${x}, p.alpha)`, cpu: (x, a) => x ** a, grad: (x, _y, g) => `${g} * p.alpha * pow_(${x}, p.alpha - 1.0)` },
} satisfies Record<string, UnaryOp>;

export const BINARY = {
  add: { wgsl: (a, b) => `${a} + ${b}`, cpu: (a, b) => a + b, gradA: (_a, _b, _y, g) => g, gradB: (_a, _b, _y, g) => g, int: true },
  sub: { wgsl: (a, b) => `${a} - ${b}`, cpu: (a, b) => a - b, gradA: (_a, _b, _y, g) => g, gradB: (_a, _b, _y, g) => `-${g}`, int: true },
  mul: { wgsl: (a, b) => `${a} * ${b}`, cpu: (a, b) => a * b, gradA: (_a, b, _y, g) => `${g} * ${b}`, gradB: (a, _b, _y, g) => `${g} * ${a}`, int: true },
  div: { wgsl: (a, b) => `${a} / ${b}`, cpu: (a, b) => a / b, gradA: (_a, b, _y, g) => `${g} / ${b}`, gradB: (a, b, _y, g) => `-${g} * ${a} / (${b} * ${b})` },
  pow: {
    wgsl: (a, b) => `pow_(${a}, ${b})`,
    cpu: (a, b) => a ** b,
    gradA: (a, b, _y, g) => `${g} * ${b} * pow_(${a}, ${b} - 1.0)`,
    gradB: (a, _b, y, g) => `select(0.0, ${g} * ${y} * log(${a}), ${a} > 0.0)`,
  },
  maximum: {
    wgsl: (a, b) => `maxNan_(${a}, ${b})`,
    wgslInt: (a, b) => `max(${a}, ${b})`,
    cpu: Math.max,
    gradA: (a, b, _y, g) => `${g} * select(select(0.0, 0.5, ${a} == ${b}), 1.0, ${a} > ${b})`,
    gradB: (a, b, _y, g) => `${g} * select(select(0.0, 0.5, ${a} == ${b}), 1.0, ${b} > ${a})`,
    int: true,
  },
  minimum: {
    wgsl: (a, b) => `minNan_(${a}, ${b})`,
    wgslInt: (a, b) => `min(${a}, ${b})`,
    cpu: Math.min,
    gradA: (a, b, _y, g) => `${g} * select(select(0.0, 0.5, ${a} == ${b}), 1.0, ${a} < ${b})`,
    gradB: (a, b, _y, g) => `${g} * select(select(0.0, 0.5, ${a} == ${b}), 1.0, ${b} < ${a})`,
    int: true,
  },
  eq: { wgsl: (a, b) => step(`${a} == ${b}`), cpu: (a, b) => +(a === b), gradA: null, gradB: null, int: true, compare: true },
  ne: { wgsl: (a, b) => step(`${a} != ${b}`), cpu: (a, b) => +(a !== b), gradA: null, gradB: null, int: true, compare: true },
  lt: { wgsl: (a, b) => step(`${a} < ${b}`), cpu: (a, b) => +(a < b), gradA: null, gradB: null, int: true, compare: true },
  le: { wgsl: (a, b) => step(`${a} <= ${b}`), cpu: (a, b) => +(a <= b), gradA: null, gradB: null, int: true, compare: true },
  gt: { wgsl: (a, b) => step(`${a} > ${b}`), cpu: (a, b) => +(a > b), gradA: null, gradB: null, int: true, compare: true },
  ge: { wgsl: (a, b) => step(`${a} >= ${b}`), cpu: (a, b) => +(a >= b), gradA: null, gradB: null, int: true, compare: true },
} satisfies Record<string, BinaryOp>;

export type UnaryName = keyof typeof UNARY;
export type BinaryName = keyof typeof BINARY;

const EXTRA_HELPERS = /* wgsl */ `
fn pow_(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  if (a < 0.0 && b == floor(b)) {
    let r = pow(-a, b);
    return select(r, -r, (i32(b) & 1) != 0);
  }
  // a var, not a constant: WGSL's constant evaluation rejects infinity.
  var infBits = 0x7f800000u;
  if (a == 0.0) { return select(0.0, bitcast<f32>(infBits), b < 0.0); }
  return pow(a, b);
}
fn geluTanhGrad_(x: f32) -> f32 {
  let u = ${SQRT_2_PI} * (x + 0.044715 * x * x * x);
  let t = tanh_(u);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * ${SQRT_2_PI} * (1.0 + 3.0 * 0.044715 * x * x);
}
`;

/** Consecutive elements per invocation: fewer, longer invocations amortise the index and
 * bounds arithmetic (measured 3-4x on lavapipe for a plain add at 8). */
const PER_INVOCATION = 8;

/** An input of `map`: a tensor (broadcast to the output shape) or a scalar in the uniforms. */
export type MapInput = Tensor | number;

export interface MapOptions {
  /** Output dtype (default: float16 when every tensor input is float16, else float32). */
  dtype?: DType;
  /** Compute in i32 instead of f32 (every tensor input must be int32). */
  int?: boolean;
  /** Extra scalars visible to the expression as p.alpha and p.beta. */
  alpha?: number;
  beta?: number;
  /** Output shape when it is not the broadcast of the inputs' shapes (inputs broadcast to it). */
  shape?: Shape;
  /** Write into this existing tensor (any view, through its strides) instead of a new one. */
  into?: Tensor;
  label?: string;
  /** `expr` is componentwise arithmetic (+, -, *, /) that also holds on vec4<f32> operands
   * beside f32 scalars, so float32 runs may move four elements per load and store. */
  vec4?: boolean;
}

/** How the vec4 kernel reads an input: four elements at once, or one element for all four
 * (broadcast along the innermost dim). */
type VecRead = 'vec' | 'splat';

/**
 * The generic elementwise kernel: `expr` receives one WGSL expression per input (already
 * loaded, broadcast and converted to the compute type) and returns the output expression.
 * Non-contiguous and broadcast inputs are read through their strides; no copies. float16
 * inputs and outputs are computed in f32 and rounded once on store.
 */
export function map(inputs: readonly MapInput[], expr: (v: string[]) => string, opts: MapOptions = {}): Tensor {
  const tensors = inputs.filter((x): x is Tensor => x instanceof Tensor);
  if (tensors.length === 0 && !opts.into && !opts.shape) throw new Error('map() needs a tensor input, `into` or `shape`');
  for (const t of tensors) t.assertAlive();
  const into = opts.into;
  const outShape = into ? [...into.shape] : opts.shape ? [...opts.shape] : broadcastShapes(...tensors.map((t) => t.shape));
  const e = engine();
  const n = numel(outShape);
  const outDtype = into ? into.dtype : (opts.dtype ?? floatResult(tensors));
  if (into && tensors.some((t) => t.storage === into.storage)) {
    throw new Error('map(): an input shares storage with the output view; clone() it first');
  }
  const label = opts.label ?? 'map';
  const out = into ?? Tensor.empty(outShape, outDtype);
  if (n === 0) return out;
  const outDirect = !into || into.isContiguous;
  const T = opts.int ? 'i32' : 'f32';
  const rank = outShape.length;
  const direct = tensors.map((t) => shapeEq(t.shape, outShape) && t.isContiguous);
  // Over the binding limit the output and the same-shaped contiguous inputs are split into
  // ranges, one dispatch each; other inputs must fit whole (they are read by coordinates).
  const chunked = !out.fitsBinding || tensors.some((t) => !t.fitsBinding);
  if (chunked) {
    const why = `${label} splits only a contiguous output and inputs of its shape that are contiguous`;
    if (!outDirect) throw e.tooLarge(label, into!.span * into!.elementBytes, why);
    tensors.forEach((t, k) => {
      if (!direct[k] && !t.fitsBinding) throw e.tooLarge(label, t.span * t.elementBytes, why);
    });
  }
  const coordNeeded = !outDirect || direct.some((d) => !d);
  const strides = tensors.map((t) => {
    const lead = rank - t.rank;
    if (lead < 0) throw new RangeError(`input of shape [${t.shape}] has more dims than the output [${outShape}]`);
    return outShape.map((d, i) => {
      if (i < lead) return 0;
      const s = t.shape[i - lead]!;
      if (s === d) return t.strides[i - lead]!;
      if (s === 1) return 0;
      throw new RangeError(`input of shape [${t.shape}] does not broadcast to [${outShape}]`);
    });
  });
  // Every operand takes part in the collapse; those read or written directly ignore the result.
  const walk = collapseDims(outShape, [outDirect ? contiguousStrides(outShape) : into!.strides, ...strides]);
  const walkStrides = (k: number): readonly number[] => walk.strides[k + 1]!;
  const walkRank = walk.shape.length;
  const params = (count: number, start: number, offOut: number, offs: readonly number[]): Params => {
    const ps = new Params().u32('n', count);
    if (walkRank > 0 && coordNeeded) ps.u32s('shape', walk.shape, walkRank);
    if (chunked) ps.u32('start', start);
    ps.u32('offOut', offOut);
    if (!outDirect) ps.u32s('stOut', walk.strides[0]!, walkRank);
    tensors.forEach((_, k) => {
      ps.u32(`off${k}`, offs[k]!);
      if (!direct[k]) ps.u32s(`st${k}`, walkStrides(k), walkRank);
    });
    let scalars = 0;
    for (const x of inputs) if (!(x instanceof Tensor)) ps.f32(`s${scalars++}`, x);
    return ps.f32('alpha', opts.alpha ?? 0).f32('beta', opts.beta ?? 0);
  };
  let outIndex = 'p.offOut + i';
  if (!outDirect) {
    outIndex = `p.offOut${walk.strides[0]!.map((s, d) => (s === 0 ? '' : ` + c${d} * ${Params.at('p', 'stOut', d)}`)).join('')}`;
  }
  const decls: string[] = [];
  const loads: string[] = [];
  const names: string[] = [];
  let binding = 1;
  tensors.forEach((t, k) => {
    decls.push(`@group(0) @binding(${binding++}) var<storage, read> in${k}: array<${storageType(t.dtype)}>;`);
    const index = direct[k]
      ? `p.off${k} + i`
      : `p.off${k}${walkStrides(k).map((s, d) => (s === 0 ? '' : ` + c${d} * ${Params.at('p', `st${k}`, d)}`)).join('')}`;
    const raw = `in${k}[${index}]`;
    loads.push(`  let v${k} = ${storageType(t.dtype) === T ? raw : `${T}(${raw})`};`);
  });
  let ti = 0;
  let scalarCount = 0;
  for (const x of inputs) {
    if (x instanceof Tensor) names.push(`v${ti++}`);
    else {
      names.push(T === 'i32' ? `i32(p.s${scalarCount})` : `p.s${scalarCount}`);
      scalarCount++;
    }
  }
  const coords: string[] = [];
  if (coordNeeded && walkRank > 0) {
    coords.push(chunked ? '  var r = p.start + i;' : '  var r = i;');
    for (let d = walkRank - 1; d >= 0; d--) {
      const s = Params.at('p', 'shape', d);
      // What is left of the index after the inner dims is the outermost coordinate itself.
      coords.push(d > 0 ? `  let c${d} = r % ${s};` : '  let c0 = r;');
      if (d > 0) coords.push(`  r = r / ${s};`);
    }
  }
  const outT = storageType(outDtype);
  const half = outDtype === 'float16' || tensors.some((t) => t.dtype === 'float16');
  const body = expr(names);
  // Everything the WGSL below depends on besides the uniform values: which operands are read
  // directly or through which dims, their types, the uniform layout, and the expression.
  const layoutKey = `${T}/${outT}/${half ? 'h' : ''}${chunked ? 'c' : ''}${coordNeeded ? 'x' : ''}/r${walkRank}/${outDirect ? 'd' : usedDims(walk.strides[0]!)}/` +
    `${tensors.map((t, k) => `${t.dtype}:${direct[k] ? 'd' : usedDims(walkStrides(k))}`).join(',')}/${inputs.map((x) => (x instanceof Tensor ? 't' : 's')).join('')}/${body}`;
  const scalarCode = (ps: Params): string => /* wgsl */ `
${enableF16(half)}
${ps.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
${decls.join('\n')}
@group(0) @binding(${binding}) var<storage, read_write> out: array<${outT}>;
${MATH_HELPERS}
${EXTRA_HELPERS}
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let first = (${linearIndex()}) * ${PER_INVOCATION}u;
  for (var k = 0u; k < ${PER_INVOCATION}u; k++) {
  let i = first + k;
  if (i >= p.n) { return; }
${coords.join('\n')}
${loads.join('\n')}
  out[${outIndex}] = ${outT}(${body});
  }
}`;
  const bindRun = (t: Tensor, start: number, count: number): BoundElements =>
    e.bindElements(t.storage.buffer, t.offset + start, count, label, t.elementBytes);
  for (const { start, count } of e.elementRuns(n, !chunked)) {
    const bound = tensors.map((t, k) => (direct[k] ? bindRun(t, start, count) : t.binding(label, true)));
    const o = outDirect ? bindRun(out, start, count) : out.binding(label, true);
    const ps = params(count, start, o.offset, bound.map((b) => b.offset));
    const reads = opts.vec4 && !chunked && outDirect && outT === 'f32' && T === 'f32' && walkRank > 0
      ? vecReads(tensors, direct, walk, bound, o.offset, n)
      : null;
    if (reads) {
      e.dispatch({
        key: `map4/${reads.join(',')}/${layoutKey}`,
        get code() { return vecMapCode(ps, reads, direct, walk, body, walkStrides); },
        params: ps,
        buffers: [...bound.map((b) => b.resource), o.resource],
        workgroups: e.grid(Math.ceil(n / 4 / (WG * VEC_PER_INVOCATION))),
        label,
      });
      continue;
    }
    e.dispatch({
      key: `map/${layoutKey}`,
      get code() { return scalarCode(ps); },
      params: ps,
      buffers: [...bound.map((b) => b.resource), o.resource],
      workgroups: e.grid(Math.ceil(count / (WG * PER_INVOCATION))),
      label,
    });
  }
  return out;
}

/** vec4 groups per invocation of the vec4 kernel (the scalar kernel's 8 elements). */
const VEC_PER_INVOCATION = 2;

/** How each input is read four output elements at a time, or null where some input, the
 * output or the size does not allow it (float32 throughout, and the innermost merged dim a
 * multiple of 4, so a group of four never crosses it). */
function vecReads(
  tensors: readonly Tensor[], direct: readonly boolean[], walk: { shape: readonly number[]; strides: readonly (readonly number[])[] },
  bound: readonly BoundElements[], outOffset: number, n: number,
): VecRead[] | null {
  const rank = walk.shape.length;
  if (n % 4 !== 0 || outOffset % 4 !== 0 || walk.shape[rank - 1]! % 4 !== 0) return null;
  const reads: VecRead[] = [];
  for (let k = 0; k < tensors.length; k++) {
    if (tensors[k]!.dtype !== 'float32') return null;
    const st = walk.strides[k + 1]!;
    if (direct[k] ? bound[k]!.offset % 4 === 0 : st[rank - 1] === 1 && bound[k]!.offset % 4 === 0 && st.every((x, d) => d === rank - 1 || x % 4 === 0)) reads.push('vec');
    else if (!direct[k] && st[rank - 1] === 0) reads.push('splat');
    else return null;
  }
  return reads;
}

/** The vec4 kernel: each invocation takes VEC_PER_INVOCATION groups of four consecutive
 * output elements; one vec4 load per direct input, and a coordinate walk for the others. */
function vecMapCode(
  ps: Params, reads: readonly VecRead[], direct: readonly boolean[], walk: { shape: readonly number[] },
  body: string, walkStrides: (k: number) => readonly number[],
): string {
  const rank = walk.shape.length;
  const coordsNeeded = direct.some((d) => !d);
  const coords: string[] = [];
  if (coordsNeeded) {
    coords.push('    var r = i;');
    for (let d = rank - 1; d >= 0; d--) {
      const sh = Params.at('p', 'shape', d);
      coords.push(d > 0 ? `    let c${d} = r % ${sh};` : '    let c0 = r;');
      if (d > 0) coords.push(`    r = r / ${sh};`);
    }
  }
  const at = (k: number): string => `p.off${k}${walkStrides(k).map((st, d) => (st === 0 ? '' : ` + c${d} * ${Params.at('p', `st${k}`, d)}`)).join('')}`;
  const decls = reads.map((r, k) => `@group(0) @binding(${k + 1}) var<storage, read> in${k}: array<${r === 'vec' ? 'vec4<f32>' : 'f32'}>;`);
  const loads = reads.map((r, k) =>
    direct[k] ? `    let v${k} = in${k}[p.off${k} / 4u + q];` : r === 'vec' ? `    let v${k} = in${k}[(${at(k)}) / 4u];` : `    let v${k} = vec4<f32>(in${k}[${at(k)}]);`);
  return /* wgsl */ `
${ps.wgsl('P')}
@group(0) @binding(0) var<uniform> p: P;
${decls.join('\n')}
@group(0) @binding(${reads.length + 1}) var<storage, read_write> out: array<vec4<f32>>;
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let first = (${linearIndex()}) * ${VEC_PER_INVOCATION}u;
  for (var k = 0u; k < ${VEC_PER_INVOCATION}u; k++) {
    let q = first + k;
    if (q * 4u >= p.n) { return; }
    let i = q * 4u;
${coords.join('\n')}
${loads.join('\n')}
    out[p.offOut / 4u + q] = ${body};
  }
}`;
}

// Public ops ----------------------------------------------------------------------------

/** The float dtype of an op on these tensors: float16 when all are, else float32 (PyTorch's
 * promotion of half with float). */
function floatResult(tensors: readonly Tensor[]): DType {
  return tensors.length > 0 && tensors.every((t) => t.dtype === 'float16') ? 'float16' : 'float32';
}

export function unary(op: UnaryName, x: Tensor, alpha = 0, beta = 0): Tensor {
  const def: UnaryOp = UNARY[op];
  const int = x.dtype === 'int32' && def.int === true;
  return map([x], ([v]) => def.wgsl(v!), { int, dtype: int ? 'int32' : floatResult([x]), alpha, beta, label: op });
}

export function binary(op: BinaryName, a: Tensor | number, b: Tensor | number): Tensor {
  const def: BinaryOp = BINARY[op];
  const tensors = [a, b].filter((x): x is Tensor => x instanceof Tensor);
  if (tensors.length === 0) throw new TypeError(`${op}() needs at least one tensor operand`);
  const scalarsInt = [a, b].every((x) => x instanceof Tensor || Number.isInteger(x));
  const int = def.int === true && scalarsInt && tensors.every((t) => t.dtype === 'int32');
  const dtype: DType = def.compare ? 'float32' : int ? 'int32' : floatResult(tensors);
  const expr = int && def.wgslInt ? def.wgslInt : def.wgsl;
  const vec4 = !int && (op === 'add' || op === 'sub' || op === 'mul' || op === 'div');
  return map([a, b], ([x, y]) => expr(x!, y!), { int, dtype, label: op, vec4 });
}

export const neg = (x: Tensor): Tensor => unary('neg', x);
export const abs = (x: Tensor): Tensor => unary('abs', x);
export const sign = (x: Tensor): Tensor => unary('sign', x);
export const exp = (x: Tensor): Tensor => unary('exp', x);
export const log = (x: Tensor): Tensor => unary('log', x);
export const sqrt = (x: Tensor): Tensor => unary('sqrt', x);
export const rsqrt = (x: Tensor): Tensor => unary('rsqrt', x);
export const square = (x: Tensor): Tensor => unary('square', x);
export const reciprocal = (x: Tensor): Tensor => unary('reciprocal', x);
export const sin = (x: Tensor): Tensor => unary('sin', x);
export const cos = (x: Tensor): Tensor => unary('cos', x);
export const floor = (x: Tensor): Tensor => unary('floor', x);
export const ceil = (x: Tensor): Tensor => unary('ceil', x);
export const round = (x: Tensor): Tensor => unary('round', x);
export const relu = (x: Tensor): Tensor => unary('relu', x);
export const relu6 = (x: Tensor): Tensor => unary('relu6', x);
export const hardsigmoid = (x: Tensor): Tensor => unary('hardsigmoid', x);
export const hardswish = (x: Tensor): Tensor => unary('hardswish', x);
export const leakyRelu = (x: Tensor, negativeSlope = 0.01): Tensor => unary('leakyRelu', x, negativeSlope);
/** GELU; `approximate: 'tanh'` as PyTorch's `F.gelu(x, approximate='tanh')` (GPT-2's). */
export const gelu = (x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor => unary(approximate === 'tanh' ? 'geluTanh' : 'gelu', x);
export const silu = (x: Tensor): Tensor => unary('silu', x);
export const sigmoid = (x: Tensor): Tensor => unary('sigmoid', x);
export const tanh = (x: Tensor): Tensor => unary('tanh', x);
export const softplus = (x: Tensor): Tensor => unary('softplus', x);
export const clamp = (x: Tensor, min = -Infinity, max = Infinity): Tensor => unary('clamp', x, min, max);

export const add = (a: Tensor | number, b: Tensor | number): Tensor => binary('add', a, b);
export const sub = (a: Tensor | number, b: Tensor | number): Tensor => binary('sub', a, b);
export const mul = (a: Tensor | number, b: Tensor | number): Tensor => binary('mul', a, b);
export const div = (a: Tensor | number, b: Tensor | number): Tensor => binary('div', a, b);
export function pow(a: Tensor | number, b: Tensor | number): Tensor {
  if (a instanceof Tensor && typeof b === 'number') return unary('powScalar', a, b);
  return binary('pow', a, b);
}
export const maximum = (a: Tensor | number, b: Tensor | number): Tensor => binary('maximum', a, b);
export const minimum = (a: Tensor | number, b: Tensor | number): Tensor => binary('minimum', a, b);
export const eq = (a: Tensor | number, b: Tensor | number): Tensor => binary('eq', a, b);
export const ne = (a: Tensor | number, b: Tensor | number): Tensor => binary('ne', a, b);
export const lt = (a: Tensor | number, b: Tensor | number): Tensor => binary('lt', a, b);
export const le = (a: Tensor | number, b: Tensor | number): Tensor => binary('le', a, b);
export const gt = (a: Tensor | number, b: Tensor | number): Tensor => binary('gt', a, b);
export const ge = (a: Tensor | number, b: Tensor | number): Tensor => binary('ge', a, b);

/** `cond ? a : b` elementwise (cond is nonzero = true), broadcasting all three. */
export function where(cond: Tensor, a: Tensor | number, b: Tensor | number): Tensor {
  const ts = [a, b].filter((x): x is Tensor => x instanceof Tensor);
  const int = ts.length > 0 && ts.every((t) => t.dtype === 'int32') && [a, b].every((x) => x instanceof Tensor || Number.isInteger(x));
  const c = cond.dtype === 'int32' ? 'i32' : 'f32';
  return map([cond, a, b], ([k, x, y]) => `select(${y}, ${x}, ${c}(${k}) != ${c}(0))`, {
    int,
    dtype: int ? 'int32' : floatResult(ts),
    label: 'where',
  });
}

/** Converts between float32, float16 and int32 (float to int truncates toward zero, as
 * PyTorch; to float16 rounds to nearest even, overflowing to infinity). */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return copy(x);
  return map([x], ([v]) => v!, { int: dtype === 'int32', dtype, label: 'cast' });
}
registerCast(cast);

/** Writes `src` (broadcast to `dst`'s shape) into the view `dst` in place, as `dst.copy_(src)`. */
export function assign(dst: Tensor, src: Tensor | number): Tensor {
  if (src instanceof Tensor && src.storage === dst.storage) {
    const c = copy(src);
    map([c], ([v]) => v!, { into: dst, int: dst.dtype === 'int32', label: 'assign' });
    c.dispose();
    return dst;
  }
  if (typeof src === 'number') {
    return map([src], ([v]) => v!, { into: dst, int: dst.dtype === 'int32', label: 'fill_' });
  }
  return map([src], ([v]) => v!, { into: dst, int: dst.dtype === 'int32' && src.dtype === 'int32', label: 'assign' });
}

function copy(x: Tensor): Tensor {
  return transposedCopy(x) ?? map([x], ([v]) => v!, { int: x.dtype === 'int32', dtype: x.dtype, label: 'copy' });
}
registerContiguousCopy(copy);

// CPU references ------------------------------------------------------------------------

export function cpuMap(inputs: readonly (HostTensor | number)[], fn: (...v: number[]) => number, outShape?: Shape): HostTensor {
  const ts = inputs.filter((x): x is HostTensor => typeof x !== 'number');
  const shape = outShape ? [...outShape] : broadcastShapes(...ts.map((t) => t.shape));
  const out = host(shape);
  const idx = inputs.map((x) => (typeof x === 'number' ? null : broadcastIndex(x.shape, shape)));
  const vals = new Array<number>(inputs.length);
  for (let i = 0; i < out.data.length; i++) {
    for (let k = 0; k < inputs.length; k++) {
      const x = inputs[k]!;
      vals[k] = typeof x === 'number' ? x : x.data[idx[k]![i]!]!;
    }
    out.data[i] = fn(...vals);
  }
  return out;
}

export function cpuUnary(op: UnaryName, x: HostTensor, alpha = 0, beta = 0): HostTensor {
  const f = UNARY[op].cpu as (x: number, a: number, b: number) => number;
  return cpuMap([x], (v) => f(v, alpha, beta));
}

export function cpuBinary(op: BinaryName, a: HostTensor | number, b: HostTensor | number): HostTensor {
  return cpuMap([a, b], BINARY[op].cpu);
}

export function cpuWhere(cond: HostTensor, a: HostTensor | number, b: HostTensor | number): HostTensor {
  return cpuMap([cond, a, b], (c, x, y) => (c !== 0 ? x : y));
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
