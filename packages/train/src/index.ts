export * from './optim.js';
export * from './schedule.js';
