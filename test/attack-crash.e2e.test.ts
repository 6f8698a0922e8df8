/**
 * Attacks on "user code that throws never crashes the process" and "every send
 * ends accepted or rejected with err.mail". A crash cannot be observed inside
 * the test worker without taking it down, so each crash scenario runs in a
 * child Node process against the current sources, compiled once into a
 * scratch directory (node_modules/.cache, so Nodemailer resolves). Nothing is
 * contacted: the scenarios fail before any connection (the DNS server named is
 * never asked).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTransport, type MailedgeTransporter } from '../src/create-transport.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BUILD = `${ROOT}node_modules/.cache/mailedge-attack-build`;

function run(command: string, args: string[], timeout = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd: ROOT, timeout }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** The build `npm test` makes before the suite, when it is as new as the sources; else a scratch build of them. */
let entry = `${ROOT}dist/create-transport.js`;

function newestMtime(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const stat = statSync(path);
    newest = Math.max(newest, stat.isDirectory() ? newestMtime(path) : stat.mtimeMs);
  }
  return newest;
}

beforeAll(async () => {
  if (existsSync(entry) && statSync(entry).mtimeMs >= newestMtime(join(ROOT, 'src'))) return;
  mkdirSync(BUILD, { recursive: true });
  // Type errors of files being edited elsewhere do not stop tsc from emitting.
  await run(process.execPath, [`${ROOT}node_modules/typescript/bin/tsc`, '-p', 'tsconfig.build.json', '--outDir', BUILD, '--declaration', 'false']);
  writeFileSync(`${BUILD}/package.json`, '{ "type": "module" }\n');
  entry = `${BUILD}/create-transport.js`;
}, 120_000);

/** Runs a scenario in a child process; it prints SURVIVED if the process outlived the user code's throw. */
async function scenario(body: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script = `
import { createTransport } from ${JSON.stringify(entry)};
const t = createTransport({ host: '127.0.4.100', port: 2525, localAddress: '127.0.4.2', ignoreTLS: true, edge: { dns: { servers: ['127.0.4.53:9'], timeout: 300 } } });
${body}
setTimeout(() => { console.log('SURVIVED'); t.close(); process.exit(0); }, 500);
`;
  return run(process.execPath, ['--input-type=module', '-e', script], 20_000);
}

describe('a throwing sendMail callback never crashes the process, even when the send fails before reaching the transport', () => {
  // FINDING (high). MailedgeTransporter.sendMail wraps the callback only to add err.mail;
  // the guard against a throwing callback lives in MailedgeTransport.send. Every failure
  // Nodemailer's Mail reports itself (an aborted signal, a bad signal option, a plugin
  // error) calls the user's callback from setImmediate or a plugin's callback, with no
  // guard: the throw is an uncaught exception and the process dies.
  it.concurrent('pre-aborted signal + throwing callback: the process survives', async () => {
    const result = await scenario(`
t.sendMail({ from: 'a@atk.test', to: 'b@atk.test', text: 'x', signal: AbortSignal.abort() }, () => { throw new Error('bug in the app callback'); });
`);
    expect(result.stdout, result.stderr.slice(0, 600)).toContain('SURVIVED');
  });

  it.concurrent('signal option that is not an AbortSignal + throwing callback: the process survives', async () => {
    const result = await scenario(`
t.sendMail({ from: 'a@atk.test', to: 'b@atk.test', text: 'x', signal: { aborted: false } }, () => { throw new Error('bug in the app callback'); });
`);
    expect(result.stdout, result.stderr.slice(0, 600)).toContain('SURVIVED');
  });

  it.concurrent('a compile plugin that fails (asynchronously) + throwing callback: the process survives', async () => {
    const result = await scenario(`
t.use('compile', (mail, done) => setImmediate(() => done(new Error('plugin says no'))));
t.sendMail({ from: 'a@atk.test', to: 'b@atk.test', text: 'x' }, () => { throw new Error('bug in the app callback'); });
`);
    expect(result.stdout, result.stderr.slice(0, 600)).toContain('SURVIVED');
  });

  // FINDING (medium). A plugin throwing synchronously is not caught by Nodemailer's
  // _processPlugins; after an asynchronous plugin before it the throw lands in a timer.
  it.concurrent('a stream plugin that throws after an asynchronous compile plugin: the process survives', async () => {
    const result = await scenario(`
t.use('compile', (mail, done) => setImmediate(done));
t.use('stream', () => { throw new Error('bug in a stream plugin'); });
t.sendMail({ from: 'a@atk.test', to: 'b@atk.test', text: 'x' }).catch(() => undefined);
`);
    expect(result.stdout, result.stderr.slice(0, 600)).toContain('SURVIVED');
  });
});

describe('every failure carries err.mail', () => {
  const transporters: MailedgeTransporter[] = [];
  afterEach(() => {
    for (const t of transporters.splice(0)) t.close();
  });
  function transport(): MailedgeTransporter {
    const t = createTransport({ host: '127.0.4.100', port: 2525, localAddress: '127.0.4.2', ignoreTLS: true, edge: { dns: { servers: ['127.0.4.53:9'], timeout: 300 } } });
    transporters.push(t);
    return t;
  }

  // FINDING (medium). A synchronous throw in a compile plugin escapes sendMail itself:
  // sendMail() throws instead of returning a rejected promise, and the error has no mail.
  it('a compile plugin that throws: sendMail rejects with err.mail, never throws synchronously', async () => {
    const t = transport();
    t.use('compile', () => {
      throw new Error('bug in a compile plugin');
    });
    const message = { from: 'a@atk.test', to: 'b@atk.test', text: 'x' };
    let returned: unknown;
    let thrown: unknown;
    try {
      returned = t.sendMail(message);
    } catch (err) {
      thrown = err;
    }
    expect(thrown, 'sendMail threw synchronously instead of rejecting').toBeUndefined();
    const err = await (returned as Promise<unknown>).catch((e: unknown) => e);
    expect(err).toMatchObject({ mail: message });
  });

  // FINDING (low). withMail() attaches mail only to objects: a plugin (or anything
  // upstream) that fails with a string leaves the caller a rejection with no message.
  it('a plugin that fails with a string: the rejection is an Error carrying err.mail', async () => {
    const t = transport();
    t.use('compile', (_mail, done) => done('not an Error' as unknown as Error));
    const message = { from: 'a@atk.test', to: 'b@atk.test', text: 'x' };
    const err = await t.sendMail(message).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ mail: message });
  });
});
