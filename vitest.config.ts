import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['apps/*/test/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
    // One database per run, created and migrated here and dropped at the end (see the file).
    globalSetup: ['apps/server/test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Server processes and sockets are real; two workers match the two cores CI has.
    maxWorkers: 2,
  },
});
