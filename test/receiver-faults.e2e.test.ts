/**
 * A misbehaving receiver, through real sockets: every fault must reach the
 * caller as Nodemailer's own error (its code, the SMTP reply
 * and the caller's own message object, and under load with faults and a DNS
 * outage mixed in, no message may be lost or delivered twice.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SendMailOptions } from 'nodemailer';
import { startWorld, MESSAGE, type World } from './support/world.js';
import { EdgeRefusedError, MailedgeError } from '../src/errors.js';
import { isSmtpSendError, type SmtpSendError } from '../src/send-error.js';
import type { MailedgeOptions } from '../src/options.js';
import { createTransport, type MailedgeTransporter as MailedgeTransport } from '../src/create-transport.js';
import { type MailedgeSentMessageInfo } from '../src/routes/route.js';
import {
  startReceiver,
  waitFor,
  type Receiver,
  type ReceiverFaults,
  type ReceiverOptions,
} from '../src/testing/receiver.js';

const GOOD_PTR = '2.0.0.127.in-addr.arpa';

let world: World;
const transports: MailedgeTransport[] = [];
const receivers: Receiver[] = [];

beforeAll(async () => {
  world = await startWorld();
});
afterEach(async () => {
  // A failed test must not leave the shared DNS server broken for the next one.
  world.dns.setFault(GOOD_PTR, undefined);
  for (const transport of transports.splice(0)) transport.close();
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});
afterAll(async () => {
  await world.close();
});

/** Registers a teardown for the end of one test: a concurrent test passes its context's onTestFinished. */
type AtTestEnd = (teardown: () => Promise<void> | void) => void;

/**
 * A receiver of this test's own, so that faults never leak into another test;
 * closed after it (afterEach, or `atEnd` for a concurrent test).
 */
async function receiver(options: ReceiverOptions = {}, atEnd?: AtTestEnd): Promise<Receiver> {
  const r = await startReceiver({ host: '127.0.0.1', ...options });
  if (atEnd) atEnd(() => r.close());
  else receivers.push(r);
  return r;
}

/** Sends from 127.0.0.2 (mail.good.test) straight to the receiver's address and port. */
function transport(r: Receiver, options: MailedgeOptions = {}, atEnd?: AtTestEnd): MailedgeTransport {
  const t = createTransport({
    ignoreTLS: true,
    host: r.host,
    port: r.port,
    localAddress: '127.0.0.2',
    ...options,
    edge: { ...options.edge, dns: { servers: [world.dns.server], timeout: 2000, ...options.edge?.dns } },
  });
  if (atEnd) atEnd(() => void t.close());
  else transports.push(t);
  return t;
}

/** A failure of the receiver or connection: Nodemailer's own error, with permanent and mail added. */
async function failure(promise: Promise<unknown>): Promise<SmtpSendError> {
  const err = await promise.then(
    () => {
      throw new Error('expected the send to fail');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  expect(err).not.toBeInstanceOf(MailedgeError);
  return err as SmtpSendError;
}

/** Short only where the greeting never comes: on a loaded machine a real greeting can take longer. */
function greetingTimeout(faults: ReceiverFaults): { greetingTimeout?: number } {
  return faults.noGreeting ? { greetingTimeout: 300 } : {};
}

function subjectOf(data: string): string | undefined {
  return /^Subject: (.*)$/m.exec(data)?.[1]?.trim();
}

function acceptedSubjects(r: Receiver): string[] {
  return r.sessions.flatMap((s) => s.messages.map((m) => subjectOf(m.data) ?? '(none)'));
}

interface FaultCase {
  name: string;
  faults: ReceiverFaults;
  smtpCode: string;
  responseCode: number | undefined;
  command: string;
  stage: 'CONNECT' | 'MAIL' | 'RCPT' | 'DATA' | undefined;
}

const CASES: FaultCase[] = [
  { name: '421 instead of the greeting', faults: { greeting: { code: 421, message: '4.7.0 Try again later' } }, smtpCode: 'EPROTOCOL', responseCode: 421, command: 'CONN', stage: 'CONNECT' },
  { name: '554 instead of the greeting', faults: { greeting: { code: 554, message: '5.7.1 No SMTP service here' } }, smtpCode: 'EPROTOCOL', responseCode: 554, command: 'CONN', stage: 'CONNECT' },
  { name: '451 at MAIL FROM', faults: { mailFrom: { code: 451, message: '4.3.0 Try again later' } }, smtpCode: 'EENVELOPE', responseCode: 451, command: 'MAIL FROM', stage: 'MAIL' },
  { name: '553 at MAIL FROM', faults: { mailFrom: { code: 553, message: '5.7.1 Sender refused' } }, smtpCode: 'EENVELOPE', responseCode: 553, command: 'MAIL FROM', stage: 'MAIL' },
  { name: '450 at RCPT TO', faults: { rcptTo: { code: 450, message: '4.2.1 Mailbox busy' } }, smtpCode: 'EENVELOPE', responseCode: 450, command: 'RCPT TO', stage: 'RCPT' },
  { name: '550 at RCPT TO', faults: { rcptTo: { code: 550, message: '5.1.1 No such user' } }, smtpCode: 'EENVELOPE', responseCode: 550, command: 'RCPT TO', stage: 'RCPT' },
  { name: '451 after DATA', faults: { data: { code: 451, message: '4.3.0 Queue full' } }, smtpCode: 'EMESSAGE', responseCode: 451, command: 'DATA', stage: 'DATA' },
  { name: '554 after DATA', faults: { data: { code: 554, message: '5.6.0 Message rejected' } }, smtpCode: 'EMESSAGE', responseCode: 554, command: 'DATA', stage: 'DATA' },
  { name: 'connection dropped mid-DATA', faults: { dropInData: true }, smtpCode: 'ECONNECTION', responseCode: undefined, command: 'CONN', stage: undefined },
  { name: 'a greeting that never comes', faults: { noGreeting: true }, smtpCode: 'ETIMEDOUT', responseCode: undefined, command: 'CONN', stage: undefined },
];

describe("each receiver fault reaches the caller as Nodemailer's error, with permanent and mail", () => {
  describe.each([
    ['one connection per message', {}],
    ['pooled', { pool: true, maxConnections: 2 }],
  ])('%s', (_mode, poolOptions) => {
    // Concurrent: each case has its own receiver and transport, and touches nothing shared.
    it.concurrent.for(CASES)('$name → $smtpCode', async ({ faults, smtpCode, responseCode, command, stage }, { onTestFinished }) => {
      const r = await receiver({ faults }, onTestFinished);
      const message = { ...MESSAGE, attachments: [{ filename: 'a.txt', content: 'keep me' }] };
      const snapshot = structuredClone(message);
      const err = await failure(transport(r, { ...greetingTimeout(faults), ...poolOptions }, onTestFinished).sendMail(message));

      expect(err.code).toBe(smtpCode);
      expect(err.responseCode).toBe(responseCode);
      expect(err.command).toBe(command);
      expect(err.permanent).toBe(responseCode !== undefined && responseCode >= 500);
      if (responseCode !== undefined) expect(err.response).toContain(String(responseCode));
      expect(err.mail).toBe(message);
      expect(message).toEqual(snapshot);

      expect(r.messages).toBe(0);
      const session = r.sessions[0];
      expect(r.sessions).toHaveLength(1);
      expect(session?.rejected.map((x) => x.stage)).toEqual(stage ? [stage] : []);
      expect(session?.rejected[0]?.code).toBe(responseCode);
      if (faults.dropInData) expect(session?.fault).toBe('dropInData');
      if (faults.noGreeting) expect(session?.fault).toBe('noGreeting');
      // Faults after the greeting come after EHLO: the name there is still the confirmed one.
      if (stage !== 'CONNECT' && !faults.noGreeting) expect(session?.ehlo).toBe('mail.good.test');
    });
  });
});

describe('a drop while the client is still writing', () => {
  it('ends as Nodemailer reports a dropped connection (ECONNECTION, or ESOCKET when a write fails first), not permanent, nothing accepted', async () => {
    const r = await receiver({ faults: { dropInData: true } });
    // Megabytes, so that the receiver cuts the connection while the body is still arriving.
    const message = { ...MESSAGE, attachments: [{ filename: 'big.bin', content: Buffer.alloc(4_000_000, 7) }] };
    const err = await failure(transport(r).sendMail(message));
    expect(['ECONNECTION', 'ESOCKET']).toContain(err.code);
    expect(err.permanent).toBe(false);
    expect(err.mail).toBe(message);
    expect(r.messages).toBe(0);
    expect(r.sessions[0]?.fault).toBe('dropInData');
  });
});

describe('a pooled transport recovers after a fault', () => {
  it.each<[string, ReceiverFaults, string]>([
    ['a connection dropped mid-DATA', { dropInData: true, times: 1 }, 'ECONNECTION'],
    ['a 421 greeting', { greeting: { code: 421, message: '4.7.0 Try again later' }, times: 1 }, 'EPROTOCOL'],
    ['a greeting that never comes', { noGreeting: true, times: 1 }, 'ETIMEDOUT'],
  ])('after %s, the next message goes through on a new connection', async (_name, faults, smtpCode) => {
    const r = await receiver({ faults });
    const t = transport(r, { pool: true, maxConnections: 2, ...greetingTimeout(faults) });
    const first = { ...MESSAGE, subject: 'first' };
    const err = await failure(t.sendMail(first));
    expect(err.code).toBe(smtpCode);
    expect(err.mail).toBe(first);

    const info = await t.sendMail({ ...MESSAGE, subject: 'second' });
    expect(info.accepted).toEqual(['someone@example.test']);
    expect(info.edge.name).toBe('mail.good.test');
    expect(acceptedSubjects(r)).toEqual(['second']);
    expect(r.connections).toBe(2);
    expect(r.sessions.find((s) => s.messages.length > 0)?.ehlo).toBe('mail.good.test');
  });

  it('after a 4xx at RCPT, the next message goes through on the same connection', async () => {
    const r = await receiver({ faults: { rcptTo: { code: 451, message: '4.7.1 Greylisted' }, times: 1 } });
    // One slot: the caller hears of the refusal before the pool's RSET is answered,
    // and with a second slot free the pool would open a connection for the next message.
    const t = transport(r, { pool: true, maxConnections: 1 });
    const err = await failure(t.sendMail({ ...MESSAGE, subject: 'first' }));
    expect(err.code).toBe('EENVELOPE');
    expect(err.permanent).toBe(false);
    await t.sendMail({ ...MESSAGE, subject: 'second' });
    expect(acceptedSubjects(r)).toEqual(['second']);
    // The pool reset the transaction and kept the connection: `times` counts messages, not connections.
    expect(r.connections).toBe(1);
    expect(r.sessions[0]?.rejected).toEqual([{ stage: 'RCPT', code: 451, message: '4.7.1 Greylisted' }]);
  });
});

describe('faults changed live', () => {
  it('setFaults applies to the next message, counts `times` afresh, and undefined clears it', async () => {
    const r = await receiver();
    const t = transport(r);
    await t.sendMail({ ...MESSAGE, subject: 'before' });

    r.setFaults({ data: { code: 452, message: '4.3.1 Disk full' }, times: 2 });
    for (const subject of ['f1', 'f2']) {
      expect((await failure(t.sendMail({ ...MESSAGE, subject }))).responseCode).toBe(452);
    }
    await t.sendMail({ ...MESSAGE, subject: 'after the budget' });

    r.setFaults({ mailFrom: { code: 550, message: '5.7.1 Not today' } });
    expect((await failure(t.sendMail({ ...MESSAGE, subject: 'f3' }))).permanent).toBe(true);
    r.setFaults(undefined);
    await t.sendMail({ ...MESSAGE, subject: 'cleared' });

    expect(acceptedSubjects(r)).toEqual(['before', 'after the budget', 'cleared']);
    expect(r.sessions.flatMap((s) => s.rejected.map((x) => `${x.stage} ${x.code}`))).toEqual(['DATA 452', 'DATA 452', 'MAIL 550']);
  });

  it('keeps its faults across reset(), and refuses replies that are not refusals', async () => {
    const r = await receiver({ faults: { rcptTo: { code: 550, message: '5.1.1 No such user' } } });
    r.reset();
    await failure(transport(r).sendMail({ ...MESSAGE }));
    expect(r.sessions[0]?.rejected.map((x) => x.code)).toEqual([550]);
    expect(() => r.setFaults({ data: { code: 250, message: 'OK' } })).toThrow(/4xx or 5xx/);
    expect(() => r.setFaults({ rcptTo: { code: 550, message: 'two\r\nlines' } })).toThrow(/one line/);
    expect(() => r.setFaults({ dropInData: true, times: -1 })).toThrow(/times/);
    await expect(startReceiver({ faults: { greeting: { code: 220, message: 'hi' } } })).rejects.toThrow(/4xx or 5xx/);
  });
});

// ---------------------------------------------------------------------------

type Outcome =
  | { kind: 'resolved'; info: MailedgeSentMessageInfo }
  | { kind: 'rejected'; error: Error };

interface Step {
  apply(): void;
  /** How often each fault must have fired before the next step (keys as in tally()). */
  fires?: Record<string, number>;
}

const WAVE = 20;

interface Sent {
  subject: string;
  message: SendMailOptions;
  calls: number;
  outcome: Promise<Outcome>;
}

describe('nothing lost', () => {
  it('200 concurrent messages through faults and a DNS outage: each delivered once or refused with its message', async () => {
    const r = await receiver();
    let fakeNow = Date.now();
    const t = transport(r, {
      pool: true,
      maxConnections: 2,
      // Long enough for a real greeting on a loaded machine: only noGreeting may time out.
      greetingTimeout: 1000,
      // Answers and identity live 1 s on a clock the test moves, so that moving it
      // forces re-verification; staleFor 0 turns a DNS failure into a refusal.
      edge: { dns: { minTtl: 1, maxTtl: 1, staleFor: 0 }, clock: { now: () => fakeNow } },
    });

    const sent: Sent[] = [];
    let dnsRefusals = 0;
    /** Faults seen so far: the receiver's refusals and cut connections, and the sender's DNS refusals. */
    const tally = (): Map<string, number> => {
      const counts = new Map<string, number>();
      const bump = (key: string): void => void counts.set(key, (counts.get(key) ?? 0) + 1);
      for (const session of r.sessions) {
        for (const x of session.rejected) bump(`${x.stage} ${x.code}`);
        if (session.fault) bump(session.fault);
      }
      counts.set('DNS_TEMPFAIL', dnsRefusals);
      return counts;
    };
    const submit = (): Sent => {
      const subject = `nothing-lost-${String(sent.length).padStart(3, '0')}`;
      const message: SendMailOptions = { ...MESSAGE, subject };
      let settle: (outcome: Outcome) => void = () => undefined;
      const entry: Sent = { subject, message, calls: 0, outcome: new Promise<Outcome>((resolve) => (settle = resolve)) };
      // The callback form, so that a second call for the same message would be seen.
      t.sendMail(message, (err, info) => {
        entry.calls += 1;
        if (err instanceof EdgeRefusedError && err.code === 'DNS_TEMPFAIL') dnsRefusals += 1;
        if (err) settle({ kind: 'rejected', error: err });
        else if (info) settle({ kind: 'resolved', info });
        else settle({ kind: 'rejected', error: new Error('callback with neither error nor info') });
      });
      sent.push(entry);
      return entry;
    };

    const reply = (code: number, message: string) => ({ code, message });
    // Each step stays in force until all its faults have fired, while its own wave
    // and the rest of the previous one are in flight. Two drops in the connection
    // steps: after them no old connection is left, so new ones must meet the
    // greeting faults (a pool with a live connection may never open another).
    const steps: Step[] = [
      { apply: () => r.setFaults(undefined) },
      { apply: () => r.setFaults({ rcptTo: reply(451, '4.7.1 Greylisted'), times: 3 }), fires: { 'RCPT 451': 3 } },
      { apply: () => r.setFaults({ data: reply(554, '5.6.0 Content rejected'), times: 3 }), fires: { 'DATA 554': 3 } },
      { apply: () => r.setFaults({ dropInData: true, times: 2 }), fires: { dropInData: 2 } },
      {
        apply: () => {
          world.dns.setFault(GOOD_PTR, { rcode: 'SERVFAIL' });
          fakeNow += 2000;
        },
        fires: { DNS_TEMPFAIL: WAVE },
      },
      {
        apply: () => {
          world.dns.setFault(GOOD_PTR, undefined);
          fakeNow += 2000;
          r.setFaults({ mailFrom: reply(450, '4.7.0 Slow down'), times: 2 });
        },
        fires: { 'MAIL 450': 2 },
      },
      {
        apply: () => r.setFaults({ dropInData: true, greeting: reply(421, '4.7.0 Too many connections'), times: 2 }),
        fires: { dropInData: 2, 'CONNECT 421': 2 },
      },
      {
        apply: () => r.setFaults({ rcptTo: reply(550, '5.1.1 No such user'), data: reply(451, '4.3.0 Queue full'), times: 2 }),
        fires: { 'RCPT 550': 2, 'DATA 451': 2 },
      },
      { apply: () => r.setFaults({ dropInData: true, noGreeting: true, times: 2 }), fires: { dropInData: 2, noGreeting: 2 } },
      { apply: () => r.setFaults(undefined) },
    ];
    let settled = 0;
    for (const step of steps) {
      const before = tally();
      step.apply();
      const wave = Array.from({ length: WAVE }, () => submit());
      for (const entry of wave) void entry.outcome.then(() => (settled += 1));
      const target = sent.length - WAVE / 2;
      await waitFor(() => {
        const now = tally();
        const spent = Object.entries(step.fires ?? {}).every(([key, n]) => (now.get(key) ?? 0) - (before.get(key) ?? 0) >= n);
        return spent && settled >= target;
      }, 15_000);
    }
    const outcomes = await Promise.all(sent.map((s) => s.outcome));
    // Nodemailer's pool requeues on a timer (50 ms); give a late second callback time to show.
    await new Promise((resolve) => setTimeout(resolve, 200));

    expect(sent).toHaveLength(200);
    expect(sent.filter((s) => s.calls !== 1).map((s) => `${s.subject}: ${s.calls} calls`)).toEqual([]);

    const resolved: string[] = [];
    const rejected: Array<{ subject: string; error: Error }> = [];
    outcomes.forEach((outcome, i) => {
      const entry = sent[i];
      if (!entry) return;
      if (outcome.kind === 'resolved') {
        resolved.push(entry.subject);
        expect(outcome.info.accepted).toEqual(['someone@example.test']);
        expect(outcome.info.edge).toMatchObject({ name: 'mail.good.test', verified: true });
      } else {
        rejected.push({ subject: entry.subject, error: outcome.error });
        // A refusal of mailedge's, or the receiver's failure as Nodemailer reports it: either way with the message.
        expect(outcome.error instanceof MailedgeError || isSmtpSendError(outcome.error)).toBe(true);
        expect((outcome.error as { mail?: unknown }).mail).toBe(entry.message);
      }
    });
    expect(resolved.length + rejected.length).toBe(sent.length);

    // The receiver's side of the ledger: exactly the resolved subjects, each once, each after EHLO mail.good.test.
    const accepted = acceptedSubjects(r);
    expect(new Set(accepted).size).toBe(accepted.length);
    expect([...accepted].sort()).toEqual([...resolved].sort());
    const deliveringSessions = r.sessions.filter((s) => s.messages.length > 0);
    expect(deliveringSessions.map((s) => s.ehlo).filter((name) => name !== 'mail.good.test')).toEqual([]);

    // Every refusal the receiver sent reached exactly one caller, with its code.
    const failures = rejected.map((x) => x.error).filter((e): e is SmtpSendError => e instanceof Error && !(e instanceof MailedgeError));
    const replyCodes = (codes: Array<number | undefined>): number[] =>
      codes.filter((c): c is number => c !== undefined).sort((a, b) => a - b);
    expect(replyCodes(failures.map((e) => e.responseCode))).toEqual(
      replyCodes(r.sessions.flatMap((s) => s.rejected.map((x) => x.code))),
    );
    for (const e of failures) expect(e.permanent).toBe((e.responseCode ?? 0) >= 500);
    const dropped = r.sessions.filter((s) => s.fault === 'dropInData').length;
    expect(failures.filter((e) => e.code === 'ECONNECTION')).toHaveLength(dropped);

    // The mix really happened.
    const refusals = rejected.map((x) => x.error).filter((e): e is EdgeRefusedError => e instanceof EdgeRefusedError);
    expect(refusals.length).toBeGreaterThan(0);
    expect(refusals.every((e) => e.code === 'DNS_TEMPFAIL' && !e.permanent)).toBe(true);
    expect(failures.length + refusals.length).toBe(rejected.length);
    expect(new Set(failures.map((e) => e.code))).toEqual(new Set(['EENVELOPE', 'EMESSAGE', 'ECONNECTION', 'EPROTOCOL', 'ETIMEDOUT']));
    expect(dropped).toBeGreaterThan(0);
    expect(resolved.length).toBeGreaterThan(100);
    // Each step ran until its faults were spent, so the receiver's totals are exact.
    const planned = new Map<string, number>();
    for (const step of steps) {
      for (const [key, n] of Object.entries(step.fires ?? {})) planned.set(key, (planned.get(key) ?? 0) + n);
    }
    const final = tally();
    expect(final.get('DNS_TEMPFAIL')).toBeGreaterThanOrEqual(WAVE);
    planned.delete('DNS_TEMPFAIL');
    final.delete('DNS_TEMPFAIL');
    expect(Object.fromEntries(final)).toEqual(Object.fromEntries(planned));
  }, 60_000);
});
