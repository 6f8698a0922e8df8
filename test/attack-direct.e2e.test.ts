/**
 * Attacks on direct delivery (direct: true): the recipient domain's owner
 * writes the MX records, so every name in them is hostile input. World: its
 * own DNS server and receivers on 127.0.4.x (ephemeral ports, edge.mxPort).
 */
import { getEventListeners } from 'node:events';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { startReceiver, type Receiver } from '../src/testing/receiver.js';
import { parseZone } from '../src/testing/zone.js';
import { createTransport, type MailedgeTransporter } from '../src/create-transport.js';
import type { MailedgeOptions } from '../src/options.js';
import type { DirectSentMessageInfo } from '../src/routes/direct.js';
import { preflight } from '../src/preflight.js';

const ZONE = `
$TTL 60
$ORIGIN dir.atk.test.
@            IN SOA ns.dir.atk.test. hostmaster.dir.atk.test. ( 1 3600 600 86400 60 )
             IN NS  ns
ns           IN A   127.0.4.53
@            IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc       IN TXT "v=DMARC1; p=none"
mail         IN A   127.0.4.22
22.4.0.127.in-addr.arpa. IN PTR mail.dir.atk.test.
; an honest domain
good         IN MX  10 mx.good
mx.good      IN A   127.0.4.120
; MX targets that are not host names: an address literal and localhost
literal      IN MX  10 127.0.4.120.
local        IN MX  10 localhost.
; an MX target with CR LF and ESC inside a label
hostile      IN MX  10 mx\\013\\010rset\\027.hostile
`;
const CHECKS_OFF = { spf: 'off', 'sender-mx': 'off', dmarc: 'off', 'recipient-null-mx': 'off', 'generic-ptr': 'off' } as const;

let dns: FixtureDnsServer;
let mx: Receiver;
const transporters: MailedgeTransporter[] = [];

beforeAll(async () => {
  dns = await startDnsServer({ records: parseZone(ZONE) });
  mx = await startReceiver({ host: '127.0.4.120' });
});
afterEach(() => {
  for (const t of transporters.splice(0)) t.close();
  mx.reset();
});
afterAll(async () => {
  await mx.close();
  await dns.close();
});

function transport(options: Partial<MailedgeOptions> = {}): MailedgeTransporter<DirectSentMessageInfo> {
  const t = createTransport({
    direct: true,
    localAddress: '127.0.4.22',
    ignoreTLS: true,
    ...options,
    edge: { checks: CHECKS_OFF, mxPort: mx.port, ...options.edge, dns: { servers: [dns.server], timeout: 1500 } },
  }) as MailedgeTransporter<DirectSentMessageInfo>;
  transporters.push(t);
  return t;
}

describe('MX targets that are not host names', () => {
  // FOUND, FIXED (medium). An MX exchange is a host name (RFC 5321 section 5.1, RFC 2181
  // section 10.3). resolveRoute() treats any host that parses as an IP address as a
  // literal, so "MX 10 127.0.4.120." sends the mail straight to an address the domain's
  // owner picked, with no A/AAAA lookup: any internal or loopback address of the
  // sender's network becomes reachable on port 25 (Postfix and Exim refuse such MX).
  it('an MX target written as an IP address is passed over, never connected to', async () => {
    const t = transport();
    const outcome = await t.sendMail({ from: 'app@dir.atk.test', to: 'victim@literal.dir.atk.test', text: 'x' }).then(
      (info) => `delivered via ${JSON.stringify(info.domains.map((d) => d.mx))}`,
      (e: Error) => `refused: ${e.message}`,
    );
    expect(mx.messages, outcome).toBe(0);
    expect(outcome).toMatch(/^refused/);
  });

  // FOUND, FIXED (medium), same root cause: "MX 10 localhost." is loopback by RFC 6761 in
  // resolveRoute, so direct delivery hands the message to whatever listens on this
  // machine's port 25 (its own MTA, usually trusting loopback). localRelay is forced
  // false for MX hosts, so the FCrDNS check still runs, but the destination is ours.
  it('an MX target "localhost" is passed over, never a connection to this machine', async () => {
    const t = transport();
    const err = (await t.sendMail({ from: 'app@dir.atk.test', to: 'victim@local.dir.atk.test', text: 'x' }).catch((e: unknown) => e)) as {
      code?: string;
      domains?: Array<{ attempts: Array<{ mx: string; reason: string }>; mx: string | null; error: { code?: string; message: string } | null }>;
    };
    const domain = err.domains?.[0];
    const tried = [...(domain?.attempts ?? []).map((a) => a.reason), domain?.error?.message ?? ''].join(' | ');
    // A loopback connection was attempted (refused, since nothing of ours listens there on that port).
    expect(tried).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|::1/);
  });

  it('an MX target with control bytes is passed over, and shown escaped in the outcome', async () => {
    const t = transport();
    const err = (await t.sendMail({ from: 'app@dir.atk.test', to: 'victim@hostile.dir.atk.test', text: 'x' }).catch((e: unknown) => e)) as {
      domains?: Array<{ attempts: Array<{ mx: string; reason: string }> }>;
    };
    const attempts = err.domains?.[0]?.attempts ?? [];
    expect(attempts).toHaveLength(1);
    expect(JSON.stringify(attempts)).not.toMatch(/[\r\n\u001b]/);
    expect(attempts[0]?.reason).toMatch(/not a host name/);
    expect(mx.connections).toBe(0);
  });

  it('check --direct (preflight with direct and to) never probes an MX target that is an address or localhost', async () => {
    const report = await preflight(
      { direct: true, localAddress: '127.0.4.22', ignoreTLS: true, edge: { checks: CHECKS_OFF, mxPort: mx.port, dns: { servers: [dns.server], timeout: 1500 } } },
      { to: ['v@literal.dir.atk.test', 'v@local.dir.atk.test'] },
    );
    const hosts = (report.domains ?? []).flatMap((d) => d.mx);
    expect(hosts).toHaveLength(2);
    for (const host of hosts) expect(host).toMatchObject({ usable: false, code: 'DEST_UNRESOLVED' });
    expect(mx.connections).toBe(0);
  });

  it('an honest MX host is delivered to (held: baseline)', async () => {
    const t = transport();
    const info = await t.sendMail({ from: 'app@dir.atk.test', to: 'someone@good.dir.atk.test', text: 'x' });
    expect(info.domains[0]).toMatchObject({ status: 'delivered', mx: 'mx.good.dir.atk.test' });
  });
});

describe('no credential reaches an MX host (held: guards)', () => {
  it('auth in the message defaults is refused before any connection (held)', async () => {
    const t = createTransport(
      { direct: true, localAddress: '127.0.4.22', ignoreTLS: true, edge: { checks: CHECKS_OFF, mxPort: mx.port, dns: { servers: [dns.server] } } },
      { auth: { user: 'app', pass: 'mx-must-never-see-this' } } as never,
    );
    transporters.push(t);
    const message = { from: 'app@dir.atk.test', to: 'someone@good.dir.atk.test', text: 'x' };
    await expect(t.sendMail(message)).rejects.toMatchObject({ code: 'INVALID_OPTION', option: 'auth', mail: message });
    expect(mx.sessions.length).toBe(0);
  });

  it('auth added by a compile plugin is refused before any connection (held)', async () => {
    const t = transport();
    t.use('compile', (mail, done) => {
      (mail.data as { auth?: unknown }).auth = { user: 'app', pass: 'mx-must-never-see-this' };
      done();
    });
    await expect(t.sendMail({ from: 'app@dir.atk.test', to: 'someone@good.dir.atk.test', text: 'x' })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    expect(mx.sessions.length).toBe(0);
  });

  it('a url carrying credentials is refused with direct: true (held)', () => {
    expect(() => createTransport({ url: 'smtp://app:secret-pass@127.0.4.120:25', direct: true, edge: { dns: { servers: [dns.server] } } } as never)).toThrow(/host|auth/);
  });
});

describe('per-message state is released', () => {
  it('a long-lived AbortSignal shared by many sends keeps no listener per send (held: guard)', async () => {
    const controller = new AbortController();
    const t = transport();
    for (let i = 0; i < 20; i++) await t.sendMail({ from: 'app@dir.atk.test', to: `r${i}@good.dir.atk.test`, text: 'x', signal: controller.signal });
    expect(getEventListeners(controller.signal, 'abort').length).toBe(0);
  });
});
