/**
 * Issue 12: direct delivery's TLS, end to end over real sockets on loopback:
 * STARTTLS receivers with certificates from a fixture CA (fixtures/tls/mx),
 * an HTTPS MTA-STS policy server, and the fixture DNS server answering TLSA
 * with the AD bit for zones marked signed. Every receiver listens on one
 * port on its own 127.0.5.x address; edge.mxPort points delivery there.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import type { Receiver } from '../src/testing/receiver.js';
import { startPolicyServer, policyText, type PolicyServer } from '../src/testing/policy-server.js';
import { startReceiversOnOnePort } from './support/world.js';
import { parseZone } from '../src/testing/zone.js';
import type { ResourceRecord } from '../src/dns/wire.js';
import { createTransport, type MailedgeTransporter } from '../src/create-transport.js';
import type { DirectSentMessageInfo, DomainDelivery } from '../src/routes/direct.js';
import type { MailedgeOptions } from '../src/options.js';
import type { MailedgeWarning } from '../src/routes/route.js';
import { tlsaRdata } from '../src/tls/dane.js';
import { FilePolicyStore, MemoryPolicyStore } from '../src/tls/policy-store.js';
import { TlsPolicyError } from '../src/tls/outcome.js';

const pem = (name: string): string => readFileSync(new URL(`../fixtures/tls/mx/${name}`, import.meta.url), 'utf8');
const CA = pem('ca.crt');
const SELF = pem('mx-self.crt');

const ZONE = `
$TTL 300
2.5.0.127.in-addr.arpa.        PTR mail.out.tls.test.
mail.out.tls.test.             A   127.0.5.2
out.tls.test.                  MX  10 mail.out.tls.test.
out.tls.test.                  TXT "v=spf1 ip4:127.0.5.2 -all"
_dmarc.out.tls.test.           TXT "v=DMARC1; p=none"
mx-good.tls.test.              A   127.0.5.10
mx-self.tls.test.              A   127.0.5.11
mx-wrong.tls.test.             A   127.0.5.12
mx-expired.tls.test.           A   127.0.5.13
mx-plain.tls.test.             A   127.0.5.14
mx-dane-ta.tls.test.           A   127.0.5.15
mx-dane.tls.test.              A   127.0.5.11
mx-danebad.tls.test.           A   127.0.5.11
mx-daneunsigned.tls.test.      A   127.0.5.11
mx-daneservfail.tls.test.      A   127.0.5.11
mx-daneunusable.tls.test.      A   127.0.5.11
mx-daneunusable-plain.tls.test. A  127.0.5.14
mx-broken.tls.test.            A   127.0.5.16
mx-dane302.tls.test.           A   127.0.5.11
mx-dane310.tls.test.           A   127.0.5.11
mx-daneta211.tls.test.         A   127.0.5.15
dane302.tls.test.              MX 10 mx-dane302.tls.test.
dane310.tls.test.              MX 10 mx-dane310.tls.test.
daneta211.tls.test.            MX 10 mx-daneta211.tls.test.
broken.tls.test.               MX 10 mx-broken.tls.test.
dane-unusable.tls.test.        MX 10 mx-daneunusable.tls.test.
dane-unusable-plain.tls.test.  MX 10 mx-daneunusable-plain.tls.test.
self.tls.test.                 MX 10 mx-self.tls.test.
wrong.tls.test.                MX 10 mx-wrong.tls.test.
expired.tls.test.              MX 10 mx-expired.tls.test.
good.tls.test.                 MX 10 mx-good.tls.test.
plain.tls.test.                MX 10 mx-plain.tls.test.
; MTA-STS
enforce.tls.test.              MX 10 mx-good.tls.test.
_mta-sts.enforce.tls.test.     TXT "v=STSv1; id=1"
mta-sts.enforce.tls.test.      A   127.0.5.20
enforce-bad.tls.test.          MX 10 mx-wrong.tls.test.
_mta-sts.enforce-bad.tls.test. TXT "v=STSv1; id=1"
mta-sts.enforce-bad.tls.test.  A   127.0.5.20
enforce-outside.tls.test.      MX 10 mx-self.tls.test.
enforce-outside.tls.test.      MX 20 mx-good.tls.test.
_mta-sts.enforce-outside.tls.test. TXT "v=STSv1; id=1"
mta-sts.enforce-outside.tls.test. A 127.0.5.20
testing.tls.test.              MX 10 mx-wrong.tls.test.
_mta-sts.testing.tls.test.     TXT "v=STSv1; id=1"
mta-sts.testing.tls.test.      A   127.0.5.20
none.tls.test.                 MX 10 mx-self.tls.test.
_mta-sts.none.tls.test.        TXT "v=STSv1; id=1"
mta-sts.none.tls.test.         A   127.0.5.20
redirect.tls.test.             MX 10 mx-self.tls.test.
_mta-sts.redirect.tls.test.    TXT "v=STSv1; id=1"
mta-sts.redirect.tls.test.     A   127.0.5.20
cached.tls.test.               MX 10 mx-good.tls.test.
; policy hosts that misbehave: a certificate without their name, a huge or slow or mistyped policy
wrongcert.tls.test.            MX 10 mx-self.tls.test.
_mta-sts.wrongcert.tls.test.   TXT "v=STSv1; id=1"
mta-sts.wrongcert.tls.test.    A   127.0.5.20
huge.tls.test.                 MX 10 mx-self.tls.test.
_mta-sts.huge.tls.test.        TXT "v=STSv1; id=1"
mta-sts.huge.tls.test.         A   127.0.5.20
slow.tls.test.                 MX 10 mx-self.tls.test.
_mta-sts.slow.tls.test.        TXT "v=STSv1; id=1"
mta-sts.slow.tls.test.         A   127.0.5.20
html.tls.test.                 MX 10 mx-self.tls.test.
_mta-sts.html.tls.test.        TXT "v=STSv1; id=1"
mta-sts.html.tls.test.         A   127.0.5.20
_mta-sts.cached.tls.test.      TXT "v=STSv1; id=1"
mta-sts.cached.tls.test.       A   127.0.5.20
; DANE
dane.tls.test.                 MX 10 mx-dane.tls.test.
dane-bad.tls.test.             MX 10 mx-danebad.tls.test.
dane-bad.tls.test.             MX 20 mx-good.tls.test.
dane-ta.tls.test.              MX 10 mx-dane-ta.tls.test.
dane-unsigned.tls.test.        MX 10 mx-daneunsigned.tls.test.
dane-servfail.tls.test.        MX 10 mx-daneservfail.tls.test.
both.tls.test.                 MX 10 mx-dane.tls.test.
_mta-sts.both.tls.test.        TXT "v=STSv1; id=1"
mta-sts.both.tls.test.         A   127.0.5.20
`;

function tlsa(host: string, usage: number, selector: number, matchingType: number, cert: string): ResourceRecord {
  return { name: `_25._tcp.${host}`, ttl: 300, class: 1, type: 'OTHER', typeCode: 52, raw: tlsaRdata(usage, selector, matchingType, cert) };
}

const SIGNED = ['dane302.tls.test', 'mx-dane302.tls.test', 'dane310.tls.test', 'mx-dane310.tls.test', 'daneta211.tls.test', 'mx-daneta211.tls.test', 'dane-unusable.tls.test', 'mx-daneunusable.tls.test', 'dane-unusable-plain.tls.test', 'mx-daneunusable-plain.tls.test', 'dane.tls.test', 'mx-dane.tls.test', 'dane-bad.tls.test', 'mx-danebad.tls.test', 'dane-ta.tls.test', 'mx-dane-ta.tls.test', 'dane-servfail.tls.test', 'mx-daneservfail.tls.test', 'both.tls.test', 'mx-good.tls.test'];

let records: ResourceRecord[];
let dns: FixtureDnsServer;
let policies: PolicyServer;
let good: Receiver, self: Receiver, wrong: Receiver, expired: Receiver, plain: Receiver, daneTa: Receiver, broken: Receiver;
const transports: MailedgeTransporter[] = [];

const POLICIES = {
  'enforce.tls.test': policyText({ mode: 'enforce', mx: ['mx-good.tls.test'], maxAge: 86400 }),
  'enforce-bad.tls.test': policyText({ mode: 'enforce', mx: ['mx-wrong.tls.test'], maxAge: 86400 }),
  'enforce-outside.tls.test': policyText({ mode: 'enforce', mx: ['*.elsewhere.test', 'mx-good.tls.test'], maxAge: 86400 }),
  'testing.tls.test': policyText({ mode: 'testing', mx: ['mx-wrong.tls.test'], maxAge: 86400 }),
  'none.tls.test': policyText({ mode: 'none', mx: [], maxAge: 86400 }),
  'redirect.tls.test': { status: 301, location: 'https://elsewhere.test/.well-known/mta-sts.txt' },
  'cached.tls.test': policyText({ mode: 'enforce', mx: ['mx-good.tls.test'], maxAge: 86400 }),
  'both.tls.test': policyText({ mode: 'enforce', mx: ['mx-dane.tls.test'], maxAge: 86400 }),
  // Served, but the policy server's certificate does not name mta-sts.wrongcert.tls.test.
  'wrongcert.tls.test': policyText({ mode: 'enforce', mx: ['mx-good.tls.test'], maxAge: 86400 }),
  'huge.tls.test': policyText({ mode: 'enforce', mx: ['mx-good.tls.test'], maxAge: 86400 }) + '#'.repeat(70 * 1024),
  'slow.tls.test': { body: policyText({ mode: 'enforce', mx: ['mx-good.tls.test'], maxAge: 86400 }), delayMs: 2_000 },
  'html.tls.test': { body: policyText({ mode: 'enforce', mx: ['mx-good.tls.test'], maxAge: 86400 }), contentType: 'text/html' },
} as const;

beforeAll(async () => {
  records = [
    ...parseZone(ZONE),
    tlsa('mx-dane.tls.test', 3, 1, 1, SELF),
    // A key nobody has: no match.
    tlsa('mx-danebad.tls.test', 3, 1, 1, pem('mx-wrong.crt')),
    tlsa('mx-dane-ta.tls.test', 2, 0, 1, CA),
    // Would not match either, but the zone is not signed: ignored.
    tlsa('mx-daneunsigned.tls.test', 3, 1, 1, pem('mx-wrong.crt')),
    // Selectors and matching types: the whole certificate by SHA-512, the bare SPKI, the CA's SPKI by SHA-256;
    // each beside a record that does not match, as during a key rollover.
    tlsa('mx-dane302.tls.test', 3, 0, 2, SELF),
    tlsa('mx-dane302.tls.test', 3, 1, 1, pem('mx-wrong.crt')),
    tlsa('mx-dane310.tls.test', 3, 1, 0, SELF),
    tlsa('mx-daneta211.tls.test', 2, 1, 1, CA),
    tlsa('mx-daneta211.tls.test', 3, 1, 1, pem('mx-wrong.crt')),
    // PKIX-EE (1): not usable for SMTP (RFC 7672 section 3.1.3).
    tlsa('mx-daneunusable.tls.test', 1, 1, 1, SELF),
    tlsa('mx-daneunusable-plain.tls.test', 1, 1, 1, SELF),
  ];
  dns = await startDnsServer({ records, signed: SIGNED, faults: { '_25._tcp.mx-daneservfail.tls.test': { rcode: 'SERVFAIL' } } });
  policies = await startPolicyServer({ host: '127.0.5.20', key: pem('mta-sts.key'), cert: pem('mta-sts.crt'), policies: { ...POLICIES } });
  [good, self, wrong, expired, plain, daneTa, broken] = (await startReceiversOnOnePort([
    { host: '127.0.5.10', tls: { key: pem('mx-good.key'), cert: pem('mx-good.crt') } },
    { host: '127.0.5.11', tls: { key: pem('mx-self.key'), cert: SELF } },
    { host: '127.0.5.12', tls: { key: pem('mx-wrong.key'), cert: pem('mx-wrong.crt') } },
    { host: '127.0.5.13', tls: { key: pem('mx-expired.key'), cert: pem('mx-expired.crt') } },
    { host: '127.0.5.14' },
    { host: '127.0.5.15', tls: { key: pem('mx-good.key'), cert: pem('mx-good.chain.crt') } },
    // Offers STARTTLS, then no cipher the client knows: every handshake fails.
    { host: '127.0.5.16', tls: { key: pem('mx-good.key'), cert: pem('mx-good.crt'), maxVersion: 'TLSv1.2', ciphers: 'PSK-AES128-CBC-SHA' } },
  ])) as [Receiver, Receiver, Receiver, Receiver, Receiver, Receiver, Receiver];
});
beforeEach(() => {
  dns.setRecords(records);
  for (const r of [good, self, wrong, expired, plain, daneTa, broken]) r.reset();
  for (const [domain, answer] of Object.entries(POLICIES)) policies.setPolicy(domain, answer);
});
afterAll(async () => {
  for (const t of transports.splice(0)) t.close();
  await Promise.all([good, self, wrong, expired, plain, daneTa, broken].map((r) => r.close()));
  await policies.close();
  await dns.close();
});

function direct(edge: MailedgeOptions['edge'] = {}, extra: Partial<MailedgeOptions> = {}): MailedgeTransporter & { warnings: MailedgeWarning[] } {
  const t = createTransport({
    direct: true,
    localAddress: '127.0.5.2',
    ...extra,
    edge: {
      mxPort: good.port,
      ...edge,
      tls: { ca: [CA], ...edge.tls, mtaSts: typeof edge.tls?.mtaSts === 'object' ? { port: policies.port, ...edge.tls.mtaSts } : edge.tls?.mtaSts === false ? false : { port: policies.port } },
      dns: { servers: [dns.server], timeout: 2000, ...edge.dns },
    },
  });
  transports.push(t);
  const warnings: MailedgeWarning[] = [];
  t.on('warning', (w: MailedgeWarning) => warnings.push(w));
  return Object.assign(t, { warnings });
}

const FROM = 'app@out.tls.test';

async function send(t: MailedgeTransporter, to: string): Promise<DomainDelivery> {
  const info = (await t.sendMail({ from: FROM, to, text: 'hello' })) as DirectSentMessageInfo;
  expect(info.domains).toHaveLength(1);
  return info.domains[0] as DomainDelivery;
}

async function refusal(t: MailedgeTransporter, to: string): Promise<Error & { domains: DomainDelivery[]; code?: string; permanent?: boolean }> {
  return t.sendMail({ from: FROM, to, text: 'hello' }).then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e as Error & { domains: DomainDelivery[] },
  );
}

describe('opportunistic TLS (no policy) delivers whatever the certificate', () => {
  it.each([
    ['self-signed', 'a@self.tls.test', () => self],
    ['for the wrong name', 'a@wrong.tls.test', () => wrong],
    ['expired', 'a@expired.tls.test', () => expired],
  ])('%s: delivered over STARTTLS, recorded as not authorized', async (_label, to, receiver) => {
    const d = await send(direct(), to);
    expect(d.status).toBe('delivered');
    expect(d.tls).toMatchObject({ version: expect.stringMatching(/^TLSv1\.[23]$/), cipher: expect.any(String), authorized: false, policy: 'opportunistic' });
    expect(d.tls?.failure).toEqual(expect.any(String));
    expect(d.tlsPolicy).toMatchObject({ kind: 'none', mode: null });
    expect(receiver().sessions.at(-1)?.messages[0]).toMatchObject({ tls: true });
    expect(receiver().sessions.at(-1)?.ehlo).toBe('mail.out.tls.test');
  });

  it('a certificate from a trusted CA for the MX name is reported as authorized', async () => {
    const d = await send(direct(), 'a@good.tls.test');
    expect(d.tls).toMatchObject({ authorized: true, policy: 'opportunistic' });
    expect(d.tls?.failure).toBeUndefined();
  });

  it('an MX without STARTTLS gets the mail in clear text, policy none', async () => {
    const d = await send(direct(), 'a@plain.tls.test');
    expect(d.tls).toEqual({ version: null, cipher: null, authorized: false, policy: 'none' });
    expect(plain.sessions.at(-1)?.messages[0]).toMatchObject({ tls: false });
  });

  it('a handshake that fails is retried once in clear text on a new connection, as Postfix does', async () => {
    const d = await send(direct(), 'a@broken.tls.test');
    expect(d).toMatchObject({ status: 'delivered', tls: { version: null, policy: 'none' } });
    expect(broken.connections).toBe(2);
    expect(broken.sessions.at(-1)?.messages[0]).toMatchObject({ tls: false });
  });

  it('under a policy a failed handshake is never retried in clear text', async () => {
    const err = await refusal(direct({ tls: { verify: true } }), 'a@broken.tls.test');
    expect(err).toMatchObject({ code: 'TLS_HANDSHAKE_FAILED', permanent: false });
    expect(broken.messages).toBe(0);
  });

  it('edge.tls.verify makes verification mandatory: a self-signed MX is deferred (temporary), with the code', async () => {
    const err = await refusal(direct({ tls: { verify: true } }), 'a@self.tls.test');
    expect(err).toBeInstanceOf(TlsPolicyError);
    expect(err).toMatchObject({ code: 'MTA_STS_CERT_INVALID', permanent: false });
    expect(err.domains[0]).toMatchObject({ status: 'failed', tls: { authorized: false } });
    expect(self.messages).toBe(0);
  });

  it('requireTLS: an MX without STARTTLS is deferred, never sent to in clear text', async () => {
    const err = await refusal(direct({}, { requireTLS: true }), 'a@plain.tls.test');
    expect(err).toMatchObject({ code: 'MTA_STS_STARTTLS_MISSING', permanent: false });
    expect(plain.messages).toBe(0);
  });
});

describe('MTA-STS (RFC 8461)', () => {
  it('enforce: delivered to a listed MX with a valid certificate, policy mta-sts, authorized', async () => {
    const d = await send(direct(), 'a@enforce.tls.test');
    expect(d.tls).toMatchObject({ policy: 'mta-sts', authorized: true });
    expect(d.tlsPolicy).toEqual({ kind: 'mta-sts', mode: 'enforce', mx: ['mx-good.tls.test'], maxAge: 86400 });
    expect(policies.requests.some((r) => r.host.startsWith('mta-sts.enforce.tls.test'))).toBe(true);
  });

  it('enforce: a certificate for the wrong name defers the domain (temporary), with evidence', async () => {
    const err = await refusal(direct(), 'a@enforce-bad.tls.test');
    expect(err).toMatchObject({ code: 'MTA_STS_CERT_INVALID', permanent: false });
    expect(err.message).toMatch(/mx-wrong\.tls\.test/);
    expect(err.domains[0]).toMatchObject({ status: 'failed', tls: { policy: 'mta-sts', authorized: false } });
    expect(wrong.messages).toBe(0);
  });

  it('enforce: an MX outside the mx: patterns is skipped, the listed one takes the mail', async () => {
    const d = await send(direct(), 'a@enforce-outside.tls.test');
    expect(d).toMatchObject({ status: 'delivered', mx: 'mx-good.tls.test', tls: { policy: 'mta-sts', authorized: true } });
    expect(d.attempts).toEqual([{ mx: 'mx-self.tls.test', reason: expect.stringMatching(/not among the mx: patterns/) }]);
    expect(self.connections).toBe(0);
  });

  it('enforce: no listed MX at all defers the domain with MTA_STS_MX_MISMATCH', async () => {
    policies.setPolicy('enforce-outside.tls.test', policyText({ mode: 'enforce', mx: ['*.elsewhere.test'], maxAge: 86400 }));
    const err = await refusal(direct(), 'a@enforce-outside.tls.test');
    expect(err).toMatchObject({ code: 'MTA_STS_MX_MISMATCH', permanent: false });
    expect(good.connections + self.connections).toBe(0);
  });

  it('testing: delivered despite the wrong name, with a warning and a TLS-RPT failure', async () => {
    const t = direct();
    const d = await send(t, 'a@testing.tls.test');
    expect(d).toMatchObject({ status: 'delivered', tls: { policy: 'mta-sts', authorized: false } });
    expect(d.tlsPolicy).toMatchObject({ kind: 'mta-sts', mode: 'testing' });
    expect(t.warnings.map((w) => w.code)).toContain('MTA_STS_TESTING_FAILURE');
    const report = t.tlsReport('example org', 'postmaster@out.tls.test');
    const row = report?.policies.find((p) => p.policy['policy-domain'] === 'testing.tls.test');
    expect(row?.policy['policy-type']).toBe('sts');
    expect(row?.summary).toEqual({ 'total-successful-session-count': 0, 'total-failure-session-count': 1 });
    expect(row?.['failure-details'][0]).toMatchObject({ 'result-type': 'certificate-host-mismatch', 'receiving-mx-hostname': 'mx-wrong.tls.test', 'failed-session-count': 1 });
    // A new period starts.
    expect(t.tlsReport()?.policies).toEqual([]);
  });

  it('testing: an MX outside the patterns is still used, warned about and reported', async () => {
    policies.setPolicy('testing.tls.test', policyText({ mode: 'testing', mx: ['mx-good.tls.test'], maxAge: 86400 }));
    const t = direct();
    const d = await send(t, 'a@testing.tls.test');
    expect(d).toMatchObject({ status: 'delivered', mx: 'mx-wrong.tls.test', tls: { policy: 'mta-sts' } });
    expect(t.warnings.find((w) => w.code === 'MTA_STS_TESTING_FAILURE')?.message).toMatch(/not among the mx: patterns/);
    const row = t.tlsReport()?.policies.find((p) => p.policy['policy-domain'] === 'testing.tls.test');
    expect(row?.summary).toEqual({ 'total-successful-session-count': 0, 'total-failure-session-count': 1 });
    expect(row?.['failure-details'][0]).toMatchObject({ 'result-type': 'validation-failure', 'failure-reason-code': 'mx-not-in-policy' });
  });

  it('mode none: no policy, opportunistic', async () => {
    const d = await send(direct(), 'a@none.tls.test');
    expect(d.tls).toMatchObject({ policy: 'opportunistic', authorized: false });
    expect(d.tlsPolicy).toMatchObject({ kind: 'none', mode: 'none' });
  });

  it('a policy host that redirects is not followed: no policy, a warning, delivered opportunistically', async () => {
    const t = direct();
    const d = await send(t, 'a@redirect.tls.test');
    expect(d).toMatchObject({ status: 'delivered', tls: { policy: 'opportunistic' } });
    expect(t.warnings.find((w) => w.code === 'MTA_STS_FETCH_FAILED')?.message).toMatch(/HTTP 301.*redirect/);
    expect(policies.requests.filter((r) => r.host.startsWith('mta-sts.redirect.tls.test'))).toHaveLength(1);
  });

  it('a failed refresh keeps the cached policy in force (RFC 8461 section 5.1)', async () => {
    // One store, two transports: the second has a cold DNS cache and sees the new TXT id at once.
    const store = new MemoryPolicyStore();
    expect((await send(direct({ tls: { mtaSts: { store } } }), 'a@cached.tls.test')).tls).toMatchObject({ policy: 'mta-sts', authorized: true });
    // The domain announces a new policy id, the policy host now fails, and the MX moves outside the patterns.
    dns.setRecords([
      ...records.filter((r) => !/^(_mta-sts\.)?cached\.tls\.test\.?$/i.test(r.name)),
      ...parseZone('_mta-sts.cached.tls.test. 300 TXT "v=STSv1; id=2"\ncached.tls.test. 300 MX 10 mx-self.tls.test.\n'),
    ]);
    policies.setPolicy('cached.tls.test', { status: 500, body: 'oops' });
    const err = await refusal(direct({ tls: { mtaSts: { store } } }), 'b@cached.tls.test');
    expect(err.message).toMatch(/mx-self\.tls\.test is not among the mx: patterns/);
    expect(err).toMatchObject({ code: 'MTA_STS_MX_MISMATCH' });
    expect(self.connections).toBe(0);
  });

  it('a file policy store survives a restart: the policy applies without the policy host', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'mailedge-sts-')), 'policies.json');
    const first = direct({ tls: { mtaSts: { store: new FilePolicyStore(file) } } });
    expect((await send(first, 'a@enforce-bad.tls.test').catch((e: { code: string }) => e.code))).toBe('MTA_STS_CERT_INVALID');
    policies.setPolicy('enforce-bad.tls.test', undefined);
    const before = policies.requests.length;
    const second = direct({ tls: { mtaSts: { store: new FilePolicyStore(file) } } });
    const err = await refusal(second, 'a@enforce-bad.tls.test');
    expect(err).toMatchObject({ code: 'MTA_STS_CERT_INVALID' });
    expect(policies.requests.length).toBe(before);
  });

  it.each([
    ['a policy host whose certificate lacks its name', 'wrongcert.tls.test', /mta-sts\.wrongcert\.tls\.test/, 'sts-webpki-invalid'],
    ['a policy larger than 64 KiB', 'huge.tls.test', /larger than 65536 bytes/, 'sts-policy-invalid'],
    ['a policy host slower than the timeout', 'slow.tls.test', /no policy within 300 ms/, 'sts-policy-fetch-error'],
    ['a policy not served as text/plain', 'html.tls.test', /text\/html/, 'sts-policy-invalid'],
  ])('%s: no policy (warned, reported), delivered opportunistically', async (_label, domain, reason, resultType) => {
    const t = direct({ tls: { mtaSts: { timeout: 300 } } });
    const d = await send(t, `a@${domain}`);
    expect(d).toMatchObject({ status: 'delivered', tls: { policy: 'opportunistic' }, tlsPolicy: { kind: 'none' } });
    expect(t.warnings.find((w) => w.code === 'MTA_STS_FETCH_FAILED')?.message).toMatch(reason);
    const row = t.tlsReport()?.policies.find((p) => p.policy['policy-domain'] === domain);
    expect(row?.['failure-details'][0]?.['result-type']).toBe(resultType);
  });

  it('edge.tls.mtaSts: false turns it off', async () => {
    const d = await send(direct({ tls: { mtaSts: false } }), 'a@testing.tls.test');
    expect(d.tls).toMatchObject({ policy: 'opportunistic' });
  });
});

describe('options and bounds', () => {
  it('bad TLS options throw, naming the option', () => {
    const base = { direct: true as const, edge: { dns: { servers: [dns.server] } } };
    expect(() => createTransport({ ...base, edge: { ...base.edge, tls: { ca: 'not a certificate' } } })).toThrow(/edge\.tls\.ca: not a PEM certificate/);
    expect(() => createTransport({ ...base, edge: { ...base.edge, tls: { mtaSts: { port: 0 } } } })).toThrow(/edge\.tls\.mtaSts\.port/);
    expect(() => createTransport({ ...base, edge: { ...base.edge, tls: { bogus: 1 } as never } })).toThrow(/edge\.tls\.bogus/);
    expect(() => createTransport({ ...base, edge: { dns: { servers: [dns.server], dnssec: 'yes' as never } } })).toThrow(/edge\.dns\.dnssec/);
  });

  it('the TLS-RPT counters are bounded per period', async () => {
    const { TlsReporter, MAX_DOMAINS, MAX_DETAILS } = await import('../src/tls/report.js');
    const reporter = new TlsReporter({ now: () => Date.UTC(2026, 11, 2) });
    const ref = { type: 'sts' as const, strings: ['version: STSv1'], mxHosts: ['mx.example'] };
    for (let i = 0; i < MAX_DOMAINS + 50; i++) reporter.success(`d${i}.example`, ref);
    for (let i = 0; i < MAX_DETAILS + 10; i++) reporter.failure('d0.example', ref, { 'result-type': 'validation-failure', 'receiving-mx-hostname': `mx${i}.example` });
    const report = reporter.take('org', 'postmaster@example');
    expect(report.policies).toHaveLength(MAX_DOMAINS);
    expect(report.policies[0]?.['failure-details']).toHaveLength(MAX_DETAILS);
    expect(report.policies[0]?.summary['total-failure-session-count']).toBe(MAX_DETAILS + 10);
    expect(report['date-range']).toEqual({ 'start-datetime': '2026-12-02T00:00:00.000Z', 'end-datetime': '2026-12-02T00:00:00.000Z' });
  });
});

describe('DANE (RFC 7672) with edge.dns.dnssec trust-ad', () => {
  const dane = { dns: { dnssec: 'trust-ad' as const } };

  it('DANE-EE 3 1 1 matches a self-signed MX: delivered, authorized, policy dane', async () => {
    const d = await send(direct(dane), 'a@dane.tls.test');
    expect(d.tls).toMatchObject({ policy: 'dane', authorized: true });
  });

  it.each([
    ['DANE-EE 3 0 2 (certificate, SHA-512)', 'a@dane302.tls.test'],
    ['DANE-EE 3 1 0 (SPKI, exact)', 'a@dane310.tls.test'],
  ])('%s matches, beside a record that does not', async (_label, to) => {
    const d = await send(direct(dane), to);
    expect(d.tls).toMatchObject({ policy: 'dane', authorized: true });
  });

  it('DANE-TA 2 1 1 (the CA key) matches, but the certificate must still name the MX host: deferred', async () => {
    const err = await refusal(direct(dane), 'a@daneta211.tls.test');
    expect(err).toMatchObject({ code: 'DANE_NO_MATCH', permanent: false });
    expect(err.message).toMatch(/not valid for mx-daneta211\.tls\.test/);
    expect(daneTa.messages).toBe(0);
  });

  it('without trust-ad the AD bit is not believed: opportunistic', async () => {
    const d = await send(direct(), 'a@dane.tls.test');
    expect(d.tls).toMatchObject({ policy: 'opportunistic', authorized: false });
  });

  it('no matching TLSA record: that MX is skipped with DANE_NO_MATCH and evidence, the next one delivers', async () => {
    const d = await send(direct(dane), 'a@dane-bad.tls.test');
    expect(d).toMatchObject({ status: 'delivered', mx: 'mx-good.tls.test' });
    expect(d.attempts[0]).toMatchObject({ mx: 'mx-danebad.tls.test', reason: expect.stringMatching(/no usable TLSA record matches/) });
  });

  it('DANE-TA 2 0 1: the chain up to the fixture CA and the MX name are checked', async () => {
    const d = await send(direct(dane), 'a@dane-ta.tls.test');
    expect(d.tls).toMatchObject({ policy: 'dane', authorized: true });
    expect(daneTa.messages).toBe(1);
  });

  it('validated TLSA records that are all unusable (PKIX-EE) make TLS mandatory without authentication', async () => {
    const d = await send(direct(dane), 'a@dane-unusable.tls.test');
    expect(d.tls).toMatchObject({ policy: 'dane', authorized: false });
    const err = await refusal(direct(dane), 'a@dane-unusable-plain.tls.test');
    expect(err).toMatchObject({ code: 'DANE_STARTTLS_MISSING', permanent: false });
    expect(plain.messages).toBe(0);
  });

  it('TLSA records of an unsigned zone are ignored', async () => {
    const d = await send(direct(dane), 'a@dane-unsigned.tls.test');
    expect(d.tls).toMatchObject({ policy: 'opportunistic' });
  });

  it('a TLSA lookup that fails defers the host (never unchecked TLS)', async () => {
    const err = await refusal(direct(dane), 'a@dane-servfail.tls.test');
    expect(err).toMatchObject({ code: 'DANE_TLSA_TEMPFAIL', permanent: false });
    expect(self.connections).toBe(0);
  });

  it('DANE takes precedence over MTA-STS: a self-signed certificate that matches TLSA is accepted', async () => {
    const d = await send(direct(dane), 'a@both.tls.test');
    expect(d.tls).toMatchObject({ policy: 'dane', authorized: true });
    // Without DANE the enforced MTA-STS policy refuses the same host.
    const err = await refusal(direct(), 'b@both.tls.test');
    expect(err).toMatchObject({ code: 'MTA_STS_CERT_INVALID' });
  });

  it('the fixture DNS server sets AD only when the query asks and the zone is signed', async () => {
    const { DnsClient } = await import('../src/dns/client.js');
    const client = new DnsClient({ servers: [{ address: '127.0.0.1', port: dns.port, family: 4 }], attemptTimeout: 1000 });
    const signal = AbortSignal.timeout(2000);
    const signed = await client.query('mx-dane.tls.test', 1, signal);
    const unsigned = await client.query('mx-self.tls.test', 1, signal);
    expect(signed.kind === 'message' && signed.message.authenticData).toBe(true);
    expect(unsigned.kind === 'message' && unsigned.message.authenticData === true).toBe(false);
  });
});
