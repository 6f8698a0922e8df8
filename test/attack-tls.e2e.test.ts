/**
 * Attacks on direct delivery's TLS (issue 12), as a receiver that lies (an
 * active attacker on the path to the MX, or a hostile recipient domain) and
 * as production would hit them. World: its own DNS server (signed zones for
 * DANE), an MTA-STS policy server and one scripted, hostile SMTP server, all
 * on 127.0.3.x; certificates from fixtures/tls/mx (the policy host names of
 * mta-sts.crt are reused as recipient domains here).
 *
 * Every `it` that is not marked "(held)" was a finding, now fixed: its
 * severity, root cause and fix are in the comment above it ("FOUND, FIXED").
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext, TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { startPolicyServer, policyText, type PolicyServer, type PolicyAnswer } from '../src/testing/policy-server.js';
import { parseZone } from '../src/testing/zone.js';
import type { ResourceRecord } from '../src/dns/wire.js';
import { createTransport, type MailedgeTransporter } from '../src/create-transport.js';
import type { DirectSentMessageInfo, DomainDelivery } from '../src/routes/direct.js';
import type { MailedgeOptions } from '../src/options.js';
import type { MailedgeWarning } from '../src/routes/route.js';
import { tlsaRdata } from '../src/tls/dane.js';
import { FilePolicyStore, MemoryPolicyStore, type StoredPolicy } from '../src/tls/policy-store.js';
import { internalAddress } from '../src/tls/mta-sts.js';

const pem = (name: string): string => readFileSync(new URL(`../fixtures/tls/mx/${name}`, import.meta.url), 'utf8');
const CA = pem('ca.crt');
const GOOD = { key: pem('mx-good.key'), cert: pem('mx-good.crt') };
const SELF = { key: pem('mx-self.key'), cert: pem('mx-self.crt') };

const ZONE = `
$TTL 300
2.3.0.127.in-addr.arpa.          PTR mail.out.atk3.test.
mail.out.atk3.test.              A   127.0.3.2
out.atk3.test.                   MX  10 mail.out.atk3.test.
out.atk3.test.                   TXT "v=spf1 ip4:127.0.3.2 -all"
_dmarc.out.atk3.test.            TXT "v=DMARC1; p=none"
; every MX host is the one scripted server on 127.0.3.10
mx-good.tls.test.                A   127.0.3.10
mx-dane.atk3.test.               A   127.0.3.10
a.b.mx.atk3.test.                A   127.0.3.10
mx.atk3.test.evil.test.          A   127.0.3.10
; no policy at all
opp.atk3.test.                   MX  10 mx-good.tls.test.
; MTA-STS enforce, MX mx-good.tls.test (the name of the fixture certificate mx-good)
enforce.tls.test.                MX  10 mx-good.tls.test.
_mta-sts.enforce.tls.test.       TXT "v=STSv1; id=1"
mta-sts.enforce.tls.test.        A   127.0.3.20
cached.tls.test.                 MX  10 mx-good.tls.test.
_mta-sts.cached.tls.test.        TXT "v=STSv1; id=1"
mta-sts.cached.tls.test.         A   127.0.3.20
; enforce with mx: *.mx.atk3.test, and MX hosts that only look like they match
testing.tls.test.                MX  10 a.b.mx.atk3.test.
testing.tls.test.                MX  20 mx.atk3.test.evil.test.
_mta-sts.testing.tls.test.       TXT "v=STSv1; id=1"
mta-sts.testing.tls.test.        A   127.0.3.20
; policies kept in a store (the store tests)
none.tls.test.                   MX  10 mx-good.tls.test.
_mta-sts.none.tls.test.          TXT "v=STSv1; id=1"
mta-sts.none.tls.test.           A   127.0.3.20
html.tls.test.                   MX  10 mx-good.tls.test.
_mta-sts.html.tls.test.          TXT "v=STSv1; id=1"
mta-sts.html.tls.test.           A   127.0.3.20
huge.tls.test.                   MX  10 mx-good.tls.test.
_mta-sts.huge.tls.test.          TXT "v=STSv1; id=1"
mta-sts.huge.tls.test.           A   127.0.3.20
; a policy host that dribbles its body
slow.tls.test.                   MX  10 mx-good.tls.test.
_mta-sts.slow.tls.test.          TXT "v=STSv1; id=1"
mta-sts.slow.tls.test.           A   127.0.3.21
; DANE (signed): a usable DANE-EE record for mx-dane.atk3.test
dane.atk3.test.                  MX  10 mx-dane.atk3.test.
; DANE with only unusable (PKIX-EE) records for mx-good.tls.test, beside MTA-STS enforce
both.tls.test.                   MX  10 mx-good.tls.test.
_mta-sts.both.tls.test.          TXT "v=STSv1; id=1"
mta-sts.both.tls.test.           A   127.0.3.20
`;

const SIGNED = ['dane.atk3.test', 'mx-dane.atk3.test', 'both.tls.test', 'mx-good.tls.test'];

function tlsa(host: string, usage: number, selector: number, matchingType: number, cert: string): ResourceRecord {
  return { name: `_25._tcp.${host}`, ttl: 300, class: 1, type: 'OTHER', typeCode: 52, raw: tlsaRdata(usage, selector, matchingType, cert) };
}

const ENFORCE_GOOD = policyText({ mode: 'enforce', mx: ['mx-good.tls.test'], maxAge: 86400 });
const POLICIES: Record<string, PolicyAnswer> = {
  'enforce.tls.test': ENFORCE_GOOD,
  'cached.tls.test': ENFORCE_GOOD,
  'testing.tls.test': policyText({ mode: 'enforce', mx: ['*.mx.atk3.test'], maxAge: 86400 }),
  'none.tls.test': ENFORCE_GOOD,
  'html.tls.test': ENFORCE_GOOD,
  // 60 KiB of extension lines (RFC 8461 section 3.2 says unknown fields are ignored): accepted, and kept whole.
  'huge.tls.test': ENFORCE_GOOD + Array.from({ length: 600 }, (_, i) => `x-pad-${i}: ${'a'.repeat(90)}`).join('\r\n') + '\r\n',
  'both.tls.test': ENFORCE_GOOD,
};

/* ------------------------------------------------------------------ */
/* A scripted SMTP server that lies as told.                          */
/* ------------------------------------------------------------------ */

interface Script {
  /** Raw greeting. */
  greeting: string;
  /** Raw EHLO reply, by whether the session is encrypted. */
  ehlo(tls: boolean): string;
  /** Raw reply to STARTTLS; a 220 starts TLS with `tls`. */
  starttls: string;
  /** Plain-text bytes written right after the STARTTLS 220, before the handshake (response injection). */
  inject?: string;
  /** Hold the STARTTLS reply until release() is called. */
  hold?: boolean;
  tls: { key: string; cert: string } | null;
}

interface Session {
  ehlos: Array<{ name: string; tls: boolean }>;
  messages: Array<{ tls: boolean }>;
}

const HONEST: Script = {
  greeting: '220 mx.atk3.test ESMTP\r\n',
  ehlo: (tls) => (tls ? '250-mx.atk3.test\r\n250 8BITMIME\r\n' : '250-mx.atk3.test\r\n250-8BITMIME\r\n250 STARTTLS\r\n'),
  starttls: '220 2.0.0 go ahead\r\n',
  tls: GOOD,
};

let script: Script = HONEST;
const sessions: Session[] = [];
let stalled: () => void = () => undefined;
let stalledAt: Promise<void> = Promise.resolve();
let release: () => void = () => undefined;
let released: Promise<void> = Promise.resolve();
const open = new Set<Socket>();

function resetScript(next: Script): void {
  script = next;
  sessions.length = 0;
  stalledAt = new Promise((resolve) => (stalled = resolve));
  released = new Promise((resolve) => (release = resolve));
}

function delivered(): Array<{ tls: boolean }> {
  return sessions.flatMap((s) => s.messages);
}

function serve(socket: Socket, session: Session, tls: boolean): void {
  const current = script;
  let buffer = '';
  let inData = false;
  const onData = (chunk: Buffer): void => {
    buffer += chunk.toString('latin1');
    let index: number;
    while ((index = buffer.indexOf('\r\n')) !== -1) {
      const line = buffer.slice(0, index);
      buffer = buffer.slice(index + 2);
      if (inData) {
        if (line === '.') {
          inData = false;
          session.messages.push({ tls });
          socket.write('250 2.0.0 queued\r\n');
        }
        continue;
      }
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'EHLO' || verb === 'HELO') {
        session.ehlos.push({ name: line.slice(5), tls });
        socket.write(current.ehlo(tls));
      } else if (line.toUpperCase() === 'STARTTLS' && !tls) {
        if (!current.starttls.startsWith('220') || !current.tls) {
          socket.write(current.starttls);
          continue;
        }
        socket.removeListener('data', onData);
        socket.pause();
        const { key, cert } = current.tls;
        const go = (): void => {
          if (socket.destroyed) return;
          socket.write(current.starttls + (current.inject ?? ''));
          const secured = new TLSSocket(socket, { isServer: true, secureContext: createSecureContext({ key, cert }) });
          secured.on('error', () => undefined);
          serve(secured as unknown as Socket, session, true);
        };
        if (current.hold) {
          stalled();
          void released.then(go);
        } else go();
        return;
      } else if (verb === 'MAIL' || verb === 'RCPT' || verb === 'RSET' || verb === 'NOOP') socket.write('250 2.1.0 ok\r\n');
      else if (verb === 'DATA') {
        inData = true;
        socket.write('354 go on\r\n');
      } else if (verb === 'QUIT') socket.end('221 bye\r\n');
      else socket.write('502 5.5.2 what\r\n');
    }
  };
  socket.on('data', onData);
}

let mx: Server;
let mxPort = 0;

function startMx(): Promise<void> {
  mx = createServer((socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => undefined);
    const session: Session = { ehlos: [], messages: [] };
    sessions.push(session);
    socket.write(script.greeting);
    serve(socket, session, false);
  });
  return new Promise((resolve) => mx.listen(0, '127.0.3.10', () => resolve()));
}

/* ------------------------------------------------------------------ */

let records: ResourceRecord[];
let dns: FixtureDnsServer;
let policies: PolicyServer;
let slowPolicy: HttpsServer;
const slowSockets = new Set<Socket>();
let now = Date.now();
const clock = { now: () => now };
const transports: MailedgeTransporter[] = [];

beforeAll(async () => {
  records = [
    ...parseZone(ZONE),
    tlsa('mx-dane.atk3.test', 3, 1, 1, SELF.cert),
    // PKIX-EE (usage 1): not usable for SMTP (RFC 7672 section 3.1.3); the domain still meant "this certificate".
    tlsa('mx-good.tls.test', 1, 1, 1, GOOD.cert),
  ];
  dns = await startDnsServer({ host: '127.0.3.53', records, signed: SIGNED });
  policies = await startPolicyServer({ host: '127.0.3.20', key: pem('mta-sts.key'), cert: pem('mta-sts.crt'), policies: { ...POLICIES } });
  // Same port as the policy server (edge.tls.mtaSts.port is one for all): headers at once, then a byte every 200 ms.
  slowPolicy = createHttpsServer({ key: pem('mta-sts.key'), cert: pem('mta-sts.crt') }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    const body = ENFORCE_GOOD;
    let i = 0;
    const timer = setInterval(() => {
      if (i >= body.length || res.destroyed) {
        clearInterval(timer);
        res.end();
        return;
      }
      res.write(body[i++]);
    }, 200);
    timer.unref();
    res.on('close', () => clearInterval(timer));
  });
  slowPolicy.on('connection', (s: Socket) => {
    slowSockets.add(s);
    s.on('close', () => slowSockets.delete(s));
  });
  slowPolicy.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => slowPolicy.listen(policies.port, '127.0.3.21', () => resolve()));
  await startMx();
  mxPort = (mx.address() as { port: number }).port;
});
beforeEach(() => {
  dns.setRecords(records);
  dns.clearFaults();
  for (const [domain, answer] of Object.entries(POLICIES)) policies.setPolicy(domain, answer);
  resetScript(HONEST);
});
afterEach(() => {
  release();
  for (const t of transports.splice(0)) t.close();
});
afterAll(async () => {
  for (const s of open) s.destroy();
  for (const s of slowSockets) s.destroy();
  await new Promise<void>((resolve) => mx.close(() => resolve()));
  await new Promise<void>((resolve) => slowPolicy.close(() => resolve()));
  await policies.close();
  await dns.close();
});

const CHECKS_OFF = { spf: 'off', 'sender-mx': 'off', dmarc: 'off', 'recipient-null-mx': 'off', 'generic-ptr': 'off', authentication: 'off' } as const;

function direct(edge: MailedgeOptions['edge'] = {}, extra: Partial<MailedgeOptions> = {}): MailedgeTransporter & { warnings: MailedgeWarning[] } {
  const t = createTransport({
    direct: true,
    localAddress: '127.0.3.2',
    greetingTimeout: 3_000,
    ...extra,
    edge: {
      mxPort,
      clock,
      checks: CHECKS_OFF,
      ...edge,
      tls: {
        ca: [CA],
        ...edge.tls,
        mtaSts: typeof edge.tls?.mtaSts === 'object' ? { port: policies.port, timeout: 1_500, ...edge.tls.mtaSts } : { port: policies.port, timeout: 1_500 },
      },
      dns: { servers: [dns.server], timeout: 1_000, ...edge.dns },
    },
  });
  transports.push(t);
  const warnings: MailedgeWarning[] = [];
  t.on('warning', (w: MailedgeWarning) => warnings.push(w));
  return Object.assign(t, { warnings });
}

const FROM = 'app@out.atk3.test';

type Outcome = { ok: true; domain: DomainDelivery } | { ok: false; error: Error & { code?: string; domains?: DomainDelivery[] } };

async function attempt(t: MailedgeTransporter, to: string): Promise<Outcome> {
  return t.sendMail({ from: FROM, to, text: 'secret body' }).then(
    (info) => ({ ok: true as const, domain: (info as DirectSentMessageInfo).domains[0] as DomainDelivery }),
    (error: Error & { code?: string; domains?: DomainDelivery[] }) => ({ ok: false as const, error }),
  );
}

function describeOutcome(o: Outcome): string {
  return o.ok ? `delivered: tls ${JSON.stringify(o.domain.tls)}` : `refused: ${o.error.code} ${o.error.message}`;
}

/* ------------------------------------------------------------------ */

describe('downgrade: a receiver that lies about its greeting', () => {
  // FOUND, FIXED (critical). A greeting whose first line is "220-" and whose last line carries
  // another code ("220-hello / 554 no") is read by ReplyReader as code 554 (the last line),
  // so negotiate() (src/tls/starttls.ts) takes its "refusing greeting is Nodemailer's to
  // report" branch and hands over the PLAIN socket, even under a mandatory policy. Nodemailer
  // only checks str.substr(0, 3) === '220' of the joined reply, accepts it, sends EHLO, and
  // with no STARTTLS advertised carries the message in clear text: MTA-STS enforce (and
  // DANE, next test) defeated by one line an on-path attacker writes.
  // Fix: src/tls/starttls.ts negotiate(): never return plain() for a mandatory requirement;
  // a greeting that is not 220 on every line (RFC 5321 section 4.2.1: one code per reply)
  // ends the connection there with a connection error marked never-connected (next MX host),
  // instead of relying on Nodemailer to refuse it; ReplyReader.take() should reject a
  // multi-line reply whose lines disagree on the code.
  // Fixed there: take() refuses a reply whose lines disagree (EPROTOCOL, never connected: the
  // next MX host, temporary), and any greeting other than 220 ends the connection in
  // negotiate() itself; plain() refuses under a mandatory requirement as a last guard.
  it('MTA-STS enforce: a greeting "220-… / 554 …" is refused as a protocol error before any EHLO; nothing goes out in clear text', async () => {
    resetScript({ ...HONEST, greeting: '220-mx.atk3.test ESMTP\r\n554 5.3.2 not really\r\n', ehlo: () => '250-mx.atk3.test\r\n250 8BITMIME\r\n' });
    const o = await attempt(direct(), 'a@enforce.tls.test');
    expect(delivered(), describeOutcome(o)).toEqual([]);
    expect(o.ok).toBe(false);
    expect(sessions.flatMap((s) => s.ehlos)).toEqual([]);
    expect(o).toMatchObject({ ok: false, error: { code: 'EPROTOCOL', permanent: false } });
  });

  it('DANE: a greeting "220-… / 554 …" is refused as a protocol error before any EHLO; nothing goes out in clear text', async () => {
    resetScript({ ...HONEST, greeting: '220-mx.atk3.test ESMTP\r\n554 5.3.2 not really\r\n', ehlo: () => '250-mx.atk3.test\r\n250 8BITMIME\r\n' });
    const o = await attempt(direct({ dns: { dnssec: 'trust-ad' } }), 'a@dane.atk3.test');
    expect(delivered(), describeOutcome(o)).toEqual([]);
    expect(o.ok).toBe(false);
    expect(sessions.flatMap((s) => s.ehlos)).toEqual([]);
    expect(o).toMatchObject({ ok: false, error: { code: 'EPROTOCOL', permanent: false } });
  });

  it('opportunistic: a greeting "220-… / 554 …" is refused the same way, before any EHLO, and is temporary (held: the fix holds without a policy too)', async () => {
    resetScript({ ...HONEST, greeting: '220-mx.atk3.test ESMTP\r\n554 5.3.2 not really\r\n', ehlo: () => '250-mx.atk3.test\r\n250 8BITMIME\r\n' });
    const o = await attempt(direct(), 'a@opp.atk3.test');
    expect(delivered(), describeOutcome(o)).toEqual([]);
    expect(sessions.flatMap((s) => s.ehlos)).toEqual([]);
    expect(o).toMatchObject({ ok: false, error: { code: 'EPROTOCOL', permanent: false } });
  });

  it('MTA-STS enforce: STARTTLS stripped from the EHLO reply defers the domain, nothing sent (held)', async () => {
    resetScript({ ...HONEST, ehlo: () => '250-mx.atk3.test\r\n250 8BITMIME\r\n' });
    const o = await attempt(direct(), 'a@enforce.tls.test');
    expect(delivered()).toEqual([]);
    expect(o).toMatchObject({ ok: false, error: { code: 'MTA_STS_STARTTLS_MISSING', permanent: false } });
  });

  it('DANE: STARTTLS answered 454 defers the host, nothing sent (held)', async () => {
    resetScript({ ...HONEST, starttls: '454 4.7.0 TLS not available\r\n' });
    const o = await attempt(direct({ dns: { dnssec: 'trust-ad' } }), 'a@dane.atk3.test');
    expect(delivered()).toEqual([]);
    expect(o).toMatchObject({ ok: false, error: { code: 'DANE_STARTTLS_MISSING' } });
  });

  it('DANE: a certificate the TLSA record does not match (a valid WebPKI one) is refused (held)', async () => {
    resetScript({ ...HONEST, tls: GOOD });
    const o = await attempt(direct({ dns: { dnssec: 'trust-ad' } }), 'a@dane.atk3.test');
    expect(delivered()).toEqual([]);
    expect(o).toMatchObject({ ok: false, error: { code: 'DANE_NO_MATCH' } });
  });

  it('plain text injected after the STARTTLS 220 is never read as a reply inside TLS (held)', async () => {
    // If the injected "250" were kept, Nodemailer would take it as the reply to its EHLO over TLS.
    resetScript({ ...HONEST, inject: '250-injected\r\n250 AUTH PLAIN\r\n' });
    const o = await attempt(direct(), 'a@enforce.tls.test');
    expect(o.ok, describeOutcome(o)).toBe(true);
    expect(delivered()).toEqual([{ tls: true }]);
    expect(sessions[0]?.ehlos.map((e) => e.tls)).toEqual([false, true]);
  });
});

describe('DANE beside MTA-STS', () => {
  // FOUND, FIXED (medium). both.tls.test publishes MTA-STS enforce (mx-good.tls.test, WebPKI) and,
  // DNSSEC-signed, only PKIX-EE (usage 1) TLSA records for its MX host. planHost() (src/tls/
  // policy.ts) lets the unusable TLSA records win ('encrypt': TLS with ANY certificate) and
  // never looks at the enforce policy again, so an on-path attacker with a self-signed
  // certificate gets the mail that MTA-STS alone would have protected. RFC 8461 section 2 only
  // says MTA-STS must not override a FAILING DANE validation; "no usable TLSA record" is not a
  // DANE authentication at all, and weakening the domain's other policy is the wrong way round.
  // Fix: src/tls/policy.ts planHost(): on dane.kind === 'unusable', fall through to the MTA-STS
  // decision (webpki under enforce, mx: match), keeping policy 'dane' only when no enforce policy applies.
  // Fixed there: 'encrypt' is now only the floor when nothing stronger (enforce, verify, requireTLS) applies.
  it('unusable TLSA records leave an MTA-STS enforce policy in force: a self-signed certificate is refused, nothing sent', async () => {
    resetScript({ ...HONEST, tls: SELF });
    const o = await attempt(direct({ dns: { dnssec: 'trust-ad' } }), 'a@both.tls.test');
    expect(delivered(), describeOutcome(o)).toEqual([]);
    expect(o).toMatchObject({ ok: false, error: { code: 'MTA_STS_CERT_INVALID' } });
  });
});

describe('MTA-STS: policy host, cache and patterns', () => {
  it('mx: *.mx.atk3.test matches neither a.b.mx.atk3.test nor mx.atk3.test.evil.test: never connected (held)', async () => {
    const o = await attempt(direct(), 'a@testing.tls.test');
    expect(sessions).toEqual([]);
    expect(o.ok).toBe(false);
    if (!o.ok) expect(o.error.domains?.[0]?.attempts.map((a) => a.mx)).toEqual(['a.b.mx.atk3.test', 'mx.atk3.test.evil.test']);
    expect(o).toMatchObject({ ok: false, error: { code: 'MTA_STS_MX_MISMATCH', permanent: false } });
  });

  it('a cached enforce policy survives a changed TXT id whose fetch fails: the stripping MX is still refused (held)', async () => {
    const t = direct();
    expect((await attempt(t, 'a@cached.tls.test')).ok).toBe(true);
    // The attacker now changes the TXT id and makes the policy host answer 404, and strips STARTTLS.
    dns.setRecords([...records.filter((r) => r.name !== '_mta-sts.cached.tls.test'), ...parseZone('_mta-sts.cached.tls.test. 300 TXT "v=STSv1; id=2"')]);
    now += 10 * 60 * 1000;
    policies.setPolicy('cached.tls.test', undefined);
    resetScript({ ...HONEST, ehlo: () => '250-mx.atk3.test\r\n250 8BITMIME\r\n' });
    const o = await attempt(t, 'a@cached.tls.test');
    expect(delivered()).toEqual([]);
    expect(o).toMatchObject({ ok: false, error: { code: 'MTA_STS_STARTTLS_MISSING' } });
  });

  // FOUND, FIXED (low; the review's "also consider"). fetchPolicy() (src/tls/mta-sts.ts) connected
  // to whatever address mta-sts.<domain> resolved to: a recipient domain (chosen by whoever fills in
  // a form) pointing it at 127.0.0.1, 10.x or 169.254.169.254 got mailedge to make HTTPS requests
  // into the sender's own network. Fixed there: loopback, private, shared, link-local and
  // unspecified addresses are refused unless edge.tls.mtaSts.port is set, which marks a test world
  // as edge.mxPort does (every test here sets it; this one takes it away).
  it('a policy host on a loopback address is not contacted unless edge.tls.mtaSts.port marks a test world', async () => {
    const t = direct({ tls: { mtaSts: { port: undefined } } });
    const before = policies.requests.length;
    const o = await attempt(t, 'a@enforce.tls.test');
    // Delivered as without a policy (the domain announced one that could not be had), with the warning that says why.
    expect(o.ok, describeOutcome(o)).toBe(true);
    expect(t.warnings.find((w) => w.code === 'MTA_STS_FETCH_FAILED')?.message).toMatch(/mta-sts\.enforce\.tls\.test resolves to 127\.0\.3\.20, a loopback, private or link-local address/);
    expect(policies.requests.slice(before)).toEqual([]);
  });

  it('the addresses a policy host may not have, and some it may (held: the list behind the test above)', () => {
    for (const address of ['127.0.0.1', '10.1.2.3', '100.64.0.1', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '0.0.0.0', '::', '::1', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:169.254.169.254']) {
      expect(internalAddress(address), address).toBe(true);
    }
    for (const address of ['8.8.8.8', '172.32.0.1', '192.169.0.1', '2001:4860:4860::8888', '::ffff:8.8.8.8']) {
      expect(internalAddress(address), address).toBe(false);
    }
  });

  it('a policy body dribbled a byte at a time is cut at the fetch timeout, not waited for (held)', async () => {
    const t = direct();
    const started = Date.now();
    const o = await attempt(t, 'a@slow.tls.test');
    expect(Date.now() - started).toBeLessThan(6_000);
    expect(o.ok).toBe(true);
    expect(t.warnings.map((w) => w.code)).toContain('MTA_STS_FETCH_FAILED');
  });

  // FOUND, FIXED (low). parsePolicy (src/tls/mta-sts.ts) accepts any number of unknown "key: value"
  // lines and the store keeps policy.text whole (for TLS-RPT's policy-string): up to
  // MAX_POLICY_BYTES (64 KiB) per domain, times DEFAULT_POLICY_STORE_ENTRIES (10,000) = about
  // 640 MiB held by the default MemoryPolicyStore, and rewritten in full, synchronously, by the
  // FilePolicyStore on every change; the TLS-RPT rows copy it too (1,000 x 64 KiB). Recipient
  // domains are chosen by whoever fills in a form. The bounds count entries, not bytes.
  // Fix: src/tls/mta-sts.ts parsePolicy(): keep only the known fields, and a text rebuilt from
  // them (version, mode, mx, max_age) for policy-string; or cap the stored text at a few KiB.
  // Fixed there: the text is rebuilt from the known fields, and at most 64 mx: patterns are kept.
  it('a policy padded with 60 KiB of extension lines is stored as its known fields only (under 8 KiB)', async () => {
    const kept: StoredPolicy[] = [];
    const store = new MemoryPolicyStore({ clock });
    const spy = { get: (d: string) => store.get(d), set: (e: StoredPolicy) => (kept.push(e), store.set(e)) };
    const o = await attempt(direct({ tls: { mtaSts: { store: spy } } }), 'a@huge.tls.test');
    expect(o.ok, describeOutcome(o)).toBe(true);
    expect(kept).toHaveLength(1);
    expect(JSON.stringify(kept[0]).length).toBeLessThan(8 * 1024);
  });
});

describe('a policy store that holds what it should not', () => {
  const storeFile = (entries: unknown[]): string => {
    const path = join(mkdtempSync(join(tmpdir(), 'mailedge-atk3-')), 'policies.json');
    writeFileSync(path, JSON.stringify(entries));
    return path;
  };
  const stored = (domain: string, policy: Record<string, unknown>): Record<string, unknown> => ({
    domain,
    id: '1',
    fetchedAt: now - 1000,
    expiresAt: now + 86_400_000,
    policy: { version: 'STSv1', mode: 'enforce', mx: ['mx-good.tls.test'], maxAge: 86400, ...policy },
  });

  // FOUND, FIXED (medium: a delivered message reported as failed, so the application sends it again).
  // FilePolicyStore's isStored() (src/tls/policy-store.ts) does not check policy.text, and a
  // custom store (edge.tls.mtaSts.store) is not validated at all. An entry without `text` (a
  // file from an older version, a hand edit, another process's schema) is used; the delivery
  // succeeds; then TlsPolicies.record() -> policyRef() (src/tls/policy.ts) calls
  // policy.sts.policy.text.trim() and throws a TypeError AFTER the MX accepted the message.
  // deliverDomain's catch calls record() again, which throws again, and sendMail rejects with a
  // bare TypeError: the receiver has the message, the application retries, a second copy goes.
  // Fix: src/tls/policy-store.ts isStored(): require typeof policy.text === 'string' and every mx
  // a string; src/tls/policy.ts loadPolicy(): validate what any store's get() returns the same
  // way (and ignore what fails); src/routes/direct.ts deliverDomain(): record() after a
  // successful transaction must never turn the outcome into a failure (try/catch around it).
  // Fixed there: isStoredPolicy() checks every field read later, loadPolicy() applies it to any
  // store's answer, and TlsPolicies.record() never throws.
  it('a stored policy without its text is ignored and fetched again: the message goes once and is reported delivered', async () => {
    const path = storeFile([stored('none.tls.test', {})]);
    const o = await attempt(direct({ tls: { mtaSts: { store: new FilePolicyStore(path, { clock }) } } }), 'a@none.tls.test');
    expect(delivered()).toHaveLength(1);
    expect(o.ok, describeOutcome(o)).toBe(true);
  });

  // FOUND, FIXED (low). Same root cause: isStored() checks Array.isArray(policy.mx) but not its
  // elements; mxMatches() (src/tls/mta-sts.ts) calls pattern.startsWith on a number and the
  // send rejects with a TypeError ("pattern.startsWith is not a function") and no code.
  // Fix: as above (isStored: every mx a string, else the entry is ignored and the policy fetched).
  it('a stored policy with a non-string mx pattern is ignored and fetched again, never a TypeError', async () => {
    const path = storeFile([stored('html.tls.test', { mx: [42], text: ENFORCE_GOOD })]);
    const o = await attempt(direct({ tls: { mtaSts: { store: new FilePolicyStore(path, { clock }) } } }), 'a@html.tls.test');
    expect(describeOutcome(o)).not.toMatch(/is not a function/);
    expect(o.ok, describeOutcome(o)).toBe(true);
  });

  it('a domain key with path characters stays a key inside the one JSON file (held)', async () => {
    const path = storeFile([]);
    const store = new FilePolicyStore(path, { clock });
    store.set({ domain: '../../etc/passwd', id: '1', fetchedAt: now, expiresAt: now + 60_000, policy: { version: 'STSv1', mode: 'none', mx: [], maxAge: 60, text: '' } });
    const saved = JSON.parse(readFileSync(path, 'utf8')) as StoredPolicy[];
    expect(saved.map((e) => e.domain)).toEqual(['../../etc/passwd']);
    // A corrupt file starts empty rather than throwing.
    writeFileSync(path, '{not json');
    expect(new FilePolicyStore(path, { clock }).get('a.test')).toBeUndefined();
  });
});

describe('the name on the wire', () => {
  // FOUND, FIXED (medium). The name is decided again once the greeting is in (beforeEhlo, before
  // mailedge's own EHLO), but not before Nodemailer's EHLO over TLS, which follows the
  // STARTTLS reply and the handshake: both are the receiver's to delay (greetingTimeout each).
  // A receiver that holds its "220 go ahead" past the verdict's TTL, while the PTR is removed,
  // gets the second EHLO under a name DNS no longer confirms: the very case beforeEhlo was
  // added for (test/attack-name.e2e.test.ts), one round trip later.
  // Fix: src/tls/starttls.ts negotiate(): call settings.beforeEhlo() again after the handshake
  // (just before the handover, whose greeting Nodemailer answers with EHLO), quitting the
  // secured socket when it throws; the same after a plain() handover that follows mailedge's EHLO.
  // Fixed there: every handover that follows mailedge's EHLO decides the name again first.
  it('a STARTTLS reply delayed past the TTL, during which the PTR is removed: the name is decided again after the handshake, no EHLO over TLS carries it', async () => {
    resetScript({ ...HONEST, hold: true });
    const t = direct({ dns: { minTtl: 1 } }, { greetingTimeout: 10_000 });
    const sending = attempt(t, 'a@opp.atk3.test');
    await Promise.race([stalledAt, sending]);
    expect(sessions[0]?.ehlos).toEqual([{ name: 'mail.out.atk3.test', tls: false }]);
    // While the receiver holds its STARTTLS reply, the name is withdrawn and the verdict expires.
    dns.setRecords(records.filter((r) => r.name !== '2.3.0.127.in-addr.arpa'));
    now += 10 * 60 * 1000;
    release();
    const o = await sending;
    const overTls = sessions.flatMap((s) => s.ehlos.filter((e) => e.tls).map((e) => e.name));
    expect(overTls, describeOutcome(o)).not.toContain('mail.out.atk3.test');
    // With the PTR gone no name stands: the send is refused by the edge checks, nothing delivered.
    expect(delivered()).toEqual([]);
    expect(o).toMatchObject({ ok: false, error: { code: 'PTR_MISSING' } });
  });
});
