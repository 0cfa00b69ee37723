import type { GpuProvider } from './gpu.js';

let instance: GPU | undefined;

/**
 * Dawn's binding is an optional peer of @tl/tensor (browser users should not download its
 * 130 MB), so it is imported on first use, and its absence says what to install. `load` is
 * the import to run (tests pass one that fails as a missing package does).
 */
export async function loadDawn(load: () => Promise<typeof import('webgpu')> = () => import('webgpu')): Promise<typeof import('webgpu')> {
  try {
    return await load();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && /['"]webgpu['"]/.test(String((err as Error).message))) {
      throw new Error(
        '@tl/tensor: the npm package "webgpu" (Dawn, the WebGPU binding for Node) is not installed. ' +
          'Install it beside @tl/tensor: `npm install webgpu`',
        { cause: err },
      );
    }
    throw err;
  }
}

/** Dawn through the npm `webgpu` package. */
export const nodeGpuProvider: GpuProvider = {
  name: 'Node, Dawn via the npm package "webgpu"',
  async gpu() {
    if (!instance) {
      const { create, globals } = await loadDawn();
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
