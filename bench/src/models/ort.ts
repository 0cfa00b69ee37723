/**
 * onnxruntime-node's WebGPU execution provider (the engine under transformers.js) on the same
 * Dawn adapter, and PyTorch eager; both go through bench/scripts/torch_models.py, run with a
 * Python that has torch and torchvision (here /usr/bin/python3: torch 1.13, torchvision 0.14).
 * The ONNX files are exported once into bench/.cache/onnx (gitignored).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { BENCH_DIR } from '../harness.js';
import { images, NETWORKS, tokenIds, type NetworkId } from './networks.js';

const SCRIPT = join(BENCH_DIR, 'scripts', 'torch_models.py');
const CACHE = join(BENCH_DIR, '.cache', 'onnx');
export const DEFAULT_PYTHON = '/usr/bin/python3';
export type TorchDevice = 'cpu' | 'cuda';

/** Whether `python` imports torch and torchvision (and sees a GPU, for cuda); otherwise the reason. */
export function torchAvailable(python: string, device: TorchDevice): true | string {
  const check = device === 'cuda' ? 'import torch, torchvision; assert torch.cuda.is_available(), "no CUDA device"' : 'import torch, torchvision';
  try {
    execFileSync(python, ['-c', check], { stdio: 'pipe' });
    return true;
  } catch (e) {
    const why = e instanceof Error && 'stderr' in e ? String(e.stderr).trim().split('\n').at(-1) : String(e);
    return `${python} cannot run torch/torchvision${device === 'cuda' ? ' on CUDA' : ''} (${why})`;
  }
}

export interface TorchTimes {
  threads: number;
  torch: string;
  device: TorchDevice;
  /** The CUDA device's name, when device is cuda. */
  gpu?: string;
  forward_ms: number;
  train_ms: number;
}

export function torchTimes(python: string, device: TorchDevice, id: NetworkId, batch: number, reps: number): TorchTimes {
  const out = execFileSync(python, [SCRIPT, 'time', id, String(batch), String(reps), device], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 20 });
  return JSON.parse(out.trim().split('\n').at(-1)!) as TorchTimes;
}

/** The network's ONNX file, exported by `python` on first use. */
export function onnxFile(python: string, id: NetworkId, batch: number): string {
  const file = join(CACHE, `${id}-b${batch}.onnx`);
  if (!existsSync(file)) {
    mkdirSync(CACHE, { recursive: true });
    // Written under a temporary name so that an interrupted export leaves no truncated file.
    const tmp = `${file}.tmp-${process.pid}`;
    execFileSync(python, [SCRIPT, 'export', id, String(batch), tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
    renameSync(tmp, file);
  }
  return file;
}

export interface OrtNet {
  run(): Promise<Float32Array>;
  release(): Promise<void>;
}

export async function ortWebGpu(python: string, id: NetworkId, batch: number): Promise<OrtNet> {
  const ort = await import('onnxruntime-node');
  const session: InferenceSession = await ort.InferenceSession.create(onnxFile(python, id, batch), { executionProviders: ['webgpu'] });
  const net = NETWORKS[id];
  const input: OrtTensor = net.kind === 'image'
    ? new ort.Tensor('float32', images(batch, net.size), [batch, 3, net.size, net.size])
    : new ort.Tensor('int64', BigInt64Array.from(tokenIds(batch, net.size), (v) => BigInt(v)), [batch, net.size]);
  return {
    async run() {
      const r = await session.run({ [session.inputNames[0]!]: input });
      return r[session.outputNames[0]!]!.data as Float32Array;
    },
    release: () => session.release(),
  };
}
