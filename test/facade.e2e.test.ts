import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { useWorld, MESSAGE } from './support/world.js';
import { EdgeRefusedError, InvalidOptionError, MailedgeError } from '../src/errors.js';
import type { SmtpSendError } from '../src/send-error.js';
import { preflight } from '../src/preflight.js';
import { createTransport } from '../src/create-transport.js';
import { type MailedgeWarning } from '../src/routes/route.js';
import { startReceiver, waitFor, type Receiver } from '../src/testing/receiver.js';

const world = useWorld();

function viaStrict(localAddress: string, extra: Record<string, unknown> = {}) {
  return world.transport({ host: 'smtp.relay.test', port: world.strict.port, localAddress, ...extra });
}

async function refusal(promise: Promise<unknown>): Promise<EdgeRefusedError> {
  const err = await promise.then(
    () => {
      throw new Error('expected the send to be refused');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EdgeRefusedError);
  return err as EdgeRefusedError;
}

describe('a well-configured host', () => {
  it('sends with the confirmed name in EHLO, and the strict receiver accepts it', async () => {
    const info = await viaStrict('127.0.0.2').sendMail({ ...MESSAGE });
    expect(info.edge).toEqual({ address: '127.0.0.2', name: 'mail.good.test', verified: true, stale: false });
    expect(info.accepted).toEqual(['someone@example.test']);
    const session = world.strict.sessions.find((s) => s.messages.length > 0);
    expect(session?.clientAddress).toBe('127.0.0.2');
    expect(session?.ehlo).toBe('mail.good.test');
    expect(session?.verdict?.ok).toBe(true);
  });

  it('supports the callback form', async () => {
    const transport = viaStrict('127.0.0.2');
    const info = await new Promise<unknown>((resolve, reject) =>
      transport.sendMail({ ...MESSAGE }, (err, result) => (err ? reject(err) : resolve(result))),
    );
    expect((info as { edge: { name: string } }).edge.name).toBe('mail.good.test');
  });

  it('uses a PTR name that reaches the address through a CNAME', async () => {
    const info = await viaStrict('127.0.0.7').sendMail({ ...MESSAGE });
    expect(info.edge.name).toBe('alias.cname.test');
    expect(world.strict.sessions.at(-1)?.ehlo).toBe('alias.cname.test');
  });

  it('passes with a warning when several PTR names all confirm', async () => {
    const transport = viaStrict('127.0.0.6');
    const warnings: MailedgeWarning[] = [];
    transport.on('warning', (w: MailedgeWarning) => warnings.push(w));
    const info = await transport.sendMail({ ...MESSAGE });
    expect(info.edge.name).toBe('a.both.test');
    expect(warnings.map((w) => w.code)).toEqual(['PTR_MULTIPLE']);
    const report = await transport.preflight();
    expect(report.checks.find((c) => c.id === 'fcrdns')?.status).toBe('warn');
  });

  it('replaces a caller-set name with the confirmed one, and says so', async () => {
    const transport = viaStrict('127.0.0.2', { name: 'laptop.local' });
    const warnings: MailedgeWarning[] = [];
    transport.on('warning', (w: MailedgeWarning) => warnings.push(w));
    const info = await transport.sendMail({ ...MESSAGE });
    expect(info.edge.name).toBe('mail.good.test');
    expect(world.strict.sessions.at(-1)?.ehlo).toBe('mail.good.test');
    expect(warnings.map((w) => w.code)).toEqual(['NAME_OVERRIDDEN']);
    expect(warnings[0]?.message).toContain('laptop.local');
  });

  it('finds the kernel source address when nothing is bound', async () => {
    const local = await world.receiver({ host: '127.0.0.1', strict: true, dnsServer: world.dns.server });
    const info = await world.transport({ host: '127.0.0.1', port: local.port }).sendMail({ ...MESSAGE });
    expect(info.edge).toEqual({ address: '127.0.0.1', name: 'kernel.good.test', verified: true, stale: false });
    expect(local.sessions.at(-1)?.ehlo).toBe('kernel.good.test');
  });

  it('confirms an IPv6 edge with its AAAA record', async () => {
    const v6 = await world.receiver({ host: '::1', strict: true, dnsServer: world.dns.server });
    const info = await world.transport({ host: '::1', port: v6.port, localAddress: '::1' }).sendMail({ ...MESSAGE });
    expect(info.edge).toEqual({ address: '::1', name: 'v6.good.test', verified: true, stale: false });
    expect(v6.sessions.at(-1)?.ehlo).toBe('v6.good.test');
  });

  it('reuses a verified identity for its TTL instead of asking DNS per message', async () => {
    // The plain receiver: the strict one makes DNS queries of its own. The sender-side checks
    // run in the background and would race the count; the recipient check is awaited, so it counts.
    const transport = world.transport({
      host: 'plain.relay.test',
      port: world.plain.port,
      localAddress: '127.0.0.2',
      pool: true,
      maxConnections: 2,
      edge: { checks: { spf: 'off', 'sender-mx': 'off', dmarc: 'off' } },
    });
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => transport.sendMail({ ...MESSAGE, subject: `m${i}` })));
    expect(results.every((r) => r.edge.name === 'mail.good.test')).toBe(true);
    // One A for the relay, one PTR, one A for the PTR name, one MX for the recipient domain: however many messages.
    // (Earlier tests' background sender checks may still be landing: they are about sender.test.)
    const asked = world.dns.log.filter((q) => !q.name.endsWith('sender.test'));
    expect(asked.map((q) => `${q.type} ${q.name}`).sort()).toEqual(
      ['A mail.good.test', 'A plain.relay.test', 'MX example.test', 'PTR 2.0.0.127.in-addr.arpa'].sort(),
    );
    expect(world.plain.messages).toBe(10);
    expect(world.plain.sessions.filter((s) => s.messages.length > 0).every((s) => s.ehlo === 'mail.good.test')).toBe(true);
  });

  it('runs use() plugins and verify()', async () => {
    const transport = viaStrict('127.0.0.2');
    transport.use('compile', (mail, done) => {
      mail.data.headers = { ...(mail.data.headers as Record<string, string>), 'X-Plugin': 'ran' };
      done();
    });
    await expect(transport.verify()).resolves.toBe(true);
    await transport.sendMail({ ...MESSAGE });
    const data = world.strict.sessions.flatMap((s) => s.messages).at(-1)?.data ?? '';
    expect(data).toContain('X-Plugin: ran');
  });
});

describe('refusals, before any connection', () => {
  it('refuses a host without PTR, with evidence, hint and the message intact', async () => {
    const message = { ...MESSAGE, attachments: [{ filename: 'a.txt', content: 'keep me' }] };
    const snapshot = structuredClone(message);
    const err = await refusal(viaStrict('127.0.0.4').sendMail(message));
    expect(err.code).toBe('PTR_MISSING');
    expect(err.permanent).toBe(true);
    expect(err.evidence.join('\n')).toContain('dig +short -x 127.0.0.4 → (nothing: NXDOMAIN)');
    expect(err.hint).toContain('4.0.0.127.in-addr.arpa. 3600 IN PTR');
    expect(err.mail).toBe(message);
    expect(message).toEqual(snapshot);
    expect(world.strict.connections).toBe(0);
  });

  it('refuses a host whose PTR name points elsewhere, naming the A record to fix', async () => {
    const err = await refusal(viaStrict('127.0.0.3').sendMail({ ...MESSAGE }));
    expect(err.code).toBe('FCRDNS_MISMATCH');
    expect(err.hint).toContain('mail.wrong.test. 3600 IN A 127.0.0.3');
    expect(err.hint).toContain('now: 127.0.0.99');
    expect(err.evidence).toContain('dig +short A mail.wrong.test → 127.0.0.99');
    expect(world.strict.connections).toBe(0);
  });

  it('refuses two PTR names when one is stale (receivers reading the first would reject at random)', async () => {
    const err = await refusal(viaStrict('127.0.0.5').sendMail({ ...MESSAGE }));
    expect(err.code).toBe('PTR_AMBIGUOUS');
    expect(err.hint).toContain('old.multi.test');
    expect(err.permanent).toBe(true);
  });

  it.each([
    ['127.0.0.8', 'CR or LF', 'control bytes'],
    ['127.0.0.9', 'single label', 'single label'],
    ['127.0.0.11', 'dot and space in a label', 'space'],
  ])('refuses a PTR name that is not a hostname (%s: %s) and never puts it on the wire', async (address, _what, problem) => {
    const err = await refusal(viaStrict(address).sendMail({ ...MESSAGE }));
    expect(err.code).toBe('PTR_INVALID');
    expect(err.message + err.hint + err.evidence.join('')).not.toMatch(/[\r\n]/);
    expect(err.evidence.join(' ')).toContain(problem);
    expect(world.strict.connections).toBe(0);
  });

  it('refuses a PTR name that only has an AAAA record for an IPv4 edge', async () => {
    const err = await refusal(viaStrict('127.0.0.12').sendMail({ ...MESSAGE }));
    expect(err.code).toBe('FCRDNS_MISMATCH');
  });

  it('calls back with the refusal in the callback form', async () => {
    const err = await new Promise<Error | null>((resolve) => viaStrict('127.0.0.4').sendMail({ ...MESSAGE }, (e) => resolve(e)));
    expect(err).toBeInstanceOf(EdgeRefusedError);
    expect((err as MailedgeError).code).toBe('PTR_MISSING');
  });

  it('fails verify() with the same code', async () => {
    await expect(viaStrict('127.0.0.3').verify()).rejects.toMatchObject({ code: 'FCRDNS_MISMATCH' });
    expect(world.strict.connections).toBe(0);
  });

  it('says "retry later" when the DNS server is down', async () => {
    const down = await startReceiver({ host: '127.0.0.102' });
    await down.close();
    const transport = createTransport({
      host: '127.0.0.100',
      port: world.strict.port,
      localAddress: '127.0.0.2',
      // Nothing listens here: the closed fixture port answers ICMP port-unreachable.
      edge: { dns: { servers: ['127.0.0.1:9'], timeout: 1000 } },
    });
    world.transports.push(transport);
    const err = await refusal(transport.sendMail({ ...MESSAGE }));
    expect(err.code).toBe('DNS_TEMPFAIL');
    expect(err.permanent).toBe(false);
    expect(world.strict.connections).toBe(0);
  });

  it('says "retry later" when the DNS server does not answer, within the deadline', async () => {
    world.dns.setFault('2.0.0.127.in-addr.arpa', { drop: true });
    try {
      const transport = world.transport({
        host: '127.0.0.100',
        port: world.strict.port,
        localAddress: '127.0.0.2',
        edge: { dns: { timeout: 400 } },
      });
      const started = Date.now();
      const err = await refusal(transport.sendMail({ ...MESSAGE }));
      expect(Date.now() - started).toBeLessThan(1500);
      expect(err.code).toBe('DNS_TEMPFAIL');
      expect(err.permanent).toBe(false);
    } finally {
      world.dns.setFault('2.0.0.127.in-addr.arpa', undefined);
    }
  });
});

describe('NAT and warn mode', () => {
  it('checks the public address behind NAT while binding the local one', async () => {
    const transport = world.transport({
      host: '127.0.0.101',
      port: world.plain.port,
      localAddress: '127.0.0.10',
      edge: { publicAddress: '127.0.0.2' },
    });
    const info = await transport.sendMail({ ...MESSAGE });
    expect(info.edge).toEqual({ address: '127.0.0.2', name: 'mail.good.test', verified: true, stale: false });
    const session = world.plain.sessions.at(-1);
    expect(session?.clientAddress).toBe('127.0.0.10');
    expect(session?.ehlo).toBe('mail.good.test');
  });

  it('sends anyway in warn mode, with an address-literal EHLO, and reports it', async () => {
    const transport = world.transport({
      host: '127.0.0.101',
      port: world.plain.port,
      localAddress: '127.0.0.3',
      edge: { mode: 'warn' },
    });
    const warnings: MailedgeWarning[] = [];
    transport.on('warning', (w: MailedgeWarning) => warnings.push(w));
    const info = await transport.sendMail({ ...MESSAGE });
    expect(info.edge).toEqual({ address: '127.0.0.3', name: '[127.0.0.3]', verified: false, stale: false });
    expect(world.plain.sessions.at(-1)?.ehlo).toBe('[127.0.0.3]');
    expect(warnings.map((w) => w.code)).toEqual(['UNVERIFIED_SEND']);
    expect(warnings[0]?.check?.code).toBe('FCRDNS_MISMATCH');
  });

  it('in warn mode a strict receiver rejects, and the error carries the message and the SMTP reply', async () => {
    const message = { ...MESSAGE };
    const err = await viaStrict('127.0.0.3', { edge: { mode: 'warn' } }).sendMail(message).catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(MailedgeError);
    const failure = err as SmtpSendError;
    expect(failure.code).toBe('EENVELOPE');
    expect(failure.responseCode).toBe(550);
    expect(failure.permanent).toBe(true);
    expect(failure.response).toContain('5.7.25');
    expect(failure.mail).toBe(message);
  });
});

describe('no Sender Address Verification', () => {
  let mx: ReturnType<typeof world.watchConnections>;
  beforeAll(() => {
    // The MX of the sender's domain (sender.test → mx.sender.test → 127.0.0.200): every connection
    // attempt to it, on port 25 or any other, is counted without binding port 25 (root only).
    mx = world.watchConnections('127.0.0.200');
  });

  it('never contacts the sender domain\'s MX, whatever the outcome: its checks are DNS lookups', async () => {
    await viaStrict('127.0.0.2').sendMail({ ...MESSAGE, from: 'app@sender.test' });
    await viaStrict('127.0.0.3').sendMail({ ...MESSAGE, from: 'app@sender.test' }).catch(() => undefined);
    await viaStrict('127.0.0.3', { edge: { mode: 'warn' } }).sendMail({ ...MESSAGE, from: 'app@sender.test' }).catch(() => undefined);
    await viaStrict('127.0.0.2').verify();
    // The sender-side checks ran (in the background): they asked DNS about sender.test and its MX host...
    await waitFor(() => world.dns.log.some((q) => q.type === 'TXT' && q.name === '_dmarc.sender.test'));
    await waitFor(() => world.dns.log.some((q) => q.type === 'A' && q.name === 'mx.sender.test'));
    // ...and nothing else: no connection to the MX, no RCPT probe.
    expect(mx.connections).toBe(0);
    expect(world.dns.log.filter((q) => q.name.includes('sender.test')).every((q) => ['TXT', 'MX', 'A', 'AAAA'].includes(q.type))).toBe(true);
  });

  it('does not even look the sender domain up when its checks are off', async () => {
    // The message's own authentication check reads the From domain's DMARC record: off too, for this test's point.
    const off = { spf: 'off', 'sender-mx': 'off', dmarc: 'off', authentication: 'off' } as const;
    await viaStrict('127.0.0.2', { edge: { checks: off } }).sendMail({ ...MESSAGE, from: 'app@sender.test' });
    await viaStrict('127.0.0.3', { edge: { mode: 'warn', checks: off } }).sendMail({ ...MESSAGE, from: 'app@sender.test' }).catch(() => undefined);
    expect(mx.connections).toBe(0);
    expect(world.dns.log.filter((q) => q.name.includes('sender.test'))).toEqual([]);
  });
});

describe('preflight', () => {
  it('returns the structured report without sending or connecting', async () => {
    const report = await preflight({
      host: 'smtp.relay.test',
      port: world.strict.port,
      localAddress: '127.0.0.3',
      edge: { dns: { servers: [world.dns.server] } },
    });
    expect(report.ok).toBe(false);
    expect(report.checks.map((c) => [c.id, c.status, c.severity])).toEqual([
      ['destination', 'pass', 'enforce'],
      ['edge-address', 'pass', 'enforce'],
      ['ptr', 'pass', 'enforce'],
      ['fcrdns', 'fail', 'enforce'],
      ['ehlo-name', 'skip', 'enforce'],
      ['ehlo-syntax', 'skip', 'enforce'],
      ['generic-ptr', 'skip', 'warn'],
    ]);
    for (const check of report.checks) {
      expect(Object.keys(check).sort()).toEqual(['actual', 'code', 'evidence', 'expected', 'hint', 'id', 'severity', 'status']);
    }
    expect(world.strict.connections).toBe(0);
  });

  it('throws PreflightFailedError with the report when asked to', async () => {
    await expect(
      preflight({ localAddress: '127.0.0.4', edge: { dns: { servers: [world.dns.server] } } }, { throwOnFailure: true }),
    ).rejects.toMatchObject({ code: 'PREFLIGHT_FAILED', report: { ok: false } });
  });
});

describe('options are validated at construction', () => {
  it.each([
    [{ edge: { mode: 'strict' } }, 'edge.mode'],
    [{ edge: { dns: { servers: ['not-an-ip:53'] } } }, 'edge.dns.servers[0]'],
    [{ edge: { dns: { servers: ['127.0.0.1:5300', '[::1]:99999'] } } }, 'edge.dns.servers[1]'],
    [{ edge: { dns: { timeout: -1 } } }, 'edge.dns.timeout'],
    [{ edge: { publicAddress: 'mail.example.com' } }, 'edge.publicAddress'],
    [{ edge: { pubicAddress: '127.0.0.1' } }, 'edge.pubicAddress'],
    [{ localAddress: '300.1.1.1' }, 'localAddress'],
    [{ port: 70000 }, 'port'],
    [{ getSocket: () => undefined }, 'getSocket'],
  ])('rejects %j naming %s', (options, name) => {
    let caught: unknown;
    try {
      createTransport(options as never);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidOptionError);
    expect((caught as InvalidOptionError).option).toBe(name);
    expect((caught as InvalidOptionError).message).toContain(name);
  });
});
