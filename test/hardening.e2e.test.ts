/**
 * The promise, attacked: no message leaves under a name DNS does not confirm
 * at the moment it meets the connection, no option sends around the check, no
 * credential reaches an MX host, and no throwing user code crashes the process
 * or loses a send. Each world here is its own DNS server and receivers on
 * ephemeral ports, so these tests run beside any other file.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { startReceiver, type Receiver } from '../src/testing/receiver.js';
import { parseZone } from '../src/testing/zone.js';
import { createTransport, type MailedgeTransporter } from '../src/create-transport.js';
import { EdgeRefusedError, InvalidOptionError, MailedgeError } from '../src/errors.js';
import type { MailedgeOptions } from '../src/options.js';
import type { ResourceRecord } from '../src/dns/wire.js';

const ZONE = `
$TTL 60
$ORIGIN hard.test.
@            IN SOA ns.hard.test. hostmaster.hard.test. ( 1 3600 600 86400 60 )
             IN NS  ns
ns           IN A   127.0.9.53
relay        IN A   127.0.9.100
mail.old     IN A   127.0.9.2
mail.new     IN A   127.0.9.2
; a domain whose MX is a receiver on 127.0.9.20
mxdomain     IN MX  10 mx
mx           IN A   127.0.9.20
2.9.0.127.in-addr.arpa. IN PTR mail.old.hard.test.
`;

const ENVELOPE_CHECKS_OFF = { spf: 'off', 'sender-mx': 'off', dmarc: 'off', 'recipient-null-mx': 'off' } as const;
const MESSAGE = { from: 'app@hard.test', to: 'someone@elsewhere.test', subject: 'hi', text: 'body' };

let dns: FixtureDnsServer;
let relay: Receiver;
let mx: Receiver;
let records: ResourceRecord[];
let now = Date.now();
const clock = { now: () => now };
const transporters: MailedgeTransporter[] = [];

beforeAll(async () => {
  records = parseZone(ZONE);
  dns = await startDnsServer({ records });
  relay = await startReceiver({ host: '127.0.9.100' });
  mx = await startReceiver({ host: '127.0.9.20', auth: { user: 'app', pass: 'mx-should-never-see-this' } });
});
afterEach(() => {
  for (const t of transporters.splice(0)) t.close();
  dns.setRecords(records);
  dns.clearFaults();
  relay.reset();
  relay.setFaults(undefined);
  mx.reset();
});
afterAll(async () => {
  await relay.close();
  await mx.close();
  await dns.close();
});

function transport(options: Partial<MailedgeOptions> = {}): MailedgeTransporter {
  const t = createTransport({
    host: 'relay.hard.test',
    port: relay.port,
    localAddress: '127.0.9.2',
    ignoreTLS: true,
    ...options,
    edge: { clock, checks: ENVELOPE_CHECKS_OFF, ...options.edge, dns: { servers: [dns.server], timeout: 1500, minTtl: 1, ...options.edge?.dns } },
  });
  transporters.push(t);
  return t;
}

/** The PTR of 127.0.9.2 now names `name` (or nothing), and every cached answer has expired. */
function repoint(name: string | null): void {
  const kept = records.filter((r) => r.name !== '2.9.0.127.in-addr.arpa');
  dns.setRecords(name === null ? kept : [...kept, ...parseZone(`2.9.0.127.in-addr.arpa. 60 IN PTR ${name}.`)]);
  now += 10 * 60 * 1000;
}

async function outcome<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: Error }> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: Error) => ({ ok: false as const, error }),
  );
}

describe('the name on the wire', () => {
  it('withdraws the old name at once when the PTR is repointed, even if the new name only times out', async () => {
    const t = transport();
    expect((await t.sendMail({ ...MESSAGE })).edge.name).toBe('mail.old.hard.test');
    repoint('mail.new.hard.test');
    dns.setFault('mail.new.hard.test', { rcode: 'SERVFAIL' });
    const message = { ...MESSAGE, subject: 'after the change' };
    const err = await t.sendMail(message).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EdgeRefusedError);
    expect(err).toMatchObject({ code: 'DNS_TEMPFAIL', permanent: false, mail: message });
    expect(relay.sessions.map((s) => s.ehlo)).toEqual(['mail.old.hard.test']);
    const report = await t.preflight();
    expect(report).toMatchObject({ ok: false, stale: false, name: null });
  });

  it('withdraws the old name at once when the PTR disappears (NXDOMAIN)', async () => {
    const t = transport();
    await t.sendMail({ ...MESSAGE });
    repoint(null);
    const message = { ...MESSAGE };
    await expect(t.sendMail(message)).rejects.toMatchObject({ code: 'PTR_MISSING', permanent: true, mail: message });
    expect(relay.messages).toBe(1);
  });

  it('still serves the confirmed name stale while its own PTR answer is unobtainable', async () => {
    const t = transport();
    await t.sendMail({ ...MESSAGE });
    now += 10 * 60 * 1000;
    dns.setFault('2.9.0.127.in-addr.arpa', { rcode: 'SERVFAIL' });
    const info = await t.sendMail({ ...MESSAGE });
    expect(info.edge).toMatchObject({ name: 'mail.old.hard.test', stale: true });
  });

  it('re-checks queued messages when they meet the connection: none leaves under a withdrawn name', async () => {
    const t = transport({ pool: true, maxConnections: 1 });
    await t.preflight();
    const messages = Array.from({ length: 12 }, (_, i) => ({ ...MESSAGE, subject: `queued ${i}` }));
    const sends = messages.map((m) => outcome(t.sendMail(m)));
    const first = await sends[0];
    expect(first?.ok).toBe(true);
    repoint(null);
    const results = await Promise.all(sends);
    const delivered = results.filter((r) => r.ok);
    const refused = results.flatMap((r, i) => (r.ok ? [] : [{ error: r.error, message: messages[i] }]));
    expect(delivered.length + refused.length).toBe(12);
    // The first, and at most the one handed over as it finished, met a connection while the name stood.
    expect(delivered.length).toBeLessThanOrEqual(2);
    expect(refused.length).toBeGreaterThanOrEqual(10);
    for (const { error, message } of refused) {
      expect(error).toMatchObject({ code: 'PTR_MISSING', mail: message });
    }
    expect(relay.messages).toBe(delivered.length);
    expect(relay.sessions.every((s) => s.ehlo === 'mail.old.hard.test')).toBe(true);
  });

  it.each([
    ['unpooled', {}],
    ['pool: true', { pool: true }],
    ['pool: 1', { pool: 1 }],
    ["pool: 'true'", { pool: 'true' }],
  ] as const)('%s: info.edge.name is the EHLO the message was carried under, across a rename', async (_label, poolOptions) => {
    const t = transport(poolOptions);
    const before = await t.sendMail({ ...MESSAGE, subject: 'before' });
    repoint('mail.new.hard.test');
    const after = await t.sendMail({ ...MESSAGE, subject: 'after' });
    expect([before.edge.name, after.edge.name]).toEqual(['mail.old.hard.test', 'mail.new.hard.test']);
    const carriedBy = (subject: string): string | undefined => relay.sessions.find((s) => s.messages.some((m) => m.data.includes(`Subject: ${subject}`)))?.ehlo;
    expect(carriedBy('before')).toBe('mail.old.hard.test');
    expect(carriedBy('after')).toBe('mail.new.hard.test');
  });

  it.each([
    ['pool: 1', 1],
    ["pool: 'true'", 'true'],
  ] as const)('%s pools: three messages share one connection', async (_label, pool) => {
    const t = transport({ pool, maxConnections: 1 });
    await Promise.all([1, 2, 3].map((i) => t.sendMail({ ...MESSAGE, subject: `m${i}` })));
    expect(relay.connections).toBe(1);
    expect(relay.messages).toBe(3);
  });
});

describe('no way around the check', () => {
  it.each([
    ['sendmail', { sendmail: true }],
    ['SES', { SES: { sesClient: {} } }],
    ['streamTransport', { streamTransport: true }],
    ['jsonTransport', { jsonTransport: true }],
    ['transport', { transport: { send: () => undefined } }],
    ['send', { name: 'custom', version: '1', send: () => undefined }],
    ['getSocket', { getSocket: () => undefined }],
    ['proxy', { proxy: 'socks5://127.0.0.1:1080' }],
  ])('refuses %s, naming it', (option, extra) => {
    let thrown: unknown;
    try {
      transport(extra as Partial<MailedgeOptions>);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(InvalidOptionError);
    expect(thrown).toMatchObject({ code: 'INVALID_OPTION', option });
  });

  it('ignores a getSocket set on the transporter: the send is refused, naming it', async () => {
    const t = transport();
    let used = false;
    (t as unknown as { getSocket: unknown }).getSocket = (_options: unknown, callback: (err: Error | null, socket?: unknown) => void) => {
      used = true;
      callback(null, false);
    };
    const message = { ...MESSAGE };
    await expect(t.sendMail(message)).rejects.toMatchObject({ code: 'INVALID_OPTION', option: 'getSocket', mail: message });
    await expect(t.verify()).rejects.toMatchObject({ code: 'INVALID_OPTION', option: 'getSocket' });
    expect(used).toBe(false);
    expect(relay.connections).toBe(0);
  });

  it.each([
    ['on the message', (t: MailedgeTransporter, m: object) => t.sendMail({ ...m, auth: { user: 'app', pass: 'mx-should-never-see-this' } } as never)],
  ])('with direct: true, refuses per-message auth %s before any connection', async (_where, send) => {
    const t = transport({ host: undefined, port: undefined, direct: true, edge: { mxPort: mx.port } });
    const err = await send(t, { ...MESSAGE, to: 'a@mxdomain.hard.test' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'INVALID_OPTION', option: 'auth' });
    expect((err as { mail?: unknown }).mail).toMatchObject({ to: 'a@mxdomain.hard.test' });
    expect(mx.connections).toBe(0);
  });

  it('with direct: true, refuses auth in the message defaults before any connection', async () => {
    const t = createTransport(
      { direct: true, localAddress: '127.0.9.2', ignoreTLS: true, edge: { clock, mxPort: mx.port, checks: ENVELOPE_CHECKS_OFF, dns: { servers: [dns.server], minTtl: 1 } } },
      { auth: { user: 'app', pass: 'mx-should-never-see-this' } } as never,
    );
    transporters.push(t);
    const message = { ...MESSAGE, to: 'a@mxdomain.hard.test' };
    await expect(t.sendMail(message)).rejects.toMatchObject({ code: 'INVALID_OPTION', option: 'auth', mail: message });
    expect(mx.connections).toBe(0);
  });
});

describe('nothing lost, nothing crashed', () => {
  it('a throwing callback is logged; the other sends in flight all end', async () => {
    const errors: unknown[] = [];
    const logger = { error: (meta: { err?: unknown }) => errors.push(meta.err), warn: () => undefined, info: () => undefined, debug: () => undefined, trace: () => undefined, fatal: () => undefined };
    const t = transport({ pool: true, logger });
    const others = [1, 2, 3].map((i) => t.sendMail({ ...MESSAGE, subject: `other ${i}` }));
    await new Promise<void>((resolve) => {
      t.sendMail({ ...MESSAGE, subject: 'thrower' }, () => {
        setImmediate(resolve);
        throw new Error('user callback blew up');
      });
    });
    await expect(Promise.all(others)).resolves.toHaveLength(3);
    expect(relay.messages).toBe(4);
    expect(errors.some((e) => e instanceof Error && e.message === 'user callback blew up')).toBe(true);
  });

  it('a throwing callback on a refusal does not crash either', async () => {
    const t = transport({ localAddress: '127.0.9.3' });
    await new Promise<void>((resolve) => {
      t.sendMail({ ...MESSAGE }, (err) => {
        expect(err).toBeInstanceOf(MailedgeError);
        setImmediate(resolve);
        throw new Error('user callback blew up on a refusal');
      });
    });
  });

  it('a throwing warning listener and a throwing logger never turn a send into a failure', async () => {
    const t = transport({
      localAddress: '127.0.9.3',
      edge: { mode: 'warn' },
      logger: { warn: () => { throw new Error('logger blew up'); }, info: () => { throw new Error('logger blew up'); }, debug: () => { throw new Error('logger blew up'); }, error: () => { throw new Error('logger blew up'); } },
    });
    t.on('warning', () => {
      throw new Error('listener blew up');
    });
    const info = await t.sendMail({ ...MESSAGE });
    expect(info.edge.verified).toBe(false);
    expect(relay.messages).toBe(1);
  });
});
