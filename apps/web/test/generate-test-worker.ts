/**
 * A worker for generate-page.ts: the app's worker routes generation messages to handleGenerate
 * with its device start and error reply; this one does the same without the app's other jobs.
 */
import { init } from '@tl/tensor';
import { handleGenerate } from '../src/generate-worker.js';
import type { GenerateToWorker } from '../src/protocol-generate.js';

const scope = self as unknown as { postMessage(m: unknown): void; onmessage: ((e: MessageEvent<GenerateToWorker>) => void) | null };
let ready: Promise<boolean> | null = null;
const start = (): Promise<boolean> => (ready ??= init().then(() => true));

scope.onmessage = (e) => {
  handleGenerate(e.data, { post: (m) => scope.postMessage(m), start }).catch((err: Error) => scope.postMessage({ type: 'error', message: err.message, during: e.data.type }));
};
