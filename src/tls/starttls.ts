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
  /**
   * Throws when the name no longer stands. Runs once the greeting is in,
   * before mailedge's EHLO, and again right before the handover when
   * mailedge has said EHLO: the receiver chooses how long its EHLO and
   * STARTTLS replies and the handshake take, and Nodemailer's EHLO follows.
   */
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
function connectionError(message: string, code: 'ECONNECTION' | 'ETIMEDOUT' | 'EPROTOCOL'): Error {
  return markNeverConnected(Object.assign(new Error(message), { code, command: 'CONN' }));
}

/**
 * A greeting other than 220, as Nodemailer would have reported it (EPROTOCOL,
 * response, responseCode, command CONN), so that applications and
 * src/routes/direct.ts see the same error as before mailedge read greetings:
 * 4xx passes to the next MX host, 5xx ends the domain (RFC 5321 section 5.1).
 * Anything else (2xx or 3xx other than 220, no code at all) is no SMTP
 * greeting: nothing was said, so it is a connection failure and the next MX
 * host is tried. Refused here rather than by Nodemailer, because a refused
 * greeting must never lead to a handed-over plain socket (see negotiate).
 */
function greetingError(greeting: Reply): Error {
  const response = greeting.lines.join('\n');
  const error = Object.assign(new Error(`Invalid greeting. response=${response}: ${response}`), {
    code: 'EPROTOCOL',
    response,
    command: 'CONN',
    ...(greeting.code >= 400 && greeting.code < 600 ? { responseCode: greeting.code } : {}),
  });
  return greeting.code >= 500 && greeting.code < 600 ? error : markNeverConnected(error);
}

/** Sockets mailedge said QUIT on: they close on their own (quit's timer), so the QUIT is not cut off by a destroy. */
const quitting = new WeakSet<Socket>();

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
        let reply: Reply | undefined;
        try {
          reply = this.take();
        } catch (err) {
          cleanup();
          reject(err);
          return;
        }
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
      let ready: Reply | undefined;
      try {
        ready = this.take();
      } catch (err) {
        cleanup();
        reject(err);
        return;
      }
      if (ready) {
        cleanup();
        resolve(ready);
        return;
      }
      this.socket.resume();
    });
  }

  /**
   * One complete reply (its last line "ddd text"), or undefined; throws on a
   * reply whose lines carry different codes. RFC 5321 section 4.2.1: every
   * line of a reply has the same code. A reply "220-x / 554 y" is read as 554
   * by the last line and as 220 by Nodemailer (its first three characters): a
   * receiver, or whoever is on the path, must not get to choose which.
   */
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
        const code = line.slice(0, 3);
        if (lines.some((l) => l.slice(0, 3) !== code)) {
          throw connectionError(`the server's reply carries different codes on its lines (${lines.map((l) => l.slice(0, 3)).join(', ')}), which RFC 5321 section 4.2.1 forbids: ${lines.join(' / ')}`, 'EPROTOCOL');
        }
        return { code: /^\d{3}$/.test(code) ? Number(code) : 0, lines, raw: Buffer.from(raw) };
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

function quit(socket: Socket, ...under: Socket[]): void {
  for (const s of [socket, ...under]) quitting.add(s);
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
    if (!(err instanceof TlsPolicyError) && !quitting.has(socket)) socket.destroy();
    throw err;
  }
}

async function negotiate(socket: Socket, settings: StartTlsSettings): Promise<Handover> {
  const { attempt, timeout } = settings;
  const requirement = attempt.requirement;
  const host = requirement.host.replace(/\.$/, '');
  const refuse = (code: ReturnType<typeof codeFor>, message: string, evidence: string[], outcome?: TlsOutcome): never => {
    throw new TlsPolicyError(code, message, host, { evidence, ...(outcome ? { outcome } : {}) });
  };

  const reader = new ReplyReader(socket);
  const greeting = await reader.read(timeout);
  // A refusing greeting ends the connection here, whatever the policy: a socket handed over
  // after it would be read by Nodemailer, whose reading of the reply is not this one.
  if (greeting.code !== 220) {
    quit(socket);
    throw greetingError(greeting);
  }
  await settings.beforeEhlo?.();
  /** Set once mailedge has said EHLO: from then on the receiver has had time in which the name may have gone. */
  let ehloSent = false;

  /** Gives Nodemailer the connection with the server's greeting in front, once the name still stands. */
  const handOver = async (connection: Socket, options: Handover['options']): Promise<Handover> => {
    if (ehloSent && settings.beforeEhlo) {
      try {
        await settings.beforeEhlo();
      } catch (err) {
        quit(connection, socket);
        throw err;
      }
    }
    connection.pause();
    connection.unshift(greeting.raw);
    return { connection, options };
  };
  const plain = (extra: Handover['options'] = {}): Promise<Handover> => {
    // Never reached under a mandatory requirement (every path there refuses first); kept as the
    // last guard, since a plain socket handed over under a policy is the downgrade itself.
    if (mandatory(requirement)) {
      quit(socket);
      refuse(codeFor(requirement, 'starttls'), `${host}: no TLS session, which the ${requirement.policy} policy requires`, []);
    }
    attempt.outcome = { version: null, cipher: null, authorized: false, policy: 'none' };
    return handOver(socket, extra);
  };

  if (settings.ignoreTLS && !mandatory(requirement)) return plain();
  // The retry after a failed opportunistic handshake (src/routes/direct.ts): clear text, and Nodemailer must not try again.
  if (attempt.cleartext && !mandatory(requirement)) return plain({ ignoreTLS: true });

  socket.write(`EHLO ${settings.name}\r\n`);
  ehloSent = true;
  const ehlo = await reader.read(timeout);
  const offered = ehlo.code === 250 && ehlo.lines.some((line) => /^250[ -]STARTTLS\b/i.test(line));
  if (!offered) {
    if (mandatory(requirement)) {
      quit(socket);
      refuse(codeFor(requirement, 'starttls'), `${host} does not offer STARTTLS, which the ${requirement.policy} policy requires`, [`EHLO ${settings.name}`, ...ehlo.lines]);
    }
    return plain();
  }

  socket.write('STARTTLS\r\n');
  const ready = await reader.read(timeout);
  if (ready.code !== 220) {
    if (mandatory(requirement)) {
      quit(socket);
      refuse(codeFor(requirement, 'starttls'), `${host} refused STARTTLS (${ready.lines.join(' ')}), which the ${requirement.policy} policy requires`, ['STARTTLS', ...ready.lines]);
    }
    // The session is still clear text; Nodemailer must not try again.
    return plain({ ignoreTLS: true });
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
      quit(secured, socket);
      refuse('DANE_NO_MATCH', `${host}: ${verdict.reason}`, [`_25._tcp.${host} TLSA`, ...requirement.tlsa.map((r) => `  ${r.usage} ${r.selector} ${r.matchingType} ${r.data}`)], outcome);
    }
    attempt.outcome = { ...base, authorized: true };
  } else {
    const failure = webPkiFailure(secured, host);
    attempt.outcome = { ...base, authorized: failure === null, ...(failure === null ? {} : { failure }) };
    if (failure !== null && requirement.kind === 'webpki') {
      quit(secured, socket);
      refuse('MTA_STS_CERT_INVALID', `${host}: ${failure}`, [`certificate of ${host}: ${secured.getPeerCertificate().subjectaltname ?? 'no subjectAltName'}`], attempt.outcome);
    }
  }
  // Nodemailer's EHLO over TLS comes next: the name is decided again after the STARTTLS reply and the handshake.
  return handOver(secured as Socket, { secure: true, secured: true });
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
