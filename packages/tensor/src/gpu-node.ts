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

/** How long a run of Dawn's event polling spins before it polls on a timer. */
const SPIN_MS = 1;

/**
 * Dawn's Node binding resolves its promises (onSubmittedWorkDone, mapAsync) by polling for
 * events from a callback it hands to `globalThis.setImmediate`, and hands it again from
 * inside that callback until no promise is pending: while the GPU works, the main thread
 * spins. On a software adapter (lavapipe) the spinning core is one the GPU's threads need: on
 * 2 cores an EfficientNet-B0 forward waited 250-280 ms for work that finishes in 180-190 ms
 * when the thread sleeps. So Dawn's callbacks (native functions; the application's own pass
 * through untouched) run as immediates for the first `SPIN_MS` of a run of polls, which keeps
 * short waits short, and after that on a 1 ms timer. A run is a chain of polls each queued by
 * the one before (a late timer must not restart it).
 */
function throttleDawnPolling(): void {
  const immediate = globalThis.setImmediate;
  const nativeCode = (f: unknown): boolean => typeof f === 'function' && Function.prototype.toString.call(f).endsWith('{ [native code] }');
  let runStart = 0;
  let inPoll = false;
  const throttled = ((callback: (...args: unknown[]) => void, ...args: unknown[]) => {
    if (!nativeCode(callback)) return immediate(callback, ...args);
    const now = performance.now();
    if (!inPoll) runStart = now;
    const poll = (): void => {
      inPoll = true;
      try {
        callback(...args);
      } finally {
        inPoll = false;
      }
    };
    return now - runStart < SPIN_MS ? immediate(poll) : setTimeout(poll, 1);
  }) as typeof setImmediate;
  globalThis.setImmediate = Object.assign(throttled, { __promisify__: immediate.__promisify__ });
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
      throttleDawnPolling();
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
