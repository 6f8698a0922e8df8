import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Receivers bind fixed loopback addresses (127.0.0.100, 127.0.0.200:25): one file at a time.
    fileParallelism: false,
  },
});
