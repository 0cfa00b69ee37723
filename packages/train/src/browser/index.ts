export * from './images.js';
export * from './store.js';
export * from './weights.js';
export * from './text.js';
