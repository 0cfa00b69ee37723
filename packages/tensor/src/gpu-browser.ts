import type { GpuProvider } from './gpu.js';

/** The browser's own WebGPU. Compatibility adapters (GL-backed) are accepted as a fallback. */
export const browserGpuProvider: GpuProvider = {
  name: 'browser, navigator.gpu',
  gpu() {
    return typeof navigator !== 'undefined' ? navigator.gpu : undefined;
  },
  adapterOptions: [
    { powerPreference: 'high-performance' },
    { featureLevel: 'compatibility' } as GPURequestAdapterOptions,
  ],
  noAdapterHelp() {
    return (
      'This browser exposes no WebGPU adapter. Use Chrome/Edge 113+ (on Linux start it with ' +
      '--enable-unsafe-webgpu, or enable chrome://flags/#enable-unsafe-webgpu), Safari 26+ or ' +
      'Firefox 141+ on Windows; the page must be served over https or from localhost.'
    );
  },
};
