export * from './safetensors.js';
export * from './hub/ref.js';
export * from './nn/module.js';
export * from './nn/layers.js';
export * from './nn/classifier.js';
export * from './arch/resnet.js';
export * from './arch/cifar-resnet.js';
