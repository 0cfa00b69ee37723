export * from './index.js';
export * from './safetensors-node.js';
export * from './hub/hub-node.js';
export * from './pretrained-node.js';
export * from './pretrained-text-node.js';
export * from './pretrained-causal-lm-node.js';
export * from './pretrained-seq2seq-node.js';
export * from './peft/peft-files-node.js';

import { readFile } from 'node:fs/promises';
import { registerModuleFileIO } from './nn/module.js';
import { registerPretrainedPlatform } from './pretrained.js';
import { nodePretrainedPlatform, resolveWeights } from './pretrained-node.js';
import { writeFileAtomic } from './safetensors-node.js';

registerModuleFileIO({
  write: writeFileAtomic,
  read: async (source) => new Uint8Array(await readFile(await resolveWeights(source))),
});
registerPretrainedPlatform(nodePretrainedPlatform);
