#!/usr/bin/env node
import { runCli } from './main.js';

// The only place that exits the process: everything else returns a code.
runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() }).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`mailedge: internal error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(70);
  },
);
