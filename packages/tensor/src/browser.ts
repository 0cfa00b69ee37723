import { registerGpuProvider } from './gpu.js';
import { browserGpuProvider } from './gpu-browser.js';

registerGpuProvider(browserGpuProvider);

export * from './index.js';
