/**
 * direct: true: one SMTP transaction per recipient domain, at its MX hosts in
 * preference order. Every receiver listens on the same port on its own
 * 127.0.0.x address, and edge.mxPort points delivery at that port (real MX
 * delivery is always port 25). Nothing listens on 127.0.0.110, so the first
 * MX of direct.test refuses connections.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import type { Receiver } from '../src/testing/receiver.js';
import { startReceiversOnOnePort } from './support/world.js';
import { WORLD_ZONE_FILE } from '../src/testing/fixtures.js';
import { loadZoneFiles, parseZone } from '../src/testing/zone.js';
import type { ResourceRecord } from '../src/dns/wire.js';
import { createTransport, type MailedgeTransporter as MailedgeTransport } from '../src/create-transport.js';
import { EdgeRefusedError, InvalidOptionError, MailedgeError } from '../src/errors.js';
import type { DirectSentMessageInfo } from '../src/routes/direct.js';
import type { MailedgeOptions } from '../src/options.js';
import { runCli } from '../src/cli/main.js';
import type { CliIo } from '../src/cli/io.js';

const DIRECT_ZONE = `
$TTL 300
direct.test.        MX 10 mx1.direct.test.
direct.test.        MX 20 mx2.direct.test.
mx1.direct.test.    A  127.0.0.110
mx2.direct.test.    A  127.0.0.111
; no MX: implicit MX, the domain's own address
implicit.test.      A  127.0.0.112
; first MX greets 421, the next accepts
greylist.test.      MX 10 mx3.direct.test.
greylist.test.      MX 20 mx2.direct.test.
mx3.direct.test.    A  127.0.0.113
; first MX greets 554: the domain ends there
hard.test.          MX 10 mx4.direct.test.
hard.test.          MX 20 mx2.direct.test.
mx4.direct.test.    A  127.0.0.114
; an MX host that refuses every recipient (550), or defers them (450)
rcpt.test.          MX 10 mx5.direct.test.
mx5.direct.test.    A  127.0.0.115
defer.test.         MX 10 mx6.direct.test.
mx6.direct.test.    A  127.0.0.116
; first MX drops the connection in the middle of DATA: the message may be queued there
drop.test.          MX 10 mx7.direct.test.
drop.test.          MX 20 mx2.direct.test.
mx7.direct.test.    A  127.0.0.117
; an MX host with both families (127.0.0.1 and ::1)
dual.test.          MX 10 dual.relay.test.
`;

let dns: FixtureDnsServer;
let mx2: Receiver;
let implicit: Receiver;
let greylist: Receiver;
let hard: Receiver;
let dualV4: Receiver;
let rcpt: Receiver;
let defer: Receiver;
let dualV6: Receiver;
let dropper: Receiver;
let baseRecords: ResourceRecord[];
const transports: MailedgeTransport[] = [];

beforeAll(async () => {
  baseRecords = [...(await loadZoneFiles([WORLD_ZONE_FILE])), ...parseZone(DIRECT_ZONE)];
  dns = await startDnsServer({ records: baseRecords });
  [mx2, implicit, greylist, hard, dualV4, dualV6, rcpt, defer, dropper] = (await startReceiversOnOnePort([
    { host: '127.0.0.111', strict: true, dnsServer: dns.server },
    { host: '127.0.0.112', strict: true, dnsServer: dns.server },
    { host: '127.0.0.113', faults: { greeting: { code: 421, message: '4.7.0 Try again later' } } },
    { host: '127.0.0.114', faults: { greeting: { code: 554, message: '5.7.1 No SMTP service here' } } },
    { host: '127.0.0.1' },
    { host: '::1' },
    { host: '127.0.0.115', faults: { rcptTo: { code: 550, message: '5.1.1 No such user' } } },
    { host: '127.0.0.116', faults: { rcptTo: { code: 450, message: '4.2.1 Mailbox busy' } } },
    { host: '127.0.0.117', faults: { dropInData: true } },
  ])) as [Receiver, Receiver, Receiver, Receiver, Receiver, Receiver, Receiver, Receiver, Receiver];
});
beforeEach(() => {
  dns.setRecords(baseRecords);
  for (const r of [mx2, implicit, greylist, hard, dualV4, dualV6, rcpt, defer, dropper]) r.reset();
});
afterAll(async () => {
  for (const t of transports.splice(0)) t.close();
  await Promise.all([mx2, implicit, greylist, hard, dualV4, dualV6, rcpt, defer, dropper].map((r) => r.close()));
  await dns.close();
});

function direct(extra: Partial<MailedgeOptions> = {}): MailedgeTransport {
  const t = createTransport({
    direct: true,
    localAddress: '127.0.0.2',
    ignoreTLS: true,
    ...extra,
    edge: { mxPort: mx2.port, ...extra.edge, dns: { servers: [dns.server], timeout: 1000 } },
  });
  transports.push(t);
  return t;
}

const FROM = 'app@sender.test';

async function failure(promise: Promise<unknown>): Promise<Error & { domains?: DirectSentMessageInfo['domains'] }> {
  return promise.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e as Error,
  );
}

describe('MX hosts in preference order', () => {
  it('passes over an MX that refuses connections and delivers to the next, with the confirmed name', async () => {
    const info = (await direct().sendMail({ from: FROM, to: 'a@direct.test', text: 'x' })) as DirectSentMessageInfo;
    expect(info.accepted).toEqual(['a@direct.test']);
    expect(info.rejected).toEqual([]);
    expect(info.edge).toMatchObject({ address: '127.0.0.2', name: 'mail.good.test', verified: true });
    expect(info.domains).toHaveLength(1);
    expect(info.domains[0]).toMatchObject({ domain: 'direct.test', status: 'delivered', mx: 'mx2.direct.test', accepted: ['a@direct.test'] });
    expect(info.domains[0]?.attempts.map((a) => a.mx)).toEqual(['mx1.direct.test']);
    expect(mx2.sessions.at(-1)).toMatchObject({ clientAddress: '127.0.0.2', ehlo: 'mail.good.test' });
  });

  it('passes over an MX that greets with 4xx', async () => {
    const info = (await direct().sendMail({ from: FROM, to: 'a@greylist.test', text: 'x' })) as DirectSentMessageInfo;
    expect(info.domains[0]).toMatchObject({ status: 'delivered', mx: 'mx2.direct.test' });
    expect(greylist.connections).toBe(1);
  });

  it('ends the domain at an MX that greets with 5xx', async () => {
    const err = await failure(direct().sendMail({ from: FROM, to: 'a@hard.test', text: 'x' }));
    expect(err).not.toBeInstanceOf(MailedgeError);
    expect(err).toMatchObject({ code: 'EPROTOCOL', permanent: true, responseCode: 554, command: 'CONN' });
    expect(err.domains?.[0]).toMatchObject({ domain: 'hard.test', status: 'failed', mx: 'mx4.direct.test' });
    expect(mx2.connections).toBe(0);
  });

  it('uses the domain itself when it has no MX (implicit MX)', async () => {
    const info = (await direct().sendMail({ from: FROM, to: 'b@implicit.test', text: 'x' })) as DirectSentMessageInfo;
    expect(info.domains[0]).toMatchObject({ domain: 'implicit.test', status: 'delivered', mx: 'implicit.test' });
    expect(implicit.sessions.at(-1)?.messages[0]?.to).toEqual(['b@implicit.test']);
  });
});

describe('recipients and domains', () => {
  it('refuses a null-MX recipient permanently before any connection', async () => {
    const err = await failure(direct().sendMail({ from: FROM, to: 'c@nullmx.example.test', text: 'x' }));
    expect(err).toBeInstanceOf(EdgeRefusedError);
    expect(err).toMatchObject({ code: 'RECIPIENT_NULL_MX', permanent: true, recipients: ['c@nullmx.example.test'] });
    expect(mx2.connections + implicit.connections).toBe(0);
  });

  it('sends a multi-domain message as one transaction per domain, one Message-ID for all, and reports each domain', async () => {
    const info = (await direct().sendMail({
      from: FROM,
      to: ['a@direct.test', 'b@implicit.test', 'c@nullmx.example.test'],
      cc: 'd@direct.test',
      subject: 'multi',
      text: 'x',
    })) as DirectSentMessageInfo;
    expect(info.accepted.sort()).toEqual(['a@direct.test', 'b@implicit.test', 'd@direct.test']);
    expect(info.rejected).toEqual(['c@nullmx.example.test']);
    expect(info.rejectedErrors?.[0]).toMatchObject({ code: 'RECIPIENT_NULL_MX' });
    expect(info.domains.map((d) => [d.domain, d.status])).toEqual([
      ['direct.test', 'delivered'],
      ['implicit.test', 'delivered'],
      ['nullmx.example.test', 'failed'],
    ]);
    const atMx2 = mx2.sessions.flatMap((s) => s.messages);
    const atImplicit = implicit.sessions.flatMap((s) => s.messages);
    expect(atMx2.map((m) => m.to)).toEqual([['a@direct.test', 'd@direct.test']]);
    expect(atImplicit.map((m) => m.to)).toEqual([['b@implicit.test']]);
    const messageId = (data: string | undefined): string | undefined => /^Message-ID: (.*)$/im.exec(data ?? '')?.[1];
    expect(messageId(atMx2[0]?.data)).toBe(info.messageId);
    expect(messageId(atImplicit[0]?.data)).toBe(info.messageId);
    // The headers still name everyone, as one message would.
    expect(atImplicit[0]?.data).toContain('a@direct.test');
  });
});

describe('replies inside the transaction', () => {
  it('reports a recipient rejected 5xx by its MX as permanent, beside a domain that accepted', async () => {
    const mail = { from: FROM, to: ['a@direct.test', 'b@rcpt.test'], text: 'x' };
    const info = (await direct().sendMail(mail)) as DirectSentMessageInfo;
    expect(info.accepted).toEqual(['a@direct.test']);
    expect(info.rejected).toEqual(['b@rcpt.test']);
    expect(info.rejectedErrors?.[0]).toMatchObject({ code: 'EENVELOPE', permanent: true, responseCode: 550, mail });
    expect(info.domains[1]).toMatchObject({ domain: 'rcpt.test', status: 'failed', mx: 'mx5.direct.test' });
  });

  it('does not try the next MX after a 4xx inside the transaction, and rejects as temporary when nothing went out', async () => {
    const err = await failure(direct().sendMail({ from: FROM, to: 'c@defer.test', text: 'x' }));
    expect(err).toMatchObject({ code: 'EENVELOPE', permanent: false, responseCode: 450 });
    expect(err.domains?.[0]).toMatchObject({ domain: 'defer.test', status: 'failed', attempts: [] });
  });
});

describe('one verdict cache for every MX host', () => {
  it('raises a sender-domain warning once, though two MX hosts carry the message', async () => {
    // good.test has no SPF and the message no DKIM: the authentication check would refuse it (SENDER_UNAUTHENTICATED).
    const t = direct({ edge: { checks: { authentication: 'warn' } } });
    const warnings: string[] = [];
    t.on('warning', (w: { code: string }) => warnings.push(w.code));
    // good.test publishes no SPF record: a warn-level finding for whichever MX transport screens first.
    await t.sendMail({ from: 'app@good.test', to: ['a@direct.test', 'b@implicit.test'], text: 'x' });
    await new Promise((r) => setTimeout(r, 100));
    expect(warnings.filter((c) => c === 'SPF_NONE')).toHaveLength(1);
  });
});

describe('no duplicate delivery', () => {
  it('does not try the next MX after a connection dropped inside the transaction', async () => {
    const err = await failure(direct().sendMail({ from: FROM, to: 'd@drop.test', text: 'x' }));
    expect(err).toMatchObject({ code: 'ECONNECTION', permanent: false });
    expect(err.domains?.[0]).toMatchObject({ domain: 'drop.test', status: 'failed', attempts: [] });
    expect(dropper.connections).toBe(1);
    expect(mx2.connections).toBe(0);
  });
});

describe('direct delivery from a pool and over the passing family', () => {
  it('leaves a failing pool member out', async () => {
    const info = (await direct({ localAddress: undefined, edge: { pool: [{ localAddress: '127.0.0.3' }, { localAddress: '127.0.0.2' }] } }).sendMail({
      from: FROM,
      to: 'a@direct.test',
      text: 'x',
    })) as DirectSentMessageInfo;
    expect(info.edge).toMatchObject({ address: '127.0.0.2', name: 'mail.good.test' });
    expect(mx2.sessions.length).toBeGreaterThan(0);
    expect(mx2.sessions.every((s) => s.clientAddress === '127.0.0.2')).toBe(true);
  });

  it('refuses when every pool member fails, connecting nowhere', async () => {
    const err = await failure(
      direct({ localAddress: undefined, edge: { pool: [{ localAddress: '127.0.0.3' }, { localAddress: '127.0.0.4' }] } }).sendMail({ from: FROM, to: 'a@direct.test', text: 'x' }),
    );
    expect(err).toBeInstanceOf(EdgeRefusedError);
    expect((err as EdgeRefusedError).evidence.some((l) => l.startsWith('127.0.0.4: '))).toBe(true);
    expect(mx2.connections).toBe(0);
  });
});

describe('an MX host with both address families', () => {
  const withoutPtr = (name: string): void => dns.setRecords(baseRecords.filter((r) => !(r.type === 'PTR' && r.name === name)));

  it('goes over IPv4 when the IPv6 edge (::1) has no PTR', async () => {
    withoutPtr(`1.${'0.'.repeat(31)}ip6.arpa`);
    const info = (await direct({ localAddress: undefined }).sendMail({ from: FROM, to: 'a@dual.test', text: 'x' })) as DirectSentMessageInfo;
    expect(info.edge).toMatchObject({ address: '127.0.0.1', name: 'kernel.good.test' });
    expect(dualV4.sessions.at(-1)).toMatchObject({ clientAddress: '127.0.0.1', ehlo: 'kernel.good.test' });
    expect(dualV6.connections).toBe(0);
  });

  it('goes over IPv6 when the IPv4 edge fails and the IPv6 edge passes', async () => {
    withoutPtr('1.0.0.127.in-addr.arpa');
    const info = (await direct({ localAddress: undefined }).sendMail({ from: FROM, to: 'a@dual.test', text: 'x' })) as DirectSentMessageInfo;
    expect(info.edge).toMatchObject({ address: '::1', name: 'v6.good.test' });
    expect(dualV6.sessions.at(-1)).toMatchObject({ clientAddress: '::1', ehlo: 'v6.good.test' });
    expect(dualV4.connections).toBe(0);
  });
});

describe('verify and preflight', () => {
  it('check the edge alone: there is no one server to greet', async () => {
    const t = direct();
    await expect(t.verify()).resolves.toBe(true);
    expect(await t.preflight()).toMatchObject({ ok: true, address: '127.0.0.2', name: 'mail.good.test', destination: null });
    expect(mx2.connections + implicit.connections).toBe(0);
  });
});

describe('options', () => {
  it('names what cannot go with direct: true', () => {
    const invalid = (options: MailedgeOptions): string | undefined => {
      try {
        createTransport({ ...options, edge: { ...options.edge, dns: { servers: ['127.0.0.1:53'] } } }).close();
      } catch (err) {
        if (err instanceof InvalidOptionError) return err.option;
        throw err;
      }
      return undefined;
    };
    expect(invalid({ direct: true, host: 'smtp.example.com' })).toBe('host');
    expect(invalid({ direct: true, port: 587 })).toBe('port');
    expect(invalid({ direct: true, pool: true })).toBe('pool');
    expect(invalid({ direct: true, auth: { user: 'app', pass: 'secret' } })).toBe('auth');
    expect(invalid({ edge: { mxPort: 2525 } })).toBe('edge.mxPort');
    expect(invalid({ direct: true, edge: { mxPort: 0 } })).toBe('edge.mxPort');
    expect(invalid({ direct: 'yes' as unknown as boolean })).toBe('direct');
    expect(invalid({ direct: true, edge: { mxPort: 2525 } })).toBeUndefined();
  });
});

describe('mailedge send --direct', () => {
  async function cli(args: string[]): Promise<{ code: number; stdout: string }> {
    let stdout = '';
    const io: CliIo = {
      stdout: { write: (text: string) => (stdout += text), isTTY: false },
      stderr: { write: () => true },
      env: { NO_COLOR: '1' },
      cwd: mkdtempSync(join(tmpdir(), 'mailedge-direct-')),
    };
    return { code: await runCli(args, io), stdout };
  }
  const base = (): string[] => ['send', '--direct', '--mx-port', String(mx2.port), '--dns', dns.server, '--ignore-tls', '--from', FROM];

  it('exits 0 when every recipient got it, through a pool of --local-address', async () => {
    const result = await cli([...base(), '--local-address', '127.0.0.3', '--local-address', '127.0.0.2', '--to', 'a@direct.test', '--to', 'b@implicit.test', '--json']);
    expect(result.code).toBe(0);
    const out = JSON.parse(result.stdout) as { ok: boolean; accepted: string[]; domains: Array<{ domain: string; status: string; mx: string }> };
    expect(out.ok).toBe(true);
    expect(out.domains.map((d) => [d.domain, d.status, d.mx])).toEqual([
      ['direct.test', 'delivered', 'mx2.direct.test'],
      ['implicit.test', 'delivered', 'implicit.test'],
    ]);
  });

  it('exits 1 when a recipient is refused for good, though others got it', async () => {
    const result = await cli([...base(), '--local-address', '127.0.0.2', '--to', 'a@direct.test', '--to', 'c@nullmx.example.test']);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('direct.test: delivered via mx2.direct.test');
    expect(result.stdout).toContain('nullmx.example.test: failed');
  });

  it('never offers the relay credentials from the environment to MX hosts', async () => {
    let stdout = '';
    const io: CliIo = {
      stdout: { write: (text: string) => (stdout += text), isTTY: false },
      stderr: { write: (text: string) => (stdout += text) },
      env: { NO_COLOR: '1', SMTP_USER: 'app', SMTP_PASS: 'hunter2-direct' },
      cwd: mkdtempSync(join(tmpdir(), 'mailedge-direct-')),
    };
    expect(await runCli([...base(), '--local-address', '127.0.0.2', '--to', 'a@direct.test'], io)).toBe(0);
    expect(stdout).not.toContain('hunter2-direct');
  });

  it('exits 1 for a recipient rejected 5xx and 2 for one deferred 4xx, though others got it', async () => {
    expect((await cli([...base(), '--local-address', '127.0.0.2', '--to', 'a@direct.test', '--to', 'b@rcpt.test'])).code).toBe(1);
    const deferred = await cli([...base(), '--local-address', '127.0.0.2', '--to', 'a@direct.test', '--to', 'c@defer.test', '--json']);
    expect(deferred.code).toBe(2);
    expect(JSON.parse(deferred.stdout)).toMatchObject({ ok: false, rejected: ['c@defer.test'] });
  });

  it('exits 1 when refused outright, and 64 with --host', async () => {
    expect((await cli([...base(), '--local-address', '127.0.0.2', '--to', 'a@hard.test'])).code).toBe(1);
    expect((await cli([...base(), '--host', 'smtp.relay.test', '--to', 'a@direct.test'])).code).toBe(64);
  });
});
