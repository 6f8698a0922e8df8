/**
 * Issue 12: the dnsbl check of the edge address, against fixture blocklist
 * zones (fixtures/zones/dnsbl.zone) served by the fixture DNS server on
 * loopback, through the transport's preflight and sends.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { startReceiver, type Receiver } from '../src/testing/receiver.js';
import { createTransport, type MailedgeTransporter } from '../src/create-transport.js';
import { createResolver } from '../src/identity.js';
import { resolveEdgeOptions, type MailedgeOptions } from '../src/options.js';
import { checkDnsbl, dnsblQueryName } from '../src/checks/dnsbl.js';
import { EdgeRefusedError, InvalidOptionError } from '../src/errors.js';
import type { CheckResult } from '../src/checks/types.js';
import type { MailedgeWarning } from '../src/routes/route.js';

const ZONE = fileURLToPath(new URL('../fixtures/zones/dnsbl.zone', import.meta.url));
let dns: FixtureDnsServer;
let mx: Receiver;
const transports: MailedgeTransporter[] = [];

beforeAll(async () => {
  dns = await startDnsServer({ zoneFiles: [ZONE] });
  mx = await startReceiver({ host: '127.0.5.40' });
});
afterAll(async () => {
  for (const t of transports.splice(0)) t.close();
  await mx.close();
  await dns.close();
});

function transport(localAddress: string, options: Partial<MailedgeOptions> = {}): MailedgeTransporter & { warnings: MailedgeWarning[] } {
  const { edge, ...rest } = options;
  const t = createTransport({
    direct: true,
    localAddress,
    ...rest,
    edge: { mxPort: mx.port, dnsbl: ['zen.spamhaus.org', 'bl.example.test'], ...edge, dns: { servers: [dns.server], timeout: 2000 } },
  });
  transports.push(t);
  const warnings: MailedgeWarning[] = [];
  t.on('warning', (w: MailedgeWarning) => warnings.push(w));
  return Object.assign(t, { warnings });
}

async function dnsblChecks(localAddress: string, options: Partial<MailedgeOptions> = {}): Promise<CheckResult[]> {
  const report = await transport(localAddress, options).preflight();
  return report.checks.filter((c) => c.id === 'dnsbl');
}

describe('the dnsbl check', () => {
  it('passes a clean address on every list, one result per list', async () => {
    const checks = await dnsblChecks('127.0.5.31');
    expect(checks.map((c) => [c.status, c.code])).toEqual([
      ['pass', null],
      ['pass', null],
    ]);
    expect(checks[0]?.evidence[0]).toContain('31.5.0.127.zen.spamhaus.org');
  });

  it('an SBL listing fails, with the list, the reason and the lookup page; warn by default', async () => {
    const [zen] = await dnsblChecks('127.0.5.32');
    expect(zen).toMatchObject({ status: 'fail', code: 'DNSBL_LISTED', severity: 'warn' });
    expect(zen?.actual).toMatch(/zen\.spamhaus\.org: SBL/);
    expect(zen?.hint).toContain('https://check.spamhaus.org/?ip=127.0.5.32');
  });

  it('a PBL listing fails direct delivery and only warns through a relay', async () => {
    const [direct] = await dnsblChecks('127.0.5.33');
    expect(direct).toMatchObject({ status: 'fail', code: 'DNSBL_POLICY' });
    const relay = createTransport({ host: 'mx.bl.test', port: mx.port, localAddress: '127.0.5.33', edge: { dnsbl: ['zen.spamhaus.org'], localRelay: false, dns: { servers: [dns.server], timeout: 2000 } } });
    transports.push(relay);
    const viaRelay = (await relay.preflight()).checks.find((c) => c.id === 'dnsbl');
    expect(viaRelay).toMatchObject({ status: 'warn', code: 'DNSBL_POLICY' });
    expect(viaRelay?.actual).toMatch(/PBL/);
  });

  it("the list's error answer (query through a public resolver) is a temperror that says so, never a listing", async () => {
    const [zen] = await dnsblChecks('127.0.5.34');
    expect(zen).toMatchObject({ status: 'temperror', code: 'DNSBL_UNAVAILABLE' });
    expect(zen?.actual).toMatch(/public or open resolver.*not a listing/);
    expect(zen?.hint).toMatch(/own recursive resolver/);
  });

  it('XBL and PBL together: the listing wins', async () => {
    const [zen] = await dnsblChecks('127.0.5.35');
    expect(zen).toMatchObject({ status: 'fail', code: 'DNSBL_LISTED' });
    expect(zen?.actual).toMatch(/XBL/);
  });

  it('another list: 127.0.0.x is a listing; an answer outside 127/8 is a rewriting resolver (temperror)', async () => {
    expect((await dnsblChecks('127.0.5.36'))[1]).toMatchObject({ status: 'fail', code: 'DNSBL_LISTED' });
    const hijacked = (await dnsblChecks('127.0.5.37'))[1];
    expect(hijacked).toMatchObject({ status: 'temperror', code: 'DNSBL_UNAVAILABLE' });
    expect(hijacked?.actual).toMatch(/rewrites NXDOMAIN/);
  });

  it('asks IPv6 addresses in nibble form', async () => {
    expect(dnsblQueryName('2001:db8::1', 'zen.spamhaus.org')).toBe('1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org');
    const resolver = createResolver(resolveEdgeOptions({ host: 'x.test', edge: { dns: { servers: [dns.server] } } }));
    const verdict = await checkDnsbl('::1', 'zen.spamhaus.org', true, resolver, AbortSignal.timeout(2000));
    expect(verdict).toMatchObject({ status: 'fail', code: 'DNSBL_LISTED' });
  });

  it("warn (the default): the mail goes out, with the listing as a warning", async () => {
    const t = transport('127.0.5.32');
    const info = await t.sendMail({ from: 'a@sender.bl.test', to: 'b@recipient.bl.test', text: 'x' });
    expect(info.accepted).toEqual(['b@recipient.bl.test']);
    expect(t.warnings.map((w) => w.code)).toContain('DNSBL_LISTED');
  });

  it("'enforce' holds the send, naming the list", async () => {
    const before = mx.connections;
    const err = await transport('127.0.5.32', { edge: { checks: { dnsbl: 'enforce' } } })
      .sendMail({ from: 'a@sender.bl.test', to: 'b@recipient.bl.test', text: 'x' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EdgeRefusedError);
    expect(err).toMatchObject({ code: 'DNSBL_LISTED', permanent: true });
    expect(mx.connections).toBe(before);
  });

  it('rejects a list that is not a zone name, naming the option', () => {
    expect(() => createTransport({ direct: true, edge: { dnsbl: ['not a zone'], dns: { servers: [dns.server] } } })).toThrow(InvalidOptionError);
    expect(() => createTransport({ direct: true, edge: { dnsbl: ['not a zone'], dns: { servers: [dns.server] } } })).toThrow(/edge\.dnsbl\[0\]/);
  });
});
