#!/usr/bin/env node
// The mailedge command: runs the compiled CLI in dist/. In a source checkout
// right after `npm ci` (the package has no install or prepare script) dist/ does
// not exist yet, so it is built first; an installed package ships dist/ and
// never builds.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = new URL('../dist/cli/bin.js', import.meta.url);
const build = new URL('../scripts/build.mjs', import.meta.url);

if (!existsSync(cli) && existsSync(build)) {
  process.stderr.write('mailedge: source checkout without dist/, building it first (npm run build)\n');
  const result = spawnSync(process.execPath, [fileURLToPath(build)], { stdio: ['ignore', 2, 2] });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
await import(cli.href);
