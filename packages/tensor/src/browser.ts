import { registerGpuProvider } from './gpu.js';
import { browserGpuProvider } from './gpu-browser.js';
import { registerTuneStore } from './tune.js';
import { browserTuneStore } from './tune-store-browser.js';

registerGpuProvider(browserGpuProvider);
registerTuneStore(browserTuneStore);

export * from './index.js';
