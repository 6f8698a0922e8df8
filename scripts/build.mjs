#!/usr/bin/env node
/**
 * Builds both module systems from src/:
 *   dist/      ES modules + ESM type declarations (tsconfig.build.json)
 *   dist-cjs/  CommonJS + CJS type declarations, with {"type":"commonjs"} beside them
 *
 * TypeScript decides a file's output format from the package.json nearest to the
 * source file, so the CommonJS build compiles a copy of src/ staged under
 * build/cjs-src/ next to a {"type":"commonjs"} package.json. The one ESM-only
 * construct the sources use, `import.meta.url`, becomes the equivalent file URL
 * of __filename in that copy; any other `import.meta` fails the CommonJS compile
 * (TS1343) instead of shipping. Both output trees sit two levels below the
 * package root, so URLs such as new URL('../../package.json', import.meta.url)
 * resolve to the same files in both builds.
 *
 * No source maps are emitted: the package ships no sources for them to point at.
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const stage = join(root, 'build', 'cjs-src');
const COMMONJS = `${JSON.stringify({ type: 'commonjs' })}\n`;
const META_URL = "(require('node:url') as typeof import('node:url')).pathToFileURL(__filename).href";

for (const dir of ['dist', 'dist-cjs', stage]) rmSync(join(root, dir), { recursive: true, force: true });

// Stage the CommonJS copy.
cpSync(join(root, 'src'), join(stage, 'src'), { recursive: true });
for (const file of walk(join(stage, 'src'))) {
  if (!/\.[cm]?ts$/.test(file)) continue;
  const text = readFileSync(file, 'utf8');
  if (text.includes('import.meta.url')) writeFileSync(file, text.replaceAll('import.meta.url', META_URL));
}
writeFileSync(join(stage, 'package.json'), COMMONJS);
writeFileSync(
  join(stage, 'tsconfig.json'),
  `${JSON.stringify(
    {
      extends: '../../tsconfig.build.json',
      compilerOptions: { rootDir: 'src', outDir: '../../dist-cjs' },
      include: ['src'],
    },
    null,
    2,
  )}\n`,
);

const results = await Promise.all([run(['-p', join(root, 'tsconfig.build.json')], 'esm'), run(['-p', join(stage, 'tsconfig.json')], 'cjs')]);
if (results.some((ok) => !ok)) process.exit(1);
mkdirSync(join(root, 'dist-cjs'), { recursive: true });
writeFileSync(join(root, 'dist-cjs', 'package.json'), COMMONJS);
rmSync(stage, { recursive: true, force: true });

function run(args, label) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [tsc, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('close', (code) => {
      if (code !== 0) process.stderr.write(`build (${label}) failed:\n${output}`);
      resolve(code === 0);
    });
  });
}

function* walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* walk(path);
    else yield path;
  }
}
