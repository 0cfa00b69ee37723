/** WGSL pieces shared by the kernel files. */

export const WG = 64;

/** The linear invocation index for a 1-D grid split over x and y by `Engine.grid`. */
export function linearIndex(wg = WG): string {
  return `gid.x + gid.y * (nwg.x * ${wg}u)`;
}

export const MAIN_ARGS = '@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>';

/** The WGSL type a kernel computes `dtype` in: float16 is computed in f32. */
export function wgslType(dtype: 'float32' | 'float16' | 'int32'): 'f32' | 'i32' {
  return dtype === 'int32' ? 'i32' : 'f32';
}

/** The WGSL element type of a buffer holding `dtype`. Kernels written for float16 load its
 * f16 elements into f32 and compute there (PyTorch's "opmath" for half), storing f16. */
export function storageType(dtype: 'float32' | 'float16' | 'int32'): 'f32' | 'f16' | 'i32' {
  return dtype === 'float16' ? 'f16' : dtype === 'int32' ? 'i32' : 'f32';
}

/** The directive a shader with f16 buffers starts with (the device has `shader-f16`, or no
 * float16 tensor could exist). */
export function enableF16(used: boolean): string {
  return used ? 'enable f16;' : '';
}

/** The storage array of a float32 or (`half`) float16 buffer, of scalars or vec4s. */
export function storageArray(half: boolean, vec = false): string {
  const T = storageType(half ? 'float16' : 'float32');
  return `array<${vec ? `vec4<${T}>` : T}>`;
}

/** A loaded element, or vec4 of them, as f32: a float16 one widened, a float32 one as it is,
 * so a kernel's float32 text is unchanged by its float16 variant. */
export function widen(half: boolean, element: string, vec = false): string {
  return half ? `${vec ? 'vec4<f32>' : 'f32'}(${element})` : element;
}

/** An f32 value, or vec4 of them, as a float16 or float32 buffer stores it. */
export function stored(half: boolean, value: string, vec = false): string {
  return half ? `${vec ? 'vec4<f16>' : 'f16'}(${value})` : value;
}

/** Math WGSL lacks or gets wrong at the edges: erf (Abramowitz–Stegun 7.1.26, |err| < 1.5e-7)
 * and a tanh that saturates instead of overflowing exp for large |x|. */
export const MATH_HELPERS = /* wgsl */ `
fn erf_(x: f32) -> f32 {
  let s = sign(x);
  let a = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
  return s * y;
}
fn tanh_(x: f32) -> f32 {
  let c = clamp(x, -15.0, 15.0);
  let e = exp(2.0 * c);
  return keepNan_(x, (e - 1.0) / (e + 1.0));
}
// WGSL lets max/min/clamp return the other operand for NaN (relu(NaN) = 0), which would hide
// a diverged network: a NaN must reach the loss, as in PyTorch. The test is on the bits,
// because compilers may assume no NaNs: on Dawn over lavapipe, NaN != NaN is false, max(NaN,
// 0.0) is 0 and clamp(NaN, -1.0, 1.0) is -1 (measured; tensor/test/nan.test.ts).
fn isNan_(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}
fn keepNan_(x: f32, y: f32) -> f32 {
  return select(y, x, isNan_(x));
}
fn maxNan_(a: f32, b: f32) -> f32 {
  return select(max(a, b), a + b, isNan_(a) || isNan_(b));
}
fn minNan_(a: f32, b: f32) -> f32 {
  return select(min(a, b), a + b, isNan_(a) || isNan_(b));
}
fn sigmoid_(x: f32) -> f32 {
  if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); }
  let e = exp(x);
  return e / (1.0 + e);
}
`;

/** float64 versions of the helpers, for the CPU references. */
export function erf(x: number): number {
  // Abramowitz–Stegun 7.1.26 is too coarse for a float64 reference; use the series / continued fraction.
  const a = Math.abs(x);
  if (a < 2.5) {
    let sum = 0;
    let term = a;
    for (let n = 0; n < 60; n++) {
      sum += term / (2 * n + 1);
      term *= (-a * a) / (n + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  let f = 0;
  for (let n = 60; n >= 1; n--) f = (n / 2) / (a + f);
  const erfc = Math.exp(-a * a) / Math.sqrt(Math.PI) / (a + f);
  return Math.sign(x) * (1 - erfc);
}

/** Which dims a stride list moves along, for pipeline keys: generated index arithmetic skips
 * the dims of zero stride, so that pattern is part of the kernel's text. */
export function usedDims(strides: readonly number[]): string {
  return strides.map((x) => (x === 0 ? '0' : '1')).join('');
}
