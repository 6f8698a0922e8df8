/**
 * Issue 12's CLI contract, in-process through runCli (as the bin runs it):
 * `check --direct --to` probes each recipient domain's MX hosts under its TLS
 * policy (connect, EHLO, STARTTLS, verify, QUIT; never MAIL or RCPT) and
 * prints the `domains` JSON; `send --direct --json` carries each domain's
 * tls; --dnsbl, --ca and --dnssec map onto the options; bad values name the flag.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import type { Receiver } from '../src/testing/receiver.js';
import { startPolicyServer, policyText, type PolicyServer } from '../src/testing/policy-server.js';
import { startReceiversOnOnePort } from './support/world.js';
import { parseZone } from '../src/testing/zone.js';
import { tlsaRdata } from '../src/tls/dane.js';
import { runCli } from '../src/cli/main.js';
import type { CliIo } from '../src/cli/io.js';

const CA_FILE = fileURLToPath(new URL('../fixtures/tls/mx/ca.crt', import.meta.url));
const pem = (name: string): string => readFileSync(new URL(`../fixtures/tls/mx/${name}`, import.meta.url), 'utf8');

const ZONE = `
$TTL 300
2.6.0.127.in-addr.arpa.        PTR mail.out.cli.test.
mail.out.cli.test.             A   127.0.6.2
out.cli.test.                  MX  10 mail.out.cli.test.
out.cli.test.                  TXT "v=spf1 ip4:127.0.6.2 -all"
_dmarc.out.cli.test.           TXT "v=DMARC1; p=none"
mx-good.tls.test.              A   127.0.6.10
mx-wrong.tls.test.             A   127.0.6.12
mx-self.tls.test.              A   127.0.6.11
mx-dane.tls.test.              A   127.0.6.11
enforce.tls.test.              MX 10 mx-good.tls.test.
enforce.tls.test.              MX 20 mx-wrong.tls.test.
_mta-sts.enforce.tls.test.     TXT "v=STSv1; id=7"
mta-sts.enforce.tls.test.      A   127.0.6.20
enforce-bad.tls.test.          MX 10 mx-wrong.tls.test.
_mta-sts.enforce-bad.tls.test. TXT "v=STSv1; id=7"
mta-sts.enforce-bad.tls.test.  A   127.0.6.20
self.tls.test.                 MX 10 mx-self.tls.test.
dane.tls.test.                 MX 10 mx-dane.tls.test.
dane-bad.tls.test.             MX 10 mx-danebad.tls.test.
mx-danebad.tls.test.           A   127.0.6.11
; the edge on the PBL
2.6.0.127.zen.spamhaus.org.    A   127.0.0.10
`;

let dns: FixtureDnsServer;
let policies: PolicyServer;
let good: Receiver, self: Receiver, wrong: Receiver;

beforeAll(async () => {
  dns = await startDnsServer({
    records: [...parseZone(ZONE), { name: '_25._tcp.mx-dane.tls.test', ttl: 300, class: 1, type: 'OTHER', typeCode: 52, raw: tlsaRdata(3, 1, 1, pem('mx-self.crt')) },
      { name: '_25._tcp.mx-danebad.tls.test', ttl: 300, class: 1, type: 'OTHER', typeCode: 52, raw: tlsaRdata(3, 1, 1, pem('mx-wrong.crt')) },
    ],
    signed: ['dane.tls.test', 'mx-dane.tls.test', 'dane-bad.tls.test', 'mx-danebad.tls.test'],
  });
  policies = await startPolicyServer({
    host: '127.0.6.20',
    key: pem('mta-sts.key'),
    cert: pem('mta-sts.crt'),
    policies: {
      'enforce.tls.test': policyText({ mode: 'enforce', mx: ['mx-good.tls.test'], maxAge: 604800 }),
      'enforce-bad.tls.test': policyText({ mode: 'enforce', mx: ['mx-wrong.tls.test'], maxAge: 604800 }),
    },
  });
  [good, self, wrong] = (await startReceiversOnOnePort([
    { host: '127.0.6.10', tls: { key: pem('mx-good.key'), cert: pem('mx-good.crt') } },
    { host: '127.0.6.11', tls: { key: pem('mx-self.key'), cert: pem('mx-self.crt') } },
    { host: '127.0.6.12', tls: { key: pem('mx-wrong.key'), cert: pem('mx-wrong.crt') } },
  ])) as [Receiver, Receiver, Receiver];
});
afterAll(async () => {
  await Promise.all([good, self, wrong].map((r) => r.close()));
  await policies.close();
  await dns.close();
});

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env: {},
    cwd: process.cwd(),
  };
  return { code: await runCli(args, io), stdout, stderr };
}

// The MTA-STS policy port is a test-only knob of the API (edge.tls.mtaSts.port), not a CLI flag, so the
// policies are probed through preflight, the API behind `check --direct`; the CLI runs cover the rest.
describe('check --direct', () => {
  it('--json: per domain the policy and each MX host probed, never MAIL or RCPT', async () => {
    const { preflight } = await import('../src/preflight.js');
    const report = await preflight(
      // Generous deadlines: four domains are probed at once, on a machine that may run other test files beside.
      { direct: true, localAddress: '127.0.6.2', edge: { mxPort: good.port, tls: { ca: [pem('ca.crt')], mtaSts: { port: policies.port, timeout: 10_000 } }, dns: { servers: [dns.server], dnssec: 'trust-ad', timeout: 10_000 } } },
      { to: ['a@enforce.tls.test', 'b@enforce-bad.tls.test', 'c@self.tls.test', 'd@dane.tls.test'] },
    );
    const byDomain = Object.fromEntries((report.domains ?? []).map((d) => [d.domain, d]));
    expect(byDomain['enforce.tls.test']).toMatchObject({
      policy: { kind: 'mta-sts', mode: 'enforce', mx: ['mx-good.tls.test'], maxAge: 604800 },
      mx: [
        { host: 'mx-good.tls.test', preference: 10, dane: false, usable: true, reason: null },
        { host: 'mx-wrong.tls.test', preference: 20, dane: false, usable: false, reason: expect.stringMatching(/not among the mx: patterns/) },
      ],
    });
    expect(byDomain['enforce-bad.tls.test']?.mx[0]).toMatchObject({ usable: false, code: 'MTA_STS_CERT_INVALID', reason: expect.stringMatching(/not valid for mx-wrong/) });
    expect(byDomain['self.tls.test']).toMatchObject({ policy: { kind: 'none', mode: null, mx: null, maxAge: null }, mx: [{ usable: true, tls: { authorized: false, policy: 'opportunistic' } }] });
    expect(byDomain['dane.tls.test']).toMatchObject({ policy: { kind: 'dane' }, mx: [{ host: 'mx-dane.tls.test', dane: true, usable: true, tls: { authorized: true, policy: 'dane' } }] });
    for (const r of [good, self, wrong]) {
      expect(r.messages).toBe(0);
      expect(r.sessions.every((s) => s.verdict === undefined && s.messages.length === 0)).toBe(true);
    }
    expect(good.sessions.at(-1)?.ehlo).toBe('mail.out.cli.test');
  });

  it('the CLI prints the domains JSON, maps --dnssec, --ca and --dnsbl, and exits 2 when a domain has no usable MX host', async () => {
    const args = ['check', '--direct', '--local-address', '127.0.6.2', '--mx-port', String(good.port), '--dns', dns.server, '--dnssec', 'trust-ad', '--ca', CA_FILE, '--dnsbl', 'zen.spamhaus.org'];
    const ok = await cli([...args, '--to', 'a@self.tls.test', '--to', 'b@dane.tls.test', '--json']);
    const out = JSON.parse(ok.stdout) as { domains: Array<{ domain: string; policy: { kind: string }; mx: Array<{ host: string; usable: boolean; dane: boolean }> }>; checks: Array<{ id: string; code: string | null; status: string }> };
    expect(out.domains.map((d) => [d.domain, d.policy.kind, d.mx.map((m) => [m.host, m.usable, m.dane])])).toEqual([
      ['self.tls.test', 'none', [['mx-self.tls.test', true, false]]],
      ['dane.tls.test', 'dane', [['mx-dane.tls.test', true, true]]],
    ]);
    // The PBL: a failure for direct delivery, at the check's default severity (warn), so the exit stays 0.
    expect(out.checks.find((c) => c.id === 'dnsbl')).toMatchObject({ status: 'fail', code: 'DNSBL_POLICY' });
    expect(ok.code).toBe(0);
    // Without --ca the fixture CA is unknown: the same self-signed MX still qualifies (opportunistic), in words this time.
    const human = await cli(['check', '--direct', '--local-address', '127.0.6.2', '--mx-port', String(good.port), '--dns', dns.server, '--to', 'a@self.tls.test']);
    expect(human.stdout).toMatch(/self\.tls\.test: no policy: opportunistic TLS/);
    expect(human.stdout).toMatch(/✔ 10 mx-self\.tls\.test: TLSv1\.[23], not authorized/);
    expect(human.code).toBe(0);
    // A domain whose only MX host matches no TLSA record: nothing can carry its mail now (exit 2).
    const none = await cli([...args, '--to', 'a@dane-bad.tls.test']);
    expect(none.stdout).toMatch(/✘ 10 mx-danebad\.tls\.test \[DANE\].*DANE_NO_MATCH/);
    expect(none.code).toBe(2);
  });

  it('usage errors name the flag', async () => {
    const base = ['check', '--direct', '--local-address', '127.0.6.2', '--dns', dns.server];
    expect(await cli([...base, '--to', 'a@self.tls.test', '--dnssec', 'maybe'])).toMatchObject({ code: 64, stderr: expect.stringContaining('--dnssec') });
    expect(await cli([...base, '--to', 'a@self.tls.test', '--ca', 'no-such-file.pem'])).toMatchObject({ code: 64, stderr: expect.stringContaining('--ca: cannot read no-such-file.pem') });
    expect(await cli([...base, '--to', 'a@self.tls.test', '--dnsbl', 'not a zone'])).toMatchObject({ code: 64, stderr: expect.stringContaining('--dnsbl') });
    expect(await cli(base)).toMatchObject({ code: 64, stderr: expect.stringContaining('--to: required with --direct') });
  });
});

/** The built bin (npm test builds it first), as a shell would run it. */
function bin(args: string[]): Promise<{ code: number; stdout: string }> {
  const path = fileURLToPath(new URL('../dist/cli/bin.js', import.meta.url));
  return new Promise((resolve) => {
    execFile(process.execPath, [path, ...args], { env: { PATH: process.env.PATH ?? '' }, timeout: 20_000 }, (err, stdout) => {
      const code = err && typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : err ? -1 : 0;
      resolve({ code, stdout });
    });
  });
}

describe('the built bin', () => {
  it('check --direct --json and its exit status', async () => {
    const base = ['check', '--direct', '--local-address', '127.0.6.2', '--mx-port', String(good.port), '--dns', dns.server, '--dnssec', 'trust-ad', '--json'];
    const ok = await bin([...base, '--to', 'a@dane.tls.test']);
    expect(ok.code).toBe(0);
    expect((JSON.parse(ok.stdout) as { domains: Array<{ policy: { kind: string } }> }).domains[0]?.policy.kind).toBe('dane');
    expect((await bin([...base, '--to', 'a@dane-bad.tls.test'])).code).toBe(2);
  });
});

describe('send --direct --json', () => {
  it("carries each domain's tls object", async () => {
    const result = await cli(['send', '--direct', '--local-address', '127.0.6.2', '--mx-port', String(good.port), '--dns', dns.server, '--from', 'app@out.cli.test', '--to', 'a@self.tls.test', '--json']);
    expect(result.code).toBe(0);
    const out = JSON.parse(result.stdout) as { domains: Array<{ domain: string; tls: unknown; tlsPolicy: unknown }> };
    expect(out.domains[0]).toMatchObject({ domain: 'self.tls.test', tls: { version: expect.stringMatching(/^TLSv1/), authorized: false, policy: 'opportunistic' }, tlsPolicy: { kind: 'none' } });
  });
});
