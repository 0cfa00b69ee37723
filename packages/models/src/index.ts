export * from './safetensors.js';
export * from './hub/ref.js';
