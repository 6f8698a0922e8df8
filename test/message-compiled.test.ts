/**
 * What is verified when (issue 11, Performance): a message is rendered (and
 * its DKIM signature verified in full) only when the verdict needs the bytes;
 * otherwise its verdict comes from Nodemailer's compiled headers and the
 * signature shape Nodemailer's signer will produce, and Nodemailer streams it.
 * These tests pin the shape computed without rendering to the one Nodemailer
 * actually signs, and say when the rendered path is taken.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PassThrough, Readable } from 'node:stream';
import nodemailer from 'nodemailer';
import type { MailMessage } from 'nodemailer/lib/mailer';
import type Mail from 'nodemailer/lib/mailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { parseZone } from '../src/testing/zone.js';
import { compiledHeaders } from '../src/message/compiled.js';
import { readHeaders, signatureTags } from '../src/message/headers.js';
import { MessageAuthenticator } from '../src/message/verdict.js';
import { MessageStage } from '../src/message/stage.js';
import type { PreflightReport } from '../src/checks/types.js';
import { renderOnce } from '../src/message/render.js';
import { createResolver } from '../src/identity.js';
import { resolveEdgeOptions, type MailedgeOptions } from '../src/options.js';

const KEY = readFileSync(new URL('../fixtures/dkim/brand-s1.pem', import.meta.url), 'utf8');
const ZONE_FILE = fileURLToPath(new URL('../fixtures/zones/auth.zone', import.meta.url));
const DKIM = { domainName: 'aligned.test', keySelector: 's1', privateKey: KEY };

let dns: FixtureDnsServer;
beforeAll(async () => {
  dns = await startDnsServer({ host: '127.0.6.57', records: parseZone(readFileSync(ZONE_FILE, 'utf8')) });
});
afterAll(async () => {
  await dns.close();
});

/** Nodemailer's own Mailer with a capturing transport and, optionally, transport-level dkim (as createTransport passes it). */
async function compiled(options: Mail.Options, dkim?: Mail.Options['dkim']): Promise<MailMessage> {
  let captured: MailMessage | undefined;
  const transport = {
    name: 'capture',
    version: '1',
    send(mail: MailMessage, callback: (err: Error | null, info: unknown) => void): void {
      captured = mail;
      callback(null, {});
    },
  };
  const mailer = nodemailer.createTransport(transport as unknown as Parameters<typeof nodemailer.createTransport>[0]);
  if (dkim) {
    // createTransport(options) puts options.dkim on the Mailer; a custom transport object carries no options, so set it as Nodemailer would.
    const { default: DKIMSigner } = (await import('nodemailer/lib/dkim')) as unknown as { default: new (o: unknown) => unknown };
    (mailer as unknown as { dkim: unknown }).dkim = new DKIMSigner(dkim);
  }
  await mailer.sendMail(options);
  if (!captured) throw new Error('nothing captured');
  return captured;
}

const base = { from: 'news@aligned.test', to: 'user@rcpt.test', subject: 's', text: 'b' };

describe('the signature shape without rendering', () => {
  it.each([
    ['a plain message', {}],
    ['List-Unsubscribe and an attachment', { list: { unsubscribe: 'https://aligned.test/u' }, attachments: [{ filename: 'a.txt', content: 'x' }] }],
    ['Cc, Reply-To, In-Reply-To and References', { cc: 'c@rcpt.test', replyTo: 'r@aligned.test', inReplyTo: '<a@b>', references: ['<a@b>'] }],
    ['custom headerFieldNames and skipFields', {}, { ...DKIM, headerFieldNames: 'From:To:Subject:Date:X-Custom', skipFields: 'date' }, { 'X-Custom': 'yes' }],
    ['two keys, sha1', {}, { keys: [DKIM, { ...DKIM, keySelector: 's2' }], hashAlgo: 'sha1' }],
  ] as Array<[string, Partial<Mail.Options>, Mail.Options['dkim']?, Record<string, string>?]>)('%s: d, s, a, c and h are those Nodemailer signs', async (_name, extra, dkim = DKIM, headers) => {
    const mail = await compiled({ ...base, ...extra, ...(headers ? { headers } : {}), dkim });
    const predicted = compiledHeaders(mail);
    expect(predicted).toBeDefined();
    const raw = await renderOnce(mail);
    const actual = readHeaders(raw).get('dkim-signature');
    expect(predicted?.signatures.length).toBe(actual.length);
    actual.forEach((value, i) => {
      const real = signatureTags(value);
      const ours = signatureTags(predicted?.signatures[i] ?? '');
      for (const tag of ['d', 's', 'a', 'c', 'h']) expect(ours.get(tag)).toBe(real.get(tag));
    });
    // The header block built without rendering is the one on the wire (built once: the stream writes it).
    expect(raw.toString('latin1')).toContain(predicted?.block);
  });

  it('reads the transport-level signer as Nodemailer does', async () => {
    const mail = await compiled({ ...base }, DKIM);
    expect(compiledHeaders(mail)?.signatures).toHaveLength(1);
  });

  it('is unknown (the message is rendered) for a raw message, a transform, a signature the caller wrote', async () => {
    expect(compiledHeaders(await compiled({ raw: 'From: a@aligned.test\r\nSubject: x\r\n\r\nbody\r\n', envelope: { from: 'a@aligned.test', to: 'u@rcpt.test' } }))).toBeUndefined();
    const transformed = await compiled({ ...base });
    transformed.message.transform(() => new PassThrough());
    expect(compiledHeaders(transformed)).toBeUndefined();
  });
});

describe('what is verified when', () => {
  it('verifies a burst of first messages of one shape once: the rest wait for it, unrendered', async () => {
    const options = resolveEdgeOptions({ host: '127.0.0.1', dkim: DKIM, edge: { receiver: 'final', dns: { servers: [dns.server] } } } as MailedgeOptions);
    const stage = new MessageStage(options, createResolver(options));
    const report = { ok: true, address: null, name: null, destination: null, checks: [], ptrNames: [], expiresAt: Infinity, stale: false } as PreflightReport;
    const mails = await Promise.all(Array.from({ length: 10 }, () => compiled({ ...base }, DKIM)));
    const sends = await Promise.all(mails.map(async (mail) => stage.prepare(mail, mail, report)));
    expect(sends.map((send) => send?.prepared.dkim.verifiedInFull)).toEqual([1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(sends.filter((send) => send?.prepared.raw !== undefined)).toHaveLength(1);
    expect(sends.every((send) => send?.prepared.dkim.signatures[0]?.result === 'pass')).toBe(true);
  });

  it('lets the waiting messages go on when the first one fails to render', async () => {
    const options = resolveEdgeOptions({ host: '127.0.0.1', dkim: DKIM, edge: { receiver: 'final', dns: { servers: [dns.server] } } } as MailedgeOptions);
    const stage = new MessageStage(options, createResolver(options));
    const report = { ok: true, address: null, name: null, destination: null, checks: [], ptrNames: [], expiresAt: Infinity, stale: false } as PreflightReport;
    // The same signed header set (multipart/mixed with an attachment); the first one's attachment cannot be read.
    const broken = new Readable({ read() { this.destroy(new Error('unreadable attachment')); } });
    const first = await compiled({ ...base, attachments: [{ filename: 'a.txt', content: broken }] }, DKIM);
    const others = await Promise.all(Array.from({ length: 3 }, () => compiled({ ...base, attachments: [{ filename: 'a.txt', content: 'fine' }] }, DKIM)));
    const results = await Promise.allSettled([first, ...others].map(async (mail) => stage.prepare(mail, mail, report)));
    expect(results[0]?.status).toBe('rejected');
    for (const result of results.slice(1)) expect(result).toMatchObject({ status: 'fulfilled', value: { prepared: { dkim: { signatures: [{ result: 'pass' }] } } } });
  });
  it('lets the first messages of a shape wait for the full verification under way instead of each rendering', async () => {
    const options = resolveEdgeOptions({ host: '127.0.0.1', edge: { receiver: 'final', dns: { servers: [dns.server] } } } as MailedgeOptions);
    const authenticator = new MessageAuthenticator(createResolver(options), options.clock, [DKIM]);
    const signal = AbortSignal.timeout(5000);
    const first = await compiled({ ...base }, DKIM);
    expect(await authenticator.prepareCompiled(first, signal)).toBeUndefined();
    const verifying = authenticator.prepare(first, await renderOnce(first), signal);
    // Arrive while the first is being verified in full: they get its verdict, unrendered.
    const others = await Promise.all(Array.from({ length: 5 }, async () => authenticator.prepareCompiled(await compiled({ ...base }, DKIM), signal)));
    expect((await verifying).dkim.verifiedInFull).toBe(1);
    for (const other of others) expect(other).toMatchObject({ dkim: { verifiedInFull: 0, signatures: [{ result: 'pass' }] } });
    // The shape is kept now (the transport's signer, not a per-message key): the next message of it is judged
    // from it without a promise, the send path's steady state.
    const steady = authenticator.prepareCompiled(await compiled({ ...base }, DKIM), signal);
    expect(steady).not.toBeInstanceOf(Promise);
    expect(steady).toMatchObject({ fromDomain: 'aligned.test', dkim: { signatures: [{ result: 'pass', domain: 'aligned.test' }] } });
  });

  it('renders and verifies the first message of a shape; later ones are judged from their compiled headers', async () => {
    const options = resolveEdgeOptions({ host: '127.0.0.1', edge: { receiver: 'final', dns: { servers: [dns.server] } } } as MailedgeOptions);
    const authenticator = new MessageAuthenticator(createResolver(options), options.clock, []);
    const signal = AbortSignal.timeout(5000);

    const first = await compiled({ ...base, dkim: DKIM, attachments: [{ filename: 'a.txt', content: 'first' }] });
    expect(await authenticator.prepareCompiled(first, signal)).toBeUndefined();
    const full = await authenticator.prepare(first, await renderOnce(first), signal);
    expect(full.dkim.verifiedInFull).toBe(1);
    expect(full.dkim.signatures[0]?.result).toBe('pass');

    // A stream attachment: judged without reading it, so Nodemailer reads it once, while sending.
    let reads = 0;
    const attachment = new Readable({ read() { reads++; this.push('data'); this.push(null); } });
    const second = await compiled({ ...base, dkim: DKIM, attachments: [{ filename: 'a.txt', content: attachment }] });
    // The same signed header set as the first (multipart/mixed, no Content-Transfer-Encoding at the root).
    const fast = await authenticator.prepareCompiled(second, signal);
    expect(fast).toBeDefined();
    expect(fast?.raw).toBeUndefined();
    expect(fast?.dkim).toMatchObject({ verifiedInFull: 0, signatures: [{ result: 'pass', domain: 'aligned.test', selector: 's1' }] });
    expect(fast?.fromDomain).toBe('aligned.test');
    expect(fast?.headers.get('message-id')).toHaveLength(1);
    expect(fast?.headers.get('date')).toHaveLength(1);
    expect(reads).toBe(0);
    const sent = await renderOnce(second);
    expect(reads).toBe(1);
    expect(sent.toString('latin1')).toContain(fast?.headers.get('message-id')[0]);

    // A new signed header set (List-Unsubscribe): rendered and verified in full again.
    const listed = await compiled({ ...base, dkim: DKIM, list: { unsubscribe: 'https://aligned.test/u' } });
    expect(await authenticator.prepareCompiled(listed, signal)).toBeUndefined();

    // A DKIM-Signature the caller wrote (not mailedge's signer): rendered.
    const foreign = await compiled({ ...base, dkim: DKIM, headers: { 'DKIM-Signature': 'v=1; a=rsa-sha256; d=other.test; s=x; h=from; bh=x; b=x' } });
    expect(await authenticator.prepareCompiled(foreign, signal)).toBeUndefined();

    // Unsigned: nothing needs the bytes.
    const unsigned = await compiled({ ...base });
    expect((await authenticator.prepareCompiled(unsigned, signal))?.dkim.signatures).toEqual([]);
  });
});
