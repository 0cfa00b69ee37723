export * from './index.js';
export * from './safetensors-node.js';
