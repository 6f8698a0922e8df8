/**
 * Every form a secret takes, through real sockets: numbers and Buffers as
 * passwords, one- and two-character passwords, per-message auth, OAuth2
 * tokens and client secrets, DKIM private keys; in clear, inside AUTH
 * PLAIN/LOGIN/XOAUTH2 base64, and quoted back by a receiver. Nothing the
 * transport returns, throws, emits or logs may carry them, and a short secret
 * is removed by position, never by substring (which would mangle every line
 * and show the secret by where "[redacted]" lands).
 */
import { createServer, type Server } from 'node:http';
import { generateKeyPairSync, createPrivateKey } from 'node:crypto';
import { inspect } from 'node:util';
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerAuthentication, type SMTPServerOptions } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { startReceiver, type Receiver } from '../src/testing/receiver.js';
import { WORLD_ZONE_FILE } from '../src/testing/fixtures.js';
import { createTransport, preflight, type MailedgeOptions } from '../src/index.js';

const MESSAGE = { from: 'app@sender.test', to: 'someone@example.test', subject: 'the subject line', text: 'body text' } as const;
const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

let dns: FixtureDnsServer;
const servers: SMTPServer[] = [];
const receivers: Receiver[] = [];
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  dns = await startDnsServer({ zoneFiles: [WORLD_ZONE_FILE] });
});
afterAll(async () => {
  await Promise.all([
    ...servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
    ...receivers.map((r) => r.close()),
    ...closers.map((close) => close()),
  ]);
  await dns.close();
});

/** What a careless or hostile receiver does: quote the credentials back, in its refusal and in later replies. */
async function echoingReceiver(extra: Partial<SMTPServerOptions> = {}): Promise<number> {
  const server = new SMTPServer({
    logger: false,
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    disableReverseLookup: true,
    authMethods: ['PLAIN', 'LOGIN', 'XOAUTH2'],
    onAuth(auth: SMTPServerAuthentication, _session, callback) {
      const quoted = auth.method === 'XOAUTH2' ? (auth.accessToken ?? '') : (auth.password ?? '');
      callback(Object.assign(new Error(`credential ${quoted} rejected`), { responseCode: 535 }));
    },
    ...extra,
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.101', resolve));
  servers.push(server);
  return (server.server.address() as AddressInfo).port;
}

/** A receiver that accepts the credentials and then quotes the password in its reply to DATA. */
async function acceptingEchoReceiver(): Promise<number> {
  return echoingReceiver({
    onAuth(auth, _session, callback) {
      callback(null, { user: `${auth.username ?? ''}:${auth.password ?? ''}` });
    },
    onData(stream, session, callback) {
      stream.resume();
      stream.on('end', () => callback(null, `queued for ${String(session.user)}`));
    },
  });
}

interface Capture {
  /** Everything the caller could see, as text. */
  seen: string[];
  /** Every logger call, with its arguments as received. */
  calls: Array<{ level: string; args: unknown[] }>;
  logger: Record<string, (...args: unknown[]) => void>;
  all(): string;
  /** Logged SMTP lines, by who sent them. */
  lines(tnx: 'client' | 'server'): string[];
}

function capture(): Capture {
  const seen: string[] = [];
  const calls: Capture['calls'] = [];
  const logger = Object.fromEntries(
    ['trace', 'debug', 'info', 'warn', 'error', 'fatal'].map((level) => [
      level,
      (...args: unknown[]) => {
        calls.push({ level, args });
        seen.push(inspect(args, { depth: 8 }), JSON.stringify(args));
      },
    ]),
  );
  return {
    seen,
    calls,
    logger,
    all: () => seen.join('\n'),
    lines: (tnx) =>
      calls.flatMap(({ args }) => {
        const [meta, format] = args;
        return typeof meta === 'object' && meta !== null && (meta as { tnx?: unknown }).tnx === tnx && typeof format === 'string' ? [format] : [];
      }),
  };
}

function transport(c: Capture, options: Partial<MailedgeOptions>): ReturnType<typeof createTransport> {
  const t = createTransport({
    host: '127.0.0.101',
    ignoreTLS: true,
    localAddress: '127.0.0.2',
    logger: c.logger,
    debug: true,
    ...options,
    edge: { dns: { servers: [dns.server], timeout: 600 }, ...options.edge },
  } as MailedgeOptions);
  t.on('warning', (w: unknown) => c.seen.push(inspect(w, { depth: 8 })));
  closers.push(async () => t.close());
  return t;
}

async function outcome(c: Capture, promise: Promise<unknown>): Promise<unknown> {
  try {
    const info = await promise;
    c.seen.push(inspect(info, { depth: 8 }), JSON.stringify(info));
    return info;
  } catch (err) {
    c.seen.push(inspect(err, { depth: 8 }), JSON.stringify(err), String(err), (err as Error).stack ?? '', String((err as { response?: unknown }).response));
    return err;
  }
}

/** The client's AUTH lines carry no payload but Nodemailer's own mask, and the answers to 334 are masked. */
function expectAuthLinesMasked(c: Capture): void {
  const client = c.lines('client');
  const auth = client.filter((line) => /^AUTH\s/i.test(line));
  expect(auth.length).toBeGreaterThan(0);
  for (const line of auth) {
    const payload = line.split(/\s+/)[2];
    if (payload !== undefined && payload !== '/*') expect(Buffer.from(payload, 'base64').toString('utf8')).toContain('/* secret */');
  }
}

/** The client line logged right after a given server line (the answer to a 334 challenge). */
function answerTo(c: Capture, serverLine: string): string | undefined {
  const transcript = c.calls.flatMap(({ args }) => {
    const [meta, format] = args;
    const tnx = typeof meta === 'object' && meta !== null ? (meta as { tnx?: unknown }).tnx : undefined;
    return (tnx === 'client' || tnx === 'server') && typeof format === 'string' ? [{ tnx, line: format }] : [];
  });
  const at = transcript.findIndex((entry) => entry.tnx === 'server' && entry.line === serverLine);
  return at < 0 ? undefined : transcript.slice(at + 1).find((entry) => entry.tnx === 'client')?.line;
}

function expectAbsent(c: Capture, forms: string[]): void {
  const all = c.all();
  for (const form of forms) expect(all, `leaked ${JSON.stringify(form)}`).not.toContain(form);
}

/** Logged calls reach the logger as Nodemailer makes them: a meta object, then a format string and its arguments. */
function expectCallsNotPreformatted(c: Capture): void {
  const failed = c.calls.find(({ args }) => typeof args[1] === 'string' && args[1].includes('failed to authenticate'));
  expect(failed, 'Nodemailer logs "User %s failed to authenticate"').toBeDefined();
  expect(failed?.args[1]).toBe('User %s failed to authenticate');
  expect(failed?.args[2]).toBe('"app"');
  for (const { args } of c.calls) expect(typeof args[0]).toBe('object');
}

describe('redaction: passwords in every form', () => {
  it('a numeric password is redacted in clear and in AUTH PLAIN / AUTH LOGIN base64, and in the quoting reply', async () => {
    const port = await echoingReceiver();
    const pass = 73519264;
    for (const authMethod of ['PLAIN', 'LOGIN'] as const) {
      const c = capture();
      const err = await outcome(c, transport(c, { port, authMethod, auth: { user: 'app', pass: pass as unknown as string } }).sendMail({ ...MESSAGE }));
      expect((err as { code?: string }).code).toBe('EAUTH');
      expect(c.all()).toContain('credential [redacted] rejected');
      expectAuthLinesMasked(c);
      expectAbsent(c, [String(pass), b64(String(pass)), b64(`\u0000app\u0000${pass}`)]);
      expectCallsNotPreformatted(c);
    }
  });

  it('a Buffer password is redacted as the text Nodemailer sends', async () => {
    const port = await echoingReceiver();
    const secret = 'buffer-Secret-0xBEEF';
    const c = capture();
    await outcome(c, transport(c, { port, auth: { user: 'app', pass: Buffer.from(secret) as unknown as string } }).sendMail({ ...MESSAGE }));
    await outcome(c, transport(c, { port, authMethod: 'LOGIN', auth: { user: 'app', pass: Buffer.from(secret) as unknown as string } }).verify());
    expect(c.all()).toContain('credential [redacted] rejected');
    expectAuthLinesMasked(c);
    expectAbsent(c, [secret, b64(secret), b64(`\u0000app\u0000${secret}`)]);
  });

  it.each(['e', 'an'])('a %j password is removed by position: the reply quoting it is withheld, ordinary text is untouched', async (secret) => {
    const port = await echoingReceiver();
    for (const authMethod of ['PLAIN', 'LOGIN'] as const) {
      const c = capture();
      const err = await outcome(c, transport(c, { port, authMethod, auth: { user: 'app', pass: secret } }).sendMail({ ...MESSAGE }));
      expect((err as { code?: string }).code).toBe('EAUTH');
      const all = c.all();
      // The receiver's quote of the password is gone, with its status kept.
      expect(all).not.toContain(`credential ${secret} rejected`);
      expect(String((err as { response?: unknown }).response)).toMatch(/^535 /);
      expect((err as Error).message).toMatch(/^Invalid login: 535 /);
      // Base64 payloads: the answer to 334 Password: is masked, AUTH PLAIN carries only Nodemailer's mask.
      expectAuthLinesMasked(c);
      expectAbsent(c, [b64(`\u0000app\u0000${secret}`)]);
      if (authMethod === 'LOGIN') expect(answerTo(c, '334 UGFzc3dvcmQ6')).toBe(b64('/* secret */'));
      // Nothing was substring-replaced: no "[redacted]" anywhere, and text holding the character reads as sent.
      expect(all).not.toContain('[redacted]');
      expect(c.lines('client')).toContain('EHLO mail.good.test');
      expect(c.lines('server').some((line) => line.startsWith('220 '))).toBe(true);
      expect(c.calls.some(({ args }) => args[1] === 'User %s failed to authenticate')).toBe(true);
      expectCallsNotPreformatted(c);
    }
  });

  it('a long password quoted in the reply to DATA is redacted in info.response', async () => {
    const port = await acceptingEchoReceiver();
    const secret = 'data-reply-Secret-4471';
    const c = capture();
    const info = (await outcome(c, transport(c, { port, auth: { user: 'app', pass: secret } }).sendMail({ ...MESSAGE }))) as { response?: string };
    expect(info.response).toContain('queued for app:[redacted]');
    expectAbsent(c, [secret, b64(secret), b64(`\u0000app\u0000${secret}`)]);
  });
});

describe('redaction: per-message auth', () => {
  it.each([['per-message-Secret-991'], ['q']])('a message carrying its own auth (%j) leaks it nowhere', async (secret) => {
    const port = await echoingReceiver();
    const c = capture();
    const t = transport(c, { port });
    const err = await outcome(c, t.sendMail({ ...MESSAGE, auth: { user: 'app', pass: secret } } as Parameters<typeof t.sendMail>[0]));
    expect((err as { code?: string }).code).toBe('EAUTH');
    expectAuthLinesMasked(c);
    expectAbsent(c, [`credential ${secret} rejected`, b64(`\u0000app\u0000${secret}`), ...(secret.length >= 8 ? [secret, b64(secret)] : [])]);
  });
});

describe('redaction: OAuth2', () => {
  const ACCESS = 'ya29.access-TOKEN-abcdef123456';
  const REFRESH = '1//refresh-TOKEN-zyxwvu987654';
  const CLIENT_SECRET = 'GOCSPX-client-SECRET-555777';

  it('the access token is redacted from the XOAUTH2 line and from a reply quoting it', async () => {
    const port = await echoingReceiver();
    const c = capture();
    const err = await outcome(c, transport(c, { port, auth: { type: 'OAuth2', user: 'app', accessToken: ACCESS } }).sendMail({ ...MESSAGE }));
    expect((err as { code?: string }).code).toBe('EAUTH');
    expect(c.lines('client').some((line) => line.startsWith('AUTH XOAUTH2 '))).toBe(true);
    expectAuthLinesMasked(c);
    // A token may be issued at run time, unknown to the redactor: every reply to a bearer AUTH is withheld after its status.
    expect(c.all()).not.toContain('credential ');
    expect(c.all()).toContain('535 [reply withheld');
    expectAbsent(c, [ACCESS, b64(`user=app\u0001auth=Bearer ${ACCESS}\u0001\u0001`)]);
  });

  it('refresh token and client secret sent to the token endpoint, quoted back by it, leak nowhere', async () => {
    // The receiver refuses the first token with a 334 challenge, so Nodemailer asks the token endpoint for another.
    const port = await echoingReceiver({
      onAuth(_auth, _session, callback) {
        callback(null, { data: { status: '401', schemes: 'bearer', scope: 'https://mail.google.com/' } });
      },
    });
    const requests: string[] = [];
    const endpoint: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        requests.push(body);
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ error: 'invalid_grant', error_description: `refresh token ${REFRESH} of client ${CLIENT_SECRET} revoked; ${ACCESS} expired` }));
      });
    });
    await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise<void>((resolve) => endpoint.close(() => resolve())));
    const accessUrl = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/token`;
    const c = capture();
    const auth = { type: 'OAuth2', user: 'app', clientId: 'client-id', clientSecret: CLIENT_SECRET, refreshToken: REFRESH, accessToken: ACCESS, accessUrl };
    const err = await outcome(c, transport(c, { port, auth } as Partial<MailedgeOptions>).sendMail({ ...MESSAGE }));
    expect((err as { code?: string }).code).toBe('EAUTH');
    expect(requests.length).toBeGreaterThan(0);
    expect(c.all()).toContain('invalid_grant');
    expectAuthLinesMasked(c);
    // Nodemailer itself logs the first six characters of the secret and the refresh token: those go too.
    expectAbsent(c, [ACCESS, REFRESH, CLIENT_SECRET, REFRESH.slice(0, 6), CLIENT_SECRET.slice(0, 6), encodeURIComponent(REFRESH), encodeURIComponent(CLIENT_SECRET)]);
  });
});

describe('redaction: DKIM private keys', () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const pem = String(privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const encrypted = String(privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-128-cbc', passphrase: 'dkim-passphrase-31337' }));
  const bodyLines = (text: string): string[] => text.split('\n').filter((line) => line.length > 0 && !line.startsWith('-----'));

  it.each([
    ['a PEM string', pem, pem],
    ['a PEM Buffer', Buffer.from(pem), pem],
    ['a KeyObject', createPrivateKey(pem), pem],
    ['{ key, passphrase }', { key: encrypted, passphrase: 'dkim-passphrase-31337' }, encrypted],
  ] as const)('as %s, it leaks nowhere, through send, verify and preflight', async (_label, key, text) => {
    const port = await echoingReceiver();
    const c = capture();
    const dkim = { domainName: 'sender.test', keySelector: 'mailedge', privateKey: key };
    const options = { port, auth: { user: 'app', pass: 'dkim-test-Password-1' }, dkim } as Partial<MailedgeOptions>;
    await outcome(c, transport(c, options).sendMail({ ...MESSAGE }));
    await outcome(c, transport(c, { ...options, dkim: { keys: [dkim] } } as Partial<MailedgeOptions>).verify());
    await outcome(c, preflight({ localAddress: '127.0.0.2', host: '127.0.0.101', dkim, logger: c.logger, edge: { dns: { servers: [dns.server] } } } as MailedgeOptions, { from: MESSAGE.from }));
    expectAbsent(c, [text, ...bodyLines(text), 'dkim-passphrase-31337', 'dkim-test-Password-1']);
  });
});

describe('redaction: a receiver that accepts', () => {
  it('sends with a short password, and nothing it logs is mangled', async () => {
    const receiver = await startReceiver({ host: '127.0.0.101', auth: { user: 'app', pass: 't' } });
    receivers.push(receiver);
    const c = capture();
    const info = (await outcome(c, transport(c, { port: receiver.port, auth: { user: 'app', pass: 't' } }).sendMail({ ...MESSAGE }))) as { accepted?: string[] };
    expect(info.accepted).toEqual(['someone@example.test']);
    const all = c.all();
    expect(all).not.toContain('[redacted]');
    expect(c.lines('client')).toContain('EHLO mail.good.test');
    expect(c.lines('client')).toContain('DATA');
    // The subject holds the password's character many times, and reaches the receiver as written.
    expect(receiver.sessions.flatMap((session) => session.messages).at(-1)?.data ?? '').toContain('Subject: the subject line');
    expectAuthLinesMasked(c);
    expectAbsent(c, [b64('\u0000app\u0000t')]);
  });
});
