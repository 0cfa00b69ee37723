export * from './index.js';
export * from './browser/index.js';
