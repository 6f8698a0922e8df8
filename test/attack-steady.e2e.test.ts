/**
 * Attacks on the send path's steady-state caches (message shapes, passing
 * verdicts per shape and edge, DKIM single-flight, the envelope fast path,
 * the header block kept on the node, the shortened STARTTLS peek), end to end
 * over real sockets. Loopback 127.0.10.x: DNS at .53/.54, the receiver at
 * .20, the sending host mail.steady.test at .2 (records added here, not in
 * the fixtures), raw SMTP servers at .30.
 */
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createPublicKey } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { parseZone } from '../src/testing/zone.js';
import { useAuthWorld } from './support/auth-world.js';
import { createTransport, type MailedgeTransporter } from '../src/create-transport.js';
import type { MailedgeOptions } from '../src/options.js';
import type { MailedgeWarning } from '../src/routes/route.js';
import type { ResourceRecord } from '../src/dns/wire.js';

const ZONE_FILE = fileURLToPath(new URL('../fixtures/zones/auth.zone', import.meta.url));
const KEY = readFileSync(new URL('../fixtures/dkim/brand-s1.pem', import.meta.url), 'utf8');
const OTHER = readFileSync(new URL('../fixtures/dkim/other-s1.pem', import.meta.url), 'utf8');
const PUB = createPublicKey(KEY).export({ type: 'spki', format: 'der' }).toString('base64');
const OTHER_PUB = createPublicKey(OTHER).export({ type: 'spki', format: 'der' }).toString('base64');
const CHECKS_OFF = { spf: 'off', 'sender-mx': 'off', dmarc: 'off', 'recipient-null-mx': 'off' } as const;

const txt = (owner: string, ttl: number, text: string): string => `${owner}. ${ttl} IN TXT ${(text.match(/.{1,250}/g) ?? ['']).map((c) => `"${c}"`).join(' ')}`;

/** The sending host 127.0.10.2 and the domains it may send for. */
function steadyZone(keyTtl = 300, keyPub = PUB, dmarc = 'v=DMARC1; p=reject'): string {
  return [
    'mail.steady.test. 300 IN A 127.0.10.2',
    '2.10.0.127.in-addr.arpa. 300 IN PTR mail.steady.test.',
    txt('steady.test', 300, 'v=spf1 ip4:127.0.10.2 -all'),
    txt('s1._domainkey.steady.test', keyTtl, `v=DKIM1; k=rsa; p=${keyPub}`),
    txt('_dmarc.steady.test', 300, dmarc),
    // a domain whose SPF does not name the edge, p=reject: only aligned DKIM can pass it
    txt('nospf.test', 300, 'v=spf1 -all'),
    txt('s1._domainkey.nospf.test', keyTtl, `v=DKIM1; k=rsa; p=${keyPub}`),
    txt('_dmarc.nospf.test', 300, 'v=DMARC1; p=reject'),
    txt('_dmarc.bulk.test', 300, 'v=DMARC1; p=none'),
    txt('bulk.test', 300, 'v=spf1 ip4:127.0.10.2 -all'),
    txt('s1._domainkey.bulk.test', 300, `v=DKIM1; k=rsa; p=${PUB}`),
    'nullmx.steady.test. 300 IN MX 0 .',
    'mx.rcpt10.test. 300 IN A 127.0.10.20',
    'rcpt10.test. 300 IN MX 10 mx.rcpt10.test.',
  ].join('\n');
}

const base: ResourceRecord[] = parseZone(readFileSync(ZONE_FILE, 'utf8'));
const world = useAuthWorld({ ours: '127.0.10.53', theirs: '127.0.10.54', receiver: '127.0.10.20' }, () => [...base, ...parseZone(steadyZone())]);
let now = Date.now();
const clock = { now: () => now };

function setWorld(zone: string): void {
  const added = parseZone(zone);
  const names = new Set(added.map((r) => `${r.name.toLowerCase()}|${r.type}`));
  const all = [...base.filter((r) => !names.has(`${r.name.toLowerCase()}|${r.type}`)), ...added];
  world.ours.setRecords(all);
  world.theirs.setRecords(all);
}

afterEach(() => {
  now += 10_000_000;
});

type Options = Omit<Partial<MailedgeOptions>, 'dkim'> & { dkim?: unknown };

function transport(options: Options = {}, warnings?: MailedgeWarning[]): MailedgeTransporter {
  const t = createTransport({
    host: world.receiver.host,
    port: world.receiver.port,
    localAddress: '127.0.10.2',
    ignoreTLS: true,
    ...options,
    edge: { receiver: 'final', clock, checks: CHECKS_OFF, ...options.edge, dns: { servers: [world.ours.server], timeout: 2000 } },
  } as MailedgeOptions);
  if (warnings) t.on('warning', (w: MailedgeWarning) => warnings.push(w));
  world.transporters.push(t);
  return t;
}

const received = () => world.receiver.sessions.flatMap((s) => s.authentication ?? []);
const sign = (domainName: string, privateKey = KEY) => ({ domainName, keySelector: 's1', privateKey });

describe('message shapes: what the key must tell apart', () => {
  it('judges a message with its own dkim option (the same key as the transport) afresh, and agrees with the receiver', async () => {
    const t = transport({ dkim: sign('nospf.test') });
    const send = (i: number, extra: Record<string, unknown> = {}) => t.sendMail({ from: 'a@nospf.test', to: 'user@rcpt.test', subject: `m${i}`, text: `b${i}`, ...extra });
    for (const i of [1, 2, 3]) expect((await send(i)).authentication?.dmarc.result).toBe('pass');
    // A per-message key for the same d= and s= that is not the published one: DKIM fails, DMARC fails, p=reject.
    await expect(send(4, { dkim: sign('nospf.test', OTHER) })).rejects.toMatchObject({ code: 'DMARC_FAIL' });
    // And the transport's shape still passes afterwards.
    expect((await send(5)).authentication?.dkim[0]?.result).toBe('pass');
  });

  it("keeps one signer's verdict from another transport's (same d= and s=, another private key)", async () => {
    const good = transport({ dkim: sign('nospf.test') });
    const bad = transport({ dkim: sign('nospf.test', OTHER) });
    for (const i of [1, 2, 3]) expect((await good.sendMail({ from: 'a@nospf.test', to: 'user@rcpt.test', subject: `m${i}`, text: 'b' })).authentication?.dkim[0]?.result).toBe('pass');
    // Refused: by the identity's dkim check (DKIM_KEY_MISMATCH) or the message's DMARC_FAIL; never sent as passing.
    await expect(bad.sendMail({ from: 'a@nospf.test', to: 'user@rcpt.test', subject: 'x', text: 'b' })).rejects.toMatchObject({ code: expect.stringMatching(/DKIM_KEY_MISMATCH|DMARC_FAIL/) });
    const off = transport({ dkim: sign('nospf.test', OTHER), edge: { checks: { ...CHECKS_OFF, dkim: 'off' } } } as Options);
    await expect(off.sendMail({ from: 'a@nospf.test', to: 'user@rcpt.test', subject: 'x', text: 'b' })).rejects.toMatchObject({ code: 'DMARC_FAIL' });
  });

  it("tells a From display name change from a From address change, and a second From address refuses", async () => {
    const t = transport({ dkim: sign('nospf.test') });
    for (const i of [1, 2, 3]) await t.sendMail({ from: `"N${i}" <a@nospf.test>`, to: 'user@rcpt.test', subject: `m${i}`, text: 'b' });
    // The same everything but From: another domain under p=reject without DKIM alignment.
    await expect(t.sendMail({ from: 'a@brand.test', to: 'user@rcpt.test', envelope: { from: 'a@nospf.test', to: 'user@rcpt.test' }, subject: 'm', text: 'b' })).rejects.toMatchObject({
      code: 'DMARC_FAIL',
    });
    await expect(t.sendMail({ from: ['a@nospf.test', 'b@nospf.test'], to: 'user@rcpt.test', subject: 'm', text: 'b' })).rejects.toMatchObject({ code: 'FROM_INVALID' });
    // A From set through headers as well as the option: whatever Nodemailer writes, the prediction is the receiver's.
    const info = await t.sendMail({ from: 'a@nospf.test', headers: { From: 'a@brand.test' }, envelope: { from: 'a@nospf.test', to: 'user@rcpt.test' }, to: 'user@rcpt.test', subject: 'm', text: 'b' }).catch((e: { authentication?: unknown }) => e);
    const theirs = received().at(-1);
    if ('code' in (info as object)) expect((info as { code: string }).code).toMatch(/DMARC_FAIL|FROM_INVALID/);
    else expect((info as { authentication?: { dmarc: { result: string; domain: string } } }).authentication?.dmarc).toMatchObject({ result: theirs?.dmarc?.result, domain: theirs?.dmarc?.domain });
  });

  it('sees an envelope option changing MAIL FROM on a shape that passed by SPF', async () => {
    const t = transport();
    for (const i of [1, 2, 3]) expect((await t.sendMail({ from: 'a@steady.test', to: 'user@rcpt.test', subject: `m${i}`, text: 'b' })).authentication?.dmarc).toMatchObject({ result: 'pass', alignedBy: 'spf' });
    // MAIL FROM in a domain whose SPF does not name the edge, no DKIM: SPF fails, DMARC fails (p=reject).
    await expect(t.sendMail({ from: 'a@steady.test', to: 'user@rcpt.test', envelope: { from: 'b@nospf.test', to: 'user@rcpt.test' }, subject: 'm', text: 'b' })).rejects.toMatchObject({ code: 'DMARC_FAIL' });
    // The null sender: SPF of the EHLO name (mail.steady.test: no SPF record) — not aligned: DMARC fails.
    await expect(t.sendMail({ from: 'a@steady.test', to: 'user@rcpt.test', envelope: { from: '', to: 'user@rcpt.test' } as never, subject: 'm', text: 'b' })).rejects.toMatchObject({ code: 'DMARC_FAIL' });
  });

  it("bulk: a message of a passing shape without List-Unsubscribe-Post, or with List-Unsubscribe left out of the signature, is refused", async () => {
    const t = transport({ dkim: sign('bulk.test'), edge: { requirements: 'bulk', checks: CHECKS_OFF } } as Options);
    const list = { unsubscribe: { url: 'https://bulk.test/u?x=1', comment: 'u' } };
    const ok = (i: number) => t.sendMail({ from: 'a@bulk.test', to: 'user@rcpt.test', subject: `m${i}`, text: 'b', list, headers: { 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' } });
    for (const i of [1, 2, 3]) expect((await ok(i)).authentication?.dmarc.result).toBe('pass');
    await expect(t.sendMail({ from: 'a@bulk.test', to: 'user@rcpt.test', subject: 'm', text: 'b', list })).rejects.toMatchObject({ code: 'BULK_UNSUBSCRIBE_REQUIRED' });
    await expect(
      t.sendMail({ from: 'a@bulk.test', to: 'user@rcpt.test', subject: 'm', text: 'b', list: { unsubscribe: 'mailto:u@bulk.test' }, headers: { 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' } }),
    ).rejects.toMatchObject({ code: 'BULK_UNSUBSCRIBE_REQUIRED' });
    // Still the first shape passes.
    expect((await ok(4)).authentication?.dmarc.result).toBe('pass');
    // A skipFields transport (List-Unsubscribe not signed): never passes, shape or not.
    const skip = transport({ dkim: { ...sign('bulk.test'), skipFields: 'List-Unsubscribe' }, edge: { requirements: 'bulk', checks: CHECKS_OFF } } as Options);
    for (const i of [1, 2, 3]) {
      await expect(skip.sendMail({ from: 'a@bulk.test', to: 'user@rcpt.test', subject: `m${i}`, text: 'b', list, headers: { 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' } })).rejects.toMatchObject({
        code: 'BULK_UNSUBSCRIBE_REQUIRED',
      });
    }
  });

  it('a compile plugin that changes From after the first messages of a shape', async () => {
    const t = transport({ dkim: sign('nospf.test') });
    let rewrite = false;
    t.use('compile', (mail, done) => {
      if (rewrite) mail.data.from = 'a@brand.test';
      done();
    });
    for (const i of [1, 2, 3]) expect((await t.sendMail({ from: 'a@nospf.test', to: 'user@rcpt.test', subject: `m${i}`, text: 'b' })).authentication?.dmarc.result).toBe('pass');
    rewrite = true;
    // MAIL FROM follows From (a@brand.test: no SPF record naming the edge), DKIM d=nospf.test not aligned: refused.
    await expect(t.sendMail({ from: 'a@nospf.test', to: 'user@rcpt.test', subject: 'm', text: 'b' })).rejects.toMatchObject({ code: 'DMARC_FAIL' });
  });

  it('a stream plugin that rewrites the From header is not judged from the shape', async () => {
    const { Transform } = await import('node:stream');
    const t = transport({ edge: { checks: { ...CHECKS_OFF, authentication: 'warn' } } } as Options);
    let rewrite = false;
    t.use('stream', (mail, done) => {
      if (rewrite) {
        let done1 = false;
        mail.message.transform(
          () =>
            new Transform({
              transform(chunk, _enc, cb) {
                if (done1) return cb(null, chunk);
                done1 = true;
                cb(null, Buffer.from(chunk.toString('latin1').replace(/^From: .*$/m, 'From: a@brand.test'), 'latin1'));
              },
            }),
        );
      }
      done();
    });
    for (const i of [1, 2, 3]) expect((await t.sendMail({ from: 'a@steady.test', to: 'user@rcpt.test', subject: `m${i}`, text: 'b' })).authentication?.dmarc.result).toBe('pass');
    rewrite = true;
    const info = await t.sendMail({ from: 'a@steady.test', to: 'user@rcpt.test', subject: 'm', text: 'b' });
    const theirs = received().at(-1);
    expect(theirs?.dmarc?.result).toBe('fail');
    expect(info.authentication?.dmarc.result).toBe(theirs?.dmarc?.result);
  });
});

describe('message shapes: time', () => {
  it('does not judge from a shape past its DKIM key record TTL, even while the SPF and DMARC answers live', async () => {
    setWorld(steadyZone(30));
    world.records = [...base.filter((r) => !r.name.toLowerCase().endsWith('steady.test')), ...parseZone(steadyZone(30))];
    try {
      const t = transport({ dkim: sign('nospf.test'), edge: { checks: { ...CHECKS_OFF, dkim: 'off' } } } as Options);
      const send = (i: number) => t.sendMail({ from: 'a@nospf.test', to: 'user@rcpt.test', subject: `m${i}`, text: `b${i}` });
      for (const i of [1, 2, 3]) expect((await send(i)).authentication?.dkim[0]?.result).toBe('pass');
      setWorld(steadyZone(30, OTHER_PUB));
      now += 31_000;
      // The key rotated under the selector: the receiver fails DKIM, DMARC fails under p=reject: refused.
      await expect(send(4)).rejects.toMatchObject({ code: 'DMARC_FAIL', authentication: { dkim: [{ result: 'fail' }] } });
    } finally {
      world.records = [...base, ...parseZone(steadyZone())];
    }
  });
});

describe('verdicts handed out', () => {
  it("a caller's changes to info.authentication and info.edge reach no other message", async () => {
    const t = transport({ dkim: sign('steady.test') });
    const send = (i: number) => t.sendMail({ from: 'a@steady.test', to: 'user@rcpt.test', subject: `m${i}`, text: 'b' });
    const infos = [await send(1), await send(2), await send(3)];
    for (const info of infos) {
      const a = info.authentication as unknown as { spf: { result: string; domain: string }; dkim: Array<{ result: string }>; dmarc: { result: string; policy: string } };
      a.spf.result = 'x';
      a.spf.domain = 'x';
      (a.dkim[0] as { result: string }).result = 'x';
      a.dkim.push({ result: 'x' });
      a.dmarc.result = 'x';
      a.dmarc.policy = 'x';
      (info.edge as unknown as { address: string }).address = 'x';
    }
    const next = await send(4);
    expect(next.authentication).toMatchObject({ spf: { result: 'pass', domain: 'steady.test' }, dkim: [{ result: 'pass' }], dmarc: { result: 'pass', policy: 'reject' } });
    expect(next.authentication?.dkim).toHaveLength(1);
    expect(next.edge?.address).toBe('127.0.10.2');
  });
});

describe('single-flight and settling', () => {
  it('a burst of one shape, with one message whose render fails, settles every message', async () => {
    const t = transport({ pool: true, maxConnections: 2, dkim: sign('steady.test') } as Options);
    const sends = Array.from({ length: 20 }, (_, i) =>
      t.sendMail({
        from: 'a@steady.test',
        to: 'user@rcpt.test',
        subject: `m${i}`,
        text: `b${i}`,
        ...(i === 0 ? { attachments: [{ filename: 'x.txt', path: '/nonexistent/attack-steady' }] } : {}),
      }),
    );
    const settled = await Promise.race([Promise.allSettled(sends), new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000))]);
    expect(settled).not.toBe('timeout');
    const results = settled as PromiseSettledResult<{ authentication?: { dkim: Array<{ result: string }> } }>[];
    expect(results[0]?.status).toBe('rejected');
    expect(results.slice(1).every((r) => r.status === 'fulfilled' && r.value.authentication?.dkim[0]?.result === 'pass')).toBe(true);
  });

  it('a burst of one shape while the key record lookup times out settles every message', async () => {
    const t = transport({ pool: true, maxConnections: 2, dkim: sign('steady.test'), edge: { checks: { ...CHECKS_OFF, authentication: 'warn', dkim: 'off' } } } as Options);
    // No answer for the key record: remove it from our server (NXDOMAIN is fine too; here: no record).
    world.ours.setRecords(world.records.filter((r) => r.name.toLowerCase() !== 's1._domainkey.steady.test'));
    const sends = Array.from({ length: 10 }, (_, i) => t.sendMail({ from: 'a@steady.test', to: 'user@rcpt.test', subject: `m${i}`, text: `b${i}` }));
    const settled = await Promise.race([Promise.allSettled(sends), new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000))]);
    expect(settled).not.toBe('timeout');
  });
});

describe('the envelope fast path', () => {
  it('refuses a null-MX recipient every time, sends to the others only', async () => {
    const t = transport({ edge: { checks: { ...CHECKS_OFF, 'recipient-null-mx': 'enforce' } } } as Options);
    for (let i = 0; i < 3; i++) {
      const info = await t.sendMail({ from: 'a@steady.test', to: ['user@rcpt.test', 'x@nullmx.steady.test'], subject: `m${i}`, text: 'b' });
      expect(info.rejected).toContain('x@nullmx.steady.test');
    }
    // The clean envelope, then the refused one again (the clean one's screening must not stand in for it).
    await t.sendMail({ from: 'a@steady.test', to: ['user@rcpt.test'], subject: 'c', text: 'b' });
    await t.sendMail({ from: 'a@steady.test', to: ['user@rcpt.test'], subject: 'c', text: 'b' });
    await expect(t.sendMail({ from: 'a@steady.test', to: ['x@nullmx.steady.test'], subject: 'c', text: 'b' })).rejects.toMatchObject({ code: expect.stringMatching(/NULL_MX|RECIPIENT/) });
    const rcpts = world.receiver.sessions.flatMap((x) => x.messages.flatMap((m) => m.to));
    expect(rcpts).toEqual(['user@rcpt.test', 'user@rcpt.test', 'user@rcpt.test', 'user@rcpt.test', 'user@rcpt.test']);
  });
});

/** A hand-written SMTP server: `script` answers the greeting and EHLO/HELO as the test wants; the rest is plain. */
async function rawServer(greeting: string[], ehlo: (line: string, socket: Socket) => Promise<void> | void): Promise<{ server: Server; port: number; sessions: string[][] }> {
  const sessions: string[][] = [];
  const server = createServer((socket) => {
    const seen: string[] = [];
    sessions.push(seen);
    let buffer = '';
    let data = false;
    const write = async (chunks: string[]) => {
      for (const c of chunks) {
        socket.write(c);
        await new Promise((r) => setTimeout(r, 15));
      }
    };
    void write(greeting);
    socket.on('data', async (chunk) => {
      buffer += chunk.toString('latin1');
      for (;;) {
        if (data) {
          const end = buffer.indexOf('\r\n.\r\n');
          if (end < 0) return;
          buffer = buffer.slice(end + 5);
          data = false;
          socket.write('250 2.0.0 queued\r\n');
          continue;
        }
        const nl = buffer.indexOf('\r\n');
        if (nl < 0) return;
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        seen.push(line);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO' || verb === 'HELO') await ehlo(line, socket);
        else if (verb === 'MAIL' || verb === 'RCPT' || verb === 'RSET' || verb === 'NOOP') socket.write('250 2.1.0 ok\r\n');
        else if (verb === 'DATA') {
          data = true;
          socket.write('354 go ahead\r\n');
        } else if (verb === 'QUIT') {
          socket.end('221 bye\r\n');
        } else socket.write('502 5.5.2 what\r\n');
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.10.30', resolve));
  return { server, port: (server.address() as AddressInfo).port, sessions };
}

describe('the STARTTLS peek', () => {
  const cases: Array<{ name: string; greeting: string[]; ehlo: (line: string, socket: Socket) => Promise<void> | void; offered: boolean }> = [
    {
      name: 'a multi-line greeting and an EHLO reply in several chunks, CRLF split',
      greeting: ['220-mx.raw.test hello\r', '\n220-250 this is not a reply\r\n', '220 ready\r\n'],
      ehlo: async (_line, socket) => {
        for (const c of ['250-mx.raw.test\r', '\n250-SIZE 10000\r\n250-STA', 'RTTLS\r', '\n250 8BITMIME\r\n']) {
          socket.write(c);
          await new Promise((r) => setTimeout(r, 15));
        }
      },
      offered: true,
    },
    {
      name: 'STARTTLS on the final line of the EHLO reply',
      greeting: ['220 ready\r\n'],
      ehlo: (_line, socket) => void socket.write('250-mx.raw.test\r\n250 STARTTLS\r\n'),
      offered: true,
    },
    {
      name: 'EHLO refused, then HELO',
      greeting: ['220 ready\r\n'],
      ehlo: (line, socket) => void socket.write(line.toUpperCase().startsWith('EHLO') ? '502 5.5.2 no EHLO\r\n' : '250 mx.raw.test\r\n'),
      offered: false,
    },
    {
      name: 'an EHLO reply without STARTTLS',
      greeting: ['220 ready\r\n'],
      ehlo: (_line, socket) => void socket.write('250-mx.raw.test\r\n250 SIZE 1000\r\n'),
      offered: false,
    },
  ];
  for (const c of cases) {
    it(`${c.name}: STARTTLS ${c.offered ? 'offered' : 'not offered'}`, async () => {
      const raw = await rawServer(c.greeting, c.ehlo);
      try {
        const warnings: MailedgeWarning[] = [];
        const t = transport({ host: '127.0.10.30', port: raw.port, edge: { checks: { ...CHECKS_OFF, authentication: 'warn' } } } as Options, warnings);
        const info = await t.sendMail({ from: 'a@steady.test', to: 'user@rcpt.test', subject: 's', text: 'b' });
        expect((info as { tls?: unknown }).tls ?? null).toBeNull();
        expect(warnings.filter((w) => w.code === 'STARTTLS_NOT_USED').length).toBe(c.offered ? 1 : 0);
      } finally {
        await new Promise<void>((resolve) => raw.server.close(() => resolve()));
      }
    });
  }
});
