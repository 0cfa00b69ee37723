/**
 * TF.js's gradient functions in Node. `@tensorflow/tfjs-core` resolves in Node to its CommonJS
 * bundle, which has the ops and the tape but registers no gradients: the union package
 * `@tensorflow/tfjs` imports `register_all_gradients` for that, and its ES-module files cannot
 * be loaded by Node directly (extensionless and directory imports). So esbuild bundles that one
 * module into a temporary file and it is imported after tfjs-core. Its copy of the core shares
 * tfjs-core's global engine, kernel registry and gradient registry (TF.js keeps them in a
 * global namespace so that several copies interoperate), so the gradients land where
 * `tf.variableGrads` and `optimizer.minimize` look for them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export async function registerTfjsGradients(tf: typeof import('@tensorflow/tfjs-core')): Promise<void> {
  // The bench:models bundle (src/device/entry.ts) has registered them already.
  if (tf.getGradient('Conv2D') !== undefined) return;
  const require = createRequire(import.meta.url);
  const entry = require.resolve('@tensorflow/tfjs-core/dist/register_all_gradients.js');
  const esbuild = await import('esbuild');
  const dir = mkdtempSync(join(os.tmpdir(), 'tl-bench-tfjs-grads-'));
  const outfile = join(dir, 'register_all_gradients.mjs');
  try {
    await esbuild.build({ entryPoints: [entry], bundle: true, format: 'esm', platform: 'node', outfile, logLevel: 'error' });
    // The bundled copy's base side effects set the platform again; TF.js warns about that.
    const warn = console.warn;
    console.warn = (...a: unknown[]) => {
      if (!/already (been )?(set|registered)/i.test(String(a[0]))) warn(...a);
    };
    try {
      await import(pathToFileURL(outfile).href);
    } finally {
      console.warn = warn;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * TF.js with its WebGPU backend on the engine's own Dawn GPU object: the backend takes its
 * adapter from navigator.gpu, so both run on one instance of the same adapter (with the
 * LP_NUM_THREADS the engine set). Exits the process when the backend does not start.
 */
export async function startTfjsWebGpu(gpu: unknown): Promise<typeof import('@tensorflow/tfjs-core')> {
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  const tf = await import('@tensorflow/tfjs-core');
  await registerTfjsGradients(tf);
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) {
    console.error('TF.js WebGPU failed to initialise');
    process.exit(1);
  }
  await tf.ready();
  return tf;
}
