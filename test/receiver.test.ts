import net from 'node:net';
import nodemailer from 'nodemailer';
import type { SMTPTransportOptions } from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { startReceiver, waitFor, type Receiver, type ReceiverOptions } from '../src/testing/receiver.js';
import { startDnsServer } from '../src/testing/dns-server.js';
import type { ResourceRecord } from '../src/dns/wire.js';

// ---------------------------------------------------------------------------
// The fixture DNS server, fed from a map of 'TYPE name' → values, so each test
// states only the records it needs.

type StandInMode = 'answer' | 'silent' | 'servfail';
interface StandInDns {
  server: string;
  close(): Promise<void>;
}

async function startStandInDns(
  records: Record<string, string[]>,
  mode: StandInMode = 'answer',
  host = '127.0.0.1',
): Promise<StandInDns> {
  const zone: ResourceRecord[] = Object.entries(records).flatMap(([key, values]) => {
    const [type = '', name = ''] = key.split(' ');
    return values.map((value): ResourceRecord =>
      type === 'PTR'
        ? { name, ttl: 60, class: 1, type: 'PTR', target: value }
        : { name, ttl: 60, class: 1, type: type === 'AAAA' ? 'AAAA' : 'A', address: value },
    );
  });
  const server = await startDnsServer({
    records: zone,
    host,
    ...(mode === 'silent' ? { defaultFault: { drop: true } } : mode === 'servfail' ? { defaultFault: { rcode: 'SERVFAIL' as const } } : {}),
  });
  return { server: server.server, close: () => server.close() };
}

// ---------------------------------------------------------------------------

const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  const pending = cleanups.splice(0);
  await Promise.all(pending.map((fn) => fn()));
});

async function receiver(options?: ReceiverOptions): Promise<Receiver> {
  const r = await startReceiver(options);
  cleanups.push(() => r.close());
  return r;
}

async function dns(
  records: Record<string, string[]>,
  mode?: StandInMode,
  host?: string,
): Promise<StandInDns> {
  const d = await startStandInDns(records, mode, host);
  cleanups.push(() => d.close());
  return d;
}

interface SendResult {
  ok: boolean;
  responseCode?: number;
  response?: string;
  code?: string;
}

async function send(r: Receiver, extra: Partial<SMTPTransportOptions> = {}): Promise<SendResult> {
  const transport = nodemailer.createTransport({
    host: r.host,
    port: r.port,
    secure: false,
    ignoreTLS: true,
    name: 'x.test',
    localAddress: '127.0.0.5',
    ...extra,
  });
  try {
    await transport.sendMail({
      from: 'sender@x.test',
      to: ['one@rcpt.test', 'two@rcpt.test'],
      subject: 'hello receiver',
      text: 'body line',
    });
    return { ok: true };
  } catch (err) {
    const e = err as { responseCode?: number; response?: string; code?: string };
    return { ok: false, responseCode: e.responseCode, response: e.response, code: e.code };
  } finally {
    transport.close();
  }
}

const FCRDNS_TEXT =
  '5.7.25 The IP address sending this message does not have a PTR record setup, or the corresponding forward DNS entry does not point to the sending IP';

describe('receiver, non-strict', () => {
  it('accepts a message and records the client address, EHLO name and envelope', async () => {
    const r = await receiver();
    expect(r.host).toBe('127.0.0.1');
    expect(r.port).toBeGreaterThan(0);

    const result = await send(r);
    expect(result).toEqual({ ok: true });

    await waitFor(() => r.sessions.length === 1);
    const session = r.sessions[0];
    expect(session?.clientAddress).toBe('127.0.0.5');
    expect(session?.ehlo).toBe('x.test');
    expect(session?.verdict).toBeUndefined();
    expect(session?.rejected).toEqual([]);
    expect(session?.messages).toHaveLength(1);
    const message = session?.messages[0];
    expect(message?.from).toBe('sender@x.test');
    expect(message?.to).toEqual(['one@rcpt.test', 'two@rcpt.test']);
    expect(message?.data).toContain('Subject: hello receiver');
    expect(message?.size).toBe(Buffer.byteLength(message?.data ?? ''));
    expect(r.connections).toBe(1);
    expect(r.messages).toBe(1);
  });

  it('records the EHLO name lower-cased, as smtp-server reports it', async () => {
    const r = await receiver();
    expect((await send(r, { name: 'Mixed.Case.Test' })).ok).toBe(true);
    expect(r.sessions[0]?.ehlo).toBe('mixed.case.test');
  });

  it('drops bodies but keeps sizes when keepData is false', async () => {
    const r = await receiver({ keepData: false });
    expect((await send(r)).ok).toBe(true);
    const message = r.sessions[0]?.messages[0];
    expect(message?.data).toBe('');
    expect(message?.size).toBeGreaterThan(50);
  });

  it('records a connection that never sends a message, and close() does not wait for it', async () => {
    const r = await receiver();
    const client = net.connect({ host: r.host, port: r.port, localAddress: '127.0.0.9' });
    const closed = new Promise<void>((resolve) => client.on('close', () => resolve()));
    client.on('error', () => undefined);
    client.once('data', () => client.write('EHLO idle.test\r\n'));

    await waitFor(() => r.sessions[0]?.ehlo === 'idle.test');
    expect(r.sessions[0]?.clientAddress).toBe('127.0.0.9');
    expect(r.sessions[0]?.messages).toEqual([]);
    expect(r.connections).toBe(1);
    expect(r.messages).toBe(0);

    const started = Date.now();
    await r.close();
    await closed;
    expect(Date.now() - started).toBeLessThan(1000);
    // Idempotent.
    await r.close();
  });

  it('reset() forgets sessions and counters', async () => {
    const r = await receiver();
    await send(r);
    await send(r);
    expect(r.connections).toBe(2);
    expect(r.messages).toBe(2);
    r.reset();
    expect(r.sessions).toEqual([]);
    expect(r.connections).toBe(0);
    expect(r.messages).toBe(0);
    await send(r);
    expect(r.sessions).toHaveLength(1);
    expect(r.messages).toBe(1);
  });

  it('listens on ::1', async () => {
    const r = await receiver({ host: '::1' });
    expect((await send(r, { host: '::1', localAddress: '::1' })).ok).toBe(true);
    expect(r.sessions[0]?.clientAddress).toBe('::1');
  });

  it('refuses to bind anywhere but loopback', async () => {
    await expect(startReceiver({ host: '0.0.0.0' })).rejects.toThrow(/loopback/);
  });

  it('requires dnsServer in strict mode', async () => {
    await expect(startReceiver({ strict: true })).rejects.toThrow(/dnsServer/);
  });

  it('waitFor rejects with a clear error on timeout', async () => {
    await expect(waitFor(() => false, 50)).rejects.toThrow(/waitFor.*50 ms/);
  });
});

describe('receiver, auth', () => {
  const auth = { user: 'alice', pass: 's3cret' };

  it('rejects a wrong password', async () => {
    const r = await receiver({ auth });
    const result = await send(r, { auth: { user: 'alice', pass: 'wrong' } });
    expect(result.ok).toBe(false);
    expect(result.code).toBe('EAUTH');
    expect(result.responseCode).toBe(535);
    expect(r.messages).toBe(0);
  });

  it('rejects a client that does not authenticate', async () => {
    const r = await receiver({ auth });
    const result = await send(r);
    expect(result.ok).toBe(false);
    expect(result.responseCode).toBe(530);
    expect(r.messages).toBe(0);
  });

  it('accepts the right password, with PLAIN and with LOGIN', async () => {
    const r = await receiver({ auth });
    expect(await send(r, { auth: { ...auth }, authMethod: 'PLAIN' })).toEqual({ ok: true });
    expect(await send(r, { auth: { ...auth }, authMethod: 'LOGIN' })).toEqual({ ok: true });
    expect(r.messages).toBe(2);
  });
});

describe('receiver, strict', () => {
  const zone = {
    'PTR 5.0.0.127.in-addr.arpa': ['mx.good.test'],
    'A mx.good.test': ['127.0.0.5'],
    // PTR whose name points elsewhere (a stale record).
    'PTR 7.0.0.127.in-addr.arpa': ['stale.test'],
    'A stale.test': ['127.0.0.99'],
    // Two PTR names, only the second confirms.
    'PTR 8.0.0.127.in-addr.arpa': ['old.test', 'MX.Eight.Test'],
    'A old.test': ['127.0.0.1'],
    'A mx.eight.test': ['127.0.0.8'],
    'PTR 1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa': ['v6.good.test'],
    'AAAA v6.good.test': ['::1'],
  };

  it('accepts a client whose PTR and A confirm and whose EHLO is that name', async () => {
    const d = await dns(zone);
    const r = await receiver({ strict: true, dnsServer: d.server });
    expect(await send(r, { name: 'mx.good.test' })).toEqual({ ok: true });
    expect(r.sessions[0]?.verdict?.ok).toBe(true);
    expect(r.sessions[0]?.rejected).toEqual([]);
    expect(r.messages).toBe(1);
  });

  it('accepts when any of several PTR names confirms, case-insensitively', async () => {
    const d = await dns(zone);
    const r = await receiver({ strict: true, dnsServer: d.server });
    expect(await send(r, { name: 'mx.eight.test', localAddress: '127.0.0.8' })).toEqual({ ok: true });
    expect(r.sessions[0]?.verdict?.ok).toBe(true);
  });

  it('rejects with 550 when the EHLO name is not the confirmed name', async () => {
    const d = await dns(zone);
    const r = await receiver({ strict: true, dnsServer: d.server });
    const result = await send(r, { name: 'other.test' });
    expect(result.ok).toBe(false);
    expect(result.responseCode).toBe(550);
    expect(result.response).toContain('5.7.25 EHLO name other.test is not the confirmed name of 127.0.0.5');
    expect(r.sessions[0]?.verdict?.ok).toBe(false);
    expect(r.sessions[0]?.rejected).toEqual([
      { stage: 'MAIL', code: 550, message: '5.7.25 EHLO name other.test is not the confirmed name of 127.0.0.5' },
    ]);
    expect(r.messages).toBe(0);
  });

  it('rejects with 550 5.7.25 when there is no PTR record', async () => {
    const d = await dns(zone);
    const r = await receiver({ strict: true, dnsServer: d.server });
    const result = await send(r, { name: 'mx.good.test', localAddress: '127.0.0.6' });
    expect(result.ok).toBe(false);
    expect(result.responseCode).toBe(550);
    expect(result.response).toContain('5.7.25');
    expect(result.response).toContain(FCRDNS_TEXT);
    expect(r.sessions[0]?.rejected[0]).toEqual({ stage: 'MAIL', code: 550, message: FCRDNS_TEXT });
  });

  it('rejects with 550 5.7.25 when the PTR name does not resolve back', async () => {
    const d = await dns(zone);
    const r = await receiver({ strict: true, dnsServer: d.server });
    const result = await send(r, { name: 'stale.test', localAddress: '127.0.0.7' });
    expect(result.responseCode).toBe(550);
    expect(result.response).toContain(FCRDNS_TEXT);
  });

  it('answers 451 4.7.25 when the DNS server does not answer', async () => {
    const d = await dns(zone, 'silent');
    const r = await receiver({ strict: true, dnsServer: d.server, dnsTimeoutMs: 300 });
    const started = Date.now();
    const result = await send(r, { name: 'mx.good.test' });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(result.ok).toBe(false);
    expect(result.responseCode).toBe(451);
    expect(result.response).toContain('4.7.25 temporary DNS failure');
    expect(r.sessions[0]?.rejected).toEqual([
      { stage: 'MAIL', code: 451, message: '4.7.25 temporary DNS failure' },
    ]);
    expect(r.sessions[0]?.verdict?.ok).toBe(false);
  });

  it('close() is prompt while a DNS judgement is still pending', async () => {
    const d = await dns(zone, 'silent');
    const r = await receiver({ strict: true, dnsServer: d.server, dnsTimeoutMs: 5000 });
    const sending = send(r, { name: 'mx.good.test' });
    await waitFor(() => r.sessions[0]?.ehlo === 'mx.good.test');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    await r.close();
    // Not the 5 s DNS deadline: half of it leaves room for a slow machine.
    expect(Date.now() - started).toBeLessThan(2500);
    const result = await sending;
    expect(result.ok).toBe(false);
    expect(r.sessions[0]?.rejected).toEqual([]);
  });

  it('answers 451 on SERVFAIL', async () => {
    const d = await dns(zone, 'servfail');
    const r = await receiver({ strict: true, dnsServer: d.server });
    const result = await send(r, { name: 'mx.good.test' });
    expect(result.responseCode).toBe(451);
  });

  it('checks an IPv6 client with AAAA, against a DNS server on ::1', async () => {
    const d = await dns(zone, 'answer', '::1');
    expect(d.server).toMatch(/^\[::1\]:\d+$/);
    const r = await receiver({ host: '::1', strict: true, dnsServer: d.server });
    expect(await send(r, { host: '::1', localAddress: '::1', name: 'v6.good.test' })).toEqual({ ok: true });
    expect(r.sessions[0]?.verdict).toEqual({ ok: true, reason: '::1 is confirmed as v6.good.test' });
  });
});
