import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, MESSAGE, type World } from './support/world.js';
import { SendFailedError } from '../src/errors.js';
import type { MailedgeOptions } from '../src/options.js';
import { createTransport, type MailedgeTransport } from '../src/transport.js';
import { startReceiver, type Receiver, type ReceiverOptions } from '../src/testing/receiver.js';

let world: World;
const transports: MailedgeTransport[] = [];
const receivers: Receiver[] = [];

beforeAll(async () => {
  world = await startWorld();
});
afterEach(async () => {
  for (const transport of transports.splice(0)) transport.close();
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});
afterAll(async () => {
  await world.close();
});

async function receiver(options: ReceiverOptions = {}): Promise<Receiver> {
  const r = await startReceiver({ host: '127.0.0.1', ...options });
  receivers.push(r);
  return r;
}

function transport(r: Receiver, options: MailedgeOptions = {}): MailedgeTransport {
  const t = createTransport({
    ignoreTLS: true,
    host: r.host,
    port: r.port,
    localAddress: '127.0.0.2',
    ...options,
    edge: { ...options.edge, dns: { servers: [world.dns.server], timeout: 2000, ...options.edge?.dns } },
  });
  transports.push(t);
  return t;
}

describe('explore', () => {
  it.each([
    ['greeting 421', { greeting: { code: 421, message: '4.7.0 Try again later' } }],
    ['greeting 554', { greeting: { code: 554, message: '5.7.1 go away' } }],
    ['mail 451', { mailFrom: { code: 451, message: '4.3.0 later' } }],
    ['mail 550', { mailFrom: { code: 550, message: '5.7.1 no' } }],
    ['rcpt 450', { rcptTo: { code: 450, message: '4.2.1 later' } }],
    ['rcpt 550', { rcptTo: { code: 550, message: '5.1.1 no such user' } }],
    ['data 451', { data: { code: 451, message: '4.3.0 later' } }],
    ['data 554', { data: { code: 554, message: '5.6.0 rejected' } }],
    ['drop', { dropInData: true }],
    ['noGreeting', { noGreeting: true }],
  ])('%s', async (_name, faults) => {
    for (const pool of [false, true]) {
      const r = await receiver({ faults });
      const t = transport(r, { greetingTimeout: 300, ...(pool ? { pool: true, maxConnections: 2 } : {}) });
      const mail = { ...MESSAGE };
      const started = Date.now();
      const err: unknown = await t.sendMail(mail).then(() => null, (e: unknown) => e);
      const f = err as SendFailedError;
      console.log(_name, pool, err instanceof SendFailedError, f?.smtpCode, f?.responseCode, f?.permanent, f?.response, f?.command, f?.message, f?.mail === mail, Date.now() - started, JSON.stringify(r.sessions));
    }
  });
});
