import { registerGpuProvider } from './gpu.js';
import { nodeGpuProvider } from './gpu-node.js';
import { registerTuneStore } from './tune.js';
import { nodeTuneStore } from './tune-store-node.js';

registerGpuProvider(nodeGpuProvider);
registerTuneStore(nodeTuneStore);

export { autotuneFilePath } from './tune-store-node.js';

export * from './index.js';
