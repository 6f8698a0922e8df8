/**
 * edge.family: a destination with A and AAAA (dual.relay.test: 127.0.0.1 and
 * ::1) is reached over the family whose edge passes FCrDNS. The kernel's
 * source on loopback is 127.0.0.1 (kernel.good.test) and ::1 (v6.good.test);
 * a family is broken by removing its PTR. One strict receiver per family, on
 * the same port, so the route alone decides which one sees the mail.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import type { Receiver } from '../src/testing/receiver.js';
import { startReceiversOnOnePort } from './support/world.js';
import { WORLD_ZONE_FILE } from '../src/testing/fixtures.js';
import { loadZoneFiles } from '../src/testing/zone.js';
import { createTransport, type MailedgeTransporter as MailedgeTransport } from '../src/create-transport.js';
import { type MailedgeWarning } from '../src/routes/route.js';
import { EdgeRefusedError, InvalidOptionError } from '../src/errors.js';
import { preflight } from '../src/preflight.js';
import type { MailedgeOptions } from '../src/options.js';
import type { ResourceRecord } from '../src/dns/wire.js';
import { readFileSync } from 'node:fs';
import { toJsonReport } from '../src/report/json.js';

const V4_PTR = '1.0.0.127.in-addr.arpa';
const V6_PTR = `1.${'0.'.repeat(31)}ip6.arpa`;

let dns: FixtureDnsServer;
let v4: Receiver;
let v6: Receiver;
let baseRecords: ResourceRecord[];
const transports: MailedgeTransport[] = [];
const MESSAGE = { from: 'app@sender.test', to: 'someone@example.test', text: 'x' };

beforeAll(async () => {
  baseRecords = await loadZoneFiles([WORLD_ZONE_FILE]);
  dns = await startDnsServer({ records: baseRecords });
  [v6, v4] = (await startReceiversOnOnePort([
    { host: '::1', strict: true, dnsServer: dns.server },
    { host: '127.0.0.1', strict: true, dnsServer: dns.server },
  ])) as [Receiver, Receiver];
});
afterEach(() => {
  for (const t of transports.splice(0)) t.close();
  dns.clearFaults();
  dns.setRecords(baseRecords);
  v4.reset();
  v6.reset();
});
afterAll(async () => {
  await v4.close();
  await v6.close();
  await dns.close();
});

function options(extra: Partial<MailedgeOptions> = {}): MailedgeOptions {
  return { host: 'dual.relay.test', port: v6.port, ignoreTLS: true, ...extra, edge: { localRelay: false, ...extra.edge, dns: { servers: [dns.server], timeout: 1000 } } };
}

function transport(extra: Partial<MailedgeOptions> = {}): MailedgeTransport {
  const t = createTransport(options(extra));
  transports.push(t);
  return t;
}

function without(...names: string[]): void {
  dns.setRecords(baseRecords.filter((r) => !(r.type === 'PTR' && names.includes(r.name))));
}

async function refusal(promise: Promise<unknown>): Promise<EdgeRefusedError> {
  const err = await promise.then(
    () => {
      throw new Error('expected a refusal');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EdgeRefusedError);
  return err as EdgeRefusedError;
}

describe("edge.family 'auto'", () => {
  it('sends over IPv4 when it passes, though the IPv6 edge (::1) has no PTR', async () => {
    without(V6_PTR);
    const info = await transport().sendMail({ ...MESSAGE });
    expect(info.edge).toMatchObject({ address: '127.0.0.1', name: 'kernel.good.test', verified: true });
    expect(v4.sessions.at(-1)).toMatchObject({ clientAddress: '127.0.0.1', ehlo: 'kernel.good.test' });
    expect(v6.sessions).toHaveLength(0);
    // IPv4 passing is the whole answer: IPv6 is not even looked at.
    const report = await preflight(options());
    expect(report.checks.length).toBeGreaterThan(0);
    expect(report.checks.every((c) => c.family === undefined)).toBe(true);
  });

  it('connects over IPv6 when the IPv4 edge fails FCrDNS and the IPv6 edge passes, and warns about IPv4', async () => {
    without(V4_PTR);
    const t = transport();
    const warnings: MailedgeWarning[] = [];
    t.on('warning', (w: MailedgeWarning) => warnings.push(w));
    const info = await t.sendMail({ ...MESSAGE });
    expect(info.edge).toMatchObject({ address: '::1', name: 'v6.good.test', verified: true });
    expect(v6.sessions.at(-1)).toMatchObject({ clientAddress: '::1', ehlo: 'v6.good.test' });
    expect(v4.sessions).toHaveLength(0);
    expect(warnings.map((w) => [w.code, w.check?.family])).toContainEqual(['PTR_MISSING', 4]);

    const report = await t.preflight();
    expect(report).toMatchObject({ ok: true, address: '::1', name: 'v6.good.test', destination: '::1' });
    const ptr = report.checks.filter((c) => c.id === 'ptr');
    expect(ptr.map((c) => [c.family, c.status, c.severity])).toEqual([
      [4, 'fail', 'warn'],
      [6, 'pass', 'enforce'],
    ]);
    expect(report.ptrNames.map((p) => p.name)).toEqual(['v6.good.test']);
    // The JSON report stays within docs/report.schema.json: family is a documented field.
    const schema = JSON.parse(readFileSync(new URL('../docs/report.schema.json', import.meta.url), 'utf8')) as {
      properties: { checks: { items: { properties: Record<string, { enum?: unknown[] }> } } };
    };
    const allowed = schema.properties.checks.items.properties;
    for (const check of toJsonReport(report).checks) {
      for (const key of Object.keys(check)) expect(Object.keys(allowed)).toContain(key);
      expect(allowed.family?.enum).toContain(check.family);
    }
  });

  it('refuses with the evidence of both families when neither passes, and connects nowhere', async () => {
    without(V4_PTR, V6_PTR);
    const err = await refusal(transport().sendMail({ ...MESSAGE }));
    expect(err.code).toBe('PTR_MISSING');
    expect(err.permanent).toBe(true);
    expect(err.message).toMatch(/IPv4: no PTR: 1\.0\.0\.127\.in-addr\.arpa.*; IPv6: no PTR: 1\.0\.0.*ip6\.arpa/);
    expect(err.evidence.some((line) => line.startsWith('IPv4: dig +short -x 127.0.0.1'))).toBe(true);
    expect(err.evidence.some((line) => line.startsWith('IPv6: dig +short -x ::1'))).toBe(true);
    expect(err.report.checks.filter((c) => c.id === 'ptr').map((c) => [c.family, c.status, c.severity])).toEqual([
      [4, 'fail', 'enforce'],
      [6, 'fail', 'enforce'],
    ]);
    expect(v4.connections + v6.connections).toBe(0);
  });

  it('in warn mode, goes out unverified over IPv4 when neither family passes (and the strict receiver says no)', async () => {
    without(V4_PTR, V6_PTR);
    await expect(transport({ edge: { mode: 'warn' } }).sendMail({ ...MESSAGE })).rejects.toMatchObject({ code: 'EENVELOPE', responseCode: 550 });
    expect(v4.sessions.at(-1)).toMatchObject({ clientAddress: '127.0.0.1', ehlo: '[127.0.0.1]' });
    expect(v6.connections).toBe(0);
  });
});

describe('serving stale per family', () => {
  it('keeps a confirmed IPv6 identity through a DNS outage, though IPv4 keeps failing', async () => {
    without(V4_PTR);
    const clock = { t: 1_000_000, now: () => clock.t };
    const t = transport({ edge: { clock } });
    expect((await t.sendMail({ ...MESSAGE })).edge).toMatchObject({ address: '::1', stale: false });
    // IPv4 is still answered (NXDOMAIN) but the IPv6 PTR is not: IPv6 is only temporarily unknown.
    dns.setFault(V6_PTR, { rcode: 'SERVFAIL' });
    clock.t += 301_000;
    expect(await t.preflight()).toMatchObject({ address: '::1', name: 'v6.good.test', stale: true });
    // Every lookup failing: IPv4 is then temporary too, and the IPv6 identity is still served.
    dns.setDefaultFault({ rcode: 'SERVFAIL' });
    clock.t += 31_000;
    expect(await t.preflight()).toMatchObject({ address: '::1', name: 'v6.good.test', stale: true });
    // The strict receiver shares the failing DNS and answers 451, but mailedge went over IPv6 with the stale name.
    await expect(t.sendMail({ ...MESSAGE })).rejects.toMatchObject({ code: 'EENVELOPE', responseCode: 451 });
    expect(v6.sessions.at(-1)).toMatchObject({ clientAddress: '::1', ehlo: 'v6.good.test' });
    expect(v4.sessions).toHaveLength(0);
  });
});

describe('edge.family 4 or 6', () => {
  it('6 sends over IPv6 although IPv4 would pass', async () => {
    const info = await transport({ edge: { family: 6 } }).sendMail({ ...MESSAGE });
    expect(info.edge).toMatchObject({ address: '::1', name: 'v6.good.test' });
    expect(v6.sessions.at(-1)?.clientAddress).toBe('::1');
  });

  it('6 refuses when the IPv6 edge has no PTR, without falling back to IPv4', async () => {
    without(V6_PTR);
    const err = await refusal(transport({ edge: { family: 6 } }).sendMail({ ...MESSAGE }));
    expect(err.code).toBe('PTR_MISSING');
    expect(err.report.checks.length).toBeGreaterThan(0);
    expect(err.report.checks.every((c) => c.family === undefined)).toBe(true);
    expect(err.report.address).toBe('::1');
  });

  it('4 refuses when the IPv4 edge fails, though IPv6 would pass', async () => {
    without(V4_PTR);
    const err = await refusal(transport({ edge: { family: 4 } }).sendMail({ ...MESSAGE }));
    expect(err.code).toBe('PTR_MISSING');
    expect(err.report.address).toBe('127.0.0.1');
  });

  it('a fixed edge address decides the family, and a contradicting edge.family is refused at construction', () => {
    const invalid = (o: MailedgeOptions): string | undefined => {
      try {
        createTransport(o).close();
      } catch (err) {
        if (err instanceof InvalidOptionError) return err.option;
        throw err;
      }
      return undefined;
    };
    expect(invalid(options({ localAddress: '::1', edge: { family: 4 } }))).toBe('edge.family');
    expect(invalid(options({ edge: { publicAddress: '127.0.0.2', family: 6 } }))).toBe('edge.family');
    expect(invalid(options({ edge: { family: 5 as unknown as 4 } }))).toBe('edge.family');
    expect(invalid(options({ localAddress: '::1', edge: { family: 6 } }))).toBeUndefined();
  });
});

describe('serve-stale is per family', () => {
  it('does not keep a confirmed IPv4 identity alive on an IPv6 lookup that merely failed, once IPv4 fails for good', async () => {
    const clock = { t: 1_000_000, now: () => clock.t };
    const t = transport({ edge: { clock } });
    expect((await t.sendMail({ ...MESSAGE })).edge).toMatchObject({ address: '127.0.0.1', name: 'kernel.good.test' });
    without(V4_PTR);
    dns.setFault(V6_PTR, { rcode: 'SERVFAIL' });
    clock.t += 3_601_000;
    const err = await refusal(t.sendMail({ ...MESSAGE }));
    // IPv4 is gone for good; IPv6 is undecided, so "retry later" is the honest verdict, but nothing goes out stale.
    expect(err.evidence.join('\n')).toMatch(/IPv4/);
    expect(err.report.stale).toBe(false);
    expect(v4.messages).toBe(1);
    expect(v6.messages).toBe(0);
  });
});
