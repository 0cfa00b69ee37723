import { configDefaults, defineConfig } from 'vitest/config';
import { sharedConfig } from './vitest.shared';

/** `pnpm test:real`: the tests that read the full data in ../shared/data (see test-data.ts). */
export default defineConfig({
  ...sharedConfig,
  test: {
    ...sharedConfig.test,
    include: ['packages/*/test/**/*.real.test.ts'],
    exclude: configDefaults.exclude,
    testTimeout: 900_000,
  },
});
