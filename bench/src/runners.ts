/**
 * One runner per system under test. A runner owns its inputs (already on its device),
 * enqueues one call per `step()`, and `wait()`s for the last call by reading back one
 * element of its output: the same end-to-end measure for every GPU system.
 */
import type * as TfCore from '@tensorflow/tfjs-core';
import * as tl from '@tl/tensor';
import type { Tensor } from '@tl/tensor';
import type { Case, ConvCase } from './cases.js';
import { jsConv2d, jsMatmul, jsSoftmax } from './cpu.js';

export interface Runner {
  step(): void;
  wait(): Promise<void>;
  /** The last call's output in canonical layout (row-major, NCHW). */
  output(): Promise<Float32Array>;
  dispose(): void;
}

/** A system under test: `make` returns a runner, or a reason why the kernel is not there. */
export interface System {
  name: string;
  /** CPU-bound systems get fewer repetitions and no full-size warm-up (see harness.ts). */
  slow: boolean;
  make(c: Case): Promise<Runner | string>;
}

// Ours -------------------------------------------------------------------------------------

type MatmulFn = (a: Tensor, b: Tensor) => Tensor;
type LinearFn = (x: Tensor, w: Tensor) => Tensor;
type Conv2dFn = (x: Tensor, w: Tensor, opts: { padding: number; groups: number }) => Tensor;
type SoftmaxFn = (x: Tensor, dim: number) => Tensor;

/** Looked up by name so that a kernel not written yet is reported, not a crash. */
function op<F>(name: string): F | undefined {
  const f = (tl as unknown as Record<string, unknown>)[name];
  return typeof f === 'function' ? (f as F) : undefined;
}

export function ours(): System {
  return {
    name: 'ours',
    slow: false,
    async make(c) {
      const s = c.spec;
      const inputs = c.inputs.map((data, i) => tl.tensor(data, { shape: inputShape(c, i) }));
      let call: () => Tensor;
      if (s.kernel === 'matmul') {
        const f = op<MatmulFn>('matmul');
        if (!f) return disposeAll(inputs, 'not available (@tl/tensor exports no matmul)');
        call = () => f(inputs[0]!, inputs[1]!);
      } else if (s.kernel === 'linear') {
        const f = op<LinearFn>('linear');
        if (!f) return disposeAll(inputs, 'not available (@tl/tensor exports no linear)');
        call = () => f(inputs[0]!, inputs[1]!);
      } else if (s.kernel === 'softmax') {
        const f = op<SoftmaxFn>('softmax');
        if (!f) return disposeAll(inputs, 'not available (@tl/tensor exports no softmax)');
        call = () => f(inputs[0]!, -1);
      } else {
        const f = op<Conv2dFn>('conv2d');
        if (!f) return disposeAll(inputs, 'not available (@tl/tensor exports no conv2d)');
        const opts = { padding: s.pad, groups: s.groups };
        call = () => f(inputs[0]!, inputs[1]!, opts);
      }
      let last: Tensor | null = null;
      return {
        step() {
          const out = call();
          // Safe right after recording: the pool reuses the buffer only for later work.
          last?.dispose();
          last = out;
        },
        async wait() {
          if (last) await tl.engine().read(last.buffer, last.offset * 4, 4);
        },
        async output() {
          if (!last) throw new Error('output() before step()');
          return (await last.data()) as Float32Array;
        },
        dispose() {
          last?.dispose();
          for (const t of inputs) t.dispose();
        },
      };
    },
  };
}

function disposeAll(ts: Tensor[], reason: string): string {
  for (const t of ts) t.dispose();
  return reason;
}

function inputShape(c: Case, i: number): number[] {
  const s = c.spec;
  if (s.kernel === 'matmul') return i === 0 ? [s.m, s.k] : [s.k, s.n];
  if (s.kernel === 'linear') return i === 0 ? [s.m, s.k] : [s.n, s.k];
  if (s.kernel === 'softmax') return [s.rows, s.cols];
  return i === 0 ? [s.n, s.cin, s.h, s.w] : [s.cout, s.cin / s.groups, s.kh, s.kw];
}

// TF.js --------------------------------------------------------------------------------------

/** TF.js on one of its backends. Conv runs in TF.js's native NHWC / HWIO layout; the layout
 * change happens on the host, outside the timed region. */
export function tfjs(tf: typeof TfCore, backend: 'webgpu' | 'wasm', name: string): System {
  return {
    name,
    slow: false,
    async make(c) {
      if (!(await tf.setBackend(backend))) return `TF.js backend ${backend} failed to initialise`;
      const s = c.spec;
      let inputs: TfCore.Tensor[];
      let call: () => TfCore.Tensor;
      if (s.kernel === 'matmul') {
        inputs = [tf.tensor2d(c.inputs[0]!, [s.m, s.k]), tf.tensor2d(c.inputs[1]!, [s.k, s.n])];
        call = () => tf.matMul(inputs[0] as TfCore.Tensor2D, inputs[1] as TfCore.Tensor2D);
      } else if (s.kernel === 'linear') {
        inputs = [tf.tensor2d(c.inputs[0]!, [s.m, s.k]), tf.tensor2d(c.inputs[1]!, [s.n, s.k])];
        call = () => tf.matMul(inputs[0] as TfCore.Tensor2D, inputs[1] as TfCore.Tensor2D, false, true);
      } else if (s.kernel === 'softmax') {
        inputs = [tf.tensor2d(c.inputs[0]!, [s.rows, s.cols])];
        call = () => tf.softmax(inputs[0]!);
      } else {
        if (2 * s.pad !== s.kh - 1 || 2 * s.pad !== s.kw - 1) return 'only "same" padding is mapped to TF.js';
        const x = tf.tensor4d(nchwToNhwc(c.inputs[0]!, s), [s.n, s.h, s.w, s.cin]);
        if (s.kernel === 'conv2d') {
          if (s.groups !== 1) return 'TF.js conv2d has no groups';
          const w = tf.tensor4d(oihwToHwio(c.inputs[1]!, s), [s.kh, s.kw, s.cin, s.cout]);
          inputs = [x, w];
          call = () => tf.conv2d(x, w, 1, 'same');
        } else {
          if (s.groups !== s.cin || s.cout !== s.cin) return 'depthwise needs groups = cin = cout';
          const w = tf.tensor4d(oihwToHwio(c.inputs[1]!, { ...s, cin: 1 }), [s.kh, s.kw, s.cin, 1]);
          inputs = [x, w];
          call = () => tf.depthwiseConv2d(x, w, 1, 'same');
        }
      }
      let last: TfCore.Tensor | null = null;
      return {
        step() {
          const out = call();
          last?.dispose();
          last = out;
        },
        async wait() {
          if (!last) return;
          const one = tf.tidy(() => tf.slice(tf.reshape(last!, [-1]), 0, 1));
          await one.data();
          one.dispose();
        },
        async output() {
          if (!last) throw new Error('output() before step()');
          const data = (await last.data()) as Float32Array;
          return s.kernel === 'conv2d' || s.kernel === 'depthwise' ? nhwcToNchw(data, c.outShape) : data;
        },
        dispose() {
          last?.dispose();
          for (const t of inputs) t.dispose();
        },
      };
    },
  };
}

function nchwToNhwc(x: Float32Array, s: ConvCase): Float32Array {
  const { n, cin: c, h, w } = s;
  const out = new Float32Array(x.length);
  for (let b = 0; b < n; b++)
    for (let ch = 0; ch < c; ch++)
      for (let i = 0; i < h * w; i++) out[(b * h * w + i) * c + ch] = x[(b * c + ch) * h * w + i]!;
  return out;
}

function nhwcToNchw(x: Float32Array, [n, c, h, w]: number[]): Float32Array {
  const out = new Float32Array(x.length);
  const hw = h! * w!;
  for (let b = 0; b < n!; b++)
    for (let ch = 0; ch < c!; ch++)
      for (let i = 0; i < hw; i++) out[(b * c! + ch) * hw + i] = x[(b * hw + i) * c! + ch]!;
  return out;
}

/** PyTorch weights [cout, cin, kh, kw] to TF.js filters [kh, kw, cin, cout]. */
function oihwToHwio(wt: Float32Array, s: { cout: number; cin: number; kh: number; kw: number }): Float32Array {
  const { cout, cin, kh, kw } = s;
  const out = new Float32Array(wt.length);
  for (let o = 0; o < cout; o++)
    for (let i = 0; i < cin; i++)
      for (let r = 0; r < kh; r++)
        for (let q = 0; q < kw; q++) out[((r * kw + q) * cin + i) * cout + o] = wt[((o * cin + i) * kh + r) * kw + q]!;
  return out;
}

// Pure JS --------------------------------------------------------------------------------------

export function jsCpu(): System {
  return {
    name: 'js-cpu',
    slow: true,
    async make(c) {
      const s = c.spec;
      const out = new Float32Array(c.outShape.reduce((a, b) => a * b, 1));
      const [x, y] = c.inputs;
      let call: () => void;
      if (s.kernel === 'matmul') call = () => jsMatmul(x!, y!, s.m, s.k, s.n, out);
      else if (s.kernel === 'linear') {
        // The weight transposed once, outside the timed calls.
        const wt = new Float32Array(s.k * s.n);
        for (let o = 0; o < s.n; o++) for (let i = 0; i < s.k; i++) wt[i * s.n + o] = y![o * s.k + i]!;
        call = () => jsMatmul(x!, wt, s.m, s.k, s.n, out);
      } else if (s.kernel === 'softmax') call = () => jsSoftmax(x!, s.rows, s.cols, out);
      else call = () => jsConv2d(x!, y!, s, out);
      return {
        step: call,
        wait: () => Promise.resolve(),
        output: () => Promise.resolve(out),
        dispose() {},
      };
    },
  };
}
