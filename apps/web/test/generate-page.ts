/**
 * The generation panel on a page of its own, talking to a real Web Worker that runs the app's
 * worker-side generation code (generate-test-worker.ts). Built with esbuild by
 * generate-stream.test.ts, which drives the panel's inputs and reads `window.__gen`.
 */
import { mountGeneratePanel, type GeneratePanelState } from '../src/generate-panel.js';
import type { GenerateToWorker } from '../src/protocol-generate.js';

declare global {
  interface Window {
    __gen?: { state: GeneratePanelState; outputs: string[] };
  }
}

const section = document.createElement('section');
document.body.append(section);
const worker = new Worker('worker.js', { type: 'module' });
const state = mountGeneratePanel(section, worker, (m: GenerateToWorker) => worker.postMessage(m), new URLSearchParams(location.search).get('hub'));
// Every text the output showed, in order: the tokens must appear one after another, not at the end.
const outputs: string[] = [];
const output = section.querySelector('#gen-output')!;
new MutationObserver(() => outputs.push(output.textContent ?? '')).observe(output, { childList: true, characterData: true, subtree: true });
window.__gen = { state, outputs };
