/**
 * Message identity (issue 11), end to end over real sockets: mailedge's
 * predicted SPF x DKIM x DMARC verdict equals what a receiver computes on its
 * own (mailauth's authenticate() over node:dns, with the client address, EHLO
 * and MAIL FROM it saw), and both equal what the RFCs say for each case: the
 * receiver shares mailauth with the prediction, so the RFC result is asserted
 * separately. Each case is sent with the check at 'warn' (so the receiver sees
 * it), then at its default 'enforce' where it must be refused before connecting.
 */
import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { startReceiver, type ReceivedAuthentication, type Receiver } from '../src/testing/receiver.js';
import { createTransport, type MailedgeTransporter } from '../src/create-transport.js';
import { EdgeRefusedError } from '../src/errors.js';
import type { MailedgeOptions } from '../src/options.js';
import type { Authentication } from '../src/message/verdict.js';

const KEY = readFileSync(new URL('../fixtures/dkim/brand-s1.pem', import.meta.url), 'utf8');
const ENVELOPE_CHECKS_OFF = { spf: 'off', 'sender-mx': 'off', dmarc: 'off', 'recipient-null-mx': 'off' } as const;

let dns: FixtureDnsServer;
let final: Receiver;
let strictReceiver: Receiver;
const transporters: MailedgeTransporter[] = [];

beforeAll(async () => {
  dns = await startDnsServer({ host: '127.0.6.53', zoneFiles: [new URL('../fixtures/zones/auth.zone', import.meta.url).pathname] });
  final = await startReceiver({ host: '127.0.6.20', dnsServer: dns.server, authentication: 'record' });
  strictReceiver = await startReceiver({ host: '127.0.6.21', dnsServer: dns.server, authentication: 'strict' });
});
afterEach(() => {
  for (const t of transporters.splice(0)) t.close();
  final.reset();
  strictReceiver.reset();
});
afterAll(async () => {
  await final.close();
  await strictReceiver.close();
  await dns.close();
});

function transport(options: Partial<MailedgeOptions> & { dkim?: unknown } = {}, receiver: Receiver = final): MailedgeTransporter {
  const t = createTransport({
    host: receiver.host,
    port: receiver.port,
    localAddress: '127.0.6.2',
    ignoreTLS: true,
    ...options,
    edge: { receiver: 'final', ...options.edge, checks: { ...ENVELOPE_CHECKS_OFF, ...options.edge?.checks }, dns: { servers: [dns.server], timeout: 2000, ...options.edge?.dns } },
  } as MailedgeOptions);
  transporters.push(t);
  return t;
}

const sign = (domainName: string, keySelector = 's1') => ({ domainName, keySelector, privateKey: KEY });

function lastVerdict(receiver: Receiver = final): ReceivedAuthentication {
  const all = receiver.sessions.flatMap((s) => s.authentication ?? []);
  const last = all[all.length - 1];
  if (!last) throw new Error('the receiver computed no verdict');
  return last;
}

/** mailedge's prediction, field by field, against the receiver's own verdict. */
function expectSameVerdict(predicted: Authentication | undefined, received: ReceivedAuthentication, departs?: Case['receiverDeparts']): void {
  expect(predicted).toBeDefined();
  const p = predicted as Authentication;
  expect(p.spf.result).toBe(received.spf?.result ?? null);
  expect(p.spf.domain).toBe(received.spf?.domain);
  expect(p.dkim.map((d) => [d.result, d.domain, d.selector])).toEqual(received.dkim.map((d) => [d.result, d.domain, d.selector]));
  if (departs) {
    expect(received.dmarc?.result).toBe(departs.dmarc);
    return;
  }
  expect(p.dmarc.result).toBe(received.dmarc?.result);
  // mailauth reports the policy only when a record was found.
  if (p.dmarc.result !== 'none') expect(p.dmarc.policy).toBe(received.dmarc?.policy);
}

interface Case {
  name: string;
  message: Record<string, unknown>;
  /** The RFC-expected verdict: SPF (RFC 7208), DKIM per signature (RFC 6376 / 8601), DMARC (RFC 7489) and the policy that applies. */
  rfc: { spf: string; dkim: string[]; dmarc: string; policy: string | null; alignedBy: 'dkim' | 'spf' | null };
  /** The check's outcome at its default severity: a refusal code, a warning code, or null for a clean pass. */
  refused?: string;
  warned?: string;
  /** Where mailauth (the test receiver) departs from the RFC, and why: the prediction follows the RFC. */
  receiverDeparts?: { dmarc: string; why: string };
}

const CASES: Case[] = [
  {
    name: 'aligned SPF and DKIM',
    message: { from: 'news@aligned.test', to: 'user@rcpt.test', dkim: sign('aligned.test') },
    rfc: { spf: 'pass', dkim: ['pass'], dmarc: 'pass', policy: 'reject', alignedBy: 'dkim' },
  },
  {
    name: 'an ESP envelope with a brand From and no DKIM, under p=reject',
    message: { from: 'news@brand.test', to: 'user@rcpt.test', envelope: { from: 'bounce@esp.test', to: 'user@rcpt.test' } },
    rfc: { spf: 'pass', dkim: [], dmarc: 'fail', policy: 'reject', alignedBy: null },
    refused: 'DMARC_FAIL',
  },
  {
    name: 'DKIM by an unrelated domain with aligned SPF',
    message: { from: 'news@spfonly.test', to: 'user@rcpt.test', dkim: sign('esp.test') },
    rfc: { spf: 'pass', dkim: ['pass'], dmarc: 'pass', policy: 'reject', alignedBy: 'spf' },
  },
  {
    name: 'a DNS key that does not match the signing key (no SPF, p=none)',
    message: { from: 'news@mismatch.test', to: 'user@rcpt.test', dkim: sign('mismatch.test') },
    rfc: { spf: 'none', dkim: ['fail'], dmarc: 'fail', policy: 'none', alignedBy: null },
    refused: 'SENDER_UNAUTHENTICATED',
  },
  {
    name: 'relaxed alignment: DKIM d=relaxed.test for From news.relaxed.test',
    message: { from: 'a@news.relaxed.test', to: 'user@rcpt.test', envelope: { from: 'bounce@esp.test', to: 'user@rcpt.test' }, dkim: sign('relaxed.test') },
    rfc: { spf: 'pass', dkim: ['pass'], dmarc: 'pass', policy: 'reject', alignedBy: 'dkim' },
  },
  {
    name: 'strict alignment (adkim=s, aspf=s): the same shape fails',
    message: { from: 'a@news.strict.test', to: 'user@rcpt.test', envelope: { from: 'bounce@strict.test', to: 'user@rcpt.test' }, dkim: sign('strict.test') },
    rfc: { spf: 'pass', dkim: ['pass'], dmarc: 'fail', policy: 'reject', alignedBy: null },
    refused: 'DMARC_FAIL',
    // RFC 7489 section 3.1.1: strict alignment is an exact match of the domains. mailauth 4.13's
    // getAlignment() checks the exact match, then falls through to the organisational-domain match.
    receiverDeparts: { dmarc: 'pass', why: 'mailauth 4.13 applies relaxed alignment under adkim=s / aspf=s' },
  },
  {
    name: 'no DMARC record',
    message: { from: 'a@nodmarc.test', to: 'user@rcpt.test' },
    rfc: { spf: 'pass', dkim: [], dmarc: 'none', policy: null, alignedBy: null },
    warned: 'DMARC_MISSING',
  },
  {
    name: 'SPF permerror: a syntax error',
    message: { from: 'a@permsyntax.test', to: 'user@rcpt.test' },
    rfc: { spf: 'permerror', dkim: [], dmarc: 'fail', policy: 'none', alignedBy: null },
    refused: 'SENDER_UNAUTHENTICATED',
  },
  {
    name: 'SPF permerror: two v=spf1 records',
    message: { from: 'a@permtwo.test', to: 'user@rcpt.test' },
    rfc: { spf: 'permerror', dkim: [], dmarc: 'fail', policy: 'none', alignedBy: null },
    refused: 'SENDER_UNAUTHENTICATED',
  },
  {
    name: 'SPF permerror: more than 10 DNS-querying terms',
    message: { from: 'a@permlookups.test', to: 'user@rcpt.test' },
    rfc: { spf: 'permerror', dkim: [], dmarc: 'fail', policy: 'none', alignedBy: null },
    refused: 'SENDER_UNAUTHENTICATED',
  },
  {
    name: "the organisational domain's sp=reject applies to a subdomain",
    message: { from: 'a@mail.orgsp.test', to: 'user@rcpt.test', envelope: { from: 'bounce@esp.test', to: 'user@rcpt.test' } },
    rfc: { spf: 'pass', dkim: [], dmarc: 'fail', policy: 'reject', alignedBy: null },
    refused: 'DMARC_FAIL',
  },
  {
    name: "the organisational domain itself gets p=none: a failure is a warning",
    message: { from: 'a@orgsp.test', to: 'user@rcpt.test', envelope: { from: 'bounce@esp.test', to: 'user@rcpt.test' } },
    rfc: { spf: 'pass', dkim: [], dmarc: 'fail', policy: 'none', alignedBy: null },
    warned: 'DMARC_FAIL_MONITORED',
  },
  {
    name: 'SPF fail with an aligned DKIM pass',
    message: { from: 'a@spffail.test', to: 'user@rcpt.test', dkim: sign('spffail.test') },
    rfc: { spf: 'fail', dkim: ['pass'], dmarc: 'pass', policy: 'reject', alignedBy: 'dkim' },
  },
  {
    name: 'a selector with no key record (aligned SPF passes)',
    message: { from: 'a@nokey.test', to: 'user@rcpt.test', dkim: sign('nokey.test', 'missing') },
    rfc: { spf: 'pass', dkim: ['neutral'], dmarc: 'pass', policy: 'quarantine', alignedBy: 'spf' },
    warned: 'DKIM_SIGNATURE_FAIL',
  },
  {
    name: 'a key in testing (t=y): reported pass, with a warning',
    message: { from: 'a@testing.test', to: 'user@rcpt.test', dkim: sign('testing.test') },
    rfc: { spf: 'fail', dkim: ['pass'], dmarc: 'pass', policy: 'none', alignedBy: 'dkim' },
    warned: 'DKIM_TESTING',
  },
];

describe('the predicted verdict equals the final receiver\'s, and the RFC\'s', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const warnings: string[] = [];
      const t = transport({ edge: { checks: { authentication: 'warn' } } });
      t.on('warning', (w: { code: string }) => warnings.push(w.code));
      const info = await t.sendMail({ subject: c.name, text: 'body', ...c.message });
      const auth = info.authentication;
      expectSameVerdict(auth, lastVerdict(), c.receiverDeparts);
      expect({
        spf: auth?.spf.result,
        dkim: auth?.dkim.map((d) => d.result),
        dmarc: auth?.dmarc.result,
        policy: auth?.dmarc.policy,
        alignedBy: auth?.dmarc.alignedBy,
      }).toEqual(c.rfc);
      expect(auth?.header).toContain(`dmarc=${c.rfc.dmarc}`);

      // At its default severity.
      final.reset();
      const enforced = transport();
      const enforcedWarnings: string[] = [];
      enforced.on('warning', (w: { code: string }) => enforcedWarnings.push(w.code));
      const message = { subject: c.name, text: 'body', ...c.message };
      if (c.refused) {
        const err = await enforced.sendMail(message).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(EdgeRefusedError);
        expect(err).toMatchObject({ code: c.refused, permanent: true, mail: message });
        expect((err as { authentication?: Authentication }).authentication).toEqual(auth);
        expect(final.connections).toBe(0);
      } else {
        const sent = await enforced.sendMail(message);
        expect(sent.authentication).toEqual(auth);
        if (c.warned) expect(enforcedWarnings).toContain(c.warned);
        else expect(enforcedWarnings).toEqual([]);
      }
    });
  }
});

describe('which receiver', () => {
  it('through a relay (the default for host): SPF is decided downstream, DMARC passes by aligned DKIM', async () => {
    const t = transport({ edge: { receiver: 'relay' }, dkim: sign('aligned.test') });
    const info = await t.sendMail({ from: 'news@aligned.test', to: 'user@rcpt.test', subject: 's', text: 'b' });
    expect(info.authentication?.spf).toMatchObject({ result: null, domain: 'aligned.test' });
    expect(info.authentication?.spf.reason).toMatch(/decided downstream/);
    expect(info.authentication?.dmarc).toMatchObject({ result: 'pass', alignedBy: 'dkim', policy: 'reject' });
    expect(info.authentication?.header).not.toContain('spf=');
  });

  it('through a relay, a DMARC failure only the relay\'s SPF could rescue is a warning, not a refusal', async () => {
    const t = transport({ edge: { receiver: 'relay' } });
    const warnings: string[] = [];
    t.on('warning', (w: { code: string }) => warnings.push(w.code));
    const info = await t.sendMail({ from: 'news@brand.test', to: 'user@rcpt.test', envelope: { from: 'bounce@esp.test', to: 'user@rcpt.test' }, subject: 's', text: 'b' });
    expect(info.authentication?.dmarc).toMatchObject({ result: null, policy: 'reject', alignedBy: null });
    expect(info.authentication?.dmarc.reason).toMatch(/relay/);
    expect(warnings).toContain('AUTH_DOWNSTREAM');
  });

  it("a strict receiver rejects what mailedge lets through with the check off, and mailedge refuses it first when on", async () => {
    const message = { from: 'news@brand.test', to: 'user@rcpt.test', envelope: { from: 'bounce@esp.test', to: 'user@rcpt.test' }, subject: 's', text: 'b' };
    const off = transport({ edge: { checks: { authentication: 'off' } } }, strictReceiver);
    const err = await off.sendMail({ ...message }).catch((e: unknown) => e);
    expect(err).toMatchObject({ responseCode: 550 });
    expect(String((err as Error).message)).toMatch(/5\.7\.26/);
    strictReceiver.reset();
    const on = transport({}, strictReceiver);
    await expect(on.sendMail({ ...message })).rejects.toMatchObject({ code: 'DMARC_FAIL' });
    expect(strictReceiver.connections).toBe(0);
  });

  it('an IP pool: each message\'s verdict is for the member it actually left from', async () => {
    const t = transport({ localAddress: undefined, edge: { pool: [{ localAddress: '127.0.6.2' }, { localAddress: '127.0.6.3' }], checks: { authentication: 'warn' } }, dkim: sign('aligned.test') });
    const infos = [];
    for (let i = 0; i < 2; i++) infos.push(await t.sendMail({ from: 'news@aligned.test', to: 'user@rcpt.test', subject: `m${i}`, text: 'b' }));
    const byAddress = new Map(infos.map((info) => [info.edge.address, info.authentication?.spf.result]));
    // aligned.test authorises 127.0.6.2 only; the aligned DKIM signature carries DMARC for both.
    expect(Object.fromEntries(byAddress)).toEqual({ '127.0.6.2': 'pass', '127.0.6.3': 'fail' });
    expect(infos.map((i) => i.authentication?.dmarc.result)).toEqual(['pass', 'pass']);
    const received = final.sessions.flatMap((s) => (s.authentication ?? []).map((a) => [s.clientAddress, a.spf?.result]));
    expect(Object.fromEntries(received)).toEqual({ '127.0.6.2': 'pass', '127.0.6.3': 'fail' });
  });

  it('the null sender: SPF of the EHLO name', async () => {
    const t = transport({ dkim: sign('aligned.test') });
    const info = await t.sendMail({ from: 'news@aligned.test', to: 'user@rcpt.test', envelope: { from: '', to: 'user@rcpt.test' }, subject: 's', text: 'b' });
    expect(info.authentication?.spf).toMatchObject({ result: 'pass', domain: 'mail.edge.test' });
    expect(info.authentication?.header).toContain('smtp.helo=mail.edge.test');
    expectSameVerdict(info.authentication, lastVerdict());
  });

  it('direct delivery predicts per domain, for the route each domain took', async () => {
    const t = createTransport({
      direct: true,
      localAddress: '127.0.6.2',
      ignoreTLS: true,
      dkim: sign('aligned.test'),
      edge: { mxPort: final.port, checks: ENVELOPE_CHECKS_OFF, dns: { servers: [dns.server], timeout: 2000 } },
    } as MailedgeOptions);
    transporters.push(t);
    const info = (await t.sendMail({ from: 'news@aligned.test', to: 'user@rcpt.test', subject: 's', text: 'b' })) as unknown as { authentication?: Authentication; domains: Array<{ authentication?: Authentication }> };
    expect(info.domains[0]?.authentication).toMatchObject({ spf: { result: 'pass' }, dmarc: { result: 'pass', alignedBy: 'dkim' } });
    expect(info.authentication).toEqual(info.domains[0]?.authentication);
    expectSameVerdict(info.authentication, lastVerdict());
  });
});

describe('the message as received', () => {
  it('sends the exact bytes it verified: a stream attachment is read once', async () => {
    const { Readable } = await import('node:stream');
    let reads = 0;
    const content = new Readable({ read() { reads++; this.push('attachment body'); this.push(null); } });
    const t = transport({ dkim: sign('aligned.test') });
    const info = await t.sendMail({ from: 'news@aligned.test', to: 'user@rcpt.test', subject: 's', text: 'b', attachments: [{ filename: 'a.txt', content }] });
    expect(info.authentication?.dkim[0]?.result).toBe('pass');
    expect(lastVerdict().dkim[0]?.result).toBe('pass');
    expect(reads).toBe(1);
    expect(final.sessions.flatMap((s) => s.messages)[0]?.data).toContain(Buffer.from('attachment body').toString('base64'));
  });

  it('refuses a message with two From addresses (FROM_INVALID)', async () => {
    const t = transport({ dkim: sign('aligned.test') });
    await expect(t.sendMail({ from: ['a@aligned.test', 'b@aligned.test'], to: 'user@rcpt.test', subject: 's', text: 'b' } as never)).rejects.toMatchObject({ code: 'FROM_INVALID', permanent: true });
  });

  it('bulk: a DKIM-covered one-click unsubscribe is required', async () => {
    const t = transport({ edge: { requirements: 'bulk' }, dkim: sign('aligned.test') });
    const message = { from: 'news@aligned.test', to: 'user@rcpt.test', subject: 's', text: 'b' };
    await expect(t.sendMail({ ...message })).rejects.toMatchObject({ code: 'BULK_UNSUBSCRIBE_REQUIRED' });
    const info = await t.sendMail({ ...message, list: { unsubscribe: { url: 'https://aligned.test/u?x=1' } }, headers: { 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' } });
    expect(info.authentication?.dmarc.result).toBe('pass');
  });

  it('bulk: SPF and DKIM must both pass', async () => {
    const t = transport({ edge: { requirements: 'bulk' } });
    await expect(t.sendMail({ from: 'news@nodmarc.test', to: 'user@rcpt.test', subject: 's', text: 'b' })).rejects.toMatchObject({ code: 'BULK_DKIM_REQUIRED' });
  });
});
