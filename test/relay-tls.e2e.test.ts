/**
 * Issue 11 sender requirement: "TLS to the receiver when it offers STARTTLS
 * (the info says whether the message went over TLS)", for relay sends, end to
 * end over real sockets. Nodemailer keeps doing STARTTLS (its tls options,
 * ignoreTLS, requireTLS); mailedge reports, per message, the session that
 * carried it (info.tls) and warns (STARTTLS_NOT_USED) when the relay offered
 * STARTTLS and the message went in clear text.
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { WORLD_ZONE_FILE } from '../src/testing/fixtures.js';
import { createTransport, type MailedgeTransporter } from '../src/create-transport.js';
import type { MailedgeOptions } from '../src/options.js';
import type { MailedgeWarning } from '../src/routes/route.js';

const cert = readFileSync(new URL('../fixtures/tls/relay.crt', import.meta.url));
const key = readFileSync(new URL('../fixtures/tls/relay.key', import.meta.url));

let dns: FixtureDnsServer;
/** Offers STARTTLS with the relay certificate (smtp.relay.test). */
let offering: SMTPServer;
/** Offers no STARTTLS. */
let plain: SMTPServer;
const received: Array<{ server: string; secure: boolean }> = [];

function server(name: string, startTls: boolean): SMTPServer {
  return new SMTPServer({
    secure: false,
    key,
    cert,
    ...(startTls ? {} : { disabledCommands: ['STARTTLS'] }),
    logger: false,
    authOptional: true,
    disableReverseLookup: true,
    onData(stream, session, callback) {
      stream.resume();
      stream.on('end', () => {
        received.push({ server: name, secure: session.secure });
        callback();
      });
    },
  });
}

async function listen(s: SMTPServer): Promise<number> {
  s.on('error', () => undefined);
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.100', resolve));
  return (s.server.address() as AddressInfo).port;
}

let offeringPort: number;
let plainPort: number;

beforeAll(async () => {
  dns = await startDnsServer({ zoneFiles: [WORLD_ZONE_FILE] });
  offering = server('offering', true);
  plain = server('plain', false);
  offeringPort = await listen(offering);
  plainPort = await listen(plain);
});
afterAll(async () => {
  await new Promise<void>((resolve) => offering.close(() => resolve()));
  await new Promise<void>((resolve) => plain.close(() => resolve()));
  await dns.close();
});

const message = { from: 'app@sender.test', to: 'someone@example.test', text: 'over TLS?' };

async function withTransport<T>(options: Partial<MailedgeOptions>, run: (t: MailedgeTransporter, warnings: MailedgeWarning[]) => Promise<T>): Promise<T> {
  const transport = createTransport({ host: 'smtp.relay.test', localAddress: '127.0.0.2', ...options, edge: { dns: { servers: [dns.server] }, ...options.edge } } as MailedgeOptions);
  const warnings: MailedgeWarning[] = [];
  transport.on('warning', (w: MailedgeWarning) => warnings.push(w));
  try {
    return await run(transport, warnings);
  } finally {
    transport.close();
  }
}

const tlsWarnings = (warnings: MailedgeWarning[]): MailedgeWarning[] => warnings.filter((w) => w.code === 'STARTTLS_NOT_USED');

describe('info.tls on relay sends', () => {
  it("is the STARTTLS session Nodemailer made, certificate verified with the caller's tls options", async () => {
    await withTransport({ port: offeringPort, tls: { ca: [cert] } }, async (t, warnings) => {
      received.length = 0;
      const info = await t.sendMail({ ...message });
      expect(info.tls).toMatchObject({ version: expect.stringMatching(/^TLSv1\.[23]$/), authorized: true });
      expect(typeof info.tls?.cipher).toBe('string');
      expect(received).toEqual([{ server: 'offering', secure: true }]);
      expect(tlsWarnings(warnings)).toEqual([]);
    });
  });

  it('is reported per message on a pool, whichever connection carried it', async () => {
    await withTransport({ port: offeringPort, pool: true, maxConnections: 2, tls: { ca: [cert] } } as Partial<MailedgeOptions>, async (t, warnings) => {
      const infos = await Promise.all(Array.from({ length: 6 }, (_, i) => t.sendMail({ ...message, subject: `m${i}` })));
      expect(infos.map((i) => i.tls?.authorized)).toEqual([true, true, true, true, true, true]);
      expect(tlsWarnings(warnings)).toEqual([]);
    });
  });

  it('says when the certificate did not verify (rejectUnauthorized: false)', async () => {
    await withTransport({ port: offeringPort, tls: { rejectUnauthorized: false } }, async (t) => {
      const info = await t.sendMail({ ...message });
      expect(info.tls).toMatchObject({ authorized: false, version: expect.stringMatching(/^TLSv1\.[23]$/) });
    });
  });

  it('is null without a warning when the relay offers no STARTTLS', async () => {
    await withTransport({ port: plainPort }, async (t, warnings) => {
      const info = await t.sendMail({ ...message });
      expect(info.tls).toBeNull();
      expect(tlsWarnings(warnings)).toEqual([]);
    });
  });
});

describe('the requirement: TLS when the receiver offers STARTTLS', () => {
  it('warns STARTTLS_NOT_USED (once per relay) when ignoreTLS sends in clear text past an offer, and still sends', async () => {
    await withTransport({ port: offeringPort, ignoreTLS: true }, async (t, warnings) => {
      received.length = 0;
      const first = await t.sendMail({ ...message });
      const second = await t.sendMail({ ...message });
      expect(first.tls).toBeNull();
      expect(second.tls).toBeNull();
      expect(received).toEqual([
        { server: 'offering', secure: false },
        { server: 'offering', secure: false },
      ]);
      const warned = tlsWarnings(warnings);
      expect(warned).toHaveLength(1);
      expect(warned[0]?.check).toMatchObject({ id: 'authentication', status: 'warn', severity: 'warn', code: 'STARTTLS_NOT_USED' });
      expect(warned[0]?.check?.hint).toMatch(/requireTLS/);
    });
  });

  it("is a warning even when the authentication check is enforced, and off with it", async () => {
    await withTransport({ port: offeringPort, ignoreTLS: true, edge: { checks: { authentication: 'enforce' } } } as Partial<MailedgeOptions>, async (t, warnings) => {
      await expect(t.sendMail({ ...message })).resolves.toMatchObject({ tls: null });
      expect(tlsWarnings(warnings)).toHaveLength(1);
    });
    await withTransport({ port: offeringPort, ignoreTLS: true, edge: { checks: { authentication: 'off' } } } as Partial<MailedgeOptions>, async (t, warnings) => {
      await expect(t.sendMail({ ...message })).resolves.toMatchObject({ tls: null });
      expect(tlsWarnings(warnings)).toEqual([]);
    });
  });
});
