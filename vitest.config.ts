import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const source = (path: string): string => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  resolve: {
    // The README's testing-kit example imports the package by name; in the suite that
    // name means the source, so the example never runs against a stale build.
    alias: [
      { find: /^mailedge$/, replacement: source('./src/index.ts') },
      { find: /^mailedge\/testing$/, replacement: source('./src/testing/index.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Test files run in parallel (one forked worker per core): every receiver and DNS
    // server listens on an ephemeral port, so files share loopback addresses but never
    // a socket. The global setup checks that the loopback addresses the suite binds
    // exist (macOS needs aliases for all but 127.0.0.1) before any file starts.
    globalSetup: ['./test/support/loopback-setup.ts'],
    // Vitest's default for `run` is one worker fewer than the cores, which on a
    // two-core machine (CI's) is one: no parallelism at all. The suite waits on
    // sockets, DNS delays and timers more than it computes (about 40 s of CPU in
    // 46 s on two cores with one file per core), so two files run per core.
    maxWorkers: Math.max(4, 2 * availableParallelism()),
    // A worker runs one file after another without loading every module afresh for
    // each (about a quarter less CPU on two cores). Safe here: each file starts and
    // stops its own servers, and mailedge keeps no process-wide state.
    isolate: false,
  },
});
