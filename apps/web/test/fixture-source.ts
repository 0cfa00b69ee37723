/** A save_pretrained folder on disk as the text loaders read it, for the Node side of the browser tests. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseSafetensors, type TextCheckpointSource } from '@tl/models';

export function folderSource(dir: string): TextCheckpointSource {
  const named = (f: string) => ({ name: join(dir, f), text: readFileSync(join(dir, f), 'utf8') });
  return {
    config: async () => named('config.json'),
    tokenizer: async () => ({ tokenizer: named('tokenizer.json'), tokenizerConfig: existsSync(join(dir, 'tokenizer_config.json')) ? named('tokenizer_config.json') : null }),
    weights: async () => ({ name: join(dir, 'model.safetensors'), tensors: parseSafetensors(readFileSync(join(dir, 'model.safetensors')), 'model.safetensors') }),
  };
}
