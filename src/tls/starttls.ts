/**
 * STARTTLS on the socket mailedge opened to an MX host, done by mailedge
 * itself before Nodemailer gets the socket. Why not Nodemailer's own
 * STARTTLS: it offers no hook between the TLS handshake and its second EHLO,
 * and under `rejectUnauthorized: false` Node skips checkServerIdentity, so
 * neither a DANE match nor a "verified only under a policy" rule could be
 * decided before the transaction starts.
 *
 * Here: read the greeting, EHLO, STARTTLS, handshake with
 * `rejectUnauthorized: false`, then judge the certificate as the policy asks
 * (src/tls/dane.ts; WebPKI plus the MX host name). The encrypted socket is
 * handed to Nodemailer with `secure`/`secured` set (no second STARTTLS), and
 * the server's own greeting is put back in front of its data (Readable
 * unshift): Nodemailer reads the real greeting and sends its EHLO over TLS,
 * which RFC 3207 section 4.2 requires anyway. When TLS is not used, the plain
 * socket is handed over the same way.
 */
import { checkServerIdentity, connect as tlsConnect, rootCertificates, type DetailedPeerCertificate, type TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import { markNeverConnected } from '../send-error.js';
import { escapeText } from '../text/escape.js';
import { daneMatch } from './dane.js';
import { TlsPolicyError, type TlsAttempt, type TlsOutcome, type TlsRequirement } from './outcome.js';

export interface StartTlsSettings {
  /** The EHLO name of the connection (the confirmed name). */
  name: string;
  attempt: TlsAttempt;
  /** Milliseconds for each step (greeting, EHLO, STARTTLS, handshake). */
  timeout: number;
  /** Nodemailer's ignoreTLS: never STARTTLS (refused by a mandatory policy). */
  ignoreTLS: boolean;
  /** Runs once the greeting is in, before any EHLO (mailedge's or Nodemailer's): throws when the name no longer stands. */
  beforeEhlo?: () => Promise<void>;
}

/** The socket for Nodemailer, and the connection options to merge (getSocket's result). */
export interface Handover {
  connection: Socket;
  options: { secure?: true; secured?: true; ignoreTLS?: true };
}

interface Reply {
  code: number;
  lines: string[];
  raw: Buffer;
}

/** What Nodemailer's error for a connection that ended before the transaction looks like. */
function connectionError(message: string, code: 'ECONNECTION' | 'ETIMEDOUT'): Error {
  return markNeverConnected(Object.assign(new Error(message), { code, command: 'CONN' }));
}

class ReplyReader {
  private buffer = Buffer.alloc(0);
  constructor(private readonly socket: Socket) {}

  read(timeout: number): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        this.socket.removeListener('data', onData);
        this.socket.removeListener('error', onError);
        this.socket.removeListener('close', onClose);
        this.socket.pause();
      };
      const onData = (chunk: Buffer): void => {
        this.buffer = Buffer.concat([this.buffer, chunk]);
        const reply = this.take();
        if (reply) {
          cleanup();
          resolve(reply);
        } else if (this.buffer.length > 64 * 1024) {
          cleanup();
          reject(connectionError('the server sent an over-long reply before the transaction', 'ECONNECTION'));
        }
      };
      const onError = (err: Error): void => {
        cleanup();
        reject(markNeverConnected(Object.assign(err, { command: 'CONN' })));
      };
      const onClose = (): void => {
        cleanup();
        reject(connectionError('the server closed the connection before the transaction', 'ECONNECTION'));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(Object.assign(connectionError(`no reply within ${timeout} ms`, 'ETIMEDOUT'), { timeoutType: 'GREETING_TIMEOUT' }));
      }, timeout);
      this.socket.on('data', onData);
      this.socket.once('error', onError);
      this.socket.once('close', onClose);
      const ready = this.take();
      if (ready) {
        cleanup();
        resolve(ready);
        return;
      }
      this.socket.resume();
    });
  }

  /** One complete reply (its last line "ddd text"), or undefined. */
  private take(): Reply | undefined {
    const text = this.buffer.toString('latin1');
    // Lines are kept escaped: a receiver's text goes into errors, evidence and logs.
    const lines: string[] = [];
    let offset = 0;
    for (;;) {
      const end = text.indexOf('\n', offset);
      if (end < 0) return undefined;
      const line = text.slice(offset, end).replace(/\r$/, '');
      offset = end + 1;
      lines.push(escapeText(line));
      if (!/^\d{3}-/.test(line)) {
        const raw = this.buffer.subarray(0, offset);
        this.buffer = this.buffer.subarray(offset);
        return { code: Number(line.slice(0, 3)) || 0, lines, raw: Buffer.from(raw) };
      }
    }
  }
}

function mandatory(requirement: TlsRequirement): boolean {
  return requirement.kind !== 'opportunistic';
}

function codeFor(requirement: TlsRequirement, what: 'starttls' | 'certificate'): 'DANE_NO_MATCH' | 'DANE_STARTTLS_MISSING' | 'MTA_STS_STARTTLS_MISSING' | 'MTA_STS_CERT_INVALID' {
  if (requirement.kind === 'dane' || requirement.kind === 'encrypt') return what === 'starttls' ? 'DANE_STARTTLS_MISSING' : 'DANE_NO_MATCH';
  return what === 'starttls' ? 'MTA_STS_STARTTLS_MISSING' : 'MTA_STS_CERT_INVALID';
}

function quit(socket: Socket): void {
  // Nobody listens to this socket any more: a reset while it closes must not become an uncaught 'error'.
  socket.on('error', () => undefined);
  if (!socket.destroyed && socket.writable) socket.end('QUIT\r\n');
  setTimeout(() => socket.destroy(), 1_000).unref();
}

/** The server's certificates, its own first, as presented (issuer links of the detailed certificate). */
function presentedChain(socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const seen = new Set<string>();
  let cert: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (cert && cert.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(new X509Certificate(cert.raw));
    cert = cert.issuerCertificate;
  }
  return chain;
}

export async function negotiateTls(socket: Socket, settings: StartTlsSettings): Promise<Handover> {
  // Between two replies nothing else listens: a reset there is this negotiation's failure, not an uncaught 'error'.
  const ignore = (): void => undefined;
  socket.on('error', ignore);
  try {
    const handover = await negotiate(socket, settings);
    socket.removeListener('error', ignore);
    return handover;
  } catch (err) {
    // A refusal has already said QUIT; anything else leaves a socket nobody will use.
    if (!(err instanceof TlsPolicyError)) socket.destroy();
    throw err;
  }
}

async function negotiate(socket: Socket, settings: StartTlsSettings): Promise<Handover> {
  const { attempt, timeout } = settings;
  const requirement = attempt.requirement;
  const host = requirement.host.replace(/\.$/, '');
  const plain = (greeting: Buffer, extra: Handover['options'] = {}): Handover => {
    attempt.outcome = { version: null, cipher: null, authorized: false, policy: 'none' };
    socket.pause();
    socket.unshift(greeting);
    return { connection: socket, options: extra };
  };
  const refuse = (code: ReturnType<typeof codeFor>, message: string, evidence: string[], outcome?: TlsOutcome): never => {
    throw new TlsPolicyError(code, message, host, { evidence, ...(outcome ? { outcome } : {}) });
  };

  const reader = new ReplyReader(socket);
  const greeting = await reader.read(timeout);
  await settings.beforeEhlo?.();
  // A refusing greeting is Nodemailer's to report (and the next MX host's turn on 4xx).
  if (greeting.code !== 220) return plain(greeting.raw);
  if (settings.ignoreTLS && !mandatory(requirement)) return plain(greeting.raw);
  // The retry after a failed opportunistic handshake (src/routes/direct.ts): clear text, and Nodemailer must not try again.
  if (attempt.cleartext && !mandatory(requirement)) return plain(greeting.raw, { ignoreTLS: true });

  socket.write(`EHLO ${settings.name}\r\n`);
  const ehlo = await reader.read(timeout);
  const offered = ehlo.code === 250 && ehlo.lines.some((line) => /^250[ -]STARTTLS\b/i.test(line));
  if (!offered) {
    if (mandatory(requirement)) {
      quit(socket);
      refuse(codeFor(requirement, 'starttls'), `${host} does not offer STARTTLS, which the ${requirement.policy} policy requires`, [`EHLO ${settings.name}`, ...ehlo.lines]);
    }
    return plain(greeting.raw);
  }

  socket.write('STARTTLS\r\n');
  const ready = await reader.read(timeout);
  if (ready.code !== 220) {
    if (mandatory(requirement)) {
      quit(socket);
      refuse(codeFor(requirement, 'starttls'), `${host} refused STARTTLS (${ready.lines.join(' ')}), which the ${requirement.policy} policy requires`, ['STARTTLS', ...ready.lines]);
    }
    // The session is still clear text; Nodemailer must not try again.
    return plain(greeting.raw, { ignoreTLS: true });
  }

  const secured = await handshake(socket, host, attempt.ca, timeout);
  const version = secured.getProtocol();
  const cipher = secured.getCipher()?.name ?? null;
  const base = { version, cipher, policy: requirement.policy } as const;

  if (requirement.kind === 'dane') {
    const verdict = daneMatch(requirement.tlsa, presentedChain(secured), host, new Date());
    if (!verdict.ok) {
      const outcome: TlsOutcome = { ...base, authorized: false, failure: verdict.reason };
      attempt.outcome = outcome;
      quit(secured);
      refuse('DANE_NO_MATCH', `${host}: ${verdict.reason}`, [`_25._tcp.${host} TLSA`, ...requirement.tlsa.map((r) => `  ${r.usage} ${r.selector} ${r.matchingType} ${r.data}`)], outcome);
    }
    attempt.outcome = { ...base, authorized: true };
  } else {
    const failure = webPkiFailure(secured, host);
    attempt.outcome = { ...base, authorized: failure === null, ...(failure === null ? {} : { failure }) };
    if (failure !== null && requirement.kind === 'webpki') {
      quit(secured);
      refuse('MTA_STS_CERT_INVALID', `${host}: ${failure}`, [`certificate of ${host}: ${secured.getPeerCertificate().subjectaltname ?? 'no subjectAltName'}`], attempt.outcome);
    }
  }
  secured.pause();
  secured.unshift(greeting.raw);
  return { connection: secured as Socket, options: { secure: true, secured: true } };
}

/** OpenSSL's and Node's verification codes in words; the code itself is kept beside them. */
const AUTHORIZATION_ERRORS: Record<string, string> = {
  ERR_TLS_CERT_ALTNAME_INVALID: 'the certificate is not valid',
  CERT_HAS_EXPIRED: 'the certificate has expired',
  CERT_NOT_YET_VALID: 'the certificate is not yet valid',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'the certificate is self-signed',
  SELF_SIGNED_CERT_IN_CHAIN: 'the chain ends in an untrusted self-signed CA',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'the certificate is issued by an unknown CA',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'the certificate is issued by an unknown CA',
};

/** Why the chain or the name does not verify (WebPKI plus edge.tls.ca), or null when both do. */
function webPkiFailure(socket: TLSSocket, host: string): string | null {
  if (!socket.authorized) {
    const code = String(socket.authorizationError);
    return `${AUTHORIZATION_ERRORS[code] ?? 'the certificate does not verify'}${code === 'ERR_TLS_CERT_ALTNAME_INVALID' ? ` for ${host}` : ''} (${code})`;
  }
  const identity = checkServerIdentity(host, socket.getPeerCertificate());
  return identity ? identity.message : null;
}

function handshake(socket: Socket, servername: string, ca: ReadonlyArray<string | Buffer>, timeout: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const secured = tlsConnect({
      socket,
      servername,
      // Verification is decided afterwards, by the policy: opportunistic TLS must not stop at a bad certificate.
      rejectUnauthorized: false,
      // edge.tls.ca adds to the system's anchors rather than replacing them.
      ...(ca.length > 0 ? { ca: [...rootCertificates, ...ca] } : {}),
    });
    const timer = setTimeout(() => {
      secured.destroy();
      reject(new TlsPolicyError('TLS_HANDSHAKE_FAILED', `the TLS handshake with ${servername} did not finish within ${timeout} ms`, servername));
    }, timeout);
    secured.once('secureConnect', () => {
      clearTimeout(timer);
      secured.removeListener('error', onError);
      resolve(secured);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      secured.destroy();
      reject(new TlsPolicyError('TLS_HANDSHAKE_FAILED', `the TLS handshake with ${servername} failed: ${err.message}`, servername));
    };
    secured.once('error', onError);
  });
}
