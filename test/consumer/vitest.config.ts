import { defineConfig } from 'vitest/config';

// The packages are installed from their tarballs into a project outside the workspace and run
// there by plain Node and Chromium, so no alias to the workspace sources (unlike the packages'
// own tests).
export default defineConfig({
  test: {
    include: ['test/consumer/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 600_000,
  },
});
