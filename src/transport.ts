/**
 * The facade: Nodemailer's SMTP transport, with the edge identity confirmed
 * before any connection to the destination and the confirmed name forced into
 * EHLO. Nodemailer keeps doing SMTP; mailedge owns the route, the socket and
 * the name, handing them over through Nodemailer's getSocket hook, which runs
 * once per connection (pooled or not) before the greeting.
 */
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import nodemailer from 'nodemailer';
import type { SMTPSentMessageInfo, SendMailOptions, Transporter, PluginFunction } from 'nodemailer';
import { EdgeRefusedError, MailedgeError, SendFailedError, type ErrorCode, type WarningCode } from './errors.js';
import { enforcedFailures, firstFailure, worthWarning, type CheckResult, type PreflightReport } from './checks/types.js';
import { EdgeVerifier, type Identity } from './identity.js';
import type { Resolver } from './dns/resolver.js';
import { EnvelopeChecks, envelopeOf, withEnvelopeChecks } from './envelope.js';
import { resolveEdgeOptions, type MailedgeOptions, type ResolvedEdgeOptions } from './options.js';
import { redactingLogger, secretRedactor } from './redact.js';
import { memberOptions, poolReport, stickyIndex } from './pool.js';
import { deliverDirect } from './direct.js';

export interface EdgeInfo {
  /** The edge address receivers see. */
  address: string;
  /** The name sent in EHLO. */
  name: string;
  /** False only in warn mode, when the check failed and the message went out anyway. */
  verified: boolean;
  /** True when the identity is served stale through a temporary DNS failure (see edge.dns.staleFor). */
  stale: boolean;
}

export type MailedgeSentMessageInfo = SMTPSentMessageInfo & { edge: EdgeInfo };

export interface MailedgeWarning {
  /** A warning code; or the error code of a check set to 'warn' in edge.checks that failed (e.g. SPF_FAIL). */
  code: WarningCode | ErrorCode;
  message: string;
  check: CheckResult | null;
  report: PreflightReport;
}

export type SendCallback = (err: Error | null, info?: MailedgeSentMessageInfo) => void;

interface Decision {
  name: string;
  verified: boolean;
}

const DEFAULT_CONNECTION_TIMEOUT = 2 * 60 * 1000;
const FORWARDED_EVENTS = ['idle', 'clear', 'token', 'error'] as const;
/** MX hosts whose transports (and verified identities) are kept for reuse in direct delivery. */
const MAX_MX_TRANSPORTS = 256;

export class MailedgeTransport extends EventEmitter {
  readonly edgeOptions: ResolvedEdgeOptions;
  private readonly verifier: EdgeVerifier;
  private readonly envelopeChecks: EnvelopeChecks;
  private readonly defaults: SendMailOptions | undefined;
  private mailer: Transporter<SMTPSentMessageInfo>;
  /** With pool: true, the EHLO name the current pool's connections were opened with. */
  private mailerName: string | undefined;
  /** Sends handed to each Nodemailer transport and not yet finished. */
  private readonly inFlight = new Map<Transporter<SMTPSentMessageInfo>, number>();
  /** Pools whose name was superseded: they finish what they hold, then close. */
  private readonly retiring = new Set<Transporter<SMTPSentMessageInfo>>();
  private readonly plugins: Array<['compile' | 'stream', PluginFunction<SMTPSentMessageInfo>]> = [];
  private readonly createMailer: () => Transporter<SMTPSentMessageInfo>;
  private readonly pooled: boolean;
  private readonly redact: (text: string) => string;
  private readonly connectionTimeout: number;
  private warnedFor: PreflightReport | undefined;
  private readonly logger: MailedgeOptions['logger'];
  /** With edge.pool: one transport per member, each verified and sending on its own. */
  private readonly members: MailedgeTransport[] | undefined;
  private nextMember = 0;
  private lastPool: { identities: Identity[]; state: { usable: MailedgeTransport[]; report: PreflightReport } } | undefined;
  /** Member reports already announced as left out, so each failure is warned about once. */
  private readonly leftOutWarned = new WeakSet<PreflightReport>();
  /** With direct: true, one transport per MX host, most recently created last. */
  private readonly mxTransports = new Map<string, MailedgeTransport>();
  private closed = false;
  private readonly options: MailedgeOptions;
  /** Only the transport that made the envelope checks stops them; children share their parent's. */
  private readonly ownsEnvelopeChecks: boolean;

  /**
   * `shared` is internal: pool members and MX-host transports use their
   * parent's resolver and envelope checks, so one DNS cache and one verdict
   * cache serve them all (the edge's PTR is asked once, not once per MX host,
   * and a sender-domain warning is raised once, not once per member).
   */
  constructor(options: MailedgeOptions, defaults?: SendMailOptions, shared?: { resolver: Resolver; envelopeChecks: EnvelopeChecks }) {
    super();
    // Nodemailer's default host; named here so the route check sees the same destination.
    // Direct delivery has no one destination: the transport's own check is of the edge alone.
    this.edgeOptions = resolveEdgeOptions(options.direct === true ? options : { ...options, host: options.host ?? 'localhost' });
    this.options = options;
    this.verifier = new EdgeVerifier(this.edgeOptions, shared?.resolver);
    this.envelopeChecks = shared?.envelopeChecks ?? new EnvelopeChecks(this.edgeOptions, this.verifier.resolver);
    this.ownsEnvelopeChecks = shared === undefined;
    this.defaults = defaults;
    this.redact = secretRedactor(options.auth);
    // Nodemailer reads 0 as "use the default"; so does mailedge.
    this.connectionTimeout = options.connectionTimeout || DEFAULT_CONNECTION_TIMEOUT;
    const { edge: _edge, direct: _direct, ...smtpOptions } = options;
    this.logger = redactingLogger(options.logger, this.redact);
    this.pooled = options.pool === true;
    this.createMailer = () => {
      const mailer = nodemailer.createTransport(
        {
          ...smtpOptions,
          logger: this.logger,
          host: options.host ?? 'localhost',
          port: this.edgeOptions.port,
          getSocket: (_socketOptions, callback) => this.getSocket(callback),
        },
        defaults,
      );
      for (const event of FORWARDED_EVENTS) mailer.on(event, (...args: unknown[]) => this.emit(event, ...args));
      for (const [step, plugin] of this.plugins) mailer.use(step, plugin);
      return mailer;
    };
    this.mailer = this.createMailer();
    this.members = this.edgeOptions.pool?.map((member) => this.child(memberOptions(options, member)));
  }

  /** A pool member or MX-host transport: shares this one's caches, reports through its events, runs its plugins. */
  private child(options: MailedgeOptions): MailedgeTransport {
    const transport = new MailedgeTransport(options, this.defaults, { resolver: this.verifier.resolver, envelopeChecks: this.envelopeChecks });
    for (const event of [...FORWARDED_EVENTS, 'warning'] as const) transport.on(event, (...args: unknown[]) => this.emit(event, ...args));
    for (const [step, plugin] of this.plugins) transport.use(step, plugin);
    return transport;
  }

  /** The structured report for this transport's destination, without sending anything. */
  async preflight(): Promise<PreflightReport> {
    if (this.members) return (await this.poolState(true)).report;
    return (await this.verifier.identity()).report;
  }

  /** Every member's identity (usually from cache), the members that may send now, and the pool's report. */
  private async poolState(complete = false): Promise<{ usable: MailedgeTransport[]; report: PreflightReport }> {
    const all = this.members ?? [];
    const current = all.map((m) => m.verifier.current());
    // While a member is confirmed, one being (re-)verified does not hold sends: a member whose
    // DNS times out would otherwise add its timeout to every send. It rejoins once it passes.
    const fast = !complete && current.some((identity) => identity?.passed === true);
    if (fast) all.forEach((m, i) => current[i] === undefined && void m.verifier.identity());
    const members = fast ? all.filter((_, i) => current[i] !== undefined) : all;
    const identities = fast
      ? current.filter((identity): identity is Identity => identity !== undefined)
      : await Promise.all(all.map((m, i) => current[i] ?? m.verifier.identity()));
    // Sends between two re-verifications see the same identities: the merged report is made once for them.
    const last = this.lastPool;
    if (last && last.identities.length === identities.length && last.identities.every((identity, i) => identity === identities[i])) return last.state;
    const report = poolReport(members.map((m, i) => ({ member: memberOf(m), report: (identities[i] as Identity).report })));
    const usable = members.filter((_, i) => (identities[i] as Identity).passed);
    members.forEach((member, i) => {
      const identity = identities[i] as Identity;
      if (identity.passed || usable.length === 0 || this.leftOutWarned.has(identity.report)) return;
      this.leftOutWarned.add(identity.report);
      const failed = firstFailure(identity.report.checks) ?? null;
      const check = failed && { ...failed, member: memberOf(member).localAddress };
      this.warn({
        code: 'POOL_MEMBER_LEFT_OUT',
        message: `mailedge: pool member ${memberOf(member).localAddress} left out: ${failed ? `${failed.id} ${failed.code ?? failed.status}: ${failed.actual}` : 'not confirmed'}`,
        check,
        report,
      });
    });
    // Warn mode sends unverified rather than not at all, as a single address would.
    const state = { usable: usable.length === 0 && this.edgeOptions.mode === 'warn' ? members : usable, report };
    this.lastPool = { identities, state };
    return state;
  }

  /**
   * The transport for one MX host: a relay send in all but name, with the MX
   * host as `host`, so the route, the edge family, the pool and TLS (verified
   * against the MX name) are checked exactly as for a relay.
   */
  private mxTransport(exchange: string): MailedgeTransport {
    // A delivery still running when close() was called must not open transports nobody will close.
    if (this.closed) throw Object.assign(new Error('the transport was closed'), { code: 'ECONNECTION' });
    const key = exchange.toLowerCase();
    const known = this.mxTransports.get(key);
    if (known) return known;
    if (this.mxTransports.size >= MAX_MX_TRANSPORTS) {
      // The oldest idle one goes; its identity is cheap to verify again from the resolver's cache.
      for (const [oldKey, old] of this.mxTransports) {
        if (!old.isIdle()) continue;
        old.close();
        this.mxTransports.delete(oldKey);
        break;
      }
    }
    const { direct: _direct, edge = {}, ...rest } = this.options;
    const { mxPort: _mxPort, ...edgeRest } = edge;
    const transport = this.child({ ...rest, host: exchange, port: this.edgeOptions.mxPort, edge: edgeRest });
    this.mxTransports.set(key, transport);
    return transport;
  }

  /** Round-robin over the members that pass, or with poolSticky the same member per recipient domain. */
  private async sendPooled(mail: SendMailOptions): Promise<MailedgeSentMessageInfo> {
    const { usable, report } = await this.poolState();
    if (usable.length === 0) throw new EdgeRefusedError(report, firstFailure(enforcedFailures(report.checks)) ?? missingCheck(), { mail });
    let index: number;
    if (this.edgeOptions.poolSticky) {
      const recipient = envelopeOf(mail, this.defaults)?.to[0] ?? '';
      index = stickyIndex(recipient.slice(recipient.lastIndexOf('@') + 1).toLowerCase(), usable.length);
    } else {
      index = this.nextMember++ % usable.length;
    }
    return (usable[index] as MailedgeTransport).send(mail);
  }

  sendMail(mail: SendMailOptions): Promise<MailedgeSentMessageInfo>;
  sendMail(mail: SendMailOptions, callback: SendCallback): void;
  sendMail(mail: SendMailOptions, callback?: SendCallback): Promise<MailedgeSentMessageInfo> | void {
    const sending = this.send(mail);
    if (!callback) return sending;
    sending.then(
      (info) => callback(null, info),
      (err: Error) => callback(err),
    );
  }

  /** Runs the edge check, then Nodemailer's verify (connect, EHLO with the confirmed name, auth). */
  verify(): Promise<true>;
  verify(callback: (err: Error | null, success?: true) => void): void;
  verify(callback?: (err: Error | null, success?: true) => void): Promise<true> | void {
    const verifying = (async (): Promise<true> => {
      if (this.members) {
        const { usable, report } = await this.poolState();
        if (usable.length === 0) throw new EdgeRefusedError(report, firstFailure(report.checks) ?? missingCheck());
        await Promise.all(usable.map((m) => m.verify()));
        return true;
      }
      const identity = await this.verifier.identity();
      this.decide(identity, undefined);
      // Direct delivery has no one server to greet: the MX hosts are known only per recipient.
      if (this.edgeOptions.direct) return true;
      try {
        return await this.mailer.verify();
      } catch (err) {
        throw this.wrapFailure(err, undefined);
      }
    })();
    if (!callback) return verifying;
    verifying.then(
      (ok) => callback(null, ok),
      (err: Error) => callback(err),
    );
  }

  use(step: 'compile' | 'stream', plugin: PluginFunction<SMTPSentMessageInfo>): this {
    this.plugins.push([step, plugin]);
    this.mailer.use(step, plugin);
    for (const member of this.members ?? []) member.use(step, plugin);
    for (const mx of this.mxTransports.values()) mx.use(step, plugin);
    return this;
  }

  isIdle(): boolean {
    // Nodemailer answers isIdle() only for pools; an unpooled transport is idle when none of its sends is under way.
    const own = this.pooled ? this.mailer.isIdle() : !this.inFlight.get(this.mailer);
    return own && this.retiring.size === 0 && (this.members ?? []).every((m) => m.isIdle()) && [...this.mxTransports.values()].every((m) => m.isIdle());
  }

  close(): void {
    this.closed = true;
    for (const member of this.members ?? []) member.close();
    for (const mx of this.mxTransports.values()) mx.close();
    this.mxTransports.clear();
    this.verifier.dispose();
    if (this.ownsEnvelopeChecks) this.envelopeChecks.dispose();
    this.mailer.close();
    for (const old of this.retiring) old.close();
    this.retiring.clear();
  }

  /**
   * The Nodemailer transport for a send under `name`. A pool keeps its
   * connections, and with them the EHLO name they were opened with; when the
   * confirmed name changes, new sends go to a fresh pool, and the old one
   * finishes what it holds and closes.
   */
  private mailerFor(name: string): { mailer: Transporter<SMTPSentMessageInfo>; name: string } {
    if (!this.pooled || this.mailerName === name) return { mailer: this.mailer, name };
    if (this.mailerName === undefined) {
      this.mailerName = name;
      return { mailer: this.mailer, name };
    }
    // A send that decided on an identity already superseded must not move the pool back to it.
    if (this.verifier.current()?.report.name !== name) return { mailer: this.mailer, name: this.mailerName };
    const old = this.mailer;
    this.mailer = this.createMailer();
    this.mailerName = name;
    old.removeAllListeners('idle');
    this.retiring.add(old);
    this.closeIfDone(old);
    return { mailer: this.mailer, name };
  }

  private closeIfDone(mailer: Transporter<SMTPSentMessageInfo>): void {
    if (this.retiring.has(mailer) && !this.inFlight.get(mailer)) {
      this.retiring.delete(mailer);
      this.inFlight.delete(mailer);
      mailer.close();
    }
  }

  private async send(mail: SendMailOptions): Promise<MailedgeSentMessageInfo> {
    if (this.edgeOptions.direct) {
      return deliverDirect(
        {
          resolver: this.verifier.resolver,
          timeout: this.edgeOptions.timeout,
          defaults: this.defaults,
          redact: this.redact,
          send: (exchange, m) => this.mxTransport(exchange).send(m),
        },
        mail,
      );
    }
    if (this.members) return this.sendPooled(mail);
    const identity = this.verifier.current() ?? (await this.verifier.identity());
    const decision = this.decide(identity, mail);
    const { outgoing, refused } = await this.screen(identity, decision, mail);
    let info: SMTPSentMessageInfo;
    const { mailer, name } = this.mailerFor(decision.name);
    this.inFlight.set(mailer, (this.inFlight.get(mailer) ?? 0) + 1);
    try {
      info = await mailer.sendMail(outgoing);
    } catch (err) {
      throw this.wrapFailure(err, mail);
    } finally {
      this.inFlight.set(mailer, (this.inFlight.get(mailer) ?? 1) - 1);
      this.closeIfDone(mailer);
    }
    if (refused.length > 0) {
      info.rejected = [...(info.rejected ?? []), ...refused.map((r) => r.recipient ?? '')];
      info.rejectedErrors = [...(info.rejectedErrors ?? []), ...refused];
    }
    return Object.assign(info, {
      edge: { address: identity.edge?.address ?? '', name, verified: decision.verified, stale: identity.report.stale },
    });
  }

  /**
   * The envelope checks in front of a send (DNS only, see src/envelope.ts).
   * Recipients whose domain publishes a null MX are taken out of the envelope
   * handed to Nodemailer, and come back in info.rejected; when none is left,
   * or an enforced sender-side check failed, the send is refused before any
   * connection, with the message.
   */
  private async screen(identity: Identity, decision: Decision, mail: SendMailOptions): Promise<{ outgoing: SendMailOptions; refused: EdgeRefusedError[] }> {
    if (!this.envelopeChecks.active) return { outgoing: mail, refused: [] };
    const envelope = envelopeOf(mail, this.defaults);
    if (!envelope) return { outgoing: mail, refused: [] };
    const { report } = identity;
    const screening = await this.envelopeChecks.screen(
      envelope,
      { address: identity.edge?.address ?? null, ehloName: decision.name },
      {
        // While the identity is served stale DNS is failing: sends do not wait for it, here either.
        wait: !report.stale,
        warn: (check) => this.warn({ code: check.code ?? 'DNS_TEMPFAIL', message: `mailedge: ${check.id} ${check.domain ?? ''}: ${check.actual}`, check, report }),
      },
    );
    const withChecks = (): PreflightReport => withEnvelopeChecks(report, screening.checks);
    if (screening.blocking) throw new EdgeRefusedError(withChecks(), screening.blocking, { mail });
    if (screening.refused.length === 0) return { outgoing: mail, refused: [] };
    const refusedSet = new Set(screening.refused.map((r) => r.recipient));
    const remaining = envelope.to.filter((recipient) => !refusedSet.has(recipient));
    const first = screening.refused[0];
    if (remaining.length === 0 && first) {
      throw new EdgeRefusedError(withChecks(), first.check, { mail, recipients: [...refusedSet] });
    }
    const refused = screening.refused.map(({ recipient, check }) => new EdgeRefusedError(withChecks(), check, { recipients: [recipient] }));
    // An explicit envelope, so Nodemailer sends RCPT TO for the others only; the headers still name everyone.
    return { outgoing: { ...mail, envelope: { ...envelope, to: remaining } }, refused };
  }

  /** The EHLO name to use, or the refusal to throw. */
  private decide(identity: Identity, mail: SendMailOptions | undefined, announce = true): Decision {
    const { report } = identity;
    // Whatever the mode, an enforced check that fails holds the send; edge.mode sets the FCrDNS side's severity.
    // An ok report has none by definition, so the common case costs no scan of the checks.
    const blocking = report.ok ? undefined : firstFailure(enforcedFailures(report.checks));
    if (blocking) throw new EdgeRefusedError(report, blocking, { mail });
    if (report.name && identity.ehloName === report.name) {
      if (announce) this.warnOnce(identity);
      return { name: report.name, verified: true };
    }
    const failed = firstFailure(report.checks) ?? report.checks[report.checks.length - 1];
    const cannotConnect = identity.addresses.length === 0 || identity.edge === null;
    const name = identity.ehloName;
    if (cannotConnect || !failed || name === null) {
      throw new EdgeRefusedError(report, failed ?? missingCheck(), { mail });
    }
    if (announce) this.warn({
      code: 'UNVERIFIED_SEND',
      message: `mailedge: sending despite ${failed.id} ${failed.status} (${failed.code}): ${failed.actual}; EHLO ${name}`,
      check: failed,
      report,
    });
    return { name, verified: false };
  }

  private warnOnce(identity: Identity): void {
    if (this.warnedFor === identity.report) return;
    this.warnedFor = identity.report;
    if (identity.report.stale) {
      this.warn({
        code: 'IDENTITY_STALE',
        message: `mailedge: using ${identity.report.name} past its TTL: ${identity.report.staleReason ?? 're-verification failed temporarily'}`,
        check: null,
        report: identity.report,
      });
      return;
    }
    for (const check of identity.report.checks) {
      if (worthWarning(check) && check.code) {
        this.warn({ code: check.code, message: `mailedge: ${check.id}: ${check.actual}`, check, report: identity.report });
      }
    }
  }

  private warn(warning: MailedgeWarning): void {
    const logger: unknown = this.logger;
    const text = this.redact(warning.message);
    if (typeof logger === 'object' && logger !== null && typeof (logger as { warn?: unknown }).warn === 'function') {
      (logger as { warn: (meta: object, message: string) => void }).warn({ tnx: 'mailedge', code: warning.code }, text);
    } else if (logger === true) {
      console.warn(text);
    }
    this.emit('warning', { ...warning, message: text });
  }

  private wrapFailure(err: unknown, mail: SendMailOptions | undefined): MailedgeError {
    if (err instanceof MailedgeError) {
      err.mail = mail;
      return err;
    }
    return new SendFailedError(err, mail, this.redact);
  }

  /** Nodemailer's per-connection hook: verify (usually from cache), bind, connect, name. */
  private getSocket(callback: (err: Error | null, socketOptions?: { connection: Socket; name: string }) => void): void {
    const startedAt = Date.now();
    const opening = async (): Promise<{ connection: Socket; name: string }> => {
      const identity = await this.verifier.identity();
      // The send that opened this connection has already announced any warning.
      const decision = this.decide(identity, undefined, false);
      return { connection: await this.connect(identity, startedAt), name: decision.name };
    };
    // Two-armed then: an exception thrown by Nodemailer's callback must not call it a second time.
    opening().then(
      (socketOptions) => callback(null, socketOptions),
      (err: Error) => callback(err),
    );
  }

  /**
   * Connects to the checked route addresses in turn. The source is the bound
   * localAddress, or the address the kernel chose when the edge was checked:
   * binding it keeps a route change from putting an unchecked address on the wire.
   */
  private async connect(identity: Identity, startedAt: number): Promise<Socket> {
    const source = this.edgeOptions.localAddress ?? (identity.edge?.origin === 'kernel' ? identity.edge.address : undefined);
    let lastError: Error = new Error('no address to connect to');
    for (const address of identity.addresses) {
      const remaining = this.connectionTimeout - (Date.now() - startedAt);
      if (remaining <= 0) break;
      try {
        return await openSocket(address, this.edgeOptions.port, source, remaining);
      } catch (err) {
        lastError = err as Error;
      }
    }
    throw Object.assign(lastError, { code: (lastError as NodeJS.ErrnoException).code ?? 'ECONNECTION' });
  }
}

function openSocket(host: string, port: number, localAddress: string | undefined, timeout: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error(`Connection timeout to ${host}:${port}`), { code: 'ETIMEDOUT', phase: 'connect' }));
    }, timeout);
    const onError = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      // Marked, so a caller can tell "never reached" from "dropped mid-transaction".
      reject(Object.assign(err, { phase: 'connect' }));
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      resolve(socket);
    });
  });
}

function memberOf(transport: MailedgeTransport): { localAddress: string; publicAddress: string | undefined } {
  return { localAddress: transport.edgeOptions.localAddress ?? '', publicAddress: transport.edgeOptions.publicAddress };
}

function missingCheck(): CheckResult {
  return {
    id: 'edge-address',
    status: 'fail',
    severity: 'enforce',
    expected: 'a confirmed identity',
    actual: 'no check produced a verdict',
    code: 'EDGE_UNKNOWN',
    hint: null,
    evidence: [],
  };
}

/** Drop-in for nodemailer.createTransport (SMTP): same options, plus `edge`. */
export function createTransport(options: MailedgeOptions, defaults?: SendMailOptions): MailedgeTransport {
  return new MailedgeTransport(options, defaults);
}
