/**
 * The speech panel in a page of its own (built with esbuild by speech.test.ts): the panel
 * mounted as apps/web mounts it, the shipped backbone's weights served beside the page, and
 * `window.__speech` for the test: decoding given bytes and recording the (fake) microphone
 * through @tl/train's browser entry, and the panel's state.
 */
import { decodeAudioBlob, recordMicrophone } from '@tl/train';
import { mountSpeechPanel, type SpeechPanelState } from '../src/speech-panel.js';

export interface ClipResult {
  clip: number[];
  rate: number;
  channels: number;
  browserResampled: boolean;
}

const asResult = (r: Awaited<ReturnType<typeof decodeAudioBlob>>): ClipResult => ({ clip: Array.from(r.clip), rate: r.facts.rate, channels: r.facts.channels, browserResampled: r.facts.browserResampled });

declare global {
  interface Window {
    __speech?: {
      decode(base64: string, length: number): Promise<ClipResult | { error: string }>;
      record(): Promise<ClipResult | { error: string }>;
      state: SpeechPanelState;
    };
  }
}

const guard = async (fn: () => Promise<ClipResult>): Promise<ClipResult | { error: string }> => {
  try {
    return await fn();
  } catch (e) {
    return { error: `${(e as Error).name}: ${(e as Error).message}` };
  }
};

const root = document.createElement('section');
root.id = 'speech-section';
document.body.append(root);
window.__speech = {
  decode: (b64, length) => guard(async () => asResult(await decodeAudioBlob(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)), { length }))),
  record: () => guard(async () => asResult(await recordMicrophone({ seconds: 1 }))),
  state: mountSpeechPanel(root, { weightsUrl: 'speech-w2v2-tiny.safetensors', epochs: 3 }),
};
