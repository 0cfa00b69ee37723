import { create, globals } from 'webgpu';
import type { GpuProvider } from './gpu.js';

let instance: GPU | undefined;

/** Dawn through the npm `webgpu` package. */
export const nodeGpuProvider: GpuProvider = {
  name: 'Node, Dawn via the npm package "webgpu"',
  gpu() {
    if (!instance) {
      // lavapipe runs 2 rasterizer threads by default and leaves them idle a third of the
      // time; 4 keeps the CPU busy (measured ~2x on 2 cores). Only read at driver load.
      process.env.LP_NUM_THREADS ??= '4';
      Object.assign(globalThis, globals);
      instance = create([]);
    }
    return instance;
  },
  noAdapterHelp() {
    if (process.platform === 'linux') {
      return (
        'Dawn needs a Vulkan driver. On Debian 12 install Mesa from bookworm-backports ' +
        '(Debian\'s own lavapipe is too old for Dawn): add "bookworm-backports" to apt\'s sources, then ' +
        '`apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1`. On Ubuntu 24.04+ ' +
        '`apt-get install mesa-vulkan-drivers libvulkan1`. With an NVIDIA/AMD GPU, install its Vulkan driver. ' +
        'Check with `vulkaninfo --summary` (package vulkan-tools).'
      );
    }
    if (process.platform === 'darwin') return 'On macOS Dawn uses Metal; use macOS 13 or newer.';
    if (process.platform === 'win32') return 'On Windows Dawn uses Direct3D 12; update the GPU driver.';
    return `Platform ${process.platform} has no Dawn build in the npm package "webgpu".`;
  },
};
