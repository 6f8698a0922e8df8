/**
 * Corners found in review: each was a way to send under an unchecked address,
 * keep an identity past its records, or wait out a deadline for nothing.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { startReceiver, type Receiver } from '../src/testing/receiver.js';
import { WORLD_ZONE_FILE } from '../src/testing/fixtures.js';
import { loadZoneFiles } from '../src/testing/zone.js';
import { createTransport, type MailedgeTransporter as MailedgeTransport } from '../src/create-transport.js';
import { InvalidOptionError } from '../src/errors.js';
import { preflight } from '../src/preflight.js';
import type { MailedgeOptions } from '../src/options.js';
import type { ResourceRecord } from '../src/dns/wire.js';

let dns: FixtureDnsServer;
let receiver: Receiver;
let baseRecords: ResourceRecord[];
const transports: MailedgeTransport[] = [];
const MESSAGE = { from: 'app@sender.test', to: 'someone@example.test', text: 'x' };

beforeAll(async () => {
  baseRecords = await loadZoneFiles([WORLD_ZONE_FILE]);
  dns = await startDnsServer({ records: baseRecords });
  receiver = await startReceiver({ host: '127.0.0.1', strict: true, dnsServer: dns.server });
});
afterEach(() => {
  for (const t of transports.splice(0)) t.close();
  dns.clearFaults();
  dns.setRecords(baseRecords);
  dns.resetStats();
  receiver.reset();
});
afterAll(async () => {
  await receiver.close();
  await dns.close();
});

function transport(options: MailedgeOptions): MailedgeTransport {
  const t = createTransport({ ignoreTLS: true, ...options, edge: { localRelay: false, ...options.edge, dns: { servers: [dns.server], timeout: 1000, ...options.edge?.dns } } });
  transports.push(t);
  return t;
}

function invalid(options: MailedgeOptions): string {
  try {
    createTransport(options);
  } catch (err) {
    if (err instanceof InvalidOptionError) return err.option;
    throw err;
  }
  throw new Error('expected InvalidOptionError');
}

describe('options', () => {
  it('refuses a public address of another family than the bound one', () => {
    expect(invalid({ localAddress: '127.0.0.10', edge: { publicAddress: '::1' } })).toBe('edge.publicAddress');
  });

  it('refuses durations that Node timers cannot hold, and TTL bounds that contradict', () => {
    expect(invalid({ edge: { dns: { timeout: 2 ** 31 } } })).toBe('edge.dns.timeout');
    expect(invalid({ edge: { dns: { minTtl: 600, maxNegativeTtl: 60 } } })).toBe('edge.dns.minTtl');
  });

  it('takes Date itself as the clock', () => {
    expect(() => createTransport({ edge: { clock: Date, dns: { servers: ['127.0.0.1:53'] } } }).close()).not.toThrow();
  });

  it('reads connectionTimeout: 0 as Nodemailer does, as the default', async () => {
    const info = await transport({ host: '127.0.0.1', port: receiver.port, localAddress: '127.0.0.2', connectionTimeout: 0 }).sendMail({ ...MESSAGE });
    expect(info.edge.name).toBe('mail.good.test');
  });
});

describe('the route', () => {
  it('checks the public address for the family it will be sent from', async () => {
    // ::1 passes (v6.good.test), but nothing is bound: the route must then be IPv6 too.
    const report = await preflight({ host: 'dual.relay.test', edge: { publicAddress: '::1', dns: { servers: [dns.server] } } });
    expect(report).toMatchObject({ ok: true, destination: '::1', name: 'v6.good.test' });
  });

  it('does not wait for a dropped AAAA query when the A record answers', async () => {
    dns.setFault('dual.relay.test', { types: ['AAAA'], drop: true });
    const started = Date.now();
    const info = await transport({ host: 'dual.relay.test', port: receiver.port, edge: { dns: { timeout: 5000 } } }).sendMail({ ...MESSAGE });
    // Waiting for the dropped AAAA would cost the whole DNS timeout (5 s).
    expect(Date.now() - started).toBeLessThan(2_500);
    expect(info.edge).toMatchObject({ address: '127.0.0.1', name: 'kernel.good.test' });
  });

  it('binds the source address the kernel chose when the edge was checked', async () => {
    await transport({ host: '127.0.0.1', port: receiver.port }).sendMail({ ...MESSAGE });
    expect(receiver.sessions.at(-1)).toMatchObject({ clientAddress: '127.0.0.1', ehlo: 'kernel.good.test' });
  });
});

describe('TTLs', () => {
  it('ends an identity when its first record expires, even when another was re-read from cache', async () => {
    const clock = { t: 1_000_000, now: () => clock.t };
    const ptr = (target: string): ResourceRecord => ({ name: '2.0.0.127.in-addr.arpa', ttl: 1000, class: 1, type: 'PTR', target });
    dns.setRecords([
      ...baseRecords.filter((r) => r.name !== '2.0.0.127.in-addr.arpa' && r.name !== 'mail.good.test'),
      ptr('mail.good.test'),
      { name: 'mail.good.test', ttl: 600, class: 1, type: 'A', address: '127.0.0.2' },
      { name: 'next.good.test', ttl: 600, class: 1, type: 'A', address: '127.0.0.2' },
    ]);
    const t = transport({ host: '127.0.0.1', port: receiver.port, localAddress: '127.0.0.2', ignoreTLS: true, edge: { clock } });
    expect((await t.sendMail({ ...MESSAGE })).edge.name).toBe('mail.good.test');
    // At 600 s the A record expires and is read again; the PTR is still the cached one, due at 1000 s.
    clock.t += 601_000;
    expect((await t.sendMail({ ...MESSAGE })).edge.name).toBe('mail.good.test');
    dns.setRecords([...baseRecords.filter((r) => r.name !== '2.0.0.127.in-addr.arpa'), ptr('next.good.test'), { name: 'next.good.test', ttl: 600, class: 1, type: 'A', address: '127.0.0.2' }]);
    clock.t += 400_000;
    expect((await t.sendMail({ ...MESSAGE })).edge.name).toBe('next.good.test');
  });
});

describe('many lookups on one deadline', () => {
  it('raises no MaxListenersExceededWarning', async () => {
    const names = Array.from({ length: 10 }, (_, i) => `n${i}.good.test`);
    dns.setRecords([
      ...baseRecords,
      ...names.map((target): ResourceRecord => ({ name: '20.0.0.127.in-addr.arpa', ttl: 300, class: 1, type: 'PTR', target })),
      ...names.map((name): ResourceRecord => ({ name, ttl: 300, class: 1, type: 'A', address: '127.0.0.20' })),
    ]);
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      const report = await preflight({ host: 'smtp.relay.test', localAddress: '127.0.0.20', edge: { dns: { servers: [dns.server] } } });
      expect(report.checks.find((c) => c.id === 'fcrdns')?.code).toBe('PTR_MULTIPLE');
      await new Promise((r) => setTimeout(r, 20));
      expect(warnings).not.toContain('MaxListenersExceededWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });
});
