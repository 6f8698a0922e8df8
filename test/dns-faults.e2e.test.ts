/**
 * Broken, hostile and slow DNS, end to end: the fixture server serves
 * fixtures/zones/hostile.zone beside the world zone, with faults injected per
 * name, and every case must end in a clear verdict with evidence.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { startReceiver, type Receiver } from '../src/testing/receiver.js';
import { WORLD_ZONE_FILE } from '../src/testing/fixtures.js';
import { loadZoneFiles } from '../src/testing/zone.js';
import { preflight } from '../src/preflight.js';
import { createTransport, type MailedgeTransporter as MailedgeTransport } from '../src/create-transport.js';
import { type MailedgeWarning } from '../src/routes/route.js';
import { EdgeRefusedError } from '../src/errors.js';
import type { PreflightReport } from '../src/checks/types.js';
import type { MailedgeOptions } from '../src/options.js';
import type { ResourceRecord } from '../src/dns/wire.js';

const HOSTILE_ZONE_FILE = fileURLToPath(new URL('../fixtures/zones/hostile.zone', import.meta.url));

let dns: FixtureDnsServer;
let receiver: Receiver;
let baseRecords: ResourceRecord[];
const transports: MailedgeTransport[] = [];

const MESSAGE = { from: 'app@sender.test', to: 'someone@example.test', subject: 'hi', text: 'body' };

beforeAll(async () => {
  baseRecords = await loadZoneFiles([WORLD_ZONE_FILE, HOSTILE_ZONE_FILE]);
  dns = await startDnsServer({ records: baseRecords });
  receiver = await startReceiver({ host: '127.0.0.101' });
});
afterEach(() => {
  for (const t of transports.splice(0)) t.close();
  dns.setRecords(baseRecords);
  dns.clearFaults();
  dns.resetStats();
  receiver.reset();
});
afterAll(async () => {
  await receiver.close();
  await dns.close();
});

function check(localAddress: string, edge: MailedgeOptions['edge'] = {}): Promise<PreflightReport> {
  return preflight({ localAddress, edge: { ...edge, dns: { servers: [dns.server], timeout: 1500, ...edge.dns } } });
}

/**
 * These tests count the identity's own DNS queries and time its waits, so the
 * envelope checks, which ask about the message's domains, are off here; they
 * are tested in envelope.e2e.test.ts.
 */
const ENVELOPE_CHECKS_OFF = { spf: 'off', 'sender-mx': 'off', dmarc: 'off', 'recipient-null-mx': 'off', authentication: 'off' } as const;

function transport(localAddress: string, edge: MailedgeOptions['edge'] = {}): MailedgeTransport {
  const t = createTransport({
    host: '127.0.0.101',
    port: receiver.port,
    localAddress,
    ignoreTLS: true,
    edge: { ...edge, checks: { ...ENVELOPE_CHECKS_OFF, ...edge.checks }, dns: { servers: [dns.server], timeout: 1500, ...edge.dns } },
  });
  transports.push(t);
  return t;
}

function failed(report: PreflightReport) {
  return report.checks.find((c) => c.status === 'fail' || c.status === 'temperror');
}

describe('PTR names that are not hostnames', () => {
  it.each([
    ['127.0.1.1', 'NUL byte', 'control bytes'],
    ['127.0.1.2', 'raw non-ASCII', 'non-ASCII'],
    ['127.0.1.4', 'an IP literal', 'IP address'],
    ['127.0.1.5', 'localhost', 'single label'],
    ['127.0.1.15', 'a .localhost name', 'localhost'],
    ['127.0.1.16', 'a leading hyphen', 'hyphen'],
    ['127.0.1.17', 'an underscore', 'letters, digits and hyphens'],
  ])('%s (%s) is PTR_INVALID with the reason in the evidence', async (address, _what, reason) => {
    const report = await check(address);
    expect(report.ok).toBe(false);
    expect(failed(report)).toMatchObject({ id: 'ptr', code: 'PTR_INVALID', status: 'fail' });
    expect(failed(report)?.evidence.join(' ')).toContain(reason);
    expect(JSON.stringify(report)).not.toMatch(/\\u0000|\\r|\\n/);
  });

  it('accepts punycode names', async () => {
    const report = await check('127.0.1.3');
    expect(report).toMatchObject({ ok: true, name: 'xn--caf-dma.hostile.test' });
  });

  it('compares names case-insensitively and sends them lower-cased', async () => {
    const info = await transport('127.0.1.6').sendMail({ ...MESSAGE });
    expect(info.edge.name).toBe('mail.hostile.test');
    expect(receiver.sessions.at(-1)?.ehlo).toBe('mail.hostile.test');
  });

  it('never lets a hostile caller-set name reach the wire, even in warn mode', async () => {
    const t = createTransport({
      host: '127.0.0.101',
      port: receiver.port,
      localAddress: '127.0.1.1',
      ignoreTLS: true,
      name: 'evil.test\r\nRSET',
      edge: { mode: 'warn', dns: { servers: [dns.server] } },
    });
    transports.push(t);
    const info = await t.sendMail({ ...MESSAGE });
    expect(info.edge).toMatchObject({ name: '[127.0.1.1]', verified: false });
    expect(receiver.sessions.at(-1)?.ehlo).toBe('[127.0.1.1]');
  });
});

describe('broken answers', () => {
  it('retries a truncated answer of 300 PTR names over TCP, caps the names examined, and says so', async () => {
    const many: ResourceRecord[] = Array.from({ length: 300 }, (_, i) => ({
      name: '8.1.0.127.in-addr.arpa',
      ttl: 300,
      class: 1,
      type: 'PTR' as const,
      target: `host-${i}.hostile.test`,
    }));
    const confirming: ResourceRecord[] = many.map((_, i) => ({ name: `host-${i}.hostile.test`, ttl: 300, class: 1, type: 'A' as const, address: '127.0.1.8' }));
    dns.setRecords([...baseRecords, ...many, ...confirming]);
    const report = await check('127.0.1.8');
    expect(dns.log.some((q) => q.transport === 'tcp' && q.type === 'PTR')).toBe(true);
    expect(failed(report)).toMatchObject({ id: 'fcrdns', code: 'PTR_AMBIGUOUS' });
    expect(report.checks.find((c) => c.id === 'ptr')?.evidence).toContain('examined the first 10 of 300 PTR names');
    // Forward lookups only for the names examined.
    expect(dns.log.filter((q) => q.type === 'A').length).toBe(10);
  });

  it('reports a CNAME loop as a mismatch with the loop in the evidence', async () => {
    const report = await check('127.0.1.9');
    expect(failed(report)).toMatchObject({ code: 'FCRDNS_MISMATCH' });
    expect(failed(report)?.evidence.join(' ')).toContain('CNAME loop');
  });

  it('stops following an overly long CNAME chain', async () => {
    const report = await check('127.0.1.10');
    expect(failed(report)).toMatchObject({ code: 'FCRDNS_MISMATCH' });
    expect(failed(report)?.evidence.join(' ')).toContain('CNAME chain too long');
  });

  it('ignores forward answers of the wrong type', async () => {
    dns.setFault('wrongtype.hostile.test', {
      types: ['A'],
      answers: [{ name: 'wrongtype.hostile.test', ttl: 300, class: 1, type: 'TXT', strings: ['127.0.1.11'] }],
    });
    const report = await check('127.0.1.11');
    expect(failed(report)).toMatchObject({ code: 'FCRDNS_MISMATCH' });
    expect(failed(report)?.evidence.join(' ')).toContain('ignored TXT at wrongtype.hostile.test');
  });

  it('treats NOERROR without data as a mismatch', async () => {
    const report = await check('127.0.1.12');
    expect(failed(report)).toMatchObject({ code: 'FCRDNS_MISMATCH' });
    expect(failed(report)?.evidence).toContain('dig +short A nodata.hostile.test → (nothing: no A record)');
  });

  it('treats NXDOMAIN for the PTR name as a mismatch', async () => {
    const report = await check('127.0.1.13');
    expect(failed(report)?.evidence).toContain('dig +short A gone.hostile.test → (nothing: NXDOMAIN)');
  });

  it('does not believe records injected into an answer for another question', async () => {
    dns.setFault('14.1.0.127.in-addr.arpa', {
      types: ['PTR'],
      answers: [
        { name: '14.1.0.127.in-addr.arpa', ttl: 300, class: 1, type: 'PTR', target: 'inject.hostile.test' },
        { name: 'inject.hostile.test', ttl: 86400, class: 1, type: 'A', address: '127.0.1.14' },
      ],
    });
    const report = await check('127.0.1.14');
    expect(failed(report)).toMatchObject({ code: 'FCRDNS_MISMATCH' });
    expect(dns.log.some((q) => q.type === 'A' && q.name === 'inject.hostile.test')).toBe(true);
  });

  it('ignores a forged reply with the wrong query id and takes the real one', async () => {
    dns.setFault('2.0.0.127.in-addr.arpa', { spoofFirst: true });
    dns.setFault('mail.good.test', { spoofFirst: true });
    const report = await check('127.0.0.2');
    expect(report).toMatchObject({ ok: true, name: 'mail.good.test' });
  });

  it('rejects an undecodable answer with evidence, as a temporary failure', async () => {
    // A PTR whose rdata holds a label with the reserved 0x40 label type.
    dns.setFault('2.0.0.127.in-addr.arpa', {
      types: ['PTR'],
      answers: [{ name: '2.0.0.127.in-addr.arpa', ttl: 300, class: 1, type: 'OTHER', typeCode: 12, raw: Buffer.from([0x41, 0x61, 0x00]) }],
    });
    const report = await check('127.0.0.2');
    expect(failed(report)).toMatchObject({ code: 'DNS_TEMPFAIL', status: 'temperror' });
    expect(failed(report)?.evidence.join(' ')).toContain('malformed answer');
  });
});

describe('names as callers spell them', () => {
  it('asks for an escaped or internationalised host name in its canonical form', async () => {
    const escaped = await preflight({ host: 'smtp.rel\\097y.test', localAddress: '127.0.0.2', edge: { dns: { servers: [dns.server] } } });
    expect(escaped).toMatchObject({ ok: true, destination: '127.0.0.100' });
    const idn = await preflight({ host: 'bücher.test', localAddress: '127.0.0.2', edge: { dns: { servers: [dns.server], timeout: 500 } } });
    expect(dns.log.some((q) => q.name === 'xn--bcher-kva.test')).toBe(true);
    expect(idn.checks[0]).toMatchObject({ id: 'destination', code: 'DEST_UNRESOLVED', status: 'fail' });
  });

  it('refuses a host name that cannot exist without asking DNS', async () => {
    const report = await preflight({ host: `${'a'.repeat(64)}.test`, localAddress: '127.0.0.2', edge: { dns: { servers: [dns.server] } } });
    expect(report.checks[0]).toMatchObject({ id: 'destination', code: 'DEST_UNRESOLVED' });
    expect(report.checks[0]?.evidence.join(' ')).toContain('longer than 63');
    expect(dns.log.filter((q) => q.name.endsWith('.test') && q.name.startsWith('aaaa'))).toEqual([]);
    // The edge is still checked, so the report shows everything that is wrong at once.
    expect(report.checks.map((c) => c.id)).toEqual(['destination', 'edge-address', 'ptr', 'fcrdns', 'ehlo-name', 'ehlo-syntax', 'generic-ptr']);
  });
});

describe('temporary failures', () => {
  it.each([
    [{ rcode: 'SERVFAIL' as const }, 'SERVFAIL'],
    [{ rcode: 'REFUSED' as const }, 'REFUSED'],
    [{ drop: true }, 'timed out'],
  ])('PTR %j gives DNS_TEMPFAIL (%s), not a misconfiguration', async (fault, words) => {
    dns.setFault('2.0.0.127.in-addr.arpa', fault);
    const report = await check('127.0.0.2', { dns: { timeout: 500 } });
    expect(failed(report)).toMatchObject({ id: 'ptr', code: 'DNS_TEMPFAIL', status: 'temperror' });
    expect(failed(report)?.evidence.join(' ')).toContain(words);
  });

  it('treats NXDOMAIN on the PTR as permanent', async () => {
    dns.setFault('2.0.0.127.in-addr.arpa', { rcode: 'NXDOMAIN' });
    const report = await check('127.0.0.2');
    expect(failed(report)).toMatchObject({ code: 'PTR_MISSING', status: 'fail' });
  });

  it('keeps one deadline for the whole check when only the forward lookup is slow', async () => {
    dns.setFault('mail.good.test', { delayMs: 3000 });
    const started = Date.now();
    const report = await check('127.0.0.2', { dns: { timeout: 500 } });
    const elapsed = Date.now() - started;
    expect(failed(report)).toMatchObject({ id: 'fcrdns', code: 'DNS_TEMPFAIL' });
    expect(elapsed).toBeGreaterThanOrEqual(450);
    // The deadline, not the 3 s answer: a bound well above the deadline, so a slow machine does not flake.
    expect(elapsed).toBeLessThan(2500);
  });

  it('does not wait out a silent first resolver: the second one answers within the deadline', async () => {
    const silent = await startDnsServer({ zone: '', defaultFault: { drop: true } });
    try {
      const report = await preflight({ localAddress: '127.0.0.2', edge: { dns: { servers: [silent.server, dns.server], timeout: 2000 } } });
      expect(report).toMatchObject({ ok: true, name: 'mail.good.test' });
    } finally {
      await silent.close();
    }
  });
});

describe('caching, single-flight and serve-stale', () => {
  function clockAt(start: number) {
    const clock = { t: start, now: () => clock.t };
    return clock;
  }

  it('sends of any concurrency cause one PTR and one forward query', async () => {
    dns.setDefaultFault({ delayMs: 50 });
    const t = transport('127.0.0.2');
    const infos = await Promise.all(Array.from({ length: 50 }, (_, i) => t.sendMail({ ...MESSAGE, subject: `n${i}` })));
    expect(infos.every((i) => i.edge.name === 'mail.good.test')).toBe(true);
    expect(dns.log.map((q) => q.type).sort()).toEqual(['A', 'PTR']);
  });

  it('keeps the identity for the shortest TTL in its chain (PTR 40 s, A 100 s)', async () => {
    const clock = clockAt(1_000_000);
    const t = transport('127.0.1.20', { clock });
    await t.sendMail({ ...MESSAGE });
    expect(dns.queries).toBe(2);
    clock.t += 39_000;
    await t.sendMail({ ...MESSAGE });
    expect(dns.queries).toBe(2);
    clock.t += 2_000;
    await t.sendMail({ ...MESSAGE });
    // The PTR expired; the A record (100 s) is still cached.
    expect(dns.log.map((q) => q.type)).toEqual(['PTR', 'A', 'PTR']);
  });

  it('caches a negative answer for the SOA negative TTL (RFC 2308), then asks again', async () => {
    const clock = clockAt(1_000_000);
    const t = transport('127.0.0.4', { clock });
    await expect(t.sendMail({ ...MESSAGE })).rejects.toMatchObject({ code: 'PTR_MISSING' });
    clock.t += 59_000;
    await expect(t.sendMail({ ...MESSAGE })).rejects.toMatchObject({ code: 'PTR_MISSING' });
    expect(dns.queries).toBe(1);
    clock.t += 2_000;
    await expect(t.sendMail({ ...MESSAGE })).rejects.toMatchObject({ code: 'PTR_MISSING' });
    expect(dns.queries).toBe(2);
  });

  it('serves a confirmed identity stale through a DNS outage, retrying in the background, then refuses', async () => {
    const clock = clockAt(1_000_000);
    // A send that waited for DNS would take at least this long; one that does not takes a few ms.
    const DNS_TIMEOUT = 600;
    const t = transport('127.0.0.2', { clock, dns: { timeout: DNS_TIMEOUT, staleFor: 600 } });
    const warnings: MailedgeWarning[] = [];
    t.on('warning', (w: MailedgeWarning) => warnings.push(w));
    expect((await t.sendMail({ ...MESSAGE })).edge.stale).toBe(false);

    dns.setDefaultFault({ drop: true });
    clock.t += 301_000;
    const stale = await t.sendMail({ ...MESSAGE });
    expect(stale.edge).toMatchObject({ name: 'mail.good.test', stale: true, verified: true });
    expect(warnings.map((w) => w.code)).toContain('IDENTITY_STALE');
    expect(receiver.sessions.at(-1)?.ehlo).toBe('mail.good.test');

    // While stale, sends do not wait for DNS: the retry runs in the background.
    clock.t += 31_000;
    const started = Date.now();
    expect((await t.sendMail({ ...MESSAGE })).edge.stale).toBe(true);
    expect(Date.now() - started).toBeLessThan(DNS_TIMEOUT);

    // Past the stale window the identity is gone: refused, retry later, message returned.
    clock.t += 600_000;
    const message = { ...MESSAGE, subject: 'after the window' };
    const err = await t.sendMail(message).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EdgeRefusedError);
    expect(err).toMatchObject({ code: 'DNS_TEMPFAIL', permanent: false, mail: message });
  });

  it('moves a pool to new connections when the confirmed name changes', async () => {
    const clock = clockAt(1_000_000);
    const t = createTransport({
      host: '127.0.0.101',
      port: receiver.port,
      localAddress: '127.0.0.2',
      ignoreTLS: true,
      pool: true,
      maxConnections: 1,
      edge: { clock, dns: { servers: [dns.server] } },
    });
    transports.push(t);
    await t.sendMail({ ...MESSAGE });
    await t.sendMail({ ...MESSAGE });
    expect(receiver.sessions.map((s) => s.ehlo)).toEqual(['mail.good.test']);
    dns.setRecords([
      ...baseRecords.filter((r) => r.name !== '2.0.0.127.in-addr.arpa'),
      { name: '2.0.0.127.in-addr.arpa', ttl: 300, class: 1, type: 'PTR', target: 'renamed.good.test' },
      { name: 'renamed.good.test', ttl: 300, class: 1, type: 'A', address: '127.0.0.2' },
    ]);
    clock.t += 301_000;
    const info = await t.sendMail({ ...MESSAGE });
    expect(info.edge.name).toBe('renamed.good.test');
    expect(receiver.sessions.map((s) => s.ehlo)).toEqual(['mail.good.test', 'renamed.good.test']);
    expect(receiver.sessions[0]?.messages).toHaveLength(2);
    expect(receiver.sessions[1]?.messages).toHaveLength(1);
  });

  it('ends the identity at once on a permanent answer, even within the stale window', async () => {
    const clock = clockAt(1_000_000);
    const t = transport('127.0.0.2', { clock });
    await t.sendMail({ ...MESSAGE });
    dns.setRecords(baseRecords.filter((r) => r.name !== '2.0.0.127.in-addr.arpa'));
    clock.t += 301_000;
    await expect(t.sendMail({ ...MESSAGE })).rejects.toMatchObject({ code: 'PTR_MISSING', permanent: true });
  });
});
