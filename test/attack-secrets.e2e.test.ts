/**
 * Attacks on "no secret in any form reaches output": a receiver that quotes
 * what the client sent in its AUTH reply. World: its own DNS server and a
 * hand-written SMTP receiver on 127.0.4.x (ephemeral port), which echoes the
 * AUTH payload in its 535, as some real servers' debug replies do.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { parseZone } from '../src/testing/zone.js';
import { createTransport, type MailedgeTransporter } from '../src/create-transport.js';
import type { MailedgeOptions } from '../src/options.js';

const ZONE = `
$TTL 60
$ORIGIN sec.atk.test.
@            IN SOA ns.sec.atk.test. hostmaster.sec.atk.test. ( 1 3600 600 86400 60 )
             IN NS  ns
ns           IN A   127.0.4.53
mail         IN A   127.0.4.12
12.4.0.127.in-addr.arpa. IN PTR mail.sec.atk.test.
`;
const CHECKS_OFF = { spf: 'off', 'sender-mx': 'off', dmarc: 'off', 'recipient-null-mx': 'off', 'generic-ptr': 'off' } as const;
const MESSAGE = { from: 'app@sec.atk.test', to: 'someone@elsewhere.test', subject: 'hi', text: 'body' };
const TOKEN = 'ya29.provisioned-at-runtime-0123456789abcdef';

let dns: FixtureDnsServer;
let echo: { port: number; close(): Promise<void> };
const transporters: MailedgeTransporter[] = [];

/** EHLO offers AUTH XOAUTH2 PLAIN LOGIN; any AUTH is answered 535 quoting the client's payload. */
function startEchoingReceiver(host: string): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.write('220 echo.sec.atk.test ESMTP\r\n');
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk.toString('latin1');
      let index: number;
      while ((index = buffer.indexOf('\r\n')) !== -1) {
        const line = buffer.slice(0, index);
        buffer = buffer.slice(index + 2);
        const upper = line.toUpperCase();
        if (upper.startsWith('EHLO') || upper.startsWith('HELO')) socket.write('250-echo.sec.atk.test\r\n250 AUTH XOAUTH2 PLAIN LOGIN\r\n');
        else if (upper.startsWith('AUTH')) {
          const payload = line.split(' ')[2] ?? '';
          const decoded = Buffer.from(payload, 'base64').toString('latin1').replace(/[\x00-\x1f]/g, ' ');
          socket.write(`535 5.7.8 Credentials rejected: ${payload} (${decoded})\r\n`);
        } else if (upper.startsWith('QUIT')) socket.end('221 bye\r\n');
        else socket.write('502 5.5.2 not here\r\n');
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, host, () => {
      const address = server.address();
      resolve({
        port: typeof address === 'object' && address ? address.port : 0,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

beforeAll(async () => {
  dns = await startDnsServer({ records: parseZone(ZONE) });
  echo = await startEchoingReceiver('127.0.4.110');
});
afterEach(() => {
  for (const t of transporters.splice(0)) t.close();
});
afterAll(async () => {
  await echo.close();
  await dns.close();
});

function transport(options: Partial<MailedgeOptions>): MailedgeTransporter {
  const t = createTransport({
    host: '127.0.4.110',
    port: echo.port,
    localAddress: '127.0.4.12',
    ignoreTLS: true,
    ...options,
    edge: { checks: CHECKS_OFF, dns: { servers: [dns.server], timeout: 1500 } },
  });
  transporters.push(t);
  return t;
}

function everything(err: unknown, lines: string[]): string {
  const e = err as Record<string, unknown>;
  return [String(e.message), String(e.response), String(e.stack), JSON.stringify(err), ...lines].join('\n');
}

function logger(lines: string[]): Record<string, (...args: unknown[]) => void> {
  const write = (...args: unknown[]): void => void lines.push(JSON.stringify(args));
  return { trace: write, debug: write, info: write, warn: write, error: write, fatal: write };
}

describe('OAuth2 tokens known only at run time', () => {
  // FOUND, FIXED (high). The redactor learns secrets from the options (auth.accessToken,
  // refreshToken, clientSecret ...) when the transport is built. An access token that
  // a provisionCallback (or a refresh against the token endpoint) hands Nodemailer
  // later is never added: a receiver quoting the XOAUTH2 payload in its reply puts the
  // token, base64 and clear, into err.response, err.message and the logger.
  it('a token from provisionCallback, quoted by the receiver, reaches neither err.response, err.message nor the logger', async () => {
    const lines: string[] = [];
    const t = transport({
      auth: { type: 'OAuth2', user: 'app@sec.atk.test', provisionCallback: (_user: string, _renew: boolean, cb: (err: Error | null, token?: string) => void) => cb(null, TOKEN) } as never,
      logger: logger(lines) as never,
    });
    const err = await t.sendMail({ ...MESSAGE }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EAUTH' });
    const text = everything(err, lines);
    const b64 = Buffer.from(`user=app@sec.atk.test\u0001auth=Bearer ${TOKEN}\u0001\u0001`).toString('base64');
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain(b64);
  });

  // FOUND, FIXED (high), same root cause: a per-message OAuth2 auth whose token comes from
  // transporter.set('oauth2_provision_cb', ...) is equally unknown to the redactor.
  it("a token from transporter.set('oauth2_provision_cb'), quoted by the receiver, never reaches err.response", async () => {
    const t = transport({ auth: { type: 'OAuth2', user: 'app@sec.atk.test' } as never });
    t.set('oauth2_provision_cb', (_user: string, _renew: boolean, cb: (err: Error | null, token?: string) => void) => cb(null, TOKEN));
    const err = await t.sendMail({ ...MESSAGE }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EAUTH' });
    expect(everything(err, [])).not.toContain(TOKEN);
  });
});

describe('passwords the redactor knows (held: guards)', () => {
  it.each([
    ['a long string', 'correct-horse-battery'],
    ['a short string', 'pw'],
    ['a number', 31337],
    ['a Buffer', Buffer.from('buffer-password-42')],
  ] as const)('AUTH PLAIN/LOGIN with %s, quoted by the receiver: nowhere in err or the logger (held)', async (_label, pass) => {
    const lines: string[] = [];
    const t = transport({ auth: { user: 'app', pass: pass as string }, logger: logger(lines) as never });
    const err = await t.sendMail({ ...MESSAGE }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EAUTH' });
    const text = everything(err, lines);
    const clear = Buffer.isBuffer(pass) ? pass.toString('utf8') : String(pass);
    expect(text).not.toContain(Buffer.from(`\u0000app\u0000${clear}`).toString('base64'));
    expect(text).not.toContain(Buffer.from(clear).toString('base64'));
    if (clear.length >= 8) expect(text).not.toContain(clear);
    else expect(text).not.toMatch(new RegExp(`Credentials rejected: .*\\b${clear}\\b`));
  });
});
