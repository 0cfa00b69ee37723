/**
 * The pure-JavaScript CPU peer: plain loops over Float32Array, written the way a careful
 * JS programmer would (cache-friendly loop order, row blocking, no allocation in the hot
 * loops), single-threaded and without SIMD. It is a baseline, not a reference: the engine's
 * float64 references live next to its kernels.
 */

/** C[M,N] = A[M,K] · B[K,N], row-major. Four rows of C share each streamed row of B. */
export function jsMatmul(a: Float32Array, b: Float32Array, m: number, k: number, n: number, out = new Float32Array(m * n)): Float32Array {
  out.fill(0);
  let i = 0;
  for (; i + 4 <= m; i += 4) {
    const c0 = i * n, c1 = c0 + n, c2 = c1 + n, c3 = c2 + n;
    const a0 = i * k, a1 = a0 + k, a2 = a1 + k, a3 = a2 + k;
    for (let p = 0; p < k; p++) {
      const x0 = a[a0 + p]!, x1 = a[a1 + p]!, x2 = a[a2 + p]!, x3 = a[a3 + p]!;
      const bp = p * n;
      for (let j = 0; j < n; j++) {
        const y = b[bp + j]!;
        out[c0 + j] += x0 * y;
        out[c1 + j] += x1 * y;
        out[c2 + j] += x2 * y;
        out[c3 + j] += x3 * y;
      }
    }
  }
  for (; i < m; i++) {
    const c0 = i * n;
    for (let p = 0; p < k; p++) {
      const x = a[i * k + p]!;
      const bp = p * n;
      for (let j = 0; j < n; j++) out[c0 + j] += x * b[bp + j]!;
    }
  }
  return out;
}

export interface ConvShape {
  n: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  kh: number;
  kw: number;
  pad: number;
  groups: number;
}

/** NCHW conv2d, stride 1, weights [cout, cin/groups, kh, kw], no bias. Each weight tap adds
 * a shifted input row to an output row, so the inner loop is a contiguous axpy. */
export function jsConv2d(x: Float32Array, wt: Float32Array, s: ConvShape, out?: Float32Array): Float32Array {
  const { n, cin, h, w, cout, kh, kw, pad, groups } = s;
  const oh = h + 2 * pad - kh + 1;
  const ow = w + 2 * pad - kw + 1;
  const cinG = cin / groups;
  const coutG = cout / groups;
  const y = out ?? new Float32Array(n * cout * oh * ow);
  y.fill(0);
  for (let b = 0; b < n; b++) {
    for (let co = 0; co < cout; co++) {
      const g = Math.floor(co / coutG);
      const yBase = (b * cout + co) * oh * ow;
      for (let cg = 0; cg < cinG; cg++) {
        const ci = g * cinG + cg;
        const xBase = (b * cin + ci) * h * w;
        const wBase = (co * cinG + cg) * kh * kw;
        for (let r = 0; r < kh; r++) {
          for (let q = 0; q < kw; q++) {
            const wv = wt[wBase + r * kw + q]!;
            // Output columns whose input column ox + q - pad lies inside the image.
            const x0 = Math.max(0, pad - q);
            const x1 = Math.min(ow, w + pad - q);
            for (let oy = 0; oy < oh; oy++) {
              const iy = oy + r - pad;
              if (iy < 0 || iy >= h) continue;
              const yr = yBase + oy * ow;
              const xr = xBase + iy * w + q - pad;
              for (let ox = x0; ox < x1; ox++) y[yr + ox] += wv * x[xr + ox]!;
            }
          }
        }
      }
    }
  }
  return y;
}

/** Softmax over the last dim of a [rows, cols] array, max-subtracted. */
export function jsSoftmax(x: Float32Array, rows: number, cols: number, out = new Float32Array(rows * cols)): Float32Array {
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let max = -Infinity;
    for (let j = 0; j < cols; j++) if (x[base + j]! > max) max = x[base + j]!;
    let sum = 0;
    for (let j = 0; j < cols; j++) {
      const e = Math.exp(x[base + j]! - max);
      out[base + j] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let j = 0; j < cols; j++) out[base + j] *= inv;
  }
  return out;
}
