import { defineConfig } from 'vitest/config';
import { sharedConfig } from '../../../vitest.shared';

// The Node side of the browser tests imports the packages' Node entries (as every package's
// tests do); the pages under test get the browser entries through Vite or esbuild.
export default defineConfig({
  ...sharedConfig,
  test: { ...sharedConfig.test, include: ['test/**/*.test.ts'], testTimeout: 300_000, hookTimeout: 300_000 },
});
