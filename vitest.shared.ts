import { fileURLToPath } from 'node:url';
import { configDefaults, type UserConfig } from 'vitest/config';

const src = (pkg: string, entry: string): string =>
  fileURLToPath(new URL(`./packages/${pkg}/src/${entry}`, import.meta.url));

/** Tests import the packages' sources, so no build is needed before `vitest`. */
export const sharedConfig: UserConfig = {
  resolve: {
    alias: {
      '@tl/tensor': src('tensor', 'node.ts'),
      '@tl/autograd': src('autograd', 'index.ts'),
      '@tl/models': src('models', 'node.ts'),
      '@tl/train': src('train', 'node.ts'),
    },
  },
  test: {
    // `pnpm test:real` (vitest.real.config.ts) runs these: they read ../shared/data, which a
    // fresh clone does not have.
    exclude: [...configDefaults.exclude, '**/*.real.test.ts'],
    // One process and one GPU device per package: lavapipe already uses every core,
    // and creating a device per file costs more than the files share.
    pool: 'forks',
    poolOptions: { forks: { singleFork: true, isolate: false } },
    testTimeout: 120_000,
    hookTimeout: 120_000,
    setupFiles: [fileURLToPath(new URL('./vitest.setup.ts', import.meta.url))],
  },
};
