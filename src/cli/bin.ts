#!/usr/bin/env node
import { runCli } from './main.js';

/** Installs the Ctrl-C / SIGTERM handlers only when a command asks, so other commands still die at once. */
function stopSignal(): AbortSignal {
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  // once: a second Ctrl-C during a hung teardown gets the default and kills the process.
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return controller.signal;
}

// `mailedge demo | head` closes the pipe early: that is the reader's choice, not a crash to report.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

// The only place that exits the process: everything else returns a code.
runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd(), stopSignal }).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`mailedge: internal error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(70);
  },
);
