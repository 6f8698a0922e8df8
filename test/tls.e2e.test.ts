/**
 * mailedge connects to the address it resolved and checked, but TLS must still
 * be verified against the host name, or connecting by IP would silently turn
 * certificate checks off (or break them).
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { WORLD_ZONE_FILE } from '../src/testing/fixtures.js';
import { createTransport } from '../src/create-transport.js';
import { MailedgeError } from '../src/errors.js';
import type { SmtpSendError } from '../src/send-error.js';

const cert = readFileSync(new URL('../fixtures/tls/relay.crt', import.meta.url));
const key = readFileSync(new URL('../fixtures/tls/relay.key', import.meta.url));

let dns: FixtureDnsServer;
let server: SMTPServer;
let port: number;
const ehlo: string[] = [];

beforeAll(async () => {
  dns = await startDnsServer({ zoneFiles: [WORLD_ZONE_FILE] });
  server = new SMTPServer({
    secure: true,
    key,
    cert,
    logger: false,
    authOptional: true,
    disableReverseLookup: true,
    onMailFrom(_address, session, callback) {
      ehlo.push(session.hostNameAppearsAs);
      callback();
    },
    onData(stream, _session, callback) {
      stream.resume();
      stream.on('end', () => callback());
    },
  });
  // The failed handshake of the second test surfaces here; it is the expected outcome, not a test error.
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.100', resolve));
  port = (server.server.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await dns.close();
});

const message = { from: 'app@sender.test', to: 'someone@example.test', text: 'over TLS' };

describe('implicit TLS to a resolved address', () => {
  it('verifies the certificate against the host name (SNI) while connecting to the checked address', async () => {
    const transport = createTransport({
      host: 'smtp.relay.test',
      port,
      secure: true,
      localAddress: '127.0.0.2',
      tls: { ca: [cert] },
      edge: { dns: { servers: [dns.server] } },
    });
    try {
      const info = await transport.sendMail({ ...message });
      expect(info.edge.name).toBe('mail.good.test');
      expect(ehlo.at(-1)).toBe('mail.good.test');
    } finally {
      transport.close();
    }
  });

  it('still fails verification when the name does not match the certificate', async () => {
    const transport = createTransport({
      host: 'relay-alias.test',
      port,
      secure: true,
      localAddress: '127.0.0.2',
      tls: { ca: [cert] },
      edge: { dns: { servers: [dns.server] } },
    });
    try {
      const err = await transport.sendMail({ ...message }).catch((e: unknown) => e);
      expect(err).not.toBeInstanceOf(MailedgeError);
      expect((err as SmtpSendError).code).toMatch(/^(ETLS|ESOCKET|ERR_TLS_CERT_ALTNAME_INVALID)$/);
      expect((err as SmtpSendError).permanent).toBe(true);
    } finally {
      transport.close();
    }
  });
});
