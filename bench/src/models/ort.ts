/**
 * onnxruntime-node's WebGPU execution provider (the engine under transformers.js) on the same
 * Dawn adapter, and PyTorch on the CPU; both go through bench/scripts/torch_models.py, run with
 * /usr/bin/python3 (torch 1.13, torchvision 0.14). The ONNX files are exported once into
 * bench/.cache/onnx (gitignored).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { images, NETWORKS, tokenIds, type NetworkId } from './networks.js';

const here = dirname(fileURLToPath(import.meta.url));
const SCRIPT = join(here, '..', '..', 'scripts', 'torch_models.py');
const CACHE = join(here, '..', '..', '.cache', 'onnx');
export const PYTHON = '/usr/bin/python3';

/** Whether /usr/bin/python3 imports torch and torchvision; otherwise the reason. */
export function torchAvailable(): true | string {
  try {
    execFileSync(PYTHON, ['-c', 'import torch, torchvision'], { stdio: 'pipe' });
    return true;
  } catch (e) {
    return `${PYTHON} has no torch/torchvision (${e instanceof Error ? e.message.split('\n')[0] : String(e)})`;
  }
}

export interface TorchTimes {
  threads: number;
  torch: string;
  forward_ms: number;
  train_ms: number;
}

export function torchTimes(id: NetworkId, batch: number, reps: number): TorchTimes {
  const out = execFileSync(PYTHON, [SCRIPT, 'time', id, String(batch), String(reps)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 20 });
  return JSON.parse(out.trim().split('\n').at(-1)!) as TorchTimes;
}

export function onnxFile(id: NetworkId, batch: number): string {
  const file = join(CACHE, `${id}-b${batch}.onnx`);
  if (!existsSync(file)) {
    mkdirSync(CACHE, { recursive: true });
    execFileSync(PYTHON, [SCRIPT, 'export', id, String(batch), file], { stdio: ['ignore', 'ignore', 'pipe'] });
  }
  return file;
}

export interface OrtNet {
  run(): Promise<Float32Array>;
  release(): Promise<void>;
}

export async function ortWebGpu(id: NetworkId, batch: number): Promise<OrtNet> {
  const ort = await import('onnxruntime-node');
  const session: InferenceSession = await ort.InferenceSession.create(onnxFile(id, batch), { executionProviders: ['webgpu'] });
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
