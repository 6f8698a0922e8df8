/**
 * A secret sent through every path mailedge has: success, refusal, DNS
 * failure, stale serving, warn mode, SMTP auth failure, 5xx rejection,
 * connection refused. Nothing it returns, throws, emits or logs may carry it.
 */
import { inspect } from 'node:util';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { startReceiver, type Receiver } from '../src/testing/receiver.js';
import { WORLD_ZONE_FILE } from '../src/testing/fixtures.js';
import { createTransport, type MailedgeTransporter as MailedgeTransport } from '../src/create-transport.js';
import type { MailedgeOptions } from '../src/options.js';
import { preflight } from '../src/preflight.js';

const SECRET = 'Tr0ub4dor&3-horse-battery';
const FORMS = [SECRET, Buffer.from(SECRET).toString('base64'), Buffer.from(`\u0000app\u0000${SECRET}`).toString('base64'), encodeURIComponent(SECRET)];

let dns: FixtureDnsServer;
let authed: Receiver;
let strict: Receiver;
/** A receiver that quotes the password back in its refusal, as a careless or hostile one might. */
let echoing: SMTPServer;
let echoingPort: number;
const seen: string[] = [];
const transports: MailedgeTransport[] = [];

const logger = Object.fromEntries(
  ['trace', 'debug', 'info', 'warn', 'error', 'fatal'].map((level) => [level, (...args: unknown[]) => seen.push(inspect(args, { depth: 6 }))]),
);

beforeAll(async () => {
  dns = await startDnsServer({ zoneFiles: [WORLD_ZONE_FILE] });
  authed = await startReceiver({ host: '127.0.0.101', auth: { user: 'app', pass: SECRET } });
  strict = await startReceiver({ host: '127.0.0.100', strict: true, dnsServer: dns.server, auth: { user: 'app', pass: SECRET } });
  echoing = new SMTPServer({
    logger: false,
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    disableReverseLookup: true,
    onAuth(auth, _session, callback) {
      callback(Object.assign(new Error(`password ${auth.password ?? ''} rejected`), { responseCode: 535 }));
    },
  });
  await new Promise<void>((resolve) => echoing.listen(0, '127.0.0.101', resolve));
  echoingPort = (echoing.server.address() as AddressInfo).port;
});
afterAll(async () => {
  for (const t of transports) t.close();
  await Promise.all([authed.close(), strict.close(), new Promise<void>((resolve) => echoing.close(() => resolve()))]);
  await dns.close();
});

function transport(options: Partial<MailedgeOptions>): MailedgeTransport {
  const t = createTransport({
    host: '127.0.0.101',
    port: authed.port,
    ignoreTLS: true,
    auth: { user: 'app', pass: SECRET },
    logger,
    debug: true,
    ...options,
    edge: { dns: { servers: [dns.server], timeout: 600 }, ...options.edge },
  });
  t.on('warning', (w: unknown) => seen.push(inspect(w, { depth: 6 })));
  transports.push(t);
  return t;
}

async function outcome(promise: Promise<unknown>): Promise<void> {
  try {
    seen.push(inspect(await promise, { depth: 6 }));
  } catch (err) {
    seen.push(inspect(err, { depth: 6 }), JSON.stringify(err), String(err), (err as Error).stack ?? '');
  }
}

describe('secrets', () => {
  it('never appear in results, errors, warnings, reports or logs', async () => {
    const message = { from: 'app@sender.test', to: 'someone@example.test', subject: 's', text: 't' };
    await outcome(transport({ localAddress: '127.0.0.2' }).sendMail({ ...message }));
    await outcome(transport({ localAddress: '127.0.0.4' }).sendMail({ ...message }));
    await outcome(transport({ localAddress: '127.0.0.3', edge: { mode: 'warn' } }).sendMail({ ...message }));
    await outcome(transport({ localAddress: '127.0.0.2', name: 'other.test' }).sendMail({ ...message }));
    await outcome(transport({ localAddress: '127.0.0.2', auth: { user: 'app', pass: `${SECRET}x` } }).sendMail({ ...message }));
    await outcome(transport({ localAddress: '127.0.0.3', host: '127.0.0.100', port: strict.port, edge: { mode: 'warn' } }).sendMail({ ...message }));
    await outcome(transport({ localAddress: '127.0.0.2', port: 9 }).sendMail({ ...message }));
    await outcome(transport({ localAddress: '127.0.0.2', port: echoingPort }).sendMail({ ...message }));
    await outcome(transport({ localAddress: '127.0.0.2', edge: { dns: { servers: ['127.0.0.1:9'], timeout: 300 } } }).sendMail({ ...message }));
    await outcome(transport({ localAddress: '127.0.0.2' }).verify());
    await outcome(transport({ localAddress: '127.0.0.2', auth: { user: 'app', pass: `${SECRET}x` } }).verify());
    await outcome(preflight({ localAddress: '127.0.0.2', auth: { user: 'app', pass: SECRET }, edge: { dns: { servers: [dns.server] } } }));

    // The paths were really taken: a success, an auth failure, a refusal, a warning, a debug log.
    const all = seen.join('\n');
    expect(all).toContain('mail.good.test');
    expect(all).toContain('EAUTH');
    expect(all).toContain('PTR_MISSING');
    expect(all).toContain('UNVERIFIED_SEND');
    expect(all).toContain('DNS_TEMPFAIL');
    expect(all).toContain('AUTH');
    expect(all).toContain('password [redacted] rejected');
    for (const form of FORMS) expect(all).not.toContain(form);
  });
});
