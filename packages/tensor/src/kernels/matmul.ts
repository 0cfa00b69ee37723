/**
 * Matrix products as PyTorch's `matmul` (1-D and n-D operands, broadcast batch dims) and
 * `linear`, with an optional fused bias + activation epilogue. Operands are read through
 * their strides: a transposed view (strides [1, M]) is a specialization of the WGSL, not a
 * copy. Several kernels compute the same product (see `MATMUL_VARIANTS`); which one runs
 * for a problem is the autotuner's choice for the adapter (tune.ts), else the default.
 */
import { full } from '../creation.js';
import { engine, type BoundElements } from '../engine.js';
import { broadcastIndex, host, type HostTensor } from '../host.js';
import { Params } from '../params.js';
import { broadcastShapes, fmt } from '../shape.js';
import { Tensor } from '../tensor.js';
import { forceMatmulVariant, matmulChoice, matmulShapeClass, timeRecorded, type MatmulProblem, type TuneBench, type TuneFamily } from '../tune.js';
import { checkFloat } from './check-float.js';
import { UNARY } from './elementwise.js';
import { enableF16, MATH_HELPERS, storageArray, stored, widen } from './wgsl.js';

export type MatmulActivation = 'relu' | 'relu6' | 'gelu' | 'geluTanh' | 'silu' | 'sigmoid' | 'tanh';

const ACTIVATIONS: readonly MatmulActivation[] = ['relu', 'relu6', 'gelu', 'geluTanh', 'silu', 'sigmoid', 'tanh'];

/**
 * The candidate kernels, every one correct for every problem:
 * - `reg`: register tiles sized per storage order (`TILES`), no workgroup memory. What
 *   lavapipe rewards (barriers cost more there than the reuse they buy); the default.
 * - `reg4`: the same kernel with 4x4 tiles: 2-8x more invocations, for GPUs with many
 *   cores and problems too small to fill them with large tiles.
 * - `wg32`, `wg64`: workgroup-memory tiles (32x32 or 64x64 outputs per workgroup, 16 of K
 *   per stage) loaded cooperatively with vec4 loads where the layout allows, each
 *   invocation accumulating 4x4 outputs from them: the classic kernel of discrete GPUs.
 */
export type MatmulVariant = 'reg' | 'reg4' | 'wg32' | 'wg64';
export const MATMUL_VARIANTS: readonly MatmulVariant[] = ['reg', 'reg4', 'wg32', 'wg64'];

export interface MatmulOptions {
  /** Added to every row of the result: shape [N], N = the last dim of `b` (1 when `b` is 1-D). */
  bias?: Tensor;
  /** Applied after the bias, with the same WGSL as the elementwise op of that name. */
  activation?: MatmulActivation;
}

/** What the WGSL is specialized on. */
export interface MatmulSpec {
  /** Output rows and columns per invocation; tn is a multiple of 4. */
  tm: number;
  tn: number;
  /** K per workgroup-memory stage; 0 for the register-tiled kernel (no workgroup memory).
   * With bk > 0, tm = tn = 4 and a workgroup covers 4 * wy rows and 4 * wx columns. */
  bk: number;
  /** A is stored with M contiguous (a transposed view), B with K contiguous. */
  transA: boolean;
  transB: boolean;
  /** vec4 loads along the contiguous dim (alignment checked by the caller). */
  vecA: boolean;
  vecB: boolean;
  /** Batch dims decomposed in the kernel (a multiple of 4; unused ones have size 1). */
  batchRank: number;
  bias: boolean;
  activation: MatmulActivation | null;
  /** Add the product to what the output holds (a chunk of K after the first). */
  accumulate: boolean;
  /** Workgroup size along N and M. */
  wx: number;
  wy: number;
  /** Operands, bias and output are float16: loaded into f32, accumulated there, stored once
   * rounded (PyTorch's half matmul accumulates in float too). */
  half: boolean;
}

/** The pipeline cache key of a spec: everything the WGSL depends on (the uniform block's
 * layout follows from batchRank and bias), so a cache hit never regenerates the text. */
export function matmulSpecKey(s: MatmulSpec): string {
  const flags = [s.transA, s.transB, s.vecA, s.vecB, s.bias, s.accumulate, s.half].map((f) => (f ? 1 : 0)).join('');
  return `matmul/${s.tm}x${s.tn}/k${s.bk}/wg${s.wx}x${s.wy}/b${s.batchRank}/${flags}/${s.activation ?? '-'}`;
}

const range = (n: number): number[] => [...Array(n).keys()];

/** Offsets of the batch slice `bz` added to offA and offB. */
function batchLines(s: MatmulSpec): string[] {
  const batch: string[] = ['  var z = bz;'];
  for (let d = s.batchRank - 1; d >= 0; d--) {
    const size = Params.at('p', 'bshape', d);
    batch.push(`  let c${d} = ${d > 0 ? `z % ${size}` : 'z'};`);
    if (d > 0) batch.push(`  z = z / ${size};`);
    batch.push(`  offA += c${d} * ${Params.at('p', 'bsa', d)};`, `  offB += c${d} * ${Params.at('p', 'bsb', d)};`);
  }
  return batch;
}

/** Stores the invocation's tile (acc{i}_{q}, origin m0, n0) with accumulate, bias and
 * activation. The epilogue runs once per invocation: a loop over a private copy of the tile
 * keeps one inlined copy of the activation instead of tm * tn (compile time, not run time). */
function epilogueLines(s: MatmulSpec): string[] {
  const { tm, tn } = s;
  const nq = tn / 4;
  const n = `n0 + c`;
  let value = `res[i * ${nq}u + (c >> 2u)][c & 3u]`;
  if (s.accumulate) value = `${widen(s.half, `out[row + ${n}]`)} + ${value}`;
  if (s.bias) value = `${value} + ${widen(s.half, `bias[p.offBias + (${n}) * p.sBias]`)}`;
  if (s.activation) value = `act_(${value})`;
  value = stored(s.half, value);
  return [
    `  var res = array<vec4<f32>, ${tm * nq}>(${range(tm).flatMap((i) => range(nq).map((q) => `acc${i}_${q}`)).join(', ')});`,
    `  for (var i = 0u; i < ${tm}u && m0 + i < p.M; i++) {`,
    '    let row = p.offOut + zo + (m0 + i) * p.ldOut;',
    `    for (var c = 0u; c < ${tn}u && ${n} < p.N; c++) {`,
    `      out[row + ${n}] = ${value};`,
    '    }',
    '  }',
  ];
}

/** The uniform block, bindings and activation helper shared by every variant. */
function preamble(s: MatmulSpec, params: Params): string {
  let binding = 1;
  const decls = [
    `@group(0) @binding(${binding++}) var<storage, read> a: ${storageArray(s.half, s.vecA)};`,
    `@group(0) @binding(${binding++}) var<storage, read> b: ${storageArray(s.half, s.vecB)};`,
  ];
  if (s.bias) decls.push(`@group(0) @binding(${binding++}) var<storage, read> bias: ${storageArray(s.half)};`);
  decls.push(`@group(0) @binding(${binding++}) var<storage, read_write> out: ${storageArray(s.half)};`);
  const act = s.activation ? `${MATH_HELPERS}\nfn act_(x: f32) -> f32 { return ${UNARY[s.activation].wgsl('x')}; }\n` : '';
  return `${enableF16(s.half)}\n${params.wgsl('P')}\n@group(0) @binding(0) var<uniform> p: P;\n${decls.join('\n')}\n${act}`;
}

/** The kernel for a spec: register-tiled (bk = 0) or workgroup-memory tiled. */
export function matmulWgsl(s: MatmulSpec, params: Params): string {
  return s.bk > 0 ? sharedWgsl(s, params) : registerWgsl(s, params);
}

/**
 * The register-tiled kernel. Uniforms: M, N, K; per operand its element offset, leading-dim
 * stride (ldA: between rows of A, or between columns when transA; ldB: between rows of B, or
 * columns when transB) and batch strides; the bias offset and stride; the output's offset
 * and row stride (a chunk's columns are a strided block of it); xBase and yBase in
 * invocations. Rows and columns past the edge are clamped on load (their results are never
 * stored), so only K needs a tail.
 */
function registerWgsl(s: MatmulSpec, params: Params): string {
  const { tm, tn } = s;
  const nq = tn / 4;
  // Unrolling K by 4 only pays where a vec4 load runs along K.
  const kVecA = s.vecA && !s.transA;
  const kVecB = s.vecB && s.transB;
  const k4 = kVecA || kVecB;

  const setup: string[] = [];
  if (s.transA && s.vecA) {
    setup.push('  let ldA4 = p.ldA >> 2u;');
    for (const g of range(tm / 4)) setup.push(`  let ca${g} = (offA + min(m0 + ${4 * g}u, p.M - 4u)) >> 2u;`);
  } else {
    for (const i of range(tm)) {
      const row = `min(m0 + ${i}u, p.M - 1u)`;
      if (s.transA) setup.push(`  let ca${i} = offA + ${row};`);
      else setup.push(`  let ra${i} = ${s.vecA ? `(offA + ${row} * p.ldA) >> 2u` : `offA + ${row} * p.ldA`};`);
    }
  }
  if (!s.transB && s.vecB) {
    setup.push('  let ldB4 = p.ldB >> 2u;');
    for (const q of range(nq)) setup.push(`  let nb${q} = (offB + min(n0 + ${4 * q}u, p.N - 4u)) >> 2u;`);
  } else {
    for (const c of range(tn)) {
      const col = `min(n0 + ${c}u, p.N - 1u)`;
      if (s.transB) setup.push(`  let cb${c} = ${s.vecB ? `(offB + ${col} * p.ldB) >> 2u` : `offB + ${col} * p.ldB`};`);
      else setup.push(`  let nb${c} = offB + ${col};`);
    }
  }

  /** Loads of A at one k: lines, and the scalar A[m0 + i, k] for each i. */
  const loadA = (k: string, t: string): { lines: string[]; at: (i: number) => string } => {
    if (s.transA && s.vecA) {
      return { lines: range(tm / 4).map((g) => `    let a${t}_${g} = ${widen(s.half, `a[ca${g} + (${k}) * ldA4]`, true)};`), at: (i) => `a${t}_${i >> 2}[${i & 3}]` };
    }
    const idx = (i: number): string =>
      widen(s.half, s.transA ? `a[ca${i} + (${k}) * p.ldA]` : s.vecA ? `a[ra${i} + ((${k}) >> 2u)][(${k}) & 3u]` : `a[ra${i} + ${k}]`);
    return { lines: range(tm).map((i) => `    let a${t}_${i} = ${idx(i)};`), at: (i) => `a${t}_${i}` };
  };
  /** Loads of B at one k: lines, and the vec4 B[k, n0 + 4q .. n0 + 4q + 3] for each q. */
  const loadB = (k: string, t: string): { lines: string[]; vec: (q: number) => string } => {
    if (!s.transB && s.vecB) {
      return { lines: range(nq).map((q) => `    let b${t}_${q} = ${widen(s.half, `b[nb${q} + (${k}) * ldB4]`, true)};`), vec: (q) => `b${t}_${q}` };
    }
    const idx = (c: number): string =>
      widen(s.half, s.transB ? (s.vecB ? `b[cb${c} + ((${k}) >> 2u)][(${k}) & 3u]` : `b[cb${c} + ${k}]`) : `b[nb${c} + (${k}) * p.ldB]`);
    return {
      lines: range(tn).map((c) => `    let b${t}_${c} = ${idx(c)};`),
      vec: (q) => `vec4<f32>(${range(4).map((r) => `b${t}_${4 * q + r}`).join(', ')})`,
    };
  };
  const fmas = (at: (i: number) => string, vec: (q: number) => string, t: string): string[] => {
    const lines = range(nq).map((q) => `    let bv${t}_${q} = ${vec(q)};`);
    for (const i of range(tm)) for (const q of range(nq)) lines.push(`    acc${i}_${q} = fma(vec4<f32>(${at(i)}), bv${t}_${q}, acc${i}_${q});`);
    return lines;
  };

  const loop: string[] = [];
  if (k4) {
    const body: string[] = ['    let kv = k >> 2u;'];
    const aVec = kVecA ? range(tm).map((i) => `    let av${i} = ${widen(s.half, `a[ra${i} + kv]`, true)};`) : [];
    const bVec = kVecB ? range(tn).map((c) => `    let bw${c} = ${widen(s.half, `b[cb${c} + kv]`, true)};`) : [];
    body.push(...aVec, ...bVec);
    for (const j of range(4)) {
      const A = kVecA ? { lines: [], at: (i: number) => `av${i}[${j}]` } : loadA(`k + ${j}u`, `${j}`);
      const B = kVecB
        ? { lines: [], vec: (q: number) => `vec4<f32>(${range(4).map((r) => `bw${4 * q + r}[${j}]`).join(', ')})` }
        : loadB(`k + ${j}u`, `${j}`);
      body.push(...A.lines, ...B.lines, ...fmas(A.at, B.vec, `${j}`));
    }
    const A = loadA('k', 't');
    const B = loadB('k', 't');
    loop.push(
      '  let k4 = p.K & 0xfffffffcu;',
      '  for (var k = 0u; k < k4; k += 4u) {',
      ...body,
      '  }',
      '  for (var k = k4; k < p.K; k++) {',
      ...A.lines, ...B.lines, ...fmas(A.at, B.vec, 't'),
      '  }',
    );
  } else {
    const A = loadA('k', '');
    const B = loadB('k', '');
    loop.push('  for (var k = 0u; k < p.K; k++) {', ...A.lines, ...B.lines, ...fmas(A.at, B.vec, ''), '  }');
  }

  return /* wgsl */ `
${preamble(s, params)}
@compute @workgroup_size(${s.wx}, ${s.wy})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n0 = (gid.x + p.xBase) * ${tn}u;
  let m0 = (gid.y + p.yBase) * ${tm}u;
  let bz = gid.z + p.zBase;
  let zo = bz * p.M * p.N;
  var offA = p.offA;
  var offB = p.offB;
${batchLines(s).join('\n')}
${setup.join('\n')}
${range(tm).flatMap((i) => range(nq).map((q) => `  var acc${i}_${q} = vec4<f32>(0.0);`)).join('\n')}
${loop.join('\n')}
${epilogueLines(s).join('\n')}
}`;
}

/**
 * The workgroup-memory kernel: a workgroup computes a BM x BN block of the output
 * (BM = 4 * wy, BN = 4 * wx), staging BK-deep slices of A and B in workgroup memory, each
 * invocation accumulating 4 x 4 outputs from them. Tiles are stored with M (for A) and N
 * (for B) innermost, so the inner loop reads one vec4 of each per k whatever the operands'
 * storage order; the cooperative loads follow the storage order instead, with vec4 loads
 * along the contiguous dim when it is aligned. Rows and columns past the edge are clamped on
 * load as in the register kernel; K past the edge loads zeros. xBase and yBase count
 * workgroups.
 */
function sharedWgsl(s: MatmulSpec, params: Params): string {
  const BK = s.bk;
  const BM = 4 * s.wy;
  const BN = 4 * s.wx;
  const threads = s.wx * s.wy;
  const BM4 = BM / 4;
  const BN4 = BN / 4;
  const BK4 = BK / 4;
  const lane = 'vec4<u32>(0u, 1u, 2u, 3u)';

  /** One operand's stage: `outer` is M (A) or N (B), `o0` its block origin, `tile` the
   * workgroup array, `vec` whether the operand is read as vec4s. */
  const stage = (name: 'a' | 'b', trans: boolean, vec: boolean, outer: 'M' | 'N', o0: string, tile: string, OUT: number): string[] => {
    const OUT4 = OUT / 4;
    const off = name === 'a' ? 'offA' : 'offB';
    const ld = name === 'a' ? 'p.ldA' : 'p.ldB';
    // A is K-contiguous unless transposed, B is K-contiguous when transposed.
    const kContig = name === 'a' ? !trans : trans;
    const lines: string[] = [];
    const loop = (count: number, body: string[]): void => {
      lines.push(`    for (var r = 0u; r < ${count / threads}u; r++) {`, `      let idx = li + r * ${threads}u;`, ...body, '    }');
    };
    if (vec && !kContig) {
      // vec4 along the output dim: one vec4 per (k, 4 outputs), stored as is.
      loop((BK * OUT) / 4, [
        `      let k = kt + idx / ${OUT4}u;`,
        `      let o = min(${o0} + (idx % ${OUT4}u) * 4u, p.${outer} - 4u);`,
        `      let v = ${widen(s.half, `${name}[((${off} + o) >> 2u) + min(k, p.K - 1u) * (${ld} >> 2u)]`, true)};`,
        `      ${tile}[idx] = select(vec4<f32>(0.0), v, k < p.K);`,
      ]);
    } else if (vec) {
      // vec4 along K: four k of one output, scattered into four rows of the tile.
      loop((BK * OUT) / 4, [
        `      let oo = idx / ${BK4}u;`,
        `      let kk = (idx % ${BK4}u) * 4u;`,
        `      let k = kt + kk;`,
        `      let o = min(${o0} + oo, p.${outer} - 1u);`,
        `      let v = select(vec4<f32>(0.0), ${widen(s.half, `${name}[((${off} + o * ${ld}) >> 2u) + (min(k, p.K - 1u) >> 2u)]`, true)}, vec4<u32>(k) + ${lane} < vec4<u32>(p.K));`,
        ...range(4).map((j) => `      ${tile}[(kk + ${j}u) * ${OUT4}u + (oo >> 2u)][oo & 3u] = v[${j}];`),
      ]);
    } else if (kContig) {
      // Scalars, consecutive invocations along K (the contiguous dim).
      loop(BK * OUT, [
        `      let oo = idx / ${BK}u;`,
        `      let kk = idx % ${BK}u;`,
        `      let k = kt + kk;`,
        `      let o = min(${o0} + oo, p.${outer} - 1u);`,
        `      let v = select(0.0, ${widen(s.half, `${name}[${off} + o * ${ld} + min(k, p.K - 1u)]`)}, k < p.K);`,
        `      ${tile}[kk * ${OUT4}u + (oo >> 2u)][oo & 3u] = v;`,
      ]);
    } else {
      // Scalars, consecutive invocations along the output dim (the contiguous one).
      loop(BK * OUT, [
        `      let kk = idx / ${OUT}u;`,
        `      let oo = idx % ${OUT}u;`,
        `      let k = kt + kk;`,
        `      let o = min(${o0} + oo, p.${outer} - 1u);`,
        `      let v = select(0.0, ${widen(s.half, `${name}[${off} + o + min(k, p.K - 1u) * ${ld}]`)}, k < p.K);`,
        `      ${tile}[kk * ${OUT4}u + (oo >> 2u)][oo & 3u] = v;`,
      ]);
    }
    return lines;
  };

  // A loop, not unrolled text: the driver's compiler unrolls it where that pays, and
  // lavapipe compiles the unrolled text several times slower.
  const inner: string[] = [
    `    for (var kk = 0u; kk < ${BK}u; kk++) {`,
    `      let av = As[kk * ${BM4}u + lid.y];`,
    `      let bv = Bs[kk * ${BN4}u + lid.x];`,
    ...range(4).map((i) => `      acc${i}_0 = fma(vec4<f32>(av[${i}]), bv, acc${i}_0);`),
    '    }',
  ];

  return /* wgsl */ `
${preamble(s, params)}
var<workgroup> As: array<vec4<f32>, ${(BK * BM) / 4}>;
var<workgroup> Bs: array<vec4<f32>, ${(BK * BN) / 4}>;

@compute @workgroup_size(${s.wx}, ${s.wy})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let wn0 = (wid.x + p.xBase) * ${BN}u;
  let wm0 = (wid.y + p.yBase) * ${BM}u;
  let n0 = wn0 + lid.x * 4u;
  let m0 = wm0 + lid.y * 4u;
  let bz = wid.z + p.zBase;
  let zo = bz * p.M * p.N;
  var offA = p.offA;
  var offB = p.offB;
${batchLines(s).join('\n')}
${range(4).map((i) => `  var acc${i}_0 = vec4<f32>(0.0);`).join('\n')}
  for (var kt = 0u; kt < p.K; kt += ${BK}u) {
${stage('a', s.transA, s.vecA, 'M', 'wm0', 'As', BM).join('\n')}
${stage('b', s.transB, s.vecB, 'N', 'wn0', 'Bs', BN).join('\n')}
    workgroupBarrier();
${inner.join('\n')}
    workgroupBarrier();
  }
${epilogueLines(s).join('\n')}
}`;
}

/** A matrix operand as the kernel sees it: a tensor's buffer with batch shape and strides. */
interface Operand {
  t: Tensor;
  /** The matrix is the transpose of the tensor's last two dims (linear's weight). */
  tr: boolean;
  batch: number[];
  batchStrides: number[];
  rows: number;
  cols: number;
  sRow: number;
  sCol: number;
  offset: number;
}

function operand(t: Tensor, batchRank: number, rows: number, cols: number, sRow: number, sCol: number): Operand {
  return {
    t,
    tr: false,
    batch: t.shape.slice(0, batchRank),
    batchStrides: t.strides.slice(0, batchRank),
    rows,
    cols,
    sRow,
    sCol,
    offset: t.offset,
  };
}

/** A (possibly batched) matrix from the last two dims; a 1-D tensor is a row or a column. */
function asMatrix(t: Tensor, vector: 'row' | 'col'): Operand {
  const r = t.rank;
  if (r === 1) {
    return vector === 'row' ? operand(t, 0, 1, t.shape[0]!, 0, t.strides[0]!) : operand(t, 0, t.shape[0]!, 1, t.strides[0]!, 0);
  }
  return operand(t, r - 2, t.shape[r - 2]!, t.shape[r - 1]!, t.strides[r - 2]!, t.strides[r - 1]!);
}

/** 'row': columns contiguous (ld = row stride); 'col': rows contiguous (ld = column
 * stride); null: neither, the operand needs a copy. Strides of size-1 dims do not matter. */
function layout(o: Operand): { trans: boolean; ld: number } | null {
  if (o.cols === 1 || o.sCol === 1) return { trans: false, ld: o.rows === 1 ? 0 : o.sRow };
  if (o.rows === 1 || o.sRow === 1) return { trans: true, ld: o.cols === 1 ? 0 : o.sCol };
  return null;
}

/** Rows of the product from which a column-major B next to a row-major A (x · wᵀ, as every
 * linear layer and attention's q · kᵀ run) is copied to row-major first. Read column by column,
 * B costs a lane-by-lane gather per element on lavapipe; the copy is one pass over B. Measured
 * for K 768 (ms, NT against copy + NN): N 3072 at M 32 22 / 30, M 64 44 / 35, M 128 97 / 62,
 * M 394 221 / 140; N 768 at M 64 12 / 8, M 256 61 / 18. */
const ROW_MAJOR_B_FROM_M = 64;

/** `b` row-major: copied (the copy joins `temps`) where the product is NT and tall enough to
 * pay for it, and the copy fits one binding (a larger B is split by columns as it is). */
function rowMajorB(a: Operand, b: Operand, rows: number, temps: Tensor[]): Operand {
  const la = layout(a);
  const lb = layout(b);
  if (!la || la.trans || !lb?.trans || rows < ROW_MAJOR_B_FROM_M || b.rows < 2 || b.cols < 2 || !b.t.fitsBinding) return b;
  const r = b.t.rank;
  const view = b.tr ? b.t.transpose(r - 2, r - 1) : b.t;
  const c = view.contiguous();
  temps.push(c);
  return operand(c, r - 2, b.rows, b.cols, c.strides[r - 2]!, c.strides[r - 1]!);
}

function transposed(o: Operand): Operand {
  return { ...o, tr: !o.tr, rows: o.cols, cols: o.rows, sRow: o.sCol, sCol: o.sRow };
}

/**
 * Register tile [tm, tn] by storage order (A transposed?, B transposed?), measured on
 * lavapipe (512^3, GFLOP/s). What costs there is loads per FMA, then live registers. With
 * both operands contiguous along the output dims ([K, M] x [K, N]) one k step loads
 * tm/4 + tn/4 vec4s: 4x4 11.6, 8x8 21, 8x16 25 (30 at 1024). An operand contiguous along
 * K holds tm (or tn) vec4s across 4 k steps, and larger tiles spill: NN 4x4 12.9, 4x8 15,
 * 8x4 13.3, 8x8 7-10. Workgroup shape (8x8, 16x4, 4x16, 8x1) made no clear difference.
 * A row-major A next to a row-major B is read one scalar per row and k instead (`scalarA`):
 * its address is the same in every lane, as the transposed A's vec4 is, and nothing is held
 * across k steps, so the TN tile fits: at 1024^3 8x16 ran 19-23 GFLOP/s against 13 for the
 * 4x8 vec4 kernel (8x8 16, 16x16 20, 8x32 14, 4x16 15).
 */
const TILES: Record<string, [number, number]> = { NN: [8, 16], NT: [4, 8], TN: [8, 16], TT: [8, 4] };
const WG_X = 8;
const WG_Y = 8;
const ROW_WG_X = 32;

/** The register kernel reads a row-major A as uniform scalars where B is row-major too. */
const scalarA = (transA: boolean, transB: boolean): boolean => !transA && !transB;

/** The tile for one problem: it shrinks for small M and N, and for operands read one
 * scalar at a time, where a large tile buys less and compiles slowly (~1.7 s for 8x16). */
function tileFor(transA: boolean, transB: boolean, vecA: boolean, vecB: boolean, M: number, N: number): [number, number] {
  const [TM, TN] = TILES[`${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`]!;
  const tm = M === 1 ? 1 : Math.min(TM, M <= 4 || (!vecA && !scalarA(transA, transB)) ? 4 : 8);
  const tn = Math.min(TN, N <= 4 ? 4 : N <= 8 || !vecB ? 8 : 16);
  return [tm, tn];
}

/** The spec fields a variant sets: tile, workgroup shape and workgroup-memory depth. */
function variantShape(v: MatmulVariant, transA: boolean, transB: boolean, vecA: boolean, vecB: boolean, M: number, N: number): Pick<MatmulSpec, 'tm' | 'tn' | 'bk' | 'wx' | 'wy'> {
  switch (v) {
    case 'reg': {
      const [tm, tn] = tileFor(transA, transB, vecA, vecB, M, N);
      // Rows that fit one tile (a classifier on a small batch, a decoding step) would leave
      // all but one row of an 8x8 workgroup idle: spread the workgroup along N instead, with
      // narrow tiles so there are enough of them. On lavapipe a 2x1280 by 1280x1000 linear
      // took 11-13 ms with 8x8 and 1.1-2.0 ms with 32x1 and 4 columns, GPT-2's 768 -> 50257
      // head at one token 142-157 ms and 24 (16x1: 32; 64x1: 27; 32x1 with 8 columns: 22).
      if (M <= tm) return { tm, tn: Math.min(tn, 4), bk: 0, wx: ROW_WG_X, wy: 1 };
      return { tm, tn, bk: 0, wx: WG_X, wy: WG_Y };
    }
    case 'reg4':
      return { tm: M === 1 ? 1 : 4, tn: 4, bk: 0, wx: WG_X, wy: WG_Y };
    case 'wg32':
      return { tm: 4, tn: 4, bk: 16, wx: 8, wy: 8 };
    case 'wg64':
      return { tm: 4, tn: 4, bk: 16, wx: 16, wy: 16 };
  }
}

function matmulOperands(aIn: Operand, bIn: Operand, outShape: number[], opts: MatmulOptions, label: string): Tensor {
  const e = engine();
  const batchShape = broadcastShapes(aIn.batch, bIn.batch);
  let [a, b] = [aIn, bIn];
  let M = a.rows;
  let N = b.cols;
  const K = a.cols;
  const bias = opts.bias;
  let sBias = 1;
  const half = a.t.dtype === 'float16';
  if (b.t.dtype !== a.t.dtype) {
    throw new TypeError(`${label}: operands are ${a.t.dtype} and ${b.t.dtype}; expected one dtype (cast with .float() or .half(), or run under autocast())`);
  }
  if (bias) {
    if (bias.dtype !== a.t.dtype) throw new TypeError(`${label}: bias must be ${a.t.dtype} like the operands, got ${bias.dtype}`);
    if (bias.rank !== 1 || bias.shape[0] !== N) {
      throw new RangeError(`${label}: bias has shape ${fmt(bias.shape)}; expected [${N}] (the last dim of the result)`);
    }
    bias.assertAlive();
    sBias = bias.strides[0]!;
  }
  if (opts.activation !== undefined && !ACTIVATIONS.includes(opts.activation)) {
    throw new RangeError(`${label}: unknown activation '${String(opts.activation)}'; expected one of ${ACTIVATIONS.join(', ')}`);
  }
  const out = Tensor.empty(outShape, a.t.dtype);
  if (out.size === 0) return out;

  const temps: Tensor[] = [];
  const copyIfStrided = (o: Operand): Operand => {
    if (layout(o)) return o;
    const c = o.t.contiguous();
    temps.push(c);
    const r = c.rank;
    const m = operand(c, r - 2, o.t.shape[r - 2]!, o.t.shape[r - 1]!, c.strides[r - 2]!, c.strides[r - 1]!);
    return o.tr ? transposed(m) : m;
  };
  a = copyIfStrided(a);
  b = copyIfStrided(b);
  // With no batch of its own B meets every batch slice of A, as one product of that many rows.
  b = rowMajorB(a, b, b.batch.every((d) => d === 1) ? a.batch.reduce((n, d) => n * d, M) : M, temps);

  // A matrix-vector product computed as such would waste TN - 1 of every TN columns; the
  // transposed problem (b^T a^T) has the same output memory when N is 1.
  if (N === 1 && M > 1) {
    [a, b] = [transposed(b), transposed(a)];
    [M, N] = [N, M];
    sBias = 0;
  }
  const la = layout(a)!;
  const lb = layout(b)!;

  const rank = batchShape.length;
  const align = (o: Operand): number[] => {
    const lead = rank - o.batch.length;
    return batchShape.map((d, i) => (i < lead || o.batch[i - lead] !== d ? 0 : o.batchStrides[i - lead]!));
  };
  let sa = align(a);
  let sb = align(b);
  let bshape = [...batchShape];
  let ldA = la.ld;

  // Batch dims that only A has fold into M when they continue its rows ([B, M, K] x [K, N]
  // is one [B*M, K] x [K, N] product), so small M still fills whole tiles.
  if (!la.trans && sb.every((s) => s === 0) && rank > 0) {
    let ld: number | null = M > 1 ? ldA : null;
    let rows = M;
    let ok = true;
    for (let d = rank - 1; d >= 0 && ok; d--) {
      if (bshape[d] === 1) continue;
      if (ld === null) ld = sa[d]!;
      else ok = sa[d] === ld * rows;
      rows *= bshape[d]!;
    }
    if (ok) {
      M = rows;
      ldA = ld ?? 0;
      bshape = [];
      sa = [];
      sb = [];
    }
  }
  // Drop size-1 batch dims and merge neighbours that are contiguous in both operands.
  const dims: { size: number; sa: number; sb: number }[] = [];
  for (let d = 0; d < bshape.length; d++) {
    if (bshape[d] === 1) continue;
    const cur = { size: bshape[d]!, sa: sa[d]!, sb: sb[d]! };
    const prev = dims[dims.length - 1];
    if (prev && prev.sa === cur.sa * cur.size && prev.sb === cur.sb * cur.size) {
      prev.size *= cur.size;
      prev.sa = cur.sa;
      prev.sb = cur.sb;
    } else dims.push(cur);
  }
  // A fixed number of batch slots (unused ones of size 1) keeps one pipeline for every
  // batch rank up to 4; the few divisions per invocation are noise next to the K loop.
  const slots = Math.max(4, Math.ceil(dims.length / 4) * 4);
  while (dims.length < slots) dims.unshift({ size: 1, sa: 0, sb: 0 });
  // Counted after folding: batch dims folded into M must not also run as z slices.
  const batchCount = dims.reduce((n, d) => n * d.size, 1);

  const aligned = (o: Operand, ld: number): boolean =>
    o.offset % 4 === 0 && ld % 4 === 0 && dims.every((d) => (o === a ? d.sa : d.sb) % 4 === 0);
  // Along M or N a vec4 is clamped as a whole at the edge, so that dim must be a multiple
  // of 4 (which also makes tm a multiple of 4 for the transposed A).
  const vecA = aligned(a, ldA) && (!la.trans || M % 4 === 0);
  const vecB = aligned(b, lb.ld) && (lb.trans || N % 4 === 0);
  const problem: MatmulProblem = { M, N, K, batch: batchCount, transA: la.trans, transB: lb.trans, vecA, vecB };
  const variant = matmulChoice(e, problem, MATMUL_FAMILY);
  const spec: MatmulSpec = {
    ...variantShape(variant, la.trans, lb.trans, vecA, vecB, M, N),
    transA: la.trans,
    transB: lb.trans,
    vecA: vecA && !(variant === 'reg' && scalarA(la.trans, lb.trans)),
    vecB,
    batchRank: slots,
    bias: bias !== undefined,
    activation: opts.activation ?? null,
    accumulate: false,
    half,
  };
  const { tm, tn, wx, wy } = spec;
  // Register kernels count their grid base in invocations, workgroup-memory ones in workgroups.
  const [baseX, baseY] = spec.bk > 0 ? [1, 1] : [wx, wy];

  // Past the binding limit an operand is split along the dim whose ranges are contiguous
  // in its storage: M for a row-major A and the output, N for a column-major B (linear's
  // weight), K for a column-major A or a row-major B, whose partial products accumulate in
  // the output. Along a dim read as vec4s chunks are multiples of 4, so the vec4 choices
  // above hold for every chunk.
  const step = { M, N, K };
  const quantum = { M: la.trans && spec.vecA ? 4 : 1, N: !lb.trans && vecB ? 4 : 1, K: (!la.trans && spec.vecA) || (lb.trans && vecB) ? 4 : 1 };
  const cap = e.maxBindingElements;
  const limitDim = (dim: 'M' | 'N' | 'K', t: Tensor, ld: number, inner: number): void => {
    if (t.fitsBinding) return;
    if (batchCount > 1) throw e.tooLarge(label, t.span * t.elementBytes, `${label} splits only products without batch dims`);
    const rows = ld === 0 ? step[dim] : Math.floor((cap - inner) / ld) + 1;
    const chunk = rows >= step[dim] ? step[dim] : Math.floor(rows / quantum[dim]) * quantum[dim];
    if (!(chunk >= 1)) throw e.tooLarge(label, t.span * t.elementBytes, `${label} splits it by rows, and ${quantum[dim]} of its rows are over the limit`);
    step[dim] = chunk;
  };
  limitDim(la.trans ? 'K' : 'M', a.t, ldA, la.trans ? M : K);
  limitDim(lb.trans ? 'N' : 'K', b.t, lb.ld, lb.trans ? K : N);
  limitDim('M', out, N, N);
  if (bias && !bias.fitsBinding) throw e.tooLarge(label, bias.span * bias.elementBytes, `${label} does not split its bias`);

  const bind = (t: Tensor, delta: number, extent: number): BoundElements => {
    if (t.fitsBinding) {
      const whole = t.binding(label, true);
      return { resource: whole.resource, offset: whole.offset + delta };
    }
    return e.bindElements(t.storage.buffer, t.offset + delta, extent, label, t.elementBytes);
  };
  const biasBound = bias?.binding(label, true);
  const max = e.maxWorkgroupsPerDim;
  for (let m0 = 0; m0 < M; m0 += step.M) {
    const mc = Math.min(step.M, M - m0);
    for (let n0 = 0; n0 < N; n0 += step.N) {
      const nc = Math.min(step.N, N - n0);
      let k0 = 0;
      do {
        const kc = Math.min(step.K, K - k0);
        const first = k0 === 0;
        const last = k0 + kc >= K;
        const A = bind(a.t, la.trans ? m0 + k0 * ldA : m0 * ldA + k0, la.trans ? (kc - 1) * ldA + mc : (mc - 1) * ldA + kc);
        const B = bind(b.t, lb.trans ? n0 * lb.ld + k0 : k0 * lb.ld + n0, lb.trans ? (nc - 1) * lb.ld + kc : (kc - 1) * lb.ld + nc);
        const O = bind(out, m0 * N + n0, (mc - 1) * N + nc);
        const chunk: MatmulSpec = { ...spec, bias: spec.bias && first, activation: last ? spec.activation : null, accumulate: !first };
        const gx = Math.ceil(nc / (tn * wx));
        const gy = Math.ceil(mc / (tm * wy));
        const buffers = [A.resource, B.resource, ...(chunk.bias ? [biasBound!.resource] : []), O.resource];
        // Grids past the per-dimension workgroup limit run as several dispatches with offsets.
        for (let x = 0; x < gx; x += max) {
          for (let y = 0; y < gy; y += max) {
            for (let z = 0; z < batchCount; z += max) {
              const params = new Params()
                .u32('M', mc).u32('N', nc).u32('K', kc)
                .u32('offA', A.offset).u32('offB', B.offset).u32('ldA', ldA).u32('ldB', lb.ld)
                .u32('offOut', O.offset).u32('ldOut', N)
                .u32('xBase', x * baseX).u32('yBase', y * baseY).u32('zBase', z)
                .u32s('bshape', dims.map((d) => d.size)).u32s('bsa', dims.map((d) => d.sa)).u32s('bsb', dims.map((d) => d.sb));
              if (chunk.bias) params.u32('offBias', biasBound!.offset + n0 * sBias).u32('sBias', sBias);
              const workgroups = [Math.min(max, gx - x), Math.min(max, gy - y), Math.min(max, batchCount - z)] as const;
              e.dispatch({ key: matmulSpecKey(chunk), get code() { return matmulWgsl(chunk, params); }, params, buffers, workgroups, label });
            }
          }
        }
        k0 += kc;
      } while (k0 < K);
    }
  }
  for (const t of temps) t.dispose();
  return out;
}

/** Operands laid out as `p` describes (storage order, and leading dims that are or are not
 * multiples of 4 as its vec4 flags say), filled with 0.5: what the tuner times. */
function problemOperands(p: MatmulProblem): [Tensor, Tensor] {
  const make = (rows: number, contig: number, trans: boolean, vec: boolean): Tensor => {
    const ld = vec ? Math.ceil(contig / 4) * 4 : contig % 4 === 0 ? contig + 1 : contig;
    const stored = full(p.batch > 1 ? [p.batch, rows, ld] : [rows, ld], 0.5);
    const view = stored.narrow(-1, 0, contig);
    stored.dispose();
    if (!trans) return view;
    const t = view.transpose(-2, -1);
    view.dispose();
    return t;
  };
  // A is [M, K] (K contiguous) or the transpose of [K, M]; B is [K, N] or the transpose of [N, K].
  const a = p.transA ? make(p.K, p.M, true, p.vecA) : make(p.M, p.K, false, p.vecA);
  const b = p.transB ? make(p.N, p.K, true, p.vecB) : make(p.K, p.N, false, p.vecB);
  return [a, b];
}

/** The tuner's bench: operands laid out as the problem, and forced runs of a variant. */
function matmulBench(p: MatmulProblem): TuneBench<MatmulVariant> {
  const e = engine();
  const [a, b] = problemOperands(p);
  e.keep(a);
  e.keep(b);
  return {
    async time(variant, reps) {
      return timeRecorded(e, reps, () => {
        forceMatmulVariant(variant);
        try {
          return Array.from({ length: reps }, () => matmul(a, b));
        } finally {
          forceMatmulVariant(null);
        }
      });
    },
    dispose() {
      a.dispose();
      b.dispose();
    },
  };
}

const MATMUL_FAMILY: TuneFamily<MatmulVariant, MatmulProblem> = {
  variants: MATMUL_VARIANTS,
  shapeClass: matmulShapeClass,
  fallback: () => 'reg',
  bench: matmulBench,
};

/** The shape of `matmul(a, b)` and the matrix views of both operands, as PyTorch. */
function plan(a: Tensor, b: Tensor, label: string): { A: Operand; B: Operand; shape: number[] } {
  if (a.rank === 0 || b.rank === 0) {
    throw new RangeError(`${label}: both operands need at least one dim, got shapes ${fmt(a.shape)} and ${fmt(b.shape)}`);
  }
  const A = asMatrix(a, 'row');
  const B = asMatrix(b, 'col');
  if (A.cols !== B.rows) {
    throw new RangeError(
      `${label}: shapes ${fmt(a.shape)} and ${fmt(b.shape)} cannot be multiplied (${A.cols} columns in a vs ${B.rows} rows in b)`,
    );
  }
  let batch: number[];
  try {
    batch = broadcastShapes(A.batch, B.batch);
  } catch {
    throw new RangeError(`${label}: batch dims ${fmt(A.batch)} of a ${fmt(a.shape)} and ${fmt(B.batch)} of b ${fmt(b.shape)} cannot be broadcast together`);
  }
  const shape = [...batch, ...(a.rank > 1 ? [A.rows] : []), ...(b.rank > 1 ? [B.cols] : [])];
  return { A, B, shape };
}

/**
 * The matrix product as `torch.matmul`: 1-D operands are a row (a) or a column (b) whose
 * dim is dropped from the result; batch dims broadcast. Transposed and sliced views are
 * read in place. `bias` and `activation` are applied in the same kernel.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  checkFloat('matmul', 'a', a, true);
  checkFloat('matmul', 'b', b, true);
  const { A, B, shape } = plan(a, b, 'matmul');
  return matmulOperands(A, B, shape, opts, 'matmul');
}

/** `x @ weight^T + bias` as `torch.nn.functional.linear`, with weight in PyTorch's [out, in]
 * layout read transposed in place. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor, activation?: MatmulActivation): Tensor {
  checkFloat('linear', 'input', x, true);
  checkFloat('linear', 'weight', weight, true);
  if (weight.rank !== 2) throw new RangeError(`linear: weight must be 2-D [out, in], got ${fmt(weight.shape)}`);
  const [outF, inF] = weight.shape as [number, number];
  if (x.rank === 0 || x.shape[x.rank - 1] !== inF) {
    throw new RangeError(`linear: input ${fmt(x.shape)} has ${x.shape[x.rank - 1] ?? 0} features; weight ${fmt(weight.shape)} expects ${inF}`);
  }
  const W = transposed(operand(weight, 0, outF, inF, weight.strides[0]!, weight.strides[1]!));
  const X = asMatrix(x, 'row');
  const shape = [...x.shape.slice(0, -1), outF];
  return matmulOperands(X, W, shape, { bias, activation }, 'linear');
}

// CPU references ------------------------------------------------------------------------

export interface CpuMatmulOptions {
  bias?: HostTensor;
  activation?: MatmulActivation;
}

/** float64 `matmul` with the same shape rules, bias and activation. */
export function cpuMatmul(a: HostTensor, b: HostTensor, opts: CpuMatmulOptions = {}): HostTensor {
  if (a.shape.length === 0 || b.shape.length === 0) throw new RangeError('cpuMatmul: both operands need at least one dim');
  const as = a.shape.length === 1 ? [1, a.shape[0]!] : a.shape;
  const bs = b.shape.length === 1 ? [b.shape[0]!, 1] : b.shape;
  const [M, K] = as.slice(-2) as [number, number];
  const [K2, N] = bs.slice(-2) as [number, number];
  if (K !== K2) throw new RangeError(`cpuMatmul: shapes ${fmt(a.shape)} and ${fmt(b.shape)} cannot be multiplied`);
  const aBatch = as.slice(0, -2);
  const bBatch = bs.slice(0, -2);
  const batch = broadcastShapes(aBatch, bBatch);
  const ia = broadcastIndex(aBatch, batch);
  const ib = broadcastIndex(bBatch, batch);
  const shape = [...batch, ...(a.shape.length > 1 ? [M] : []), ...(b.shape.length > 1 ? [N] : [])];
  const out = host(shape);
  const act = opts.activation ? (UNARY[opts.activation].cpu as (x: number) => number) : null;
  for (let z = 0; z < ia.length; z++) {
    const oa = ia[z]! * M * K;
    const ob = ib[z]! * K * N;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a.data[oa + m * K + k]! * b.data[ob + k * N + n]!;
        if (opts.bias) s += opts.bias.data[n]!;
        out.data[(z * M + m) * N + n] = act ? act(s) : s;
      }
    }
  }
  return out;
}

/** float64 `linear` (weight [out, in]). */
export function cpuLinear(x: HostTensor, weight: HostTensor, bias?: HostTensor, activation?: MatmulActivation): HostTensor {
  const [outF, inF] = weight.shape as [number, number];
  const wt = host([inF, outF]);
  for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) wt.data[i * outF + o] = weight.data[o * inF + i]!;
  return cpuMatmul(x, wt, { bias, activation });
}
