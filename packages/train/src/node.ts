export * from './index.js';
export * from './node/image-folder.js';
export { peakResidentBytes } from './node/peak-rss.js';
export * from './node/idx.js';
export * from './node/text-file.js';
export * from './node/causal-lm-file.js';
export * from './node/audio-folder.js';
export * from './node/store.js';
