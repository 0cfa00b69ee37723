export * from './index.js';
export * from './weights-browser.js';
export * from './pretrained-text-browser.js';
export * from './pretrained-generative-browser.js';

import { registerPretrainedPlatform } from './pretrained.js';
import { fromPretrainedTextBrowser, type TextPretrainedBrowserOptions } from './pretrained-text-browser.js';
import { fetchWeightsBytes } from './weights-browser.js';

registerPretrainedPlatform({
  readWeights: fetchWeightsBytes,
  // fromPretrainedTextBrowser checks what it is given and names what it expects.
  loadText: (id, weights, opts) => fromPretrainedTextBrowser(id, { ...opts, weights: weights as TextPretrainedBrowserOptions['weights'] }),
});
