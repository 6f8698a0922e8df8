/**
 * One edge address to one destination host: a relay, or one MX host in direct
 * delivery. Nodemailer's own SMTP transport (or pool) does the SMTP; mailedge
 * owns when a message reaches it and the socket it goes out on.
 *
 * Each Nodemailer transport (a "channel") is bound to one edge address and one
 * EHLO name. A message is decided against the identity twice: when it is sent,
 * and again (a cache read) right before it is handed to a channel; a channel
 * whose name is no longer the confirmed one takes no more messages and opens
 * no more connections. Pooled messages wait in mailedge's queue until a
 * connection is free, so a message never waits inside Nodemailer's pool under
 * a name that may be withdrawn meanwhile.
 */
import SMTPTransport from 'nodemailer/lib/smtp-transport';
import SMTPPool from 'nodemailer/lib/smtp-pool';
import type { MailMessage } from 'nodemailer/lib/mailer';
import { EdgeRefusedError, MailedgeError } from '../errors.js';
import { worthWarning, type PreflightReport } from '../checks/types.js';
import { EdgeVerifier, type Identity } from '../identity.js';
import { withEnvelopeChecks, type Screening } from '../envelope.js';
import { channelKey, decide, type Decision } from '../decide.js';
import type { ResolvedEdgeOptions, SmtpOptions } from '../options.js';
import { asSmtpSendError } from '../send-error.js';
import { awaitGreeting, connectChecked } from './socket.js';
import { callSafely } from '../call-safely.js';
import { envelopeOf, fullEnvelopeOf, withEnvelope } from './mail-view.js';
import type { MailedgeSentMessageInfo, MailedgeWarning, Route, RouteContext } from './route.js';
import type { SMTPSentMessageInfo } from 'nodemailer/lib/smtp-transport';
import type { Socket } from 'node:net';
// Direct delivery's TLS policies (issue 12): STARTTLS by mailedge on its own socket.
import { negotiateTls, type Handover } from '../tls/starttls.js';
import { tlsAttemptOf, type TlsAttempt } from '../tls/outcome.js';
// Message identity (issue 11): SPF x DKIM x DMARC of this message, src/message/.
import { MessageStage, type Authentication } from '../message/stage.js';
// Issue 11 sender requirement: whether the connection that carried the message was TLS (src/routes/wire-tls.ts).
import { watchMessage, watchSocket, type Carried } from './wire-tls.js';

const DEFAULT_CONNECTION_TIMEOUT = 2 * 60 * 1000;
/** Nodemailer's own default wait for the greeting. */
const DEFAULT_GREETING_TIMEOUT = 30 * 1000;
/** Hand-overs per message: a name that changes again and again between check and connection is not chased for ever. */
const MAX_HANDOVERS = 3;

type Inner = SMTPTransport | SMTPPool;
type SendCallback = (err: Error | null, info?: SMTPSentMessageInfo) => void;
type SocketCallback = (err: Error | null, socketOptions?: { connection: Socket; name: string } & Handover['options']) => void;

/** A Nodemailer transport bound to one edge address and EHLO name. */
interface Channel {
  key: string;
  decision: Decision;
  inner: Inner;
  inFlight: number;
  /** Set once the confirmed identity moved on: no new message, no new connection. */
  retired: boolean;
}

/** The name a channel was opened for is no longer the one to send under: hand the message over again. */
class ChannelRetired extends Error {}

interface SlotWaiter {
  grant(): void;
  fail(err: Error): void;
}

export class RelayRoute implements Route {
  readonly verifier: EdgeVerifier;
  private readonly pooled: boolean;
  private readonly maxConnections: number;
  private readonly connectionTimeout: number;
  private readonly greetingTimeout: number;
  private channel: Channel | undefined;
  private readonly retiring = new Set<Channel>();
  private readonly waiters: SlotWaiter[] = [];
  /** Messages handed to a channel and not yet back. */
  private handed = 0;
  /** Messages accepted by send() and not yet handed to a channel: what Nodemailer's pool calls its queue. */
  private waiting = 0;
  private idling = true;
  private closed = false;
  private warnedFor: PreflightReport | undefined;
  /** The TLS attempt of the message being handed to Nodemailer now (src/tls/outcome.ts); openSocket takes it. */
  private pendingTls: TlsAttempt | undefined;
  private readonly message: MessageStage;
  /** The context's warn, bound once: the send path hands it on for every message. */
  private readonly warn = (warning: MailedgeWarning): void => this.context.warn(warning);
  /** The receiver as the TLS requirement names it: host:port. */
  private readonly receiverName: string;

  constructor(
    private readonly smtp: SmtpOptions,
    readonly options: ResolvedEdgeOptions,
    private readonly context: RouteContext,
  ) {
    this.verifier = new EdgeVerifier(options, context.resolver);
    this.message = new MessageStage(options, context.resolver);
    // Nodemailer's test: any truthy `pool` pools.
    this.pooled = Boolean(smtp.pool);
    this.maxConnections = Number(smtp.maxConnections) || 5;
    // Nodemailer reads 0 as "use the default"; so does mailedge.
    this.connectionTimeout = Number(smtp.connectionTimeout) || DEFAULT_CONNECTION_TIMEOUT;
    this.greetingTimeout = Number(smtp.greetingTimeout) || DEFAULT_GREETING_TIMEOUT;
    this.receiverName = `${smtp.host ?? 'localhost'}:${options.port}`;
    // As Nodemailer's pool does: an 'idle' once it is ready, for apps that start sending on it.
    if (this.pooled) setImmediate(() => this.idling && !this.closed && this.context.emit('idle'));
  }

  /** The identity now: from cache (no promise) while it is within its TTL. */
  identity(): Identity | Promise<Identity> {
    return this.verifier.current() ?? this.verifier.identity();
  }

  async preflight(): Promise<PreflightReport> {
    return (await this.verifier.identity()).report;
  }

  async send(mail: MailMessage): Promise<MailedgeSentMessageInfo> {
    const signal = abortSignalOf(mail);
    // This message's own secrets (a per-message auth or dkim key) join the transport's, before Nodemailer logs a line of it.
    const redact = this.context.redact.withMessage(mail.data);
    // Counted as waiting (Nodemailer's pool queue) from here until it is handed to a channel or fails.
    this.admit();
    let admitted = true;
    try {
      if (this.closed) throw closedError();
      // Aborted before it started: nothing is checked, warned about or built for it.
      if (signal?.aborted) throw createAbortError(signal);
      // Each stage answers from cache, without a promise, in the steady state (an application sending the same
      // kind of message again): awaited only when it had to ask DNS or render.
      const pendingIdentity = this.identity();
      const identity = pendingIdentity instanceof Promise ? await untilAborted(pendingIdentity, signal) : pendingIdentity;
      const decision = decide(identity, mail.data);
      this.announce(identity, decision);
      const screening = this.screen(identity, decision, mail);
      const screened = screening instanceof Promise ? await untilAborted(screening, signal) : screening;
      const { refused } = screened;
      // Message identity (issue 11): rendered once here (when the verdict needs the bytes); these bytes are verified and sent.
      const preparing = this.message.prepare(mail, screened.outgoing, identity.report);
      const message = preparing instanceof Promise ? await untilAborted(preparing, signal) : preparing;
      const outgoing = message?.outgoing ?? screened.outgoing;
      // Judged now for this decision, before waiting for a connection; the hand-over below re-reads it (same edge) or judges anew.
      const judging = message && this.message.judge(message, decision, identity.report, mail.data, this.warn);
      if (judging instanceof Promise) await untilAborted(judging, signal);
      for (let handover = 1; ; handover++) {
        if (signal?.aborted) throw createAbortError(signal);
        // A connection free now: no wait (and no promise) for it.
        if (!this.takeSlot()) await this.acquireSlot(signal);
        if (admitted) {
          admitted = false;
          this.unadmit();
        }
        let channel: Channel;
        let now: Decision;
        let authentication: Authentication | undefined;
        try {
          // The message meets the connection: the identity as it stands now, a cache read unless it expired.
          const pendingCurrent = this.identity();
          const current = pendingCurrent instanceof Promise ? await untilAborted(pendingCurrent, signal) : pendingCurrent;
          now = decide(current, mail.data);
          // Message identity (issue 11): the verdict for the address and EHLO name it leaves with; may refuse.
          const verdict = message && this.message.judge(message, now, current.report, mail.data, this.warn);
          authentication = verdict instanceof Promise ? await untilAborted(verdict, signal) : verdict;
          channel = this.channelFor(now);
        } catch (err) {
          this.releaseSlot();
          throw err;
        }
        try {
          const delivered = await this.deliver(channel, outgoing);
          const info = redact.info(delivered.info);
          const carried = delivered.carried;
          if (carried && message) this.message.requireTls(carried, this.receiverName, now, identity.report, this.warn);
          if (refused.length > 0) {
            info.rejected = [...(info.rejected ?? []), ...refused.map((r) => r.recipient ?? '')];
            info.rejectedErrors = [...(info.rejectedErrors ?? []), ...refused];
          }
          const sent = info as MailedgeSentMessageInfo;
          sent.edge = { address: channel.decision.address, name: channel.decision.name, verified: now.verified, stale: now.stale };
          if (authentication) sent.authentication = authentication;
          if (carried) sent.tls = carried.tls;
          return sent;
        } catch (err) {
          if (handover < MAX_HANDOVERS && (err instanceof ChannelRetired || (channel.retired && droppedByRetirement(err)))) continue;
          throw err;
        }
      }
    } catch (err) {
      if (err instanceof MailedgeError) {
        err.mail = mail.data;
        throw err;
      }
      throw asSmtpSendError(err, mail.data, redact);
    } finally {
      if (admitted) this.unadmit();
    }
  }

  async verify(): Promise<true> {
    const identity = await this.verifier.identity();
    const decision = decide(identity, undefined);
    const channel = this.channelFor(decision);
    try {
      return await channel.inner.verify();
    } catch (err) {
      if (err instanceof MailedgeError) throw err;
      throw asSmtpSendError(err, undefined, this.context.redact);
    }
  }

  /** Like Nodemailer's pool: idle while fewer messages wait than there are connections; unpooled, while nothing is under way. */
  isIdle(): boolean {
    return this.pooled ? this.waiting < this.maxConnections : this.waiting + this.handed === 0;
  }

  close(): void {
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) waiter.fail(closedError());
    if (this.channel) this.retire(this.channel);
    this.channel = undefined;
    this.verifier.dispose();
  }

  private admit(): void {
    this.waiting++;
    if (this.idling && this.waiting >= this.maxConnections) this.idling = false;
  }

  private unadmit(): void {
    this.waiting--;
    if (!this.idling && this.waiting < this.maxConnections) {
      this.idling = true;
      if (this.pooled && !this.closed) this.context.emit('idle');
    }
  }

  /** A slot taken at once when one is free: unpooled always, pooled while fewer messages are handed than connections. */
  private takeSlot(): boolean {
    if (this.closed) return false;
    if (!this.pooled || (this.handed < this.maxConnections && this.waiters.length === 0)) {
      this.handed++;
      return true;
    }
    return false;
  }

  /** Pooled: waits until a connection is free (or may be opened) for this message. */
  private acquireSlot(signal: AbortSignal | undefined): Promise<void> {
    if (this.closed) return Promise.reject(closedError());
    if (this.takeSlot()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        const index = this.waiters.indexOf(waiter);
        if (index !== -1) this.waiters.splice(index, 1);
        reject(createAbortError(signal as AbortSignal));
      };
      const waiter: SlotWaiter = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          this.handed++;
          resolve();
        },
        fail: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  private releaseSlot(): void {
    this.handed--;
    if (this.handed < this.maxConnections) this.waiters.shift()?.grant();
  }

  private deliver(channel: Channel, outgoing: MailMessage): Promise<{ info: SMTPSentMessageInfo; carried: Carried | undefined }> {
    channel.inFlight++;
    // Tells which connection the message's bytes were piped into.
    const carried = watchMessage(outgoing);
    return new Promise((resolve, reject) => {
      const done: SendCallback = (err, info) => {
        channel.inFlight--;
        if (channel.retired && channel.inFlight === 0) this.retiring.delete(channel);
        this.releaseSlot();
        if (err || !info) reject(err ?? new Error('no result from the transport'));
        else resolve({ info, carried: carried() });
      };
      // Issue 12: Nodemailer's SMTPTransport calls getSocket synchronously inside send(), so the
      // message's TLS attempt reaches openSocket through this field (direct delivery never pools).
      this.pendingTls = tlsAttemptOf(outgoing);
      try {
        (channel.inner as { send(mail: MailMessage, callback: SendCallback): unknown }).send(outgoing, done);
      } finally {
        this.pendingTls = undefined;
      }
    });
  }

  /** The channel for a decision: the current one while its name stands, else a new one, the old one retired. */
  private channelFor(decision: Decision): Channel {
    const key = channelKey(decision);
    if (this.channel?.key === key) return this.channel;
    if (this.channel) this.retire(this.channel);
    const channel: Channel = { key, decision, inner: undefined as unknown as Inner, inFlight: 0, retired: false };
    channel.inner = this.createInner(channel);
    this.channel = channel;
    return channel;
  }

  private createInner(channel: Channel): Inner {
    const options = {
      ...this.smtp,
      host: this.smtp.host ?? 'localhost',
      port: this.options.port,
      name: channel.decision.name,
      logger: this.context.logger,
      getSocket: (_options: unknown, callback: SocketCallback) => this.openSocket(channel, callback),
    } as ConstructorParameters<typeof SMTPTransport>[0] & ConstructorParameters<typeof SMTPPool>[0];
    const inner: Inner = this.pooled ? new SMTPPool(options) : new SMTPTransport(options);
    // Nodemailer's transports read OAuth2 provisioning from their Mailer and announce new tokens on it.
    const mailer = this.context.mailer();
    if (mailer) (inner as { mailer?: unknown }).mailer = mailer;
    if (inner instanceof SMTPPool) inner.on('clear', () => channel === this.channel && this.context.emit('clear'));
    return inner;
  }

  /**
   * A channel's name is withdrawn or replaced: it takes no more messages. Its
   * idle connections close now; a connection carrying a message finishes it
   * first (Nodemailer's pool close), and a message Nodemailer had queued
   * again after a dropped connection comes back to be handed over anew.
   */
  private retire(channel: Channel): void {
    channel.retired = true;
    if (channel.inFlight > 0) this.retiring.add(channel);
    channel.inner.close();
    if (this.channel === channel) this.channel = undefined;
  }

  /** Throws the refusal, or ChannelRetired, unless the channel's name is the one this identity allows. */
  private stillStands(channel: Channel, identity: Identity): void {
    if (channelKey(decide(identity, undefined)) === channel.key) return;
    if (this.channel === channel) this.retire(channel);
    throw new ChannelRetired();
  }

  /** Nodemailer's per-connection hook: the channel's name must still be the one to use, now. */
  private openSocket(channel: Channel, callback: SocketCallback): void {
    const tlsAttempt = this.pendingTls;
    this.pendingTls = undefined;
    const opening = async (): Promise<{ connection: Socket; name: string } & Handover['options']> => {
      if (this.closed) throw closedError();
      if (channel.retired) throw new ChannelRetired();
      const identity = await this.identity();
      this.stillStands(channel, identity);
      const connection = await connectChecked(identity, this.options.port, this.options.localAddress, this.connectionTimeout);
      // The receiver chooses how long its greeting takes: the name goes into EHLO only if it still stands then.
      const beforeEhlo = async (): Promise<void> => this.stillStands(channel, await this.identity());
      if (!tlsAttempt) {
        try {
          // With implicit TLS nothing arrives before the handshake Nodemailer makes: decided again after the connect only.
          if (!this.smtp.secure) await awaitGreeting(connection, this.greetingTimeout);
          await beforeEhlo();
        } catch (err) {
          connection.destroy();
          throw err;
        }
        // Nodemailer says EHLO (and STARTTLS, unless ignoreTLS) on this socket: its replies tell whether TLS was offered.
        watchSocket(connection, true);
        return { connection, name: channel.decision.name };
      }
      // Issue 12, direct delivery: STARTTLS and the certificate as the domain's TLS policy asks (src/tls/starttls.ts),
      // then Nodemailer gets the secured socket (or the plain one when TLS is not used) with the server's greeting.
      const handover = await negotiateTls(connection, {
        name: channel.decision.name,
        attempt: tlsAttempt,
        timeout: this.greetingTimeout,
        ignoreTLS: Boolean(this.smtp.ignoreTLS),
        beforeEhlo,
      });
      watchSocket(handover.connection, false);
      return { connection: handover.connection, name: channel.decision.name, ...handover.options };
    };
    opening().then(
      (socketOptions) => callSafely(() => callback(null, socketOptions)),
      (err: Error) => callSafely(() => callback(err)),
    );
  }

  /**
   * The envelope checks in front of a send (DNS only, see src/envelope.ts).
   * Recipients whose domain publishes a null MX are taken out of the envelope
   * handed to Nodemailer, and come back in info.rejected; when none is left,
   * or an enforced sender-side check failed, the send is refused before any
   * connection, with the message.
   */
  private screen(identity: Identity, decision: Decision, mail: MailMessage): Screened | Promise<Screened> {
    const checks = this.context.envelopeChecks;
    if (!checks.active) return { outgoing: mail, refused: [] };
    const { report } = identity;
    // The common case: this envelope screened before from this edge, every verdict behind it still cached.
    const full = fullEnvelopeOf(mail);
    const kept = checks.screened(full.from || false, full.to ?? [], decision.address, decision.name);
    if (kept) return this.screened(kept, report, mail);
    const screening = checks.screen(
      { from: full.from || false, to: full.to ?? [] },
      { address: decision.address, ehloName: decision.name },
      {
        // While the identity is served stale DNS is failing: sends do not wait for it, here either.
        wait: !report.stale,
        warn: (check) => this.context.warn({ code: check.code ?? 'DNS_TEMPFAIL', message: `mailedge: ${check.id} ${check.domain ?? ''}: ${check.actual}`, check, report }),
      },
    );
    return screening instanceof Promise ? screening.then((done) => this.screened(done, report, mail)) : this.screened(screening, report, mail);
  }

  /** What the screening leaves of the envelope; throws the refusal when nothing is left to send. */
  private screened(screening: Screening, report: PreflightReport, mail: MailMessage): Screened {
    const withChecks = (): PreflightReport => withEnvelopeChecks(report, screening.checks);
    if (screening.blocking) throw new EdgeRefusedError(withChecks(), screening.blocking, { mail: mail.data });
    if (screening.refused.length === 0) return { outgoing: mail, refused: NONE_REFUSED };
    const envelope = envelopeOf(mail);
    const refusedSet = new Set(screening.refused.map((r) => r.recipient));
    const remaining = envelope.to.filter((recipient) => !refusedSet.has(recipient));
    const first = screening.refused[0];
    if (remaining.length === 0 && first) {
      throw new EdgeRefusedError(withChecks(), first.check, { mail: mail.data, recipients: [...refusedSet] });
    }
    const refused = screening.refused.map(({ recipient, check }) => new EdgeRefusedError(withChecks(), check, { recipients: [recipient] }));
    // RCPT TO for the others only; the headers still name everyone.
    return { outgoing: withEnvelope(mail, { from: envelope.from, to: remaining }), refused };
  }

  /** Warnings about the identity a send goes out under: once per verdict when confirmed (or past a local relay), on every send when not. */
  private announce(identity: Identity, decision: Decision): void {
    const { report } = identity;
    // Past a relay on this machine an unconfirmed identity is news once per verdict, like any warn-level finding.
    if (!decision.verified && !identity.local) {
      const failed = decision.failed;
      this.context.warn({
        code: 'UNVERIFIED_SEND',
        message: `mailedge: sending despite ${failed?.id} ${failed?.status} (${failed?.code}): ${failed?.actual}; EHLO ${decision.name}`,
        check: failed,
        report,
      });
      return;
    }
    if (this.warnedFor === report) return;
    this.warnedFor = report;
    if (report.stale) {
      this.context.warn({
        code: 'IDENTITY_STALE',
        message: `mailedge: using ${report.name} past its TTL: ${report.staleReason ?? 're-verification failed temporarily'}`,
        check: null,
        report,
      });
      return;
    }
    for (const check of report.checks) {
      if (worthWarning(check) && check.code) this.context.warn({ code: check.code, message: `mailedge: ${check.id}: ${check.actual}`, check, report });
    }
  }
}

const NONE_REFUSED: readonly EdgeRefusedError[] = Object.freeze([]);

/** What the envelope checks leave to send: the message (with the recipients left) and the recipients refused. */
interface Screened {
  outgoing: MailMessage;
  refused: readonly EdgeRefusedError[];
}

/** Nodemailer's shape for an aborted send, so apps test err.code === 'EABORT' either way. */
function createAbortError(signal: AbortSignal): Error {
  return Object.assign(new Error('Message sending aborted', { cause: signal.reason }), { name: 'AbortError', code: 'EABORT' });
}

function closedError(): Error {
  return Object.assign(new Error('The transport was closed'), { code: 'ECONNECTION' });
}

/**
 * Nodemailer's pool, closed because its name was retired, gives back a
 * message it had queued again (after a dropped connection) with a bare error:
 * no reply, no command, no code. Such a message was not delivered, and is
 * handed over again under the name that stands now.
 */
function droppedByRetirement(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const fields = err as Error & { code?: unknown; command?: unknown; responseCode?: unknown };
  return fields.code === undefined && fields.command === undefined && fields.responseCode === undefined;
}

function abortSignalOf(mail: MailMessage): AbortSignal | undefined {
  const signal: unknown = mail.data.signal;
  return signal instanceof AbortSignal ? signal : undefined;
}

/** A wait that ends when the message's signal aborts: Nodemailer stops watching it once the transport has the message. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(createAbortError(signal));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(createAbortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

