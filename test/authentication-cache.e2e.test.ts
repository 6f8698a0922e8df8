/**
 * What is verified when (issue 11): the DNS cost of the message checks is per
 * domain and TTL, not per message (single-flight under concurrency), and a
 * DKIM verdict is reused only while the key record answer it was made against
 * lives: a rotated key is seen once that answer's TTL has run out. mailedge
 * asks its own DNS server here, so the receiver's lookups do not count.
 */
import { readFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseZone } from '../src/testing/zone.js';
import { useAuthWorld } from './support/auth-world.js';
import { createTransport, type MailedgeTransporter } from '../src/create-transport.js';
import type { MailedgeOptions } from '../src/options.js';
import type { ResourceRecord } from '../src/dns/wire.js';

const ZONE_FILE = fileURLToPath(new URL('../fixtures/zones/auth.zone', import.meta.url));
const KEY = readFileSync(new URL('../fixtures/dkim/brand-s1.pem', import.meta.url), 'utf8');
const OTHER = readFileSync(new URL('../fixtures/dkim/other-s1.pem', import.meta.url), 'utf8');
const CHECKS_OFF = { spf: 'off', 'sender-mx': 'off', dmarc: 'off', 'recipient-null-mx': 'off' } as const;

const world = useAuthWorld({ ours: '127.0.6.55', theirs: '127.0.6.56', receiver: '127.0.6.22' }, () => parseZone(readFileSync(ZONE_FILE, 'utf8')));
let now = Date.now();
const clock = { now: () => now };

function transport(options: Partial<MailedgeOptions> = {}): MailedgeTransporter {
  const t = createTransport({
    host: world.receiver.host,
    port: world.receiver.port,
    localAddress: '127.0.6.2',
    ignoreTLS: true,
    ...options,
    edge: { receiver: 'final', clock, checks: CHECKS_OFF, ...options.edge, dns: { servers: [world.ours.server], timeout: 2000 } },
  } as MailedgeOptions);
  world.transporters.push(t);
  return t;
}

const asked = (name: string, type = 'TXT'): number => world.ours.log.filter((q) => q.name.toLowerCase() === name && q.type === type).length;

/** The zone with s1._domainkey.<domain> publishing `text` instead. */
function withKeyRecord(domain: string, text: string): ResourceRecord[] {
  const owner = `s1._domainkey.${domain}`;
  const chunks = (text.match(/.{1,250}/g) ?? ['']).map((c) => `"${c}"`).join(' ');
  return [...world.records.filter((r) => r.name.toLowerCase() !== owner), ...parseZone(`${owner}. 300 IN TXT ${chunks}`)];
}

describe('the DNS cost of the message checks', () => {
  it('is one lookup per record and TTL, whatever the number of messages and their concurrency', async () => {
    const t = transport({ pool: true, maxConnections: 3, dkim: { domainName: 'aligned.test', keySelector: 's1', privateKey: KEY } } as Partial<MailedgeOptions>);
    const infos = await Promise.all(
      Array.from({ length: 30 }, (_, i) => t.sendMail({ from: 'news@aligned.test', to: 'user@rcpt.test', subject: `m${i}`, text: `body ${i}` })),
    );
    expect(infos.every((i) => i.authentication?.dmarc.result === 'pass' && i.authentication.dkim[0]?.result === 'pass')).toBe(true);
    expect(asked('_dmarc.aligned.test')).toBe(1);
    expect(asked('s1._domainkey.aligned.test')).toBe(1);
    expect(asked('aligned.test')).toBe(1);
    // Every message's own verdict at the receiver agrees.
    expect(world.receiver.sessions.flatMap((s) => s.authentication ?? []).map((a) => a.dmarc?.result)).toEqual(Array.from({ length: 30 }, () => 'pass'));
  });
});

describe('what is verified when', () => {
  it('reuses a DKIM verdict while its key record answer lives, and sees a rotated or revoked key once it expires', async () => {
    const t = transport({ edge: { checks: { ...CHECKS_OFF, authentication: 'warn' } } });
    const message = { from: 'a@spffail.test', to: 'user@rcpt.test', subject: 's', text: 'b', dkim: { domainName: 'spffail.test', keySelector: 's1', privateKey: KEY } };
    expect((await t.sendMail({ ...message })).authentication?.dkim[0]?.result).toBe('pass');

    // The domain publishes another key. Within the answer's TTL (300 s) mailedge still says what receivers with
    // the same cached answer say; the receiver here asks its own server afresh, and sees the new key at once.
    const otherKey = createPublicKey(OTHER).export({ type: 'spki', format: 'der' }).toString('base64');
    world.ours.setRecords(withKeyRecord('spffail.test', `v=DKIM1; k=rsa; p=${otherKey}`));
    world.theirs.setRecords(withKeyRecord('spffail.test', `v=DKIM1; k=rsa; p=${otherKey}`));
    now += 60_000;
    expect((await t.sendMail({ ...message })).authentication?.dkim[0]?.result).toBe('pass');
    expect(asked('s1._domainkey.spffail.test')).toBe(1);

    now += 300_000;
    const rotated = await t.sendMail({ ...message });
    expect(rotated.authentication?.dkim[0]?.result).toBe('fail');
    expect(rotated.authentication?.dmarc.result).toBe('fail');
    expect(world.receiver.sessions.flatMap((s) => s.authentication ?? []).at(-1)?.dkim[0]?.result).toBe('fail');

    // Revoked (empty p=): neutral, as mailauth writes it (RFC 6376 section 3.6.1 calls it a revoked key, a PERMFAIL).
    world.ours.setRecords(withKeyRecord('spffail.test', 'v=DKIM1; k=rsa; p='));
    world.theirs.setRecords(withKeyRecord('spffail.test', 'v=DKIM1; k=rsa; p='));
    now += 400_000;
    const revoked = await t.sendMail({ ...message });
    expect(revoked.authentication?.dkim[0]).toMatchObject({ result: 'neutral', domain: 'spffail.test', selector: 's1' });
    expect(world.receiver.sessions.flatMap((s) => s.authentication ?? []).at(-1)?.dkim[0]?.result).toBe('neutral');
  });

  it("keeps a message shape's verdict (the transport's signer) only while every answer behind it lives", async () => {
    // The identity's own dkim check (which would refuse a key record that no longer matches) is off: this is about the verdict.
    const t = transport({ dkim: { domainName: 'spffail.test', keySelector: 's1', privateKey: KEY }, edge: { checks: { ...CHECKS_OFF, dkim: 'off', authentication: 'warn' } } } as Partial<MailedgeOptions>);
    const send = (i: number) => t.sendMail({ from: 'a@spffail.test', to: 'user@rcpt.test', subject: `m${i}`, text: `body ${i}` });
    // The first renders and verifies, the second makes the shape, the third is judged from it.
    for (const i of [1, 2, 3]) expect((await send(i)).authentication?.dkim[0]?.result).toBe('pass');
    expect(asked('s1._domainkey.spffail.test')).toBe(1);

    const otherKey = createPublicKey(OTHER).export({ type: 'spki', format: 'der' }).toString('base64');
    world.ours.setRecords(withKeyRecord('spffail.test', `v=DKIM1; k=rsa; p=${otherKey}`));
    world.theirs.setRecords(withKeyRecord('spffail.test', `v=DKIM1; k=rsa; p=${otherKey}`));
    now += 60_000;
    expect((await send(4)).authentication?.dkim[0]?.result).toBe('pass');
    now += 300_000;
    const rotated = await send(5);
    expect(rotated.authentication?.dkim[0]?.result).toBe('fail');
    expect(rotated.authentication?.dmarc).toMatchObject({ result: 'fail', policy: 'reject' });
    expect(world.receiver.sessions.flatMap((s) => s.authentication ?? []).at(-1)?.dkim[0]?.result).toBe('fail');

    // The From domain's policy changes: seen once the DMARC answer the shape was made with expires.
    const policy = (text: string): ResourceRecord[] => [...withKeyRecord('spffail.test', `v=DKIM1; k=rsa; p=${otherKey}`).filter((r) => r.name.toLowerCase() !== '_dmarc.spffail.test'), ...parseZone(`_dmarc.spffail.test. 300 IN TXT "${text}"`)];
    world.ours.setRecords(policy('v=DMARC1; p=none'));
    now += 4_000_000;
    expect((await send(6)).authentication?.dmarc).toMatchObject({ result: 'fail', policy: 'none' });
  });

  it("keeps a passing verdict per edge only while the SPF answers behind it live, and hands each message its own copy", async () => {
    const t = transport();
    const send = (i: number) => t.sendMail({ from: 'news@aligned.test', to: 'user@rcpt.test', subject: `m${i}`, text: `body ${i}` });
    const first = await send(1);
    const second = await send(2);
    expect(second.authentication).toMatchObject({ spf: { result: 'pass' }, dmarc: { result: 'pass', alignedBy: 'spf' } });
    // A caller changing what it was handed changes nothing for the next message.
    (first.authentication as { dmarc: { result: string } }).dmarc.result = 'changed';
    (second.authentication as { spf: { result: string } }).spf.result = 'changed';
    const third = await send(3);
    expect(third.authentication).toMatchObject({ spf: { result: 'pass' }, dmarc: { result: 'pass' } });
    expect(third.authentication).not.toBe(second.authentication);

    // The domain stops authorising the edge: seen once the SPF answer expires, and then refused (p=reject: DMARC fails).
    world.ours.setRecords([...world.records.filter((r) => !(r.name.toLowerCase() === 'aligned.test' && r.type === 'TXT')), ...parseZone('aligned.test. 300 IN TXT "v=spf1 -all"')]);
    now += 4_000_000;
    await expect(send(4)).rejects.toMatchObject({ code: 'DMARC_FAIL', authentication: { spf: { result: 'fail' }, dmarc: { result: 'fail' } } });
  });

  it('verifies again in full when the signed header set changes', async () => {
    const t = transport();
    const dkim = { domainName: 'aligned.test', keySelector: 's1', privateKey: KEY };
    await t.sendMail({ from: 'news@aligned.test', to: 'user@rcpt.test', subject: 's', text: 'b', dkim });
    // Nodemailer signs List-Unsubscribe when present: a new shape, verified in full, still passing.
    const info = await t.sendMail({ from: 'news@aligned.test', to: 'user@rcpt.test', subject: 's', text: 'b', dkim, list: { unsubscribe: 'https://aligned.test/u' } });
    expect(info.authentication?.dkim[0]?.result).toBe('pass');
    expect(world.receiver.sessions.flatMap((s) => s.authentication ?? []).map((a) => a.dkim[0]?.result)).toEqual(['pass', 'pass']);
  });
});
