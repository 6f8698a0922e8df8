/**
 * The sender- and recipient-side checks of issue 4, each end to end against
 * the fixture DNS server: zone data as an operator would publish it, our
 * resolver on the wire, and every pass / warn / fail / temperror verdict with
 * its evidence. Where a check offers a record to publish, the test publishes
 * exactly that text and checks again: a hint that does not fix the problem is
 * a bug.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { parseZone } from '../src/testing/zone.js';
import { DEFAULT_TTL_BOUNDS, Resolver, systemClock } from '../src/dns/resolver.js';
import { parseServer } from '../src/dns/servers.js';
import { nameKey, type ResourceRecord } from '../src/dns/wire.js';
import { ERROR_CODES, WARNING_CODES } from '../src/errors.js';
import type { CheckVerdict } from '../src/checks/types.js';
import { checkEhloSyntax } from '../src/checks/ehlo-syntax.js';
import { checkGenericPtr, genericPtrMatches } from '../src/checks/generic-ptr.js';
import { checkSpf } from '../src/checks/spf.js';
import { checkSenderMx } from '../src/checks/sender-mx.js';
import { checkDmarc } from '../src/checks/dmarc.js';
import { checkDkim } from '../src/checks/dkim.js';
import { checkRecipientNullMx } from '../src/checks/recipient-null-mx.js';
import { DEFAULT_SEVERITY, DELIVERABILITY_CHECK_IDS } from '../src/checks/registry.js';

const EDGE = '127.0.0.7';

const keys = {
  main: generateKeyPairSync('rsa', { modulusLength: 2048 }),
  other: generateKeyPairSync('rsa', { modulusLength: 2048 }),
  tiny: generateKeyPairSync('rsa', { modulusLength: 512 }),
  ed: generateKeyPairSync('ed25519'),
};

function spkiBase64(key: KeyObject): string {
  return key.export({ type: 'spki', format: 'der' }).toString('base64');
}

/** A long TXT value as the quoted 255-octet strings a zone file needs. */
function quoted(text: string): string {
  return (text.match(/.{1,255}/g) ?? []).map((s) => `"${s}"`).join(' ');
}

function zone(): string {
  return `
$ORIGIN test.
$TTL 300
@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60

; ---- SPF, for the edge address ${EDGE}
pass.sender.test.      TXT "v=spf1 ip4:${EDGE} -all"
include.sender.test.   TXT "v=spf1 include:_spf.provider.test -all"
_spf.provider.test.    TXT "v=spf1 ip4:127.0.0.0/24 -all"
viamx.sender.test.     TXT "v=spf1 mx -all"
viamx.sender.test.     MX 10 out.viamx.sender.test.
out.viamx.sender.test. A ${EDGE}
fail.sender.test.      TXT "v=spf1 ip4:127.0.9.9 -all"
soft.sender.test.      TXT "v=spf1 ip4:127.0.9.9 ~all"
neutral.sender.test.   TXT "v=spf1 ip4:127.0.9.9 ?all"
nospf.sender.test.     TXT "google-site-verification=abc"
twice.sender.test.     TXT "v=spf1 ip4:${EDGE} -all"
twice.sender.test.     TXT "v=spf1 -all"
typo.sender.test.      TXT "v=spf1 ipv4:${EDGE} -all"
loop.sender.test.      TXT "v=spf1 include:loop.sender.test -all"
brokeninc.sender.test. TXT "v=spf1 include:down.provider.test ip4:${EDGE} -all"
down.provider.test.    TXT "v=spf1 ip4:127.0.0.0/8 -all"
mail.helo.test.        TXT "v=spf1 a -all"
mail.helo.test.        A ${EDGE}

; ---- sender MX
sender.test.           MX 10 mx1.sender.test.
mx1.sender.test.       A 127.0.0.25
nullmx.sender.test.    MX 0 .
implicit.sender.test.  A 127.0.0.30
partial.sender.test.   MX 10 mx1.sender.test.
partial.sender.test.   MX 20 gone.sender.test.
dangling.sender.test.  MX 10 nowhere.sender.test.
bare.sender.test.      TXT "v=spf1 -all"

; ---- DMARC
_dmarc.sender.test.    TXT "v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@sender.test"
_dmarc.monitor.test.   TXT "v=DMARC1; p=none; rua=mailto:reports@monitor.test"
_dmarc.twice.test.     TXT "v=DMARC1; p=reject"
_dmarc.twice.test.     TXT "v=DMARC1; p=none"
_dmarc.nop.test.       TXT "v=DMARC1; rua=mailto:reports@nop.test"
nodmarc.test.          A 127.0.0.40

; ---- DKIM (selector "mail" on sender.test carries the main key)
mail._domainkey.sender.test.   TXT ${quoted(`v=DKIM1; k=rsa; p=${spkiBase64(keys.main.publicKey)}`)}
old._domainkey.sender.test.    TXT ${quoted(`v=DKIM1; k=rsa; p=${spkiBase64(keys.other.publicKey)}`)}
gone._domainkey.sender.test.   TXT "v=DKIM1; k=rsa; p="
test._domainkey.sender.test.   TXT ${quoted(`v=DKIM1; k=rsa; t=y:s; p=${spkiBase64(keys.main.publicKey)}`)}
tiny._domainkey.sender.test.   TXT "v=DKIM1; k=rsa; p=${spkiBase64(keys.tiny.publicKey)}"
ed._domainkey.sender.test.     TXT "v=DKIM1; k=ed25519; p=${keys.ed.publicKey.export({ type: 'spki', format: 'der' }).subarray(12).toString('base64')}"
pkcs1._domainkey.sender.test.  TXT ${quoted(`v=DKIM1; p=${keys.main.publicKey.export({ type: 'pkcs1', format: 'der' }).toString('base64')}`)}

; ---- recipients
example.test.          MX 10 mx.example.test.
mx.example.test.       A 127.0.0.50
nullmx.example.test.   MX 0 .
noMx.example.test.     A 127.0.0.51

; ---- reverse, for generic-ptr
7.0.0.127.in-addr.arpa.  PTR 127-0-0-7.dsl.isp.test.
8.0.0.127.in-addr.arpa.  PTR mail.pool-party.test.
`;
}

let dns: FixtureDnsServer;
let baseRecords: ResourceRecord[];

beforeAll(async () => {
  baseRecords = parseZone(zone());
  dns = await startDnsServer({ records: baseRecords });
});
afterEach(() => {
  dns.setRecords(baseRecords);
  dns.clearFaults();
});
afterAll(async () => {
  await dns.close();
});

/** A fresh resolver per check, so no answer cached by an earlier case hides a changed zone or a fault. */
function resolver(): Resolver {
  return new Resolver({ servers: [parseServer(dns.server)!], attemptTimeout: 500, clock: systemClock, ...DEFAULT_TTL_BOUNDS });
}

function signal(): AbortSignal {
  return AbortSignal.timeout(3000);
}

/** Publishes a zone-file snippet, replacing the records of the same owner and type. */
function publish(text: string): void {
  const added = parseZone(text);
  const replaced = new Set(added.map((r) => `${nameKey(r.name)} ${r.type}`));
  dns.setRecords([...baseRecords.filter((r) => !replaced.has(`${nameKey(r.name)} ${r.type}`)), ...added]);
}

/** The records a hint offers, in the order it offers them. */
function records(hint: string | null): string[] {
  return [...(hint ?? '').matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? '');
}

function expectDocumented(result: CheckVerdict): void {
  if (result.code === null) return;
  if (result.status === 'warn') expect(Object.keys(WARNING_CODES)).toContain(result.code);
  else expect(Object.keys(ERROR_CODES)).toContain(result.code);
}

const spf = (sender: string, ehlo: string | null = 'mail.helo.test') => checkSpf(sender, EDGE, ehlo, resolver(), signal());

describe('registry', () => {
  it('gives every deliverability check a default severity', () => {
    expect(DEFAULT_SEVERITY).toEqual({
      'ehlo-syntax': 'enforce',
      'generic-ptr': 'warn',
      spf: 'warn',
      'sender-mx': 'warn',
      dmarc: 'warn',
      dkim: 'enforce',
      'recipient-null-mx': 'enforce',
      authentication: 'enforce',
      dnsbl: 'warn',
    });
    expect(DELIVERABILITY_CHECK_IDS).toHaveLength(9);
  });
});

describe('ehlo-syntax', () => {
  it('passes a fully-qualified hostname', async () => {
    expect(await checkEhloSyntax('mail.sender.test')).toMatchObject({ id: 'ehlo-syntax', status: 'pass', code: null, actual: 'EHLO mail.sender.test' });
  });

  it.each([
    ['localhost', 'single label'],
    ['mail.localhost', 'localhost'],
    ['mail', 'single label'],
    ['127.0.0.7', 'bare IP address'],
    ['mail.sender.test.', 'ends with a dot'],
    ['mail_1.sender.test', 'letters, digits and hyphens'],
    ['[::1]', 'IPv6:'],
    ['[127.0.0.999]', 'not a valid address literal'],
  ])('fails %s (%s)', async (name, why) => {
    const result = await checkEhloSyntax(name);
    expect(result).toMatchObject({ status: 'fail', code: 'EHLO_INVALID' });
    expect(result.actual).toContain(why);
    expect(result.hint).toContain('fully-qualified hostname');
    expectDocumented(result);
  });

  it.each(['[127.0.0.7]', '[IPv6:::1]'])('warns on the address literal %s: valid, but no hostname', async (name) => {
    const result = await checkEhloSyntax(name);
    expect(result).toMatchObject({ status: 'warn', code: 'EHLO_ADDRESS_LITERAL' });
    expectDocumented(result);
  });

  it('skips when there is no name yet', async () => {
    expect(await checkEhloSyntax(null)).toMatchObject({ status: 'skip', code: null });
  });
});

describe('generic-ptr', () => {
  it('warns on an ISP name read from the fixture server, and says why', async () => {
    const ptr = await resolver().ptr(EDGE, signal());
    const name = ptr.kind === 'answer' && ptr.records[0]?.type === 'PTR' ? ptr.records[0].target : null;
    const result = await checkGenericPtr(EDGE, name, []);
    expect(result).toMatchObject({ id: 'generic-ptr', status: 'warn', code: 'PTR_GENERIC' });
    expect(result.actual).toContain('127-0-0-7.dsl.isp.test');
    expect(result.actual).toContain('the address as octets in order');
    expect(result.actual).toContain('the generic word "dsl"');
    expect(result.hint).toContain('Spamhaus PBL');
    expect(records(result.hint)).toEqual(['7.0.0.127.in-addr.arpa. 3600 IN PTR mail.example.com.', `mail.example.com. 3600 IN A ${EDGE}`]);
    expect(result.evidence).toContain('PTR name 127-0-0-7.dsl.isp.test: "127-0-0-7" is the address as octets in order');
    expectDocumented(result);
  });

  it('passes a chosen name, even one whose registered domain holds a generic word', async () => {
    const ptr = await resolver().ptr('127.0.0.8', signal());
    const name = ptr.kind === 'answer' && ptr.records[0]?.type === 'PTR' ? ptr.records[0].target : null;
    expect(name).toBe('mail.pool-party.test');
    expect(await checkGenericPtr('127.0.0.8', name, [])).toMatchObject({ status: 'pass', code: null, hint: null });
  });

  it.each([
    ['7.0.0.127.static.isp.test', 'octets reversed'],
    ['host-127-000-000-007.isp.test', 'octets in order'],
    ['c127000000007.isp.test', 'zero-padded octets run together'],
    ['x7f000007.isp.test', 'in hex'],
    ['2130706439.isp.test', 'one decimal integer'],
    ['pool-12.isp.test', '"pool"'],
    ['dhcp12.isp.test', '"dhcp"'],
    ['cust-static-ip.isp.test', '"static-ip"'],
    ['ip-10-9-8-7.isp.test', '"ip-"'],
  ])('finds %s generic (%s)', (name, why) => {
    expect(genericPtrMatches(EDGE, name).map((m) => m.reason).join('; ')).toContain(why);
  });

  it.each(['mail.sender.test', 'mx1.provider.test', 'smtp-out-7.provider.test', 'mail.127-0-0-8.test', 'host.example.test', 'poolside.isp.test'])(
    'does not flag %s',
    (name) => {
      expect(genericPtrMatches(EDGE, name)).toEqual([]);
    },
  );

  it('finds IPv6 addresses embedded as nibbles and hyphenated groups', () => {
    expect(genericPtrMatches('::1', '00000000000000000000000000000001.v6.isp.test')).not.toEqual([]);
    expect(genericPtrMatches('::1', '0-0-0-0-0-0-0-1.v6.isp.test')).not.toEqual([]);
    expect(genericPtrMatches('::1', 'mail.isp.test')).toEqual([]);
  });

  it('lets the allow-list override: exact names and .suffixes', async () => {
    const name = '127-0-0-7.dsl.isp.test';
    expect(await checkGenericPtr(EDGE, name, ['127-0-0-7.DSL.isp.test.'])).toMatchObject({ status: 'pass' });
    expect(await checkGenericPtr(EDGE, name, ['.isp.test'])).toMatchObject({ status: 'pass', actual: `${name} (allow-listed by ".isp.test")` });
    expect(await checkGenericPtr(EDGE, name, ['isp.test', '.other.test'])).toMatchObject({ status: 'warn' });
  });

  it('skips without a PTR name', async () => {
    expect(await checkGenericPtr(EDGE, null, [])).toMatchObject({ status: 'skip' });
  });
});

describe('spf', () => {
  it.each([
    ['app@pass.sender.test', 'ip4'],
    ['app@include.sender.test', 'include'],
    ['app@viamx.sender.test', 'mx'],
    ['pass.sender.test', 'a bare domain'],
  ])('passes %s (%s), with the record in the evidence', async (sender) => {
    const result = await spf(sender);
    expect(result).toMatchObject({ id: 'spf', status: 'pass', code: null, hint: null });
    expect(result.evidence.some((l) => /^dig \+short TXT .*"v=spf1 /.test(l))).toBe(true);
    expect(result.evidence).toContain(result.evidence.find((l) => l.startsWith('spf=pass')));
  });

  it('fails on -all, and the record in the hint makes it pass', async () => {
    const result = await spf('app@fail.sender.test');
    expect(result).toMatchObject({ status: 'fail', code: 'SPF_FAIL' });
    expect(result.actual).toBe(`fail with "v=spf1 ip4:127.0.9.9 -all": domain of app@fail.sender.test does not designate ${EDGE} as permitted sender`);
    expect(result.evidence).toContain('dig +short TXT fail.sender.test → "v=spf1 ip4:127.0.9.9 -all"');
    const [record] = records(result.hint);
    expect(record).toBe(`fail.sender.test. 3600 IN TXT "v=spf1 ip4:${EDGE} ip4:127.0.9.9 -all"`);
    expect(result.hint).toContain('DNS zone of fail.sender.test:');
    expectDocumented(result);
    publish(record ?? '');
    expect(await spf('app@fail.sender.test')).toMatchObject({ status: 'pass' });
  });

  it.each([
    ['app@soft.sender.test', 'softfail', 'SPF_SOFTFAIL'],
    ['app@neutral.sender.test', 'neutral', 'SPF_NEUTRAL'],
    ['app@nospf.sender.test', 'none', 'SPF_NONE'],
    ['app@nosuch.sender.test', 'none', 'SPF_NONE'],
  ])('warns on %s (%s), with a record to publish that passes', async (sender, verdict, code) => {
    const result = await spf(sender);
    expect(result).toMatchObject({ status: 'warn', code });
    expect(result.actual.startsWith(verdict)).toBe(true);
    expectDocumented(result);
    const [record] = records(result.hint);
    expect(record).toMatch(new RegExp(`^${sender.split('@')[1]?.replace(/\./g, '\\.')}\\. 3600 IN TXT "v=spf1 ip4:127\\.0\\.0\\.7 `));
    publish(record ?? '');
    expect(await spf(sender)).toMatchObject({ status: 'pass' });
  });

  it.each([
    ['app@twice.sender.test', 'multiple SPF records'],
    ['app@typo.sender.test', 'Unknown mechanism ipv4'],
    ['app@loop.sender.test', 'Too many DNS requests'],
  ])('fails %s as permerror (%s)', async (sender, why) => {
    const result = await spf(sender);
    expect(result).toMatchObject({ status: 'fail', code: 'SPF_PERMERROR' });
    expect(result.actual).toContain(why);
    expect(result.hint).toContain('at most 10 DNS-querying mechanisms');
    expectDocumented(result);
  });

  it('is temperror when the sender domain answers SERVFAIL', async () => {
    dns.setFault('pass.sender.test', { rcode: 'SERVFAIL' });
    const result = await spf('app@pass.sender.test');
    expect(result).toMatchObject({ status: 'temperror', code: 'DNS_TEMPFAIL' });
    expect(result.evidence[0]).toMatch(/^dig \+short TXT pass\.sender\.test → \(no verdict: SERVFAIL/);
  });

  it('is temperror when an included domain answers SERVFAIL, rather than skipping the include', async () => {
    dns.setFault('down.provider.test', { rcode: 'SERVFAIL' });
    const result = await spf('app@brokeninc.sender.test');
    expect(result).toMatchObject({ status: 'temperror', code: 'DNS_TEMPFAIL' });
    expect(result.evidence.join('\n')).toContain('dig +short TXT down.provider.test → (no verdict: SERVFAIL');
  });

  it('checks the EHLO name for a null sender (RFC 7208 section 2.4)', async () => {
    expect(await spf('<>', 'mail.helo.test')).toMatchObject({ status: 'pass', expected: expect.stringContaining('mail.helo.test') });
    expect(await spf('', null)).toMatchObject({ status: 'skip' });
  });

  it('fails an unusable sender domain without asking DNS', async () => {
    dns.resetStats();
    expect(await spf('app@[127.0.0.1]')).toMatchObject({ status: 'fail', code: 'DOMAIN_INVALID' });
    expect(dns.queries).toBe(0);
  });
});

describe('sender-mx', () => {
  const senderMx = (domain: string) => checkSenderMx(domain, resolver(), signal());

  it('passes a domain whose MX host has an address', async () => {
    const result = await senderMx('app@sender.test');
    expect(result).toMatchObject({ id: 'sender-mx', status: 'pass', actual: 'MX 10 mx1.sender.test.: mx1.sender.test → 127.0.0.25' });
    expect(result.evidence).toEqual(['dig +short MX sender.test → 10 mx1.sender.test.', 'dig +short A mx1.sender.test → 127.0.0.25', 'dig +short AAAA mx1.sender.test → (nothing: no AAAA record)']);
  });

  it('fails a null MX (RFC 7505): bounces cannot come back', async () => {
    const result = await senderMx('nullmx.sender.test');
    expect(result).toMatchObject({ status: 'fail', code: 'SENDER_NULL_MX' });
    expect(result.evidence).toEqual(['dig +short MX nullmx.sender.test → 0 .']);
    expect(records(result.hint)).toContain('nullmx.sender.test. 3600 IN MX 10 mail.nullmx.sender.test.');
    expectDocumented(result);
  });

  it('warns on implicit MX, and the MX it suggests (with its host) makes it pass', async () => {
    const result = await senderMx('implicit.sender.test');
    expect(result).toMatchObject({ status: 'warn', code: 'SENDER_IMPLICIT_MX' });
    expect(result.actual).toContain('127.0.0.30');
    expectDocumented(result);
    const [mx] = records(result.hint);
    expect(mx).toBe('implicit.sender.test. 3600 IN MX 10 mail.implicit.sender.test.');
    publish(`${mx}\nmail.implicit.sender.test. 3600 IN A 127.0.0.31`);
    expect(await senderMx('implicit.sender.test')).toMatchObject({ status: 'pass' });
  });

  it('warns when some MX hosts do not resolve, naming the record to remove', async () => {
    const result = await senderMx('partial.sender.test');
    expect(result).toMatchObject({ status: 'warn', code: 'SENDER_MX_PARTIAL' });
    expect(records(result.hint)).toEqual(['partial.sender.test. IN MX 20 gone.sender.test.']);
    expectDocumented(result);
  });

  it.each([
    ['dangling.sender.test', 'no MX host has an address'],
    ['bare.sender.test', 'no MX record and no A/AAAA record'],
    ['nosuch.sender.test', 'does not exist (NXDOMAIN)'],
  ])('fails %s: %s', async (domain, why) => {
    const result = await senderMx(domain);
    expect(result).toMatchObject({ status: 'fail', code: 'SENDER_NO_MX' });
    expect(result.actual).toContain(why);
    expect(records(result.hint).length).toBeGreaterThan(0);
    expectDocumented(result);
  });

  it('is temperror on SERVFAIL', async () => {
    dns.setFault('sender.test', { rcode: 'SERVFAIL', types: ['MX'] });
    expect(await senderMx('sender.test')).toMatchObject({ status: 'temperror', code: 'DNS_TEMPFAIL' });
  });
});

describe('dmarc', () => {
  const dmarc = (domain: string) => checkDmarc(domain, resolver(), signal());

  it('passes with the policy shown', async () => {
    const result = await dmarc('app@sender.test');
    expect(result).toMatchObject({ id: 'dmarc', status: 'pass', code: null });
    expect(result.actual).toContain('p=reject, sp=quarantine, rua=mailto:dmarc@sender.test; policy for sender.test: reject');
    expect(result.evidence).toEqual(['dig +short TXT _dmarc.sender.test → "v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@sender.test"']);
  });

  it("falls back to the organisational domain's record, whose sp= applies", async () => {
    const result = await dmarc('app@news.sender.test');
    expect(result).toMatchObject({ status: 'pass' });
    expect(result.actual).toContain("at _dmarc.sender.test (the organisational domain's record, covering news.sender.test)");
    expect(result.actual).toContain('policy for news.sender.test: quarantine');
    expect(result.evidence[0]).toMatch(/^dig \+short TXT _dmarc\.news\.sender\.test → \(nothing: NXDOMAIN/);
  });

  it('passes p=none, noting that it only monitors', async () => {
    const result = await dmarc('monitor.test');
    expect(result).toMatchObject({ status: 'pass', hint: null });
    expect(result.actual).toContain('monitoring only');
  });

  it('warns when there is no record, and the record it suggests makes it pass', async () => {
    const result = await dmarc('app@nodmarc.test');
    expect(result).toMatchObject({ status: 'warn', code: 'DMARC_MISSING' });
    expectDocumented(result);
    const [record] = records(result.hint);
    expect(record).toBe('_dmarc.nodmarc.test. 3600 IN TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@nodmarc.test"');
    publish(record ?? '');
    expect(await dmarc('app@nodmarc.test')).toMatchObject({ status: 'pass' });
  });

  it('warns on several records, with no fallback to the organisational domain', async () => {
    const result = await dmarc('twice.test');
    expect(result).toMatchObject({ status: 'warn', code: 'DMARC_INVALID' });
    expect(result.actual).toContain('2 DMARC records at _dmarc.twice.test');
  });

  it('warns on a record without p=, and its corrected record passes', async () => {
    const result = await dmarc('nop.test');
    expect(result).toMatchObject({ status: 'warn', code: 'DMARC_INVALID' });
    expect(result.actual).toContain('treat it as p=none');
    const [record] = records(result.hint);
    expect(record).toBe('_dmarc.nop.test. 3600 IN TXT "v=DMARC1; p=none; rua=mailto:reports@nop.test"');
    publish(record ?? '');
    expect(await dmarc('nop.test')).toMatchObject({ status: 'pass' });
  });

  it('is temperror on SERVFAIL', async () => {
    dns.setFault('_dmarc.sender.test', { rcode: 'SERVFAIL' });
    expect(await dmarc('sender.test')).toMatchObject({ status: 'temperror', code: 'DNS_TEMPFAIL' });
  });
});

describe('dkim', () => {
  const pem = (key: KeyObject) => key.export({ type: 'pkcs8', format: 'pem' }).toString();
  const dkim = (keySelector: string, privateKey: KeyObject = keys.main.privateKey) =>
    checkDkim({ domainName: 'sender.test', keySelector, privateKey: pem(privateKey) }, resolver(), signal());

  it.each([
    ['mail', keys.main.privateKey, 'RSA 2048 bits'],
    ['pkcs1', keys.main.privateKey, 'RSA 2048 bits'],
    ['ed', keys.ed.privateKey, 'Ed25519'],
  ])('passes when %s._domainkey holds the configured key', async (selector, key, size) => {
    const result = await dkim(selector, key);
    expect(result).toMatchObject({ id: 'dkim', status: 'pass', code: null, actual: `the published key matches the configured private key (${size})` });
    expect(result.evidence[0]).toMatch(new RegExp(`^dig \\+short TXT ${selector}\\._domainkey\\.sender\\.test → "v=DKIM1;`));
  });

  it('fails a missing key record, and the exact record in the hint makes it pass', async () => {
    const result = await dkim('new');
    expect(result).toMatchObject({ status: 'fail', code: 'DKIM_KEY_MISSING' });
    expect(result.actual).toContain('NXDOMAIN');
    expectDocumented(result);
    const [record] = records(result.hint);
    expect(record).toMatch(/^new\._domainkey\.sender\.test\. 3600 IN TXT "v=DKIM1; k=rsa; p=MIIB[^"]*" "[^"]+"$/);
    publish(record ?? '');
    expect(await dkim('new')).toMatchObject({ status: 'pass' });
  });

  it.each([
    ['old', 'p= is a different key'],
    ['gone', 'revoked (empty p=)'],
  ])('fails %s: %s', async (selector, why) => {
    const result = await dkim(selector);
    expect(result).toMatchObject({ status: 'fail', code: 'DKIM_KEY_MISMATCH' });
    expect(result.actual).toContain(why);
    expect(records(result.hint)[0]).toContain(`${selector}._domainkey.sender.test. 3600 IN TXT "v=DKIM1; k=rsa; p=${spkiBase64(keys.main.publicKey).slice(0, 100)}`);
    expectDocumented(result);
  });

  it('fails a matching key under 1024 bits (RFC 8301)', async () => {
    const result = await dkim('tiny', keys.tiny.privateKey);
    expect(result).toMatchObject({ status: 'fail', code: 'DKIM_KEY_SHORT' });
    expect(result.actual).toContain('RSA 512 bits');
    expect(result.hint).toContain('tiny2._domainkey.sender.test.');
  });

  it('warns on t=y, and the record without it passes', async () => {
    const result = await dkim('test');
    expect(result).toMatchObject({ status: 'warn', code: 'DKIM_TESTING' });
    expectDocumented(result);
    const [record] = records(result.hint);
    expect(record).toContain('t=s;');
    expect(record).not.toContain('t=y');
    publish(record ?? '');
    expect(await dkim('test')).toMatchObject({ status: 'pass' });
  });

  it('is temperror on SERVFAIL', async () => {
    dns.setFault('mail._domainkey.sender.test', { rcode: 'SERVFAIL' });
    expect(await dkim('mail')).toMatchObject({ status: 'temperror', code: 'DNS_TEMPFAIL' });
  });

  it('fails an unreadable private key as an option error, without asking DNS', async () => {
    dns.resetStats();
    const result = await checkDkim({ domainName: 'sender.test', keySelector: 'mail', privateKey: 'not a key' }, resolver(), signal());
    expect(result).toMatchObject({ status: 'fail', code: 'INVALID_OPTION' });
    expect(dns.queries).toBe(0);
  });
});

describe('recipient-null-mx', () => {
  const recipient = (domain: string) => checkRecipientNullMx(domain, resolver(), signal());

  it.each([
    ['someone@example.test', 'MX 10 mx.example.test.'],
    ['noMx.example.test', 'no MX record'],
  ])('passes %s', async (to, actual) => {
    const result = await recipient(to);
    expect(result).toMatchObject({ id: 'recipient-null-mx', status: 'pass', code: null });
    expect(result.actual).toContain(actual);
  });

  it('fails a null MX', async () => {
    const result = await recipient('someone@nullmx.example.test');
    expect(result).toMatchObject({ status: 'fail', code: 'RECIPIENT_NULL_MX' });
    expect(result.evidence).toEqual(['dig +short MX nullmx.example.test → 0 .']);
    expectDocumented(result);
  });

  it('warns on a recipient domain that does not exist', async () => {
    const result = await recipient('someone@nosuch.example.test');
    expect(result).toMatchObject({ status: 'warn', code: 'RECIPIENT_DOMAIN_MISSING' });
    expectDocumented(result);
  });

  it('is temperror on SERVFAIL', async () => {
    dns.setFault('example.test', { rcode: 'SERVFAIL' });
    expect(await recipient('example.test')).toMatchObject({ status: 'temperror', code: 'DNS_TEMPFAIL' });
  });
});
