/**
 * Our side of `bench:models`: the networks through @tl/models' registry with random weights,
 * a forward pass (eval, no tape) and a full SGD training step, each timed end to end, with the
 * dispatches each records, the host time spent recording them, the FLOPs counted from the
 * modules, and a per-layer-type breakdown by replaying one forward pass dispatch by dispatch.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { BatchNorm2d, Conv1D, Conv2d, createModel, Embedding, LayerNorm, Linear, Module, SqueezeExcitation } from '@tl/models';
import { SGD } from '@tl/train';
import { captureAndReplay, countDispatches, timesByTag, type TagTime } from '../dispatch-replay.js';
import { images, NETWORKS, tokenIds, type NetworkId } from './networks.js';

export type Forwardable = Module & { forward(x: Tensor): Tensor };

export interface OursNet {
  model: Forwardable;
  input: Tensor;
  labels: Tensor;
  dispose(): void;
}

export function buildOurs(id: NetworkId, batch: number): OursNet {
  const net = NETWORKS[id];
  A.manualSeed(7);
  const model = createModel(id, { numClasses: net.classes }) as Forwardable;
  const input = net.kind === 'image'
    ? A.tensor(images(batch, net.size), { shape: [batch, 3, net.size, net.size] })
    : A.tensor(tokenIds(batch, net.size), { shape: [batch, net.size], dtype: 'int32' });
  const labels = A.tensor(Int32Array.from({ length: batch }, (_, i) => i % net.classes), { shape: [batch], dtype: 'int32' });
  return {
    model,
    input,
    labels,
    dispose: () => {
      model.dispose();
      input.dispose();
      labels.dispose();
    },
  };
}

/** The layer type a module's own dispatches belong to, or null to go by the kernel label. */
function layerType(m: Module): string | null {
  if (m instanceof Conv2d) {
    if (m.groups > 1 && m.groups === m.inChannels) return 'conv depthwise';
    const [kh, kw] = m.weight.shape.slice(2);
    return kh === 1 && kw === 1 ? 'conv 1x1' : 'conv kxk';
  }
  if (m instanceof Linear || m instanceof Conv1D) return 'linear';
  if (m instanceof BatchNorm2d || m instanceof LayerNorm) return 'norm';
  if (m instanceof Embedding) return 'embedding';
  if (m.constructor.name === 'Lambda' || m.constructor.name === 'Dropout') return 'elementwise';
  return null;
}

function byLabel(label: string, inAttention: boolean): string {
  if (/matmul|bmm/i.test(label)) return inAttention ? 'attention matmul' : 'matmul';
  if (/softmax/i.test(label)) return 'softmax';
  if (/norm/i.test(label)) return 'norm';
  if (/conv/i.test(label)) return 'conv kxk';
  if (/mean|sum|max|reduce|pool/i.test(label)) return 'pool/reduce';
  if (/gather|embed|index/i.test(label)) return 'embedding';
  return 'elementwise';
}

/**
 * Wraps every module's forward, while `active`, so that the innermost module's type, and the
 * FLOPs of every Conv2d, Linear and Conv1D (2 x output elements x fan-in), are known. A
 * squeeze-excitation block keeps its 1x1 convs, means and gate under its own name. The
 * wrappers come off when inactive: a wrapped layer runs its own forward, so batch norms do
 * not fold into their convolutions while instrumented (the breakdown times them apart).
 */
export class Instrument {
  flops = 0;
  private readonly stack: { type: string | null; attention: boolean }[] = [];
  private readonly wrapped: [Module, (...args: unknown[]) => unknown][] = [];
  private on = false;
  constructor(model: Module) {
    for (const [, m] of model.namedModules()) {
      const own = m instanceof SqueezeExcitation ? 'squeeze-excitation' : layerType(m);
      const attention = /Attention/.test(m.constructor.name);
      const forward = m.forward.bind(m) as (...args: unknown[]) => unknown;
      const self = this;
      this.wrapped.push([m, function (...args: unknown[]) {
        const outer = self.stack.at(-1);
        const sticky = outer?.type === 'squeeze-excitation';
        self.stack.push({ type: sticky ? outer!.type : own ?? outer?.type ?? null, attention: attention || (outer?.attention ?? false) });
        try {
          const y = forward(...args);
          if ((m instanceof Conv2d || m instanceof Linear || m instanceof Conv1D) && y instanceof A.Tensor) {
            const w = m.weight.shape;
            const fanIn = m instanceof Conv1D ? w[0]! : w.slice(1).reduce((a, d) => a * d, 1);
            self.flops += 2 * y.size * fanIn;
          }
          return y;
        } finally {
          self.stack.pop();
        }
      }]);
    }
  }
  get active(): boolean {
    return this.on;
  }
  set active(on: boolean) {
    this.on = on;
    for (const [m, wrapper] of this.wrapped) {
      if (on) (m as unknown as { forward: (...args: unknown[]) => unknown }).forward = wrapper;
      else delete (m as unknown as { forward?: unknown }).forward;
    }
  }
  /** The layer type of a dispatch with `label` recorded now. */
  tag(label: string): string {
    const top = this.stack.at(-1);
    if (top?.type && !(top.type === 'norm' && /matmul/i.test(label))) return top.type;
    return byLabel(label, top?.attention ?? false);
  }
}

export interface Recorded {
  /** Wall milliseconds from the first op to the result on the host. */
  ms: number;
  /** Host milliseconds spent recording (JS, bind groups, encoding) before the wait. */
  recordMs: number;
  dispatches: number;
}

export async function forwardOnce(n: OursNet): Promise<Recorded> {
  n.model.eval();
  const t0 = performance.now();
  const { result: out, dispatches } = countDispatches(() => A.tidy(() => A.noGrad(() => n.model.forward(n.input))));
  const recordMs = performance.now() - t0;
  await out.data();
  const ms = performance.now() - t0;
  out.dispose();
  return { ms, recordMs, dispatches };
}

export interface Trainer {
  step(): Promise<Recorded & { loss: number }>;
  dispose(): void;
}

/** Full fine-tuning with plain SGD: forward in training mode, cross-entropy, backward, update. */
export function trainer(n: OursNet): Trainer {
  n.model.train();
  const optimizer = new SGD(n.model.parameters({ trainable: true }), { lr: 1e-4 });
  return {
    async step() {
      const t0 = performance.now();
      const { result: loss, dispatches } = countDispatches(() => {
        const l = A.tidy(() => {
          const lo = A.crossEntropy(n.model.forward(n.input), n.labels);
          A.backward(lo);
          return lo;
        });
        optimizer.step();
        optimizer.zeroGrad();
        return l;
      });
      const recordMs = performance.now() - t0;
      const value = (await loss.data())[0]!;
      const ms = performance.now() - t0;
      loss.dispose();
      return { ms, recordMs, dispatches, loss: value };
    },
    dispose: () => optimizer.dispose(),
  };
}

/** FLOPs of one forward pass of the batch, counted from the modules plus attention. */
export async function countFlops(id: NetworkId, n: OursNet, inst: Instrument): Promise<number> {
  inst.flops = 0;
  inst.active = true;
  try {
    await forwardOnce(n);
  } finally {
    inst.active = false;
  }
  return inst.flops + NETWORKS[id].attentionFlops * n.input.shape[0]!;
}

export interface Breakdown {
  floorMs: number;
  replayMs: number;
  types: TagTime[];
}

/** One forward pass replayed dispatch by dispatch, summed per layer type. */
export async function forwardBreakdown(n: OursNet, inst: Instrument): Promise<Breakdown> {
  n.model.eval();
  inst.active = true;
  try {
    const r = await captureAndReplay(async () => {
      const out = A.tidy(() => A.noGrad(() => n.model.forward(n.input)));
      await out.data();
      out.dispose();
    }, (label) => inst.tag(label));
    return { floorMs: r.floorMs, replayMs: r.times.reduce((a, b) => a + b, 0), types: timesByTag(r) };
  } finally {
    inst.active = false;
  }
}
