/**
 * A real SMTP receiver on loopback for tests and the demo.
 *
 * Strict mode imitates Gmail's 5.7.25 refusal. It is written independently of
 * mailedge's own checker on purpose: if both shared code, a bug in that code
 * would make the sender and this receiver agree with each other and the tests
 * would prove nothing.
 */
import { promises as dnsPromises } from 'node:dns';
import { isIPv4, isIPv6, type AddressInfo, type Socket } from 'node:net';
import ipaddr from 'ipaddr.js';
import type {
  SMTPServerAddress,
  SMTPServerAuthentication,
  SMTPServerAuthenticationResponse,
  SMTPServerDataStream,
  SMTPServerError,
  SMTPServerOptions,
  SMTPServerSession,
} from 'smtp-server';

export interface ReceivedSession {
  id: string;
  /** session.remoteAddress, without any ::ffff: prefix */
  clientAddress: string;
  /** EHLO/HELO argument, lower-cased by smtp-server; '' until the client sent one */
  ehlo: string;
  /** Strict-mode judgement, set once the client has sent MAIL FROM */
  verdict?: { ok: boolean; reason: string };
  messages: Array<{ from: string; to: string[]; size: number; data: string; /** Whether the message came over STARTTLS. */ tls?: boolean }>;
  /** Every refusal sent to the client; 'CONNECT' is a greeting fault. */
  rejected: Array<{ stage: 'CONNECT' | 'MAIL' | 'RCPT' | 'DATA'; code: number; message: string }>;
  /** Set when an injected fault cut the connection short without any reply. */
  fault?: 'noGreeting' | 'dropInData';
  /** Authentication mode: the receiver's own verdict for each message it read (accepted or refused), in order. */
  authentication?: ReceivedAuthentication[];
}

/** What the receiver concluded about one message (authentication mode), as mailauth's authenticate() computed it. */
export interface ReceivedAuthentication {
  /** The Authentication-Results header it would add (the first line: spf, dkim, dmarc). */
  header: string;
  spf: { result: string; domain: string } | null;
  dkim: Array<{ result: string; domain: string; selector: string; comment?: string }>;
  dmarc: { result: string; policy: string | null; domain: string } | null;
}

export interface SmtpReply {
  code: number;
  message: string;
}

/**
 * Faults for testing a client against a misbehaving receiver. Connection
 * faults (greeting, noGreeting) fire once per connection; the others once per
 * message (MAIL transaction), so a pooled client that reuses a connection
 * meets them message by message.
 */
export interface ReceiverFaults {
  /** Reply this (4xx or 5xx) instead of the 220 greeting, then close. */
  greeting?: SmtpReply;
  /** Accept the TCP connection but never greet. */
  noGreeting?: boolean;
  /** Reject MAIL FROM with this reply. */
  mailFrom?: SmtpReply;
  /** Reject every RCPT TO of the message with this reply. */
  rcptTo?: SmtpReply;
  /** Read the whole message, then reject it with this reply instead of 250. */
  data?: SmtpReply;
  /** Destroy the TCP connection once the message body starts arriving, before any reply. Wins over `data`. */
  dropInData?: boolean;
  /**
   * Apply each fault only to the first N connections (or N messages for the
   * per-message faults) after the faults were set, then behave normally.
   * Absent = always.
   */
  times?: number;
}

export interface ReceiverOptions {
  /** Default '127.0.0.1'. Must be a loopback address: the receiver allows clear-text AUTH. */
  host?: string;
  /** Default 0 (ephemeral). */
  port?: number;
  /** Gmail-like 5.7.25 check of the client's FCrDNS and EHLO name. */
  strict?: boolean;
  /** 'host:port' or '[::1]:port' of the fixture DNS server; required when strict. */
  dnsServer?: string;
  /** Default 1500. */
  dnsTimeoutMs?: number;
  /** Keep message bodies. Default true. */
  keepData?: boolean;
  /** When set, AUTH PLAIN/LOGIN is required and checked. */
  auth?: { user: string; pass: string };
  /** Faults in force from the first connection; see Receiver.setFaults. */
  faults?: ReceiverFaults;
  /**
   * Authentication mode (needs dnsServer): SPF, DKIM and DMARC of every
   * message, by mailauth's authenticate() with the client address, EHLO and
   * MAIL FROM seen, through the fixture DNS server; recorded in
   * session.authentication. 'strict' also refuses, as Gmail does, a DMARC
   * failure under p=reject (550 5.7.26).
   */
  authentication?: 'record' | 'strict';
  /**
   * Offer STARTTLS with this key and certificate (PEM; `cert` may carry the
   * chain). Default: no STARTTLS. `maxVersion` and `ciphers` make a handshake
   * that fails on purpose (a broken receiver TLS stack).
   */
  tls?: { key: string | Buffer; cert: string | Buffer; maxVersion?: 'TLSv1.2' | 'TLSv1.3'; ciphers?: string };
}

export interface Receiver {
  readonly host: string;
  readonly port: number;
  /** Every connection, including ones that never sent a message. */
  readonly sessions: readonly ReceivedSession[];
  /** Total TCP connections accepted. */
  readonly connections: number;
  /** Total accepted messages. */
  readonly messages: number;
  /** Clears records and counters; the faults in force stay. */
  reset(): void;
  /**
   * Replaces the faults in force (undefined: none). Takes effect for the next
   * connection or message; `times` counts afresh from here. Throws on a reply
   * that is not 4xx/5xx or a `times` that is not a whole number >= 0.
   */
  setFaults(faults: ReceiverFaults | undefined): void;
  /** Stops listening and destroys open connections at once; idempotent. */
  close(): Promise<void>;
}

export const FCRDNS_REJECT_TEXT =
  '5.7.25 The IP address sending this message does not have a PTR record setup, or the corresponding forward DNS entry does not point to the sending IP';
export const TEMPFAIL_TEXT = '4.7.25 temporary DNS failure';
/** Gmail's reply to a DMARC failure under p=reject (authentication mode 'strict'). */
export const DMARC_REJECT_TEXT = "5.7.26 Unauthenticated email from this domain is not accepted due to the domain's DMARC policy";

const DEFAULT_DNS_TIMEOUT_MS = 1500;

/** Outcome of the DNS half of the judgement; the EHLO half is cheap and redone per MAIL. */
type FcrdnsOutcome =
  | { kind: 'confirmed'; names: string[] }
  | { kind: 'unconfirmed'; detail: string }
  | { kind: 'temporary'; detail: string };

interface Judgement {
  verdict: { ok: boolean; reason: string };
  /** Absent when the client passes. */
  reply?: { code: number; message: string };
}

interface LiveRecord {
  record: ReceivedSession;
  generation: number;
}

type FaultKind = Exclude<keyof ReceiverFaults, 'times'>;

/** The RCPT verdict of one transaction, so that all its recipients share it. */
interface RcptDecision {
  reply: SmtpReply | undefined;
}

export async function startReceiver(options: ReceiverOptions = {}): Promise<Receiver> {
  const host = options.host ?? '127.0.0.1';
  if (!isLoopback(host)) {
    throw new Error(`startReceiver: host must be a loopback address, got ${JSON.stringify(host)}`);
  }
  const dnsTimeoutMs = options.dnsTimeoutMs ?? DEFAULT_DNS_TIMEOUT_MS;
  if (!Number.isFinite(dnsTimeoutMs) || dnsTimeoutMs <= 0) {
    throw new Error(`startReceiver: dnsTimeoutMs must be a positive number, got ${dnsTimeoutMs}`);
  }
  const strict = options.strict === true;
  const dnsServer = options.dnsServer;
  if (strict && !dnsServer) {
    throw new Error('startReceiver: strict mode needs dnsServer (the fixture DNS server)');
  }
  if (dnsServer) {
    // Fail at start-up rather than on the first MAIL FROM, where the error would
    // surface as a confusing SMTP reply.
    new dnsPromises.Resolver().setServers([dnsServer]);
  }
  const keepData = options.keepData ?? true;
  const authenticationMode = options.authentication;
  if (authenticationMode && !dnsServer) throw new Error('startReceiver: authentication mode needs dnsServer (the fixture DNS server)');
  // The body is needed to verify DKIM, whatever keepData says.
  const keepBody = keepData || Boolean(authenticationMode);
  /** mailauth's authenticate() over node:dns pointed at the fixture server: nothing shared with mailedge's resolver. */
  async function authenticateMessage(raw: Buffer, ip: string, helo: string, sender: string): Promise<ReceivedAuthentication> {
    const { authenticate } = await import('mailauth');
    const resolver = new dnsPromises.Resolver({ timeout: dnsTimeoutMs, tries: 1 });
    resolver.setServers([dnsServer as string]);
    const result = await authenticate(raw, {
      ip,
      helo,
      sender,
      mta: 'receiver.test',
      resolver: (name: string, type: string) => resolver.resolve(name, type) as Promise<string[]>,
      disableArc: true,
      disableBimi: true,
    });
    const dmarc = result.dmarc || null;
    return {
      header: result.headers.split(/\r?\n(?=\S)/)[0] ?? '',
      spf: result.spf ? { result: result.spf.status.result, domain: result.spf.domain } : null,
      // mailauth lists an unsigned message as one 'none' result without a domain: recorded as no signature.
      dkim: result.dkim.results.filter((r) => Boolean(r.signingDomain)).map((r) => ({
        result: r.status.result,
        domain: r.signingDomain,
        selector: r.selector ?? '',
        ...(typeof r.status.comment === 'string' ? { comment: r.status.comment } : {}),
      })),
      dmarc: dmarc ? { result: dmarc.status.result, policy: dmarc.policy ?? null, domain: dmarc.domain } : null,
    };
  }
  const auth = options.auth;
  let faults = checkFaults(options.faults);
  // How often each fault has fired since the faults were set, for `times`.
  let fired = new Map<FaultKind, number>();
  const rcptDecisions = new Map<string, RcptDecision>();
  // dropInData needs the socket, which smtp-server does not hand to onData.
  const socketsByPeer = new Map<string, Socket>();

  let sessions: ReceivedSession[] = [];
  let connections = 0;
  let messages = 0;
  // reset() starts a new generation; a connection that stays open across reset()
  // gets a fresh record the next time it does something, so nothing it does after
  // the reset is lost and nothing from before it shows up again.
  let generation = 0;
  const live = new Map<string, LiveRecord>();
  // DNS facts do not change within one test connection, so a definitive outcome is
  // cached; a temporary one is not, so a client retrying on the same connection
  // gets a fresh lookup as it would from a real receiver.
  const fcrdnsCache = new Map<string, FcrdnsOutcome>();
  const sockets = new Set<Socket>();
  let closing: Promise<void> | undefined;
  const pendingResolvers = new Set<dnsPromises.Resolver>();

  function createRecord(session: SMTPServerSession): ReceivedSession {
    const record: ReceivedSession = {
      id: session.id,
      clientAddress: stripMapped(session.remoteAddress),
      ehlo: '',
      messages: [],
      rejected: [],
    };
    // There is no EHLO hook in smtp-server, so the name is read from the live
    // session: a client that says EHLO and then nothing else is still recorded.
    Object.defineProperty(record, 'ehlo', {
      enumerable: true,
      get: (): string => {
        const name: unknown = session.hostNameAppearsAs;
        return typeof name === 'string' ? name : '';
      },
    });
    sessions.push(record);
    live.set(session.id, { record, generation });
    return record;
  }

  function recordFor(session: SMTPServerSession): ReceivedSession {
    const entry = live.get(session.id);
    if (entry && entry.generation === generation) return entry.record;
    return createRecord(session);
  }

  function reject(
    record: ReceivedSession,
    stage: 'MAIL' | 'RCPT' | 'DATA',
    code: number,
    message: string,
  ): SMTPServerError {
    record.rejected.push({ stage, code, message });
    const err: SMTPServerError = new Error(message);
    err.responseCode = code;
    return err;
  }

  /** Whether the fault fires now; counts it against `times` when it does. */
  function take(kind: FaultKind): boolean {
    const current = faults;
    if (!current || current[kind] === undefined || current[kind] === false) return false;
    const count = fired.get(kind) ?? 0;
    if (current.times !== undefined && count >= current.times) return false;
    fired.set(kind, count + 1);
    return true;
  }

  /** The reply to send when the fault fires now, undefined when it does not. */
  function takeReply(kind: 'greeting' | 'mailFrom' | 'rcptTo' | 'data'): SmtpReply | undefined {
    const reply = faults?.[kind];
    return reply && take(kind) ? reply : undefined;
  }

  async function lookup<T>(run: (resolver: dnsPromises.Resolver) => Promise<T>): Promise<T> {
    // One resolver per query, so that cancelling a query that overran its deadline
    // cannot cancel another session's queries.
    const resolver = new dnsPromises.Resolver({ timeout: dnsTimeoutMs, tries: 1 });
    resolver.setServers([dnsServer ?? '']);
    pendingResolvers.add(resolver);
    // c-ares backs off even with tries: 1 (a PTR query with timeout 500 took about
    // 1 s), so the deadline is enforced here as well.
    const timer = setTimeout(() => resolver.cancel(), dnsTimeoutMs);
    try {
      return await run(resolver);
    } finally {
      clearTimeout(timer);
      pendingResolvers.delete(resolver);
    }
  }

  async function checkFcrdns(ip: string): Promise<FcrdnsOutcome> {
    const client = canonicalIp(ip);
    if (!client) return { kind: 'unconfirmed', detail: `not an IP address: ${ip}` };

    let ptrNames: string[];
    try {
      // resolvePtr on the arpa name instead of reverse(): reverse() reports every
      // failure, a timeout included, as ENOTFOUND, which would hide the 451 case.
      ptrNames = await lookup((r) => r.resolvePtr(arpaName(client)));
    } catch (err) {
      const code = errorCode(err);
      return isDefinitiveNegative(code)
        ? { kind: 'unconfirmed', detail: `no PTR record (${code})` }
        : { kind: 'temporary', detail: `PTR lookup failed (${code})` };
    }
    if (ptrNames.length === 0) return { kind: 'unconfirmed', detail: 'no PTR record' };

    const results = await Promise.all(
      ptrNames.map(async (raw) => {
        const name = normalizeName(raw);
        // c-ares hands back escaped bytes (\013, \.) and raw spaces; such a name
        // cannot be a host name, so it confirms nothing.
        if (!isHostName(name)) return { name, status: 'no' as const };
        try {
          const addresses = await lookup((r) =>
            client.family === 4 ? r.resolve4(name) : r.resolve6(name),
          );
          const match = addresses.some((a) => canonicalIp(a)?.key === client.key);
          return { name, status: match ? ('yes' as const) : ('no' as const) };
        } catch (err) {
          return {
            name,
            status: isDefinitiveNegative(errorCode(err)) ? ('no' as const) : ('temp' as const),
          };
        }
      }),
    );
    const confirmed = results.filter((r) => r.status === 'yes').map((r) => r.name);
    if (confirmed.length > 0) return { kind: 'confirmed', names: confirmed };
    if (results.some((r) => r.status === 'temp')) {
      return { kind: 'temporary', detail: 'forward lookup failed' };
    }
    return { kind: 'unconfirmed', detail: `no PTR name resolves back to ${ip}` };
  }

  async function judge(sessionId: string, ip: string, ehlo: string): Promise<Judgement> {
    let outcome = fcrdnsCache.get(sessionId);
    if (!outcome) {
      outcome = await checkFcrdns(ip);
      if (outcome.kind !== 'temporary') fcrdnsCache.set(sessionId, outcome);
    }
    if (outcome.kind === 'temporary') {
      return {
        verdict: { ok: false, reason: `${TEMPFAIL_TEXT}: ${outcome.detail}` },
        reply: { code: 451, message: TEMPFAIL_TEXT },
      };
    }
    if (outcome.kind === 'unconfirmed') {
      return {
        verdict: { ok: false, reason: `${FCRDNS_REJECT_TEXT} (${outcome.detail})` },
        reply: { code: 550, message: FCRDNS_REJECT_TEXT },
      };
    }
    if (!outcome.names.includes(normalizeName(ehlo))) {
      const text = `5.7.25 EHLO name ${ehlo} is not the confirmed name of ${ip}`;
      return {
        verdict: { ok: false, reason: `${text} (confirmed: ${outcome.names.join(', ')})` },
        reply: { code: 550, message: text },
      };
    }
    return { verdict: { ok: true, reason: `${ip} is confirmed as ${normalizeName(ehlo)}` } };
  }

  const serverOptions: SMTPServerOptions = {
    logger: false,
    // Tests speak clear text on loopback; STARTTLS would only bring the built-in
    // certificate and its warning.
    ...(options.tls ? { ...options.tls } : { disabledCommands: ['STARTTLS'] }),
    authOptional: !auth,
    allowInsecureAuth: Boolean(auth),
    // Strict mode does its own forward-confirmed lookup against the fixture server;
    // the built-in one would query the system resolver and take only the first PTR.
    disableReverseLookup: true,

    onConnect(session, callback) {
      const record = createRecord(session);
      const refusal = takeReply('greeting');
      if (refusal) {
        record.rejected.push({ stage: 'CONNECT', code: refusal.code, message: refusal.message });
        const err: SMTPServerError = new Error(refusal.message);
        err.responseCode = refusal.code;
        callback(err);
        return;
      }
      if (take('noGreeting')) {
        // Never calling back keeps smtp-server from greeting; the socket stays
        // open until the client gives up or close() destroys it.
        record.fault = 'noGreeting';
        return;
      }
      callback();
    },

    onAuth(
      credentials: SMTPServerAuthentication,
      _session: SMTPServerSession,
      callback: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void,
    ) {
      const ok =
        auth !== undefined &&
        (credentials.method === 'PLAIN' || credentials.method === 'LOGIN') &&
        credentials.username === auth.user &&
        credentials.password === auth.pass;
      if (!ok) {
        callback(null, { message: 'Error: Authentication credentials invalid', responseCode: 535 });
        return;
      }
      callback(null, { user: auth.user });
    },

    onMailFrom(_address: SMTPServerAddress, session: SMTPServerSession, callback) {
      const record = recordFor(session);
      // A new transaction; smtp-server's session.transaction only moves on after
      // DATA, so after a refused RCPT and RSET it would still name the old one.
      rcptDecisions.delete(session.id);
      // An injected fault answers before strict mode's judgement, as a receiver
      // that refuses early would.
      const refusal = takeReply('mailFrom');
      if (refusal) {
        callback(reject(record, 'MAIL', refusal.code, refusal.message));
        return;
      }
      if (!strict) {
        callback();
        return;
      }
      judge(session.id, record.clientAddress, record.ehlo).then(
        ({ verdict, reply }) => {
          // The lookup may outlive close(); a closed receiver records nothing more.
          if (closing) {
            callback(new Error('receiver closed'));
            return;
          }
          record.verdict = verdict;
          callback(reply ? reject(record, 'MAIL', reply.code, reply.message) : null);
        },
        (err: unknown) => {
          // A bug in the judgement must not look like a DNS verdict.
          const message = `4.3.0 receiver error: ${err instanceof Error ? err.message : String(err)}`;
          callback(reject(record, 'MAIL', 451, message));
        },
      );
    },

    onRcptTo(_address: SMTPServerAddress, session: SMTPServerSession, callback) {
      const record = recordFor(session);
      let decision = rcptDecisions.get(session.id);
      if (!decision) {
        decision = { reply: takeReply('rcptTo') };
        rcptDecisions.set(session.id, decision);
      }
      const refusal = decision.reply;
      callback(refusal ? reject(record, 'RCPT', refusal.code, refusal.message) : null);
    },

    onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback) {
      const record = recordFor(session);
      const drop = take('dropInData');
      const refusal = drop ? undefined : takeReply('data');
      const chunks: Buffer[] = [];
      let size = 0;
      let dropped = false;
      stream.on('data', (chunk: Buffer) => {
        if (drop && !dropped) {
          dropped = true;
          record.fault = 'dropInData';
          const socket = socketsByPeer.get(peerKey(session.remoteAddress, session.remotePort));
          if (socket) {
            socket.destroy();
          } else {
            // Unreachable while smtp-server reports the socket's own peer; if it did
            // not, a 421 still ends the connection without accepting the message.
            callback(reject(record, 'DATA', 421, '4.4.2 connection dropped by fault'));
          }
          return;
        }
        if (dropped) return;
        size += chunk.length;
        if (keepBody) chunks.push(chunk);
      });
      // smtp-server destroys the stream with an error when the client goes away
      // mid-message; without a listener that error would crash the process.
      stream.on('error', () => undefined);
      stream.on('end', () => {
        // The whole body can arrive in the chunk that triggered the drop; the
        // client never got a reply, so the message must not count as accepted.
        if (dropped) return;
        if (authenticationMode && !refusal) {
          const from = session.envelope.mailFrom;
          authenticateMessage(Buffer.concat(chunks), record.clientAddress, record.ehlo, from ? from.address : '').then(
            (verdict) => {
              (record.authentication ??= []).push(verdict);
              if (authenticationMode === 'strict' && verdict.dmarc?.result === 'fail' && verdict.dmarc.policy === 'reject') {
                callback(reject(record, 'DATA', 550, DMARC_REJECT_TEXT));
                return;
              }
              accept();
            },
            (err: unknown) => callback(reject(record, 'DATA', 451, `4.3.0 receiver error: ${err instanceof Error ? err.message : String(err)}`)),
          );
          return;
        }
        accept();
      });
      const accept = (): void => {
        if (refusal) {
          callback(reject(record, 'DATA', refusal.code, refusal.message));
          return;
        }
        const mailFrom = session.envelope.mailFrom;
        record.messages.push({
          from: mailFrom ? mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          size,
          data: keepData ? Buffer.concat(chunks).toString('utf8') : '',
          tls: session.secure === true,
        });
        messages += 1;
        callback(null, 'OK: message queued');
      };
    },

    onClose(session: SMTPServerSession) {
      live.delete(session.id);
      fcrdnsCache.delete(session.id);
      rcptDecisions.delete(session.id);
    },
  };

  const SMTPServer = await loadSmtpServer();
  const server = new SMTPServer(serverOptions);
  server.server.on('connection', (socket: Socket) => {
    connections += 1;
    sockets.add(socket);
    const peer = peerKey(socket.remoteAddress ?? '', socket.remotePort ?? 0);
    socketsByPeer.set(peer, socket);
    socket.once('close', () => {
      sockets.delete(socket);
      if (socketsByPeer.get(peer) === socket) socketsByPeer.delete(peer);
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  // After start-up the only errors are those of single client sockets (a reset, a
  // socket destroyed by close()); they must not crash the test process.
  server.on('error', () => undefined);

  const address = server.server.address() as AddressInfo;
  const port = address.port;

  return {
    host,
    port,
    get sessions(): readonly ReceivedSession[] {
      return sessions;
    },
    get connections(): number {
      return connections;
    },
    get messages(): number {
      return messages;
    },
    reset(): void {
      sessions = [];
      connections = 0;
      messages = 0;
      generation += 1;
    },
    setFaults(next: ReceiverFaults | undefined): void {
      faults = checkFaults(next);
      fired = new Map();
    },
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        for (const resolver of pendingResolvers) resolver.cancel();
        // smtp-server's close() waits up to closeTimeout for clients to QUIT; a test
        // wants the port and the event loop back now.
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      });
      return closing;
    },
  };
}

/** Resolves once predicate() is true; polls every 10 ms. */
export function waitFor(predicate: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise<void>((resolve, reject) => {
    const poll = (): void => {
      let done: boolean;
      try {
        done = predicate();
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      if (done) {
        resolve();
      } else if (Date.now() >= deadline) {
        reject(new Error(`waitFor: condition still false after ${timeoutMs} ms`));
      } else {
        setTimeout(poll, 10);
      }
    };
    poll();
  });
}

/**
 * smtp-server is an optional peer dependency of mailedge: only this receiver
 * needs it, so it is loaded on first use, and its absence is an error that
 * says what to install instead of a failure to import mailedge/testing.
 */
async function loadSmtpServer(): Promise<(typeof import('smtp-server'))['SMTPServer']> {
  try {
    return (await import('smtp-server')).SMTPServer;
  } catch (err) {
    const code = errorCode(err);
    if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && err instanceof Error && err.message.includes("'smtp-server'")) {
      throw new Error(
        'startReceiver needs the smtp-server package, an optional peer dependency of mailedge: npm install --save-dev smtp-server',
        { cause: err },
      );
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------
// Addresses and names

interface CanonicalIp {
  family: 4 | 6;
  /** Comparable form: dotted quad, or 32 lower-case hex digits. */
  key: string;
  bytes: number[];
}

/** IPv4-mapped IPv6 (::ffff:a.b.c.d in any spelling) comes back as IPv4. */
export function canonicalIp(input: string): CanonicalIp | null {
  const ip = input.trim().replace(/%.*$/, '');
  // node:net decides what is an address: ipaddr.js alone also takes IPv4 shorthands such as 127.1.
  if (!isIPv4(ip) && !isIPv6(ip)) return null;
  const parsed = ipaddr.process(ip);
  const bytes = parsed.toByteArray();
  return parsed.kind() === 'ipv4'
    ? { family: 4, key: bytes.join('.'), bytes }
    : { family: 6, key: Buffer.from(bytes).toString('hex'), bytes };
}

function arpaName(ip: CanonicalIp): string {
  if (ip.family === 4) return `${[...ip.bytes].reverse().join('.')}.in-addr.arpa`;
  const nibbles = ip.bytes.flatMap((b) => [(b >> 4).toString(16), (b & 0xf).toString(16)]);
  return `${nibbles.reverse().join('.')}.ip6.arpa`;
}

function peerKey(address: string, port: number): string {
  return `${canonicalIp(address)?.key ?? address}|${port}`;
}

/** A copy, so that the caller changing its object later changes nothing here. */
function checkFaults(faults: ReceiverFaults | undefined): ReceiverFaults | undefined {
  if (faults === undefined) return undefined;
  for (const key of ['greeting', 'mailFrom', 'rcptTo', 'data'] as const) {
    const reply = faults[key];
    if (reply === undefined) continue;
    if (!Number.isInteger(reply.code) || reply.code < 400 || reply.code > 599) {
      throw new Error(`receiver faults: ${key}.code must be a 4xx or 5xx reply code, got ${reply.code}`);
    }
    if (typeof reply.message !== 'string' || /[\r\n]/.test(reply.message)) {
      throw new Error(`receiver faults: ${key}.message must be one line of text`);
    }
  }
  const { times } = faults;
  if (times !== undefined && (!Number.isInteger(times) || times < 0)) {
    throw new Error(`receiver faults: times must be a whole number >= 0, got ${times}`);
  }
  const copy: ReceiverFaults = { ...faults };
  for (const key of ['greeting', 'mailFrom', 'rcptTo', 'data'] as const) {
    const reply = faults[key];
    if (reply) copy[key] = { code: reply.code, message: reply.message };
  }
  return copy;
}

function stripMapped(address: string): string {
  return address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
}

function normalizeName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function isHostName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  return name.split('.').every((label) => /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/.test(label));
}

function isLoopback(host: string): boolean {
  const ip = canonicalIp(host);
  if (!ip) return false;
  if (ip.family === 4) return ip.bytes[0] === 127;
  return ip.key === '00000000000000000000000000000001';
}

function errorCode(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') {
    return err.code;
  }
  return 'EUNKNOWN';
}

/** NXDOMAIN and NODATA say "there is no such record"; anything else may heal. */
function isDefinitiveNegative(code: string): boolean {
  return code === 'ENOTFOUND' || code === 'ENODATA';
}
