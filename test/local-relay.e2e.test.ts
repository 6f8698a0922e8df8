/**
 * A relay on this machine (Nodemailer's default host, localhost): the hop is
 * local, so mailedge checks and reports the identity the world beyond it will
 * see, warns rather than refuses when that fails, and greets the local relay
 * with a fully-qualified name.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { startReceiver, type Receiver } from '../src/testing/receiver.js';
import { parseZone } from '../src/testing/zone.js';
import { createTransport, type MailedgeTransporter } from '../src/create-transport.js';
import { isValidHostname } from '../src/checks/hostname.js';
import type { MailedgeOptions } from '../src/options.js';
import type { MailedgeWarning } from '../src/routes/route.js';

const ZONE = `
$TTL 300
$ORIGIN local.test.
@            IN SOA ns.local.test. hostmaster.local.test. ( 1 3600 600 86400 60 )
             IN NS  ns
ns           IN A   127.0.7.53
mail         IN A   127.0.7.2
2.7.0.127.in-addr.arpa. IN PTR mail.local.test.
`;

const ENVELOPE_CHECKS_OFF = { spf: 'off', 'sender-mx': 'off', dmarc: 'off', 'recipient-null-mx': 'off', authentication: 'off' } as const;
const MESSAGE = { from: 'app@local.test', to: 'someone@elsewhere.test', subject: 'hi', text: 'body' };

let dns: FixtureDnsServer;
let postfix: Receiver;
const transporters: MailedgeTransporter[] = [];

beforeAll(async () => {
  dns = await startDnsServer({ records: parseZone(ZONE) });
  // The machine's own MTA, on the loopback address `localhost` resolves to.
  postfix = await startReceiver({ host: '127.0.0.1' });
});
afterEach(() => {
  for (const t of transporters.splice(0)) t.close();
  postfix.reset();
});
afterAll(async () => {
  await postfix.close();
  await dns.close();
});

function transport(options: Partial<MailedgeOptions> = {}): MailedgeTransporter {
  const t = createTransport({ port: postfix.port, ignoreTLS: true, ...options, edge: { checks: ENVELOPE_CHECKS_OFF, ...options.edge, dns: { servers: [dns.server], timeout: 1500 } } });
  transporters.push(t);
  return t;
}

describe('a relay on this machine', () => {
  it('checks the public address instead of the loopback one, and greets with its confirmed name', async () => {
    const t = transport({ edge: { publicAddress: '127.0.7.2' } });
    const info = await t.sendMail({ ...MESSAGE });
    expect(info.edge).toEqual({ address: '127.0.7.2', name: 'mail.local.test', verified: true, stale: false });
    expect(postfix.sessions.at(-1)).toMatchObject({ clientAddress: '127.0.0.1', ehlo: 'mail.local.test' });
    const report = await t.preflight();
    expect(report.checks.find((c) => c.id === 'edge-address')?.evidence.join(' ')).toMatch(/on this machine/);
  });

  it('warns, once, rather than refuses when the public identity fails, and greets with a fully-qualified name', async () => {
    const t = transport({ edge: { publicAddress: '127.0.7.3' } });
    const warnings: MailedgeWarning[] = [];
    t.on('warning', (w: MailedgeWarning) => warnings.push(w));
    const first = await t.sendMail({ ...MESSAGE });
    await t.sendMail({ ...MESSAGE });
    expect(first.edge).toMatchObject({ address: '127.0.7.3', verified: false });
    const ehlo = postfix.sessions.at(-1)?.ehlo ?? '';
    expect(isValidHostname(ehlo)).toBe(true);
    expect(ehlo).toContain('.');
    expect(warnings.map((w) => w.code)).toEqual(['PTR_MISSING']);
    expect(postfix.messages).toBe(2);
  });

  it('sends with Nodemailer’s default host and nothing configured, whatever this machine’s route to the internet', async () => {
    const t = transport();
    const info = await t.sendMail({ ...MESSAGE });
    expect(info.accepted).toEqual(['someone@elsewhere.test']);
    expect(isValidHostname(postfix.sessions.at(-1)?.ehlo ?? '')).toBe(true);
  });

  it('with edge.localRelay: false, checks the loopback edge itself (as a test world playing the internet does)', async () => {
    const t = transport({ edge: { localRelay: false } });
    await expect(t.sendMail({ ...MESSAGE })).rejects.toMatchObject({ code: 'PTR_MISSING' });
    expect(postfix.connections).toBe(0);
  });
});
