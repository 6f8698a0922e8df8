/**
 * Nodemailer's behaviour is the specification: what apps built on
 * nodemailer.createTransport rely on (the Mailer, its options, plugins,
 * defaults, info fields, error codes, pool reuse and idle events, OAuth2,
 * aborts, the connection-URL and service shorthands) holds through mailedge
 * in a world whose PTRs confirm. Own DNS server and receivers on ephemeral
 * ports, so this file runs beside any other.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import Mail from 'nodemailer/lib/mailer';
import { SMTPServer } from 'smtp-server';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { startReceiver, type Receiver } from '../src/testing/receiver.js';
import { parseZone } from '../src/testing/zone.js';
import { createTransport, type MailedgeTransporter } from '../src/create-transport.js';
import { InvalidOptionError, MailedgeError } from '../src/errors.js';
import type { MailedgeOptions } from '../src/options.js';
import type { MailedgeSentMessageInfo } from '../src/routes/route.js';

const ZONE = `
$TTL 300
$ORIGIN drop.test.
@            IN SOA ns.drop.test. hostmaster.drop.test. ( 1 3600 600 86400 60 )
             IN NS  ns
ns           IN A   127.0.8.53
relay        IN A   127.0.8.100
mail         IN A   127.0.8.2
2.8.0.127.in-addr.arpa. IN PTR mail.drop.test.
; a recipient domain that accepts no mail (RFC 7505)
nullmx       IN MX  0 .
`;

const ENVELOPE_CHECKS_OFF = { spf: 'off', 'sender-mx': 'off', dmarc: 'off', 'recipient-null-mx': 'off' } as const;
const MESSAGE = { from: 'app@drop.test', to: 'someone@elsewhere.test', subject: 'hello', text: 'body' };

let dns: FixtureDnsServer;
let relay: Receiver;
let authRelay: Receiver;
const transporters: MailedgeTransporter[] = [];
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  dns = await startDnsServer({ records: parseZone(ZONE) });
  relay = await startReceiver({ host: '127.0.8.100' });
  authRelay = await startReceiver({ host: '127.0.8.100', auth: { user: 'app', pass: 'right-password' } });
});
afterEach(async () => {
  for (const t of transporters.splice(0)) t.close();
  for (const close of closers.splice(0)) await close();
  relay.reset();
  authRelay.reset();
});
afterAll(async () => {
  await relay.close();
  await authRelay.close();
  await dns.close();
});

function edge(extra: MailedgeOptions['edge'] = {}): MailedgeOptions['edge'] {
  return { checks: ENVELOPE_CHECKS_OFF, ...extra, dns: { servers: [dns.server], timeout: 1500, ...extra.dns } };
}

function transport(options: Partial<MailedgeOptions> = {}, defaults?: object): MailedgeTransporter {
  const t = createTransport({ host: 'relay.drop.test', port: relay.port, localAddress: '127.0.8.2', ignoreTLS: true, ...options, edge: edge(options.edge) }, defaults);
  transporters.push(t);
  return t;
}

async function failure(promise: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  return promise.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e as Error & Record<string, unknown>,
  );
}

describe('the transporter is Nodemailer’s own', () => {
  it('is a Nodemailer Mailer built with the caller’s options, with mailedge as its transport', () => {
    const t = transport({ maxRecipients: 7 });
    expect(t).toBeInstanceOf(Mail);
    expect(t.options).toMatchObject({ host: 'relay.drop.test', port: relay.port, maxRecipients: 7 });
    expect(t.getVersionString()).toMatch(/mailedge/);
    expect(t.transporter.name).toBe('mailedge');
  });

  it('sends in both forms, with Nodemailer’s info fields and info.edge', async () => {
    const t = transport();
    const info = await t.sendMail({ ...MESSAGE });
    expect(info).toMatchObject({
      envelope: { from: 'app@drop.test', to: ['someone@elsewhere.test'] },
      accepted: ['someone@elsewhere.test'],
      rejected: [],
      edge: { address: '127.0.8.2', name: 'mail.drop.test', verified: true, stale: false },
    });
    expect(info.messageId).toMatch(/^<.+@.+>$/);
    expect(info.response).toMatch(/^250 /);
    const viaCallback = await new Promise<MailedgeSentMessageInfo>((resolve, reject) => t.sendMail({ ...MESSAGE }, (err, i) => (err ? reject(err) : resolve(i))));
    expect(viaCallback.edge.name).toBe('mail.drop.test');
  });

  it('runs use() plugins and applies message defaults and set()/get()', async () => {
    const t = transport({}, { from: 'defaults@drop.test' });
    t.use('compile', (mail, done) => {
      mail.data.subject = `[compiled] ${String(mail.data.subject)}`;
      done();
    });
    t.set('custom_key', 42);
    expect(t.get('custom_key')).toBe(42);
    const { from: _from, ...withoutFrom } = MESSAGE;
    const info = await t.sendMail(withoutFrom);
    expect(info.envelope.from).toBe('defaults@drop.test');
    expect(relay.sessions.at(-1)?.messages[0]?.data).toContain('Subject: [compiled] hello');
  });

  it('signs with the transport-level dkim option, as Nodemailer does', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const pem = String(privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const t = transport({ dkim: { domainName: 'drop.test', keySelector: 's1', privateKey: pem }, edge: { checks: { ...ENVELOPE_CHECKS_OFF, dkim: 'off' } } });
    await t.sendMail({ ...MESSAGE });
    expect(relay.sessions.at(-1)?.messages[0]?.data).toMatch(/^DKIM-Signature: .*d=drop\.test/m);
  });

  it('keeps transport-level maxRecipients and disableFileAccess', async () => {
    const t = transport({ maxRecipients: 1, disableFileAccess: true });
    const tooMany = { ...MESSAGE, to: ['a@elsewhere.test', 'b@elsewhere.test'] };
    const err = await failure(t.sendMail(tooMany));
    expect(err.code).toBe('EMAXRECIPIENTS');
    expect(err.mail).toBe(tooMany);
    const withFile = { ...MESSAGE, attachments: [{ path: '/etc/hostname' }] };
    const fileErr = await failure(t.sendMail(withFile));
    // Nodemailer refuses the file while streaming the message: ESTREAM, with its own reason kept.
    expect([fileErr.code, fileErr.originalCode, (fileErr.cause as { code?: unknown } | undefined)?.code]).toContain('EFILEACCESS');
    expect(fileErr.mail).toBe(withFile);
    expect(relay.messages).toBe(0);
  });

  it.each([
    ['with the authentication check', {}],
    ['without it', { authentication: 'off' }],
  ] as const)('keeps Date, Message-ID and MIME-Version when a null-MX recipient is taken out of the envelope (%s)', async (_label, extra) => {
    const t = transport({ edge: { checks: { ...ENVELOPE_CHECKS_OFF, 'recipient-null-mx': 'enforce', ...extra } } });
    const info = await t.sendMail({ ...MESSAGE, to: ['someone@elsewhere.test', 'nobody@nullmx.drop.test'] });
    expect(info.rejected).toEqual(['nobody@nullmx.drop.test']);
    const data = relay.sessions.at(-1)?.messages[0]?.data ?? '';
    expect(relay.sessions.at(-1)?.messages[0]?.to).toEqual(['someone@elsewhere.test']);
    expect(data).toMatch(/^Date: /m);
    expect(data).toMatch(/^Message-ID: </m);
    expect(data).toMatch(/^MIME-Version: 1\.0/m);
    expect(data).toContain(info.messageId);
  });

  it('honours a message envelope from the compiled message', async () => {
    const t = transport();
    const info = await t.sendMail({ ...MESSAGE, envelope: { from: 'bounces@drop.test', to: ['other@elsewhere.test'] } });
    expect(info.envelope).toEqual({ from: 'bounces@drop.test', to: ['other@elsewhere.test'] });
    expect(relay.sessions.at(-1)?.messages[0]).toMatchObject({ from: 'bounces@drop.test', to: ['other@elsewhere.test'] });
  });
});

describe('errors keep Nodemailer’s shape', () => {
  it('EAUTH with the reply, the command and permanent from the 5xx', async () => {
    const t = transport({ port: authRelay.port, auth: { user: 'app', pass: 'wrong-password' } });
    const message = { ...MESSAGE };
    const err = await failure(t.sendMail(message));
    expect(err).not.toBeInstanceOf(MailedgeError);
    expect(err).toMatchObject({ code: 'EAUTH', responseCode: 535, permanent: true });
    expect(String(err.command)).toMatch(/^AUTH /);
    expect(err.mail).toBe(message);
    await expect(t.verify()).rejects.toMatchObject({ code: 'EAUTH' });
  });

  it('authenticates when the password is right, and verify() passes in both forms', async () => {
    const t = transport({ port: authRelay.port, auth: { user: 'app', pass: 'right-password' } });
    await expect(t.verify()).resolves.toBe(true);
    await new Promise<void>((resolve, reject) => t.verify((err) => (err ? reject(err) : resolve())));
    await expect(t.sendMail({ ...MESSAGE })).resolves.toMatchObject({ accepted: ['someone@elsewhere.test'] });
  });

  it('EENVELOPE when there is no recipient', async () => {
    const message = { from: 'app@drop.test', subject: 'nobody', text: 'x' };
    const err = await failure(transport().sendMail(message));
    expect(err).toMatchObject({ code: 'EENVELOPE', permanent: true });
    expect(err.mail).toBe(message);
  });

  it('ECONNECTION with command CONN when the connection is refused, temporary', async () => {
    const closed = await startReceiver({ host: '127.0.8.100' });
    const port = closed.port;
    await closed.close();
    const err = await failure(transport({ port }).sendMail({ ...MESSAGE }));
    expect(err).toMatchObject({ code: 'ECONNECTION', command: 'CONN', permanent: false, originalCode: 'ECONNREFUSED' });
  });

  it('rejected and rejectedErrors when every recipient is refused', async () => {
    relay.setFaults({ rcptTo: { code: 550, message: '5.1.1 No such user' } });
    try {
      const err = await failure(transport().sendMail({ ...MESSAGE }));
      expect(err).toMatchObject({ code: 'EENVELOPE', responseCode: 550, permanent: true, rejected: ['someone@elsewhere.test'] });
      expect(Array.isArray(err.rejectedErrors)).toBe(true);
    } finally {
      relay.setFaults(undefined);
    }
  });
});

describe('pools as Nodemailer pools them', () => {
  it('reuses a connection, and opens a new one after maxMessages', async () => {
    const t = transport({ pool: true, maxConnections: 1, maxMessages: 2 });
    for (let i = 0; i < 4; i++) await t.sendMail({ ...MESSAGE, subject: `m${i}` });
    expect(relay.messages).toBe(4);
    expect(relay.connections).toBe(2);
  });

  it('emits idle, and isIdle() is false while the pool is saturated, so the documented loop queues what Nodemailer would', async () => {
    const t = transport({ pool: true, maxConnections: 2 });
    await new Promise<void>((resolve) => t.once('idle', () => resolve()));
    const sends: Array<Promise<unknown>> = [];
    while (t.isIdle() && sends.length < 100) sends.push(t.sendMail({ ...MESSAGE, subject: `loop ${sends.length}` }));
    expect(sends).toHaveLength(2);
    const idleAgain = new Promise<void>((resolve) => t.once('idle', () => resolve()));
    await Promise.all(sends);
    await idleAgain;
    expect(t.isIdle()).toBe(true);
  });
});

describe('aborts', () => {
  it('a message aborted while it waits for a connection comes back with EABORT and the message', async () => {
    const t = transport({ pool: true, maxConnections: 1 });
    const first = t.sendMail({ ...MESSAGE, subject: 'first' });
    const controller = new AbortController();
    const message = { ...MESSAGE, subject: 'aborted', signal: controller.signal };
    const second = failure(t.sendMail(message));
    setImmediate(() => controller.abort());
    const err = await second;
    expect(err).toMatchObject({ code: 'EABORT' });
    expect(err.mail).toBe(message);
    await first;
    expect(relay.sessions.flatMap((s) => s.messages).some((m) => m.data.includes('Subject: aborted'))).toBe(false);
  });
});

describe('aborted before it starts', () => {
  it('an already aborted signal ends the send with EABORT and the message, before any check or warning', async () => {
    const t = transport({ pool: true });
    // Every cache warm: the aborted send would otherwise answer from them without a single await.
    await t.sendMail({ ...MESSAGE, subject: 'warm' });
    const warnings: unknown[] = [];
    t.on('warning', (w) => warnings.push(w));
    const sessionsBefore = relay.sessions.length;
    const message = { ...MESSAGE, subject: 'never', signal: AbortSignal.abort() };
    const err = await failure(t.sendMail(message));
    expect(err).toMatchObject({ code: 'EABORT' });
    expect(err.mail).toBe(message);
    expect(relay.sessions.flatMap((s) => s.messages).some((m) => m.data.includes('Subject: never'))).toBe(false);
    expect(relay.sessions.length).toBe(sessionsBefore);
    expect(warnings).toEqual([]);
  });
});

describe('OAuth2', () => {
  it('refreshes the access token at the token endpoint, emits token on the transporter, and sends', async () => {
    let calls = 0;
    const server = new SMTPServer({
      logger: false,
      disabledCommands: ['STARTTLS'],
      allowInsecureAuth: true,
      disableReverseLookup: true,
      authMethods: ['XOAUTH2'],
      onAuth(auth, _session, callback) {
        calls++;
        if (auth.accessToken === 'fresh-token') return callback(null, { user: 'app' });
        return callback(null, { data: { status: '401', schemes: 'bearer', scope: 'https://mail.google.com/' } });
      },
      onData(stream, _session, callback) {
        stream.resume();
        stream.on('end', () => callback());
      },
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.8.100', resolve));
    closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const endpoint: Server = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ access_token: 'fresh-token', expires_in: 3600 }));
    });
    await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise<void>((resolve) => endpoint.close(() => resolve())));
    const accessUrl = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/token`;
    const t = transport({
      port: (server.server.address() as AddressInfo).port,
      auth: { type: 'OAuth2', user: 'app', clientId: 'id', clientSecret: 'client-secret-value', refreshToken: 'refresh-token-value', accessToken: 'stale-token', accessUrl },
    } as Partial<MailedgeOptions>);
    const tokens: Array<{ accessToken: string }> = [];
    t.on('token', (token: { accessToken: string }) => tokens.push(token));
    await expect(t.sendMail({ ...MESSAGE })).resolves.toMatchObject({ accepted: ['someone@elsewhere.test'] });
    expect(tokens.map((token) => token.accessToken)).toEqual(['fresh-token']);
    expect(calls).toBeGreaterThanOrEqual(2);
  });
});

describe('url and service are shorthands, not bypasses', () => {
  it('a connection URL string is parsed by Nodemailer’s parser and the route is checked', async () => {
    const t = createTransport(`smtp://app:right-password@relay.drop.test:${authRelay.port}/?ignoreTLS=true`);
    transporters.push(t);
    // No edge options: the system resolver would be asked; preflight through the fixture DNS instead.
    expect(t.options).toMatchObject({ host: 'relay.drop.test', port: authRelay.port, auth: { user: 'app', pass: 'right-password' } });
    const checked = transport({ url: `smtp://app:right-password@relay.drop.test:${authRelay.port}`, host: undefined, port: undefined } as Partial<MailedgeOptions>);
    const info = await checked.sendMail({ ...MESSAGE });
    expect(info.edge.name).toBe('mail.drop.test');
    expect(authRelay.messages).toBe(1);
  });

  it('a well-known service becomes its host, port and secure, and is checked like any host', async () => {
    const t = transport({ service: 'Gmail', host: undefined, port: undefined } as Partial<MailedgeOptions>);
    expect(t.options).toMatchObject({ host: 'smtp.gmail.com', port: 465, secure: true });
    const report = await t.preflight();
    // The fixture DNS has no such name: the check says so, and nothing is contacted.
    expect(report.checks.find((c) => c.id === 'destination')).toMatchObject({ status: 'fail', code: 'DEST_UNRESOLVED' });
  });

  it('an unknown service or a URL of another scheme is refused, naming the option', () => {
    expect(() => transport({ service: 'NoSuchMailService' } as Partial<MailedgeOptions>)).toThrow(InvalidOptionError);
    expect(() => createTransport('sendmail:///usr/sbin/sendmail')).toThrow(/url/);
  });
});
