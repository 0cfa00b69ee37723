export * from './index.js';
export * from './safetensors-node.js';
export * from './hub/hub-node.js';
export * from './pretrained-node.js';
