export * from './images.js';
export * from './store.js';
export * from './audio.js';
