/**
 * mailedge as a Nodemailer custom transport ({ name, version, send, verify,
 * isIdle, close }): Nodemailer's own Mailer composes the message, runs the
 * plugins and applies the defaults, then hands the compiled message here. The
 * transport holds one route (relay, IP pool, or direct to MX) and passes on
 * what the route reports: warnings, idle and clear events.
 */
import { EventEmitter } from 'node:events';
import type Mail from 'nodemailer/lib/mailer';
import type { MailMessage } from 'nodemailer/lib/mailer';
import type { PreflightReport } from './checks/types.js';
import { InvalidOptionError } from './errors.js';
import { createResolver } from './identity.js';
import { EnvelopeChecks } from './envelope.js';
import { mxHostOptions, resolveEdgeOptions, type MailedgeOptions, type ResolvedEdgeOptions, type SmtpOptions } from './options.js';
import { RelayRoute } from './routes/relay.js';
import { IpPoolRoute, memberOptions } from './routes/ip-pool.js';
import { DirectRoute } from './routes/direct.js';
import type { MailedgeSentMessageInfo, MailedgeWarning, Route, RouteContext } from './routes/route.js';
import { VERSION } from './version.js';
import { callSafely } from './call-safely.js';
import type { Redactor } from './redact.js';
// Issue 12: direct delivery's TLS policies and their TLS-RPT counters.
import { policiesFor, type TlsPolicies } from './tls/policy.js';
import type { TlsRptReport } from './tls/report.js';

/** MX hosts whose routes (and verified identities) are kept for reuse in direct delivery. */
const MAX_MX_ROUTES = 256;

type SendCallback = (err: Error | null, info?: MailedgeSentMessageInfo) => void;

/** What the transport needs besides the options: the text redaction and the logger Nodemailer logs through. */
export interface TransportDeps {
  redact: Redactor;
  /** A bunyan-style logger (already redacting and never throwing), or false. */
  logger: unknown;
}

export class MailedgeTransport extends EventEmitter {
  readonly name = 'mailedge';
  readonly version = VERSION;
  /** Nodemailer's Mailer honours the message's signal until it hands the message over; mailedge honours it after. */
  readonly supportsAbortSignal = true;
  /** Set by Nodemailer's Mailer when it wraps this transport. */
  mailer: Mail | undefined;
  private readonly route: Route;
  private readonly envelopeChecks: EnvelopeChecks;
  private foreignSocketHook = false;
  /** Issue 12: with direct: true, recipient domains' TLS policies and the TLS-RPT counters. */
  private tlsPolicies: TlsPolicies | undefined;

  constructor(options: MailedgeOptions, private readonly deps: TransportDeps) {
    super();
    const direct = Boolean(options.direct);
    // Nodemailer's default host; named here so the route check sees the same destination.
    const edgeOptions = resolveEdgeOptions(direct ? options : { ...options, host: options.host ?? 'localhost' });
    const resolver = createResolver(edgeOptions);
    this.envelopeChecks = new EnvelopeChecks(edgeOptions, resolver);
    const context: RouteContext = {
      resolver,
      envelopeChecks: this.envelopeChecks,
      redact: deps.redact,
      warn: (warning) => this.warn(warning),
      emit: (event) => this.emitSafely(event),
      mailer: () => this.mailer,
      logger: deps.logger,
    };
    if (direct) this.tlsPolicies = policiesFor(edgeOptions, resolver, options.requireTLS === true);
    this.route = direct ? directRoute(options, edgeOptions, context, this.tlsPolicies) : relayOrPool(options, edgeOptions, context);
  }

  /**
   * Nodemailer moves a `getSocket` set on the Mailer onto its transport. A
   * socket from elsewhere would leave from an unchecked address, so it is
   * never used: sends are refused, naming the option, until it is removed.
   */
  get getSocket(): undefined {
    return undefined;
  }

  set getSocket(hook: unknown) {
    this.foreignSocketHook = typeof hook === 'function';
  }

  send(mail: MailMessage, callback: SendCallback): void {
    const done = (err: Error | null, info?: MailedgeSentMessageInfo): void => {
      try {
        callback(err, info);
      } catch (thrown) {
        // As Nodemailer does: a throwing callback is logged, and other sends carry on.
        this.log('error', { err: thrown, tnx: 'callback' }, 'Callback error: %s', thrown instanceof Error ? thrown.message : String(thrown));
      }
    };
    if (this.foreignSocketHook) {
      const err = foreignSocketError();
      err.mail = mail.data;
      done(err);
      return;
    }
    this.route.send(mail).then(
      (info) => done(null, info),
      (err: Error) => done(err),
    );
  }

  /** Runs the edge check, then Nodemailer's verify (connect, EHLO with the confirmed name, AUTH). */
  verify(): Promise<true>;
  verify(callback: (err: Error | null, success?: true) => void): void;
  verify(callback?: (err: Error | null, success?: true) => void): Promise<true> | void {
    const verifying = this.foreignSocketHook ? Promise.reject(foreignSocketError()) : this.route.verify();
    if (!callback) return verifying;
    verifying.then(
      (ok) => callSafely(() => callback(null, ok)),
      (err: Error) => callSafely(() => callback(err)),
    );
  }

  /** The structured report for this transport's route, without sending anything. */
  preflight(): Promise<PreflightReport> {
    return this.route.preflight();
  }

  isIdle(): boolean {
    return this.route.isIdle();
  }

  /**
   * Issue 12: the TLS-RPT report (RFC 8460 section 4.4) of the period since
   * the last call, which starts a new one; null without direct: true. Send it
   * where each domain's _smtp._tls record asks: mailedge does not.
   */
  tlsReport(organization?: string, contact?: string): TlsRptReport | null {
    return this.tlsPolicies ? this.tlsPolicies.tlsReport(organization, contact) : null;
  }

  close(): void {
    this.route.close();
    this.envelopeChecks.dispose();
  }

  private warn(warning: MailedgeWarning): void {
    const message = this.deps.redact(warning.message);
    this.log('warn', { tnx: 'mailedge', code: warning.code }, message);
    this.emitSafely('warning', { ...warning, message });
  }

  /** An event for listeners; a listener that throws is logged and never reaches a send. */
  private emitSafely(event: string, ...args: unknown[]): void {
    try {
      this.emit(event, ...args);
    } catch (thrown) {
      this.log('error', { err: thrown, tnx: 'listener', event }, 'Listener error for %s: %s', event, thrown instanceof Error ? thrown.message : String(thrown));
    }
  }

  private log(level: 'warn' | 'error', meta: Record<string, unknown>, format: string, ...args: unknown[]): void {
    const logger = this.deps.logger;
    if (typeof logger !== 'object' || logger === null) return;
    const method = (logger as Record<string, unknown>)[level];
    if (typeof method !== 'function') return;
    callSafely(() => (method as (...args: unknown[]) => void).call(logger, meta, format, ...args));
  }
}

function foreignSocketError(): InvalidOptionError {
  return new InvalidOptionError('getSocket', 'a getSocket hook was set on the transporter; mailedge opens the connection itself, so it can bind and check the edge address');
}

function smtpOf(options: MailedgeOptions): SmtpOptions {
  const { edge: _edge, direct: _direct, ...smtp } = options;
  return smtp;
}

/** A relay route, or with edge.pool one relay route per member. */
function relayOrPool(options: MailedgeOptions, edgeOptions: ResolvedEdgeOptions, context: RouteContext): Route {
  if (!edgeOptions.pool) return new RelayRoute(smtpOf(options), edgeOptions, context);
  const members = edgeOptions.pool.map((member) => {
    const memberOf = memberOptions(options, member);
    return new RelayRoute(smtpOf(memberOf), resolveEdgeOptions(memberOf.direct ? memberOf : { ...memberOf, host: memberOf.host ?? 'localhost' }), context);
  });
  return new IpPoolRoute(members, edgeOptions, (warning) => context.warn(warning));
}

function directRoute(options: MailedgeOptions, edgeOptions: ResolvedEdgeOptions, context: RouteContext, tlsPolicies?: TlsPolicies): Route {
  return new DirectRoute({
    resolver: context.resolver,
    timeout: edgeOptions.timeout,
    redact: context.redact,
    maxHosts: MAX_MX_ROUTES,
    // Issue 12: recipient domains' TLS policies; their warnings go where the transport's go.
    ...(tlsPolicies
      ? {
          tls: {
            policies: tlsPolicies,
            warn: (code: 'MTA_STS_FETCH_FAILED' | 'MTA_STS_TESTING_FAILURE', message: string) =>
              context.warn({ code, message, check: null, report: { ok: true, address: null, name: null, destination: null, checks: [], ptrNames: [], expiresAt: 0, stale: false } }),
          },
        }
      : {}),
    // Each MX host is a relay host on the MX port, checked and connected to like any other.
    hostRoute: (exchange) => {
      const hostOptions = mxHostOptions(options, exchange, edgeOptions.mxPort);
      return relayOrPool(hostOptions, resolveEdgeOptions(hostOptions), context);
    },
    // With direct: true the options name no host: this route checks the edge alone.
    edgeRoute: relayOrPool(options, edgeOptions, context),
  });
}

