import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests bind real loopback ports; forks keep each file's servers and timers apart.
    pool: 'forks',
    // A folder for the compiled copy of the checkout, built once per run when a test needs it.
    globalSetup: ['test/global-setup.ts'],
  },
});
