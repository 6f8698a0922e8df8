/**
 * Issue 4 wired in, end to end against the fixture DNS server and real
 * receivers: edge.checks severities in preflight and in front of sending, a
 * null-MX recipient refused before any connection, warnings emitted once per
 * cache period, and warn-level checks that never hold a send.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { useWorld, MESSAGE } from './support/world.js';
import { EdgeRefusedError, InvalidOptionError, PreflightFailedError } from '../src/errors.js';
import { preflight } from '../src/preflight.js';
import { createTransport } from '../src/create-transport.js';
import { type MailedgeWarning } from '../src/routes/route.js';
import { waitFor } from '../src/testing/receiver.js';
import type { MailedgeOptions } from '../src/options.js';
import type { CheckResult } from '../src/checks/types.js';

const world = useWorld();

const edgeOptions = (local: string, edge: MailedgeOptions['edge'] = {}): MailedgeOptions => ({
  host: 'plain.relay.test',
  port: world.plain.port,
  localAddress: local,
  // The plain relay plays the final receiver here: only then is SPF judged on the edge address (issue 11).
  edge: { receiver: 'final', ...edge, dns: { servers: [world.dns.server], timeout: 2000, ...edge.dns } },
});

/** A transport to the accept-everything receiver, recording its warnings. */
function viaPlain(local = '127.0.0.2', edge: MailedgeOptions['edge'] = {}) {
  // The plain relay plays the final receiver here: only then is SPF judged on the edge address (issue 11).
  // The message's own authentication check (its own tests: authentication.e2e) is off: these tests are about the envelope.
  const transport = world.transport({ host: 'plain.relay.test', port: world.plain.port, localAddress: local, edge: { receiver: 'final', ...edge, checks: { authentication: 'off', ...edge.checks } } });
  const warnings: MailedgeWarning[] = [];
  transport.on('warning', (w: MailedgeWarning) => warnings.push(w));
  return { transport, warnings };
}

function find(checks: readonly CheckResult[], id: string, domain?: string): CheckResult | undefined {
  return checks.find((c) => c.id === id && (domain === undefined || c.domain === domain));
}

describe('preflight with from and to', () => {
  it('adds the sender- and recipient-side checks, each with its id, domain and severity', async () => {
    const report = await preflight(edgeOptions('127.0.0.2'), { from: 'App <app@sender.test>', to: ['someone@example.test', 'other@example.test'] });
    expect(report.ok).toBe(true);
    expect(report.checks.map((c) => [c.id, c.status, c.severity, c.domain])).toEqual([
      ['destination', 'pass', 'enforce', undefined],
      ['edge-address', 'pass', 'enforce', undefined],
      ['ptr', 'pass', 'enforce', undefined],
      ['fcrdns', 'pass', 'enforce', undefined],
      ['ehlo-name', 'pass', 'enforce', undefined],
      ['ehlo-syntax', 'pass', 'enforce', undefined],
      ['generic-ptr', 'pass', 'warn', undefined],
      ['spf', 'pass', 'warn', 'sender.test'],
      ['sender-mx', 'pass', 'warn', 'sender.test'],
      ['dmarc', 'pass', 'warn', 'sender.test'],
      // One check per recipient domain, however many recipients share it.
      ['recipient-null-mx', 'pass', 'enforce', 'example.test'],
    ]);
    expect(find(report.checks, 'spf')?.evidence).toContain('dig +short TXT sender.test → "v=spf1 ip4:127.0.0.0/8 ip6:::1/128 -all"');
  });

  it('keeps transport.preflight() to the edge alone', async () => {
    const report = await world.transport(edgeOptions('127.0.0.2')).preflight();
    expect(report.checks.map((c) => c.id)).toEqual(['destination', 'edge-address', 'ptr', 'fcrdns', 'ehlo-name', 'ehlo-syntax', 'generic-ptr']);
  });

  it('fails on a null-MX recipient (enforced by default), and throws with the report when asked', async () => {
    const call = { from: 'app@sender.test', to: ['someone@example.test', 'nobody@nullmx.example.test'] };
    const report = await preflight(edgeOptions('127.0.0.2'), call);
    expect(report.ok).toBe(false);
    expect(find(report.checks, 'recipient-null-mx', 'nullmx.example.test')).toMatchObject({ status: 'fail', severity: 'enforce', code: 'RECIPIENT_NULL_MX' });
    expect(find(report.checks, 'recipient-null-mx', 'example.test')).toMatchObject({ status: 'pass' });
    const err = await preflight(edgeOptions('127.0.0.2'), { ...call, throwOnFailure: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PreflightFailedError);
    expect(err).toMatchObject({ code: 'PREFLIGHT_FAILED', permanent: true, report: { ok: false } });
    expect((err as PreflightFailedError).message).toContain('recipient-null-mx (RECIPIENT_NULL_MX)');
  });

  it.each([
    ['warn', true, 'fail'],
    ['enforce', false, 'fail'],
    ['off', true, undefined],
  ] as const)('recipient-null-mx set to %s: ok is %s', async (setting, ok, status) => {
    const report = await preflight(edgeOptions('127.0.0.2', { checks: { 'recipient-null-mx': setting } }), { to: 'nobody@nullmx.example.test' });
    expect(report.ok).toBe(ok);
    expect(find(report.checks, 'recipient-null-mx')?.status).toBe(status);
  });

  it.each([
    [undefined, true],
    ['warn', true],
    ['enforce', false],
  ] as const)('a failing SPF record with spf set to %s: ok is %s', async (setting, ok) => {
    const edge = setting ? { checks: { spf: setting } } : {};
    const report = await preflight(edgeOptions('127.0.0.2', edge), { from: 'app@fail.sender.test' });
    expect(report.ok).toBe(ok);
    expect(find(report.checks, 'spf')).toMatchObject({ status: 'fail', code: 'SPF_FAIL', severity: setting ?? 'warn', domain: 'fail.sender.test' });
    const exit = await preflight(edgeOptions('127.0.0.2', edge), { from: 'app@fail.sender.test', throwOnFailure: true }).then(
      () => 'resolved',
      (e: unknown) => (e as PreflightFailedError).code,
    );
    expect(exit).toBe(ok ? 'resolved' : 'PREFLIGHT_FAILED');
  });

  it('checks the null sender against the EHLO name, and skips what needs a sender domain', async () => {
    const report = await preflight(edgeOptions('127.0.0.2'), { from: '<>' });
    expect(find(report.checks, 'spf')).toMatchObject({ domain: 'mail.good.test' });
    expect(find(report.checks, 'sender-mx')).toMatchObject({ status: 'skip' });
    expect(find(report.checks, 'dmarc')).toMatchObject({ status: 'skip' });
  });

  it('runs generic-ptr on the confirmed name: a warning, which the allow-list lifts and no setting turns into a failure', async () => {
    const report = await preflight(edgeOptions('127.0.0.13'));
    expect(report.ok).toBe(true);
    expect(find(report.checks, 'generic-ptr')).toMatchObject({ status: 'warn', code: 'PTR_GENERIC', severity: 'warn' });
    const allowed = await preflight(edgeOptions('127.0.0.13', { genericPtrAllow: ['.isp.test'] }));
    expect(find(allowed.checks, 'generic-ptr')).toMatchObject({ status: 'pass' });
    const enforced = await preflight(edgeOptions('127.0.0.13', { checks: { 'generic-ptr': 'enforce' } }));
    expect(enforced.ok).toBe(true);
    const off = await preflight(edgeOptions('127.0.0.13', { checks: { 'generic-ptr': 'off', 'ehlo-syntax': 'off' } }));
    expect(off.checks.map((c) => c.id)).toEqual(['destination', 'edge-address', 'ptr', 'fcrdns', 'ehlo-name']);
  });

  it('in warn mode the FCrDNS side is warn-level: ok, but nothing confirmed, and EHLO judged on the address literal', async () => {
    const report = await preflight(edgeOptions('127.0.0.3', { mode: 'warn' }));
    expect(report.ok).toBe(true);
    expect(report.name).toBeNull();
    expect(find(report.checks, 'fcrdns')).toMatchObject({ status: 'fail', severity: 'warn' });
    expect(find(report.checks, 'ehlo-syntax')).toMatchObject({ status: 'warn', code: 'EHLO_ADDRESS_LITERAL', severity: 'enforce' });
  });

  it('rejects unusable call options', async () => {
    await expect(preflight(edgeOptions('127.0.0.2'), { to: [42] as unknown as string[] })).rejects.toMatchObject({ code: 'INVALID_OPTION', option: 'to' });
  });
});

describe('edge.checks and edge.genericPtrAllow are validated at construction', () => {
  it.each([
    [{ checks: { spf: 'strict' } }, 'edge.checks.spf'],
    [{ checks: { bogus: 'warn' } }, 'edge.checks.bogus'],
    [{ checks: { fcrdns: 'off' } }, 'edge.checks.fcrdns'],
    [{ checks: 'all' }, 'edge.checks'],
    [{ genericPtrAllow: 'mail.example.com' }, 'edge.genericPtrAllow'],
    [{ genericPtrAllow: ['ok.example.com', ''] }, 'edge.genericPtrAllow[1]'],
  ])('rejects %j naming %s', (edge, option) => {
    let caught: unknown;
    try {
      createTransport({ localAddress: '127.0.0.2', edge: edge as never });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidOptionError);
    expect((caught as InvalidOptionError).option).toBe(option);
  });
});

describe('in front of sending', () => {
  it('refuses a null-MX recipient before connecting, and delivers to the others', async () => {
    const { transport, warnings } = viaPlain();
    const message = { ...MESSAGE, to: 'someone@example.test, nobody@nullmx.example.test', cc: 'again@nullmx.example.test' };
    const info = await transport.sendMail(message);
    expect(info.accepted).toEqual(['someone@example.test']);
    expect(info.rejected).toEqual(['nobody@nullmx.example.test', 'again@nullmx.example.test']);
    expect(info.rejectedErrors?.map((e) => [e.code, e.recipient, e.permanent])).toEqual([
      ['RECIPIENT_NULL_MX', 'nobody@nullmx.example.test', true],
      ['RECIPIENT_NULL_MX', 'again@nullmx.example.test', true],
    ]);
    const received = world.plain.sessions.flatMap((s) => s.messages);
    expect(received).toHaveLength(1);
    // RCPT TO went only to the deliverable recipient; the headers still name everyone.
    expect(received[0]?.to).toEqual(['someone@example.test']);
    expect(received[0]?.data).toContain('nobody@nullmx.example.test');
    expect(warnings).toEqual([]);
    // One MX lookup per recipient domain, none of any host over SMTP.
    expect(world.dns.log.filter((q) => q.type === 'MX' && q.name.endsWith('example.test')).map((q) => q.name).sort()).toEqual(['example.test', 'nullmx.example.test']);
  });

  it('refuses the message when every recipient is at a null-MX domain, with the message and no connection', async () => {
    const { transport } = viaPlain();
    const message = { ...MESSAGE, to: 'nobody@nullmx.example.test', bcc: ['Else <else@nullmx.example.test>'] };
    const err = await transport.sendMail(message).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EdgeRefusedError);
    const refusal = err as EdgeRefusedError;
    expect(refusal).toMatchObject({ code: 'RECIPIENT_NULL_MX', permanent: true, recipients: ['nobody@nullmx.example.test', 'else@nullmx.example.test'] });
    expect(refusal.mail).toBe(message);
    expect(refusal.message).toContain('nullmx.example.test publishes a null MX');
    expect(refusal.evidence).toEqual(['dig +short MX nullmx.example.test → 0 .']);
    expect(refusal.report.ok).toBe(false);
    expect(find(refusal.report.checks, 'recipient-null-mx')?.code).toBe('RECIPIENT_NULL_MX');
    expect(world.plain.connections).toBe(0);
  });

  it('follows an explicit envelope, as Nodemailer does', async () => {
    const { transport } = viaPlain();
    const info = await transport.sendMail({ ...MESSAGE, envelope: { from: 'bounces@sender.test', to: ['someone@example.test', 'x@nullmx.example.test'] } });
    expect(info.rejected).toEqual(['x@nullmx.example.test']);
    expect(world.plain.sessions.flatMap((s) => s.messages)[0]).toMatchObject({ from: 'bounces@sender.test', to: ['someone@example.test'] });
  });

  it('with recipient-null-mx at warn, delivers anyway and warns once', async () => {
    const { transport, warnings } = viaPlain('127.0.0.2', { checks: { 'recipient-null-mx': 'warn' } });
    await transport.sendMail({ ...MESSAGE, to: 'nobody@nullmx.example.test' });
    await transport.sendMail({ ...MESSAGE, to: 'nobody@nullmx.example.test' });
    await waitFor(() => warnings.length > 0);
    expect(world.plain.messages).toBe(2);
    expect(warnings.map((w) => [w.code, w.check?.domain, w.check?.severity])).toEqual([['RECIPIENT_NULL_MX', 'nullmx.example.test', 'warn']]);
  });

  it('with recipient-null-mx off, does not look recipients up at all', async () => {
    const { transport } = viaPlain('127.0.0.2', { checks: { 'recipient-null-mx': 'off', spf: 'off', 'sender-mx': 'off', dmarc: 'off' } });
    const info = await transport.sendMail({ ...MESSAGE, to: 'nobody@nullmx.example.test' });
    expect(info.accepted).toEqual(['nobody@nullmx.example.test']);
    expect(world.dns.log.filter((q) => q.type === 'MX')).toEqual([]);
  });

  it('refuses a failing SPF record only when spf is enforced; by default it sends and warns', async () => {
    const enforced = viaPlain('127.0.0.2', { checks: { spf: 'enforce' } });
    const message = { ...MESSAGE, from: 'app@fail.sender.test' };
    const err = await enforced.transport.sendMail(message).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EdgeRefusedError);
    expect(err).toMatchObject({ code: 'SPF_FAIL', permanent: true, mail: message });
    expect(world.plain.connections).toBe(0);

    const byDefault = viaPlain();
    const info = await byDefault.transport.sendMail({ ...message });
    expect(info.accepted).toEqual(['someone@example.test']);
    await waitFor(() => byDefault.warnings.length > 0);
    expect(byDefault.warnings.map((w) => [w.code, w.check?.id, w.check?.status, w.check?.domain])).toEqual([['SPF_FAIL', 'spf', 'fail', 'fail.sender.test']]);
  });

  it('emits each warning once per (check, domain, code) and cache period', async () => {
    const clock = { t: 1_000_000, now: () => clock.t };
    const { transport, warnings } = viaPlain('127.0.0.2', { clock });
    const message = { ...MESSAGE, from: 'app@lax.test', to: 'someone@example.test, other@example.test' };
    for (let i = 0; i < 3; i++) await transport.sendMail({ ...message, subject: `m${i}` });
    const expected = ['DMARC_MISSING', 'SENDER_IMPLICIT_MX', 'SPF_NONE'];
    await waitFor(() => warnings.length >= 3);
    expect(warnings.map((w) => w.code).sort()).toEqual(expected);
    expect(warnings.every((w) => w.check?.domain === 'lax.test' && w.report.name === 'mail.good.test')).toBe(true);

    // Still within edge.dns.minTtl (30 s): nothing new.
    clock.t += 29_000;
    await transport.sendMail({ ...message });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(warnings).toHaveLength(3);
    // Past it: the checks run again, and say so again, once.
    clock.t += 2_000;
    await transport.sendMail({ ...message });
    await transport.sendMail({ ...message });
    await waitFor(() => warnings.length >= 6);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(warnings.slice(3).map((w) => w.code).sort()).toEqual(expected);
  });

  it('never waits for the warn-level checks, nor fails because of them', async () => {
    // Slow, but within each query's share of the deadline (timeout / 2): the checks do complete.
    world.dns.setFault('lax.test', { delayMs: 2000 });
    world.dns.setFault('_dmarc.lax.test', { delayMs: 2000 });
    // The enforced authentication check does wait for the From domain's DMARC record: off, for this test's point.
    const { transport, warnings } = viaPlain('127.0.0.2', { dns: { timeout: 6000 }, checks: { authentication: 'off' } });
    // A warning listener that throws must not become an unhandled rejection of a send already done.
    transport.on('warning', () => {
      throw new Error('a broken warning listener');
    });
    const started = Date.now();
    const info = await transport.sendMail({ ...MESSAGE, from: 'app@lax.test' });
    expect(Date.now() - started).toBeLessThan(1500);
    expect(info.accepted).toEqual(['someone@example.test']);
    expect(warnings).toEqual([]);
    await waitFor(() => warnings.length >= 3, 8000);
    expect(warnings.map((w) => w.code).sort()).toEqual(['DMARC_MISSING', 'SENDER_IMPLICIT_MX', 'SPF_NONE']);
  });

  it('lets a recipient through when its lookup fails only temporarily: the relay decides', async () => {
    world.dns.setFault('nullmx.example.test', { rcode: 'SERVFAIL' });
    const { transport } = viaPlain();
    const info = await transport.sendMail({ ...MESSAGE, to: 'nobody@nullmx.example.test' });
    expect(info.accepted).toEqual(['nobody@nullmx.example.test']);
  });

  it('checks nothing about the envelope when the edge is refused', async () => {
    const { transport } = viaPlain('127.0.0.4');
    await expect(transport.sendMail({ ...MESSAGE, to: 'nobody@nullmx.example.test' })).rejects.toMatchObject({ code: 'PTR_MISSING' });
    expect(world.dns.log.filter((q) => q.type === 'MX' || q.type === 'TXT')).toEqual([]);
  });

  it('holds a send on an enforced identity-level check even in warn mode, which only governs the FCrDNS side', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const dkim = { domainName: 'sender.test', keySelector: 'unpublished', privateKey: pem };
    const options = { host: 'plain.relay.test', port: world.plain.port, localAddress: '127.0.0.2', dkim };
    const strictDkim = world.transport({ ...options, edge: { mode: 'warn' } });
    await expect(strictDkim.sendMail({ ...MESSAGE })).rejects.toMatchObject({ code: 'DKIM_KEY_MISSING', permanent: true });
    expect(world.plain.connections).toBe(0);

    const lenient = world.transport({ ...options, edge: { checks: { dkim: 'warn' } } });
    const warnings: MailedgeWarning[] = [];
    lenient.on('warning', (w: MailedgeWarning) => warnings.push(w));
    await lenient.sendMail({ ...MESSAGE });
    expect(warnings.map((w) => w.code)).toEqual(['DKIM_KEY_MISSING']);
    const report = await lenient.preflight();
    expect(report.checks.find((c) => c.id === 'dkim')).toMatchObject({ status: 'fail', severity: 'warn' });
    // The key the hint offers to publish is the public one; the private key never shows.
    const secret = pem.split('\n').slice(1, -2).join('');
    expect(JSON.stringify(report)).not.toContain(secret.slice(0, 40));
  });

  it('warns about a generic PTR name when sending, and sends', async () => {
    const { transport, warnings } = viaPlain('127.0.0.13');
    const info = await transport.sendMail({ ...MESSAGE });
    expect(info.edge).toMatchObject({ name: '127-0-0-13.dsl.isp.test', verified: true });
    expect(warnings.map((w) => w.code)).toEqual(['PTR_GENERIC']);
  });
});
