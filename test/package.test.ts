/**
 * The package as users get it: `npm pack` of the built tree, unpacked into fresh
 * CommonJS and ES module projects, then required, imported and type-checked
 * there (`.cts` through the "require" condition, `.mts` through "import", and
 * the legacy node10 resolution through `types`/`typesVersions`).
 *
 * No network: npm cannot install even a local tarball offline unless the
 * registry metadata of every dependency is cached, which `npm ci` does not do.
 * So the tarball is unpacked as node_modules/mailedge, and each dependency the
 * tarball's package.json declares (and nothing else) is linked from this
 * repository's node_modules. A dependency used but not declared fails to load,
 * and smtp-server, an optional peer, is absent, as after `npm install mailedge`.
 *
 * It packs dist/ as `npm test` just built it; run `npm run build` first when
 * running this file alone.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const INSTALL_SCRIPTS = ['preinstall', 'install', 'postinstall', 'prepare', 'preprepare', 'postprepare'];

interface PackResult {
  filename: string;
  files: Array<{ path: string }>;
}

interface Manifest {
  version: string;
  engines?: { node?: string };
  scripts?: Record<string, string>;
  bin?: Record<string, string>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

let work = '';
let files: string[] = [];
let manifest: Manifest;

const CJS_RUN = `
const assert = require('node:assert/strict');
const { Resolver } = require('node:dns').promises;
const mailedge = require('mailedge');
const testing = require('mailedge/testing');
(async () => {
  assert.equal(typeof mailedge.createTransport, 'function');
  const transporter = mailedge.createTransport({ host: '127.0.0.1', port: 2525 });
  assert.equal(typeof transporter.sendMail, 'function');
  transporter.close();
  const dns = await testing.startDnsServer({ zoneFiles: [testing.WORLD_ZONE_FILE] });
  try {
    const resolver = new Resolver();
    resolver.setServers([dns.server]);
    assert.deepEqual(await resolver.resolve4('mail.good.test'), ['127.0.0.2']);
  } finally {
    await dns.close();
  }
  await assert.rejects(testing.startReceiver(), /npm install --save-dev smtp-server/);
  console.log('cjs ok ' + require('mailedge/package.json').version);
})().catch((err) => { console.error(err); process.exit(1); });
`;

const ESM_RUN = `
import assert from 'node:assert/strict';
import { promises as dnsPromises } from 'node:dns';
import { createRequire } from 'node:module';
import { createTransport } from 'mailedge';
import { startDnsServer, startReceiver, WORLD_ZONE_FILE } from 'mailedge/testing';

const transporter = createTransport({ host: '127.0.0.1', port: 2525 });
assert.equal(typeof transporter.sendMail, 'function');
transporter.close();
const dns = await startDnsServer({ zoneFiles: [WORLD_ZONE_FILE] });
try {
  const resolver = new dnsPromises.Resolver();
  resolver.setServers([dns.server]);
  assert.deepEqual(await resolver.resolve4('mail.good.test'), ['127.0.0.2']);
} finally {
  await dns.close();
}
await assert.rejects(startReceiver(), /npm install --save-dev smtp-server/);
console.log('esm ok ' + createRequire(import.meta.url)('mailedge/package.json').version);
`;

const CTS_CHECK = `
import mailedge = require('mailedge');
import testing = require('mailedge/testing');

export const transporter = mailedge.createTransport({ host: 'smtp.example.com', port: 587 });
export const record: testing.ResourceRecord = { name: 'mail.example.test', type: 'A', ttl: 300, class: 1, address: '192.0.2.1' };
export async function world(): Promise<string> {
  const dns = await testing.startDnsServer({ records: [record] });
  await dns.close();
  return dns.server;
}
// @ts-expect-error: the declarations are real types, not any
mailedge.createTransport(42, 42, 42);
`;

const MTS_CHECK = `
import { createTransport } from 'mailedge';
import { startDnsServer, type ResourceRecord } from 'mailedge/testing';

export const transporter = createTransport({ host: 'smtp.example.com', port: 587 });
export const record: ResourceRecord = { name: 'mail.example.test', type: 'AAAA', ttl: 300, class: 1, address: '2001:db8::1' };
const dns = await startDnsServer({ records: [record] });
await dns.close();
// @ts-expect-error: the declarations are real types, not any
createTransport(42, 42, 42);
`;

function tsconfig(options: Record<string, unknown>, include: string[]): string {
  // skipLibCheck as most projects set it: the check is that the types resolve and are real, not any.
  return JSON.stringify({ compilerOptions: { strict: true, noEmit: true, skipLibCheck: true, types: ['node'], target: 'ES2022', ...options }, include });
}

/** A fresh project of the given kind with the packed mailedge and its declared dependencies. */
function project(name: string, type: 'commonjs' | 'module', tarball: string): Promise<string> {
  const dir = join(work, name);
  const modules = join(dir, 'node_modules');
  mkdirSync(join(modules, 'mailedge'), { recursive: true });
  mkdirSync(join(modules, '@types'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true, type }));
  for (const dependency of Object.keys(manifest.dependencies ?? {})) {
    mkdirSync(dirname(join(modules, dependency)), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules', dependency), join(modules, dependency), 'dir');
  }
  symlinkSync(join(ROOT, 'node_modules', '@types', 'node'), join(modules, '@types', 'node'), 'dir');
  return run('tar', ['-xzf', tarball, '-C', join(modules, 'mailedge'), '--strip-components=1']).then(() => dir);
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    const stat = statSync(path);
    newest = Math.max(newest, stat.isDirectory() ? newestMtime(path) : stat.mtimeMs);
  }
  return newest;
}

/** ">=20.18.1" as [20, 18, 1]; null for any other form of range. */
function floor(range: string | undefined): number[] | null {
  const match = /^>=\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(range?.trim() ?? '');
  return match ? [Number(match[1]), Number(match[2] ?? 0), Number(match[3] ?? 0)] : null;
}

function atLeast(a: number[], b: number[]): boolean {
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  return true;
}

let cjsApp = '';
let esmApp = '';

beforeAll(async () => {
  const built = join(ROOT, 'dist-cjs', 'package.json');
  if (!existsSync(built) || !existsSync(join(ROOT, 'dist', 'index.js'))) throw new Error('no build: run `npm run build` (npm test does) before this file');
  if (newestMtime(join(ROOT, 'src')) > statSync(built).mtimeMs) throw new Error('dist/ is older than src/: run `npm run build` before this file');
  work = mkdtempSync(join(tmpdir(), 'mailedge-pack-'));
  const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: ROOT });
  const packed = (JSON.parse(stdout) as PackResult[])[0];
  if (!packed) throw new Error(`npm pack printed no result: ${stdout}`);
  files = packed.files.map((f) => f.path);
  const tarball = join(work, packed.filename);
  await run('tar', ['-xzf', tarball, '-C', work, 'package/package.json']);
  manifest = JSON.parse(readFileSync(join(work, 'package', 'package.json'), 'utf8')) as Manifest;
  [cjsApp, esmApp] = await Promise.all([project('cjs-app', 'commonjs', tarball), project('esm-app', 'module', tarball)]);
}, 60_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the packed tarball', () => {
  it('holds the builds, the bin, the fixtures, the LICENSE and every file the README links, and no sources', () => {
    for (const file of ['LICENSE', 'README.md', 'package.json', 'bin/mailedge.js', 'dist/index.js', 'dist/index.d.ts', 'dist/testing/index.d.ts', 'dist-cjs/index.js', 'dist-cjs/index.d.ts', 'dist-cjs/package.json', 'dist-cjs/testing/index.js', 'fixtures/zones/world.zone', 'docs/report.schema.json']) {
      expect(files, file).toContain(file);
    }
    expect(files.filter((f) => /^(src|test|bench|scripts)\//.test(f))).toEqual([]);
    expect(readFileSync(join(ROOT, 'LICENSE'), 'utf8')).toMatch(/^MIT License\s+Copyright \(c\) \d{4} the mailedge authors/);

    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const linked = [...readme.matchAll(/\]\((?!https?:|#|mailto:)\.?\/?([^)#\s]+)/g)].map((m) => m[1] ?? '');
    expect(linked).toContain('docs/report.schema.json');
    for (const link of linked) expect(files, `README links ${link}`).toContain(link);
  });

  it('has source maps only where their sources are shipped too', () => {
    const maps = files.filter((f) => f.endsWith('.map'));
    for (const map of maps) {
      const { sources } = JSON.parse(readFileSync(join(cjsApp, 'node_modules', 'mailedge', map), 'utf8')) as { sources: string[] };
      for (const source of sources) expect(files, `${map} -> ${source}`).toContain(posix.join(posix.dirname(map), source));
    }
  });

  it('runs no lifecycle script on install, states its true Node floor, and leaves smtp-server optional', () => {
    expect(Object.keys(manifest.scripts ?? {}).filter((s) => INSTALL_SCRIPTS.includes(s))).toEqual([]);
    expect(files.some((f) => f.endsWith('binding.gyp'))).toBe(false);
    const own = floor(manifest.engines?.node);
    expect(own, 'engines.node is ">=x.y.z"').not.toBeNull();
    for (const dependency of Object.keys(manifest.dependencies ?? {})) {
      const theirs = floor((JSON.parse(readFileSync(join(ROOT, 'node_modules', dependency, 'package.json'), 'utf8')) as Manifest).engines?.node);
      if (own && theirs) expect(atLeast(own, theirs), `${dependency} needs Node ${theirs.join('.')}`).toBe(true);
    }
    expect(manifest.dependencies?.['smtp-server']).toBeUndefined();
    expect(manifest.peerDependencies?.['smtp-server']).toBeDefined();
    expect(manifest.peerDependenciesMeta?.['smtp-server']?.optional).toBe(true);
  });

  it("pins tldts and ipaddr.js to mailauth's own pins, so npm installs one copy of each", () => {
    const mailauth = JSON.parse(readFileSync(join(ROOT, 'node_modules', 'mailauth', 'package.json'), 'utf8')) as Manifest;
    for (const shared of ['tldts', 'ipaddr.js']) {
      expect(manifest.dependencies?.[shared], shared).toBe(mailauth.dependencies?.[shared]);
    }
  });
});

describe('a fresh project using the tarball', () => {
  it('CommonJS: require("mailedge") and require("mailedge/testing") work', async () => {
    writeFileSync(join(cjsApp, 'run.cjs'), CJS_RUN);
    const { stdout } = await run(process.execPath, ['run.cjs'], { cwd: cjsApp });
    expect(stdout.trim()).toBe(`cjs ok ${manifest.version}`);
  });

  it('ES modules: import from "mailedge" and "mailedge/testing" work', async () => {
    writeFileSync(join(esmApp, 'run.mjs'), ESM_RUN);
    const { stdout } = await run(process.execPath, ['run.mjs'], { cwd: esmApp });
    expect(stdout.trim()).toBe(`esm ok ${manifest.version}`);
  });

  it('the bin runs from the installed package', async () => {
    const bin = join(cjsApp, 'node_modules', 'mailedge', manifest.bin?.['mailedge'] ?? 'missing');
    const { stdout } = await run(process.execPath, [bin, '--help'], { cwd: cjsApp });
    expect(stdout).toMatch(/mailedge/);
  });

  it('TypeScript resolves the types through "require" (.cts), "import" (.mts) and the legacy node10 fields', async () => {
    // One program for the .cts/.mts pair: the extension, not the project, decides the module kind.
    writeFileSync(join(esmApp, 'check.cts'), CTS_CHECK);
    writeFileSync(join(esmApp, 'check.mts'), MTS_CHECK);
    writeFileSync(join(esmApp, 'tsconfig.json'), tsconfig({ module: 'nodenext', moduleResolution: 'nodenext' }, ['check.cts', 'check.mts']));
    writeFileSync(join(cjsApp, 'check.cts'), CTS_CHECK);
    writeFileSync(join(cjsApp, 'tsconfig.json'), tsconfig({ module: 'commonjs', moduleResolution: 'node10', esModuleInterop: true, ignoreDeprecations: '5.0' }, ['check.cts']));
    const check = (dir: string): Promise<unknown> =>
      run(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: dir }).catch((err: { stdout?: string; message: string }) => {
        throw new Error(`tsc in ${relative(work, dir)}:\n${err.stdout ?? err.message}`);
      });
    await Promise.all([check(esmApp), check(cjsApp)]);
  }, 60_000);
});
