import { registerGpuProvider } from './gpu.js';
import { nodeGpuProvider } from './gpu-node.js';

registerGpuProvider(nodeGpuProvider);

export * from './index.js';
