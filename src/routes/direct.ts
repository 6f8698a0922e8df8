/**
 * Direct delivery (direct: true): the application is the outbound MTA. The
 * recipients are grouped by domain and each domain gets one SMTP transaction
 * at its MX hosts, in preference order (src/routes/mx.ts). Every MX host is a
 * destination like a relay host: it gets a route of its own (relay, or IP pool),
 * so the edge family and the FCrDNS check are exactly those of a relay send;
 * TLS follows the recipient domain's policy (DANE, MTA-STS, else opportunistic:
 * src/tls/policy.ts), with STARTTLS done by mailedge (src/tls/starttls.ts). The message is rendered once, so a
 * stream attachment is read and an href fetched once whatever the number of
 * domains and MX hosts tried.
 */
import type { MailMessage } from 'nodemailer/lib/mailer';
import { printable } from '../checks/hostname.js';
import type { Resolver } from '../dns/resolver.js';
import { digLine } from '../checks/evidence.js';
import { checkRecipientNullMx } from '../checks/recipient-null-mx.js';
import { enforcedFailures, firstFailure, withSeverity, type CheckResult, type PreflightReport } from '../checks/types.js';
import { CODES } from '../codes.js';
import { EdgeRefusedError, InvalidOptionError, MailedgeError } from '../errors.js';
import { missingCheck } from '../decide.js';
import { asSmtpSendError, failedBeforeTransaction, type SmtpSendError } from '../send-error.js';
import { resolveMx, unusableExchange } from './mx.js';
import { envelopeOf, withEnvelope } from './mail-view.js';
import type { EdgeInfo, MailedgeSentMessageInfo, Route } from './route.js';
import type { Redactor } from '../redact.js';
// Issue 12: the recipient domain's TLS policy (MTA-STS, DANE) and the TLS outcome per domain.
import { withTlsAttempt, TlsPolicyError, type TlsAttempt, type TlsOutcome } from '../tls/outcome.js';
import type { DomainPolicy, TlsPolicies } from '../tls/policy.js';
import type { Authentication } from '../message/verdict.js';

export type DeliveryError = MailedgeError | SmtpSendError;

export interface DomainDelivery {
  domain: string;
  recipients: string[];
  /** delivered: every recipient accepted; partial: some; failed: none (see error). */
  status: 'delivered' | 'partial' | 'failed';
  /** The MX host the transaction ran on, or null when none was reached. */
  mx: string | null;
  /** MX hosts tried before it (or all of them, when none took the mail), and why each was passed over. */
  attempts: Array<{ mx: string; reason: string }>;
  accepted: string[];
  rejected: string[];
  /** The server's reply to the message, when it was accepted. */
  response: string | null;
  edge: EdgeInfo | null;
  /** Message identity (issue 11): the verdict for the route this domain's copy took, when predicted. */
  authentication?: Authentication;
  /** Why the domain, or some of its recipients, did not get the message. */
  error: DeliveryError | null;
  /** One error per rejected recipient, in the order of `rejected`. */
  rejectedErrors: DeliveryError[];
  /** Nodemailer's timings of the transaction, when there was one. */
  timing?: { envelopeTime: number; messageTime: number; messageSize: number };
  /** How the session that carried (or last tried) the message was protected; null when no session got that far (issue 12). */
  tls: TlsOutcome | null;
  /** The domain's TLS policy: MTA-STS as fetched or cached, or none (DANE is per MX host, in tls.policy). */
  tlsPolicy: { kind: DomainPolicy['kind']; mode: DomainPolicy['mode']; mx: string[] | null; maxAge: number | null } | null;
}

export type DirectSentMessageInfo = MailedgeSentMessageInfo & { domains: DomainDelivery[] };

/** What sendMail rejects with when no recipient got the message: the error of a domain, with every domain's outcome. */
export type DirectDeliveryError = DeliveryError & { domains: DomainDelivery[] };

export interface DirectSettings {
  resolver: Resolver;
  /** Milliseconds for one domain's MX lookup. */
  timeout: number;
  /** Removes secrets from receiver replies. */
  redact: Redactor;
  /** The route to one MX host: made on first use, kept while in use (bounded). */
  hostRoute(exchange: string): Route;
  /** The edge alone, for verify() and preflight(): there is no one destination to greet. */
  edgeRoute: Route;
  /** MX-host routes kept at most; the oldest idle one goes first. */
  maxHosts: number;
  /** Issue 12: TLS policies of recipient domains (src/tls/policy.ts), and where their warnings go. */
  tls?: { policies: TlsPolicies; warn(code: 'MTA_STS_FETCH_FAILED' | 'MTA_STS_TESTING_FAILURE', message: string): void };
}

export class DirectRoute implements Route {
  /** Most recently used last. */
  private readonly hosts = new Map<string, Route>();
  /** Routes pushed out of `hosts` while still carrying a message: closed once idle. */
  private readonly leaving = new Set<Route>();
  private closed = false;

  constructor(private readonly settings: DirectSettings) {}

  preflight(): Promise<PreflightReport> {
    return this.settings.edgeRoute.preflight();
  }

  async verify(): Promise<true> {
    const report = await this.settings.edgeRoute.preflight();
    if (!report.ok) throw new EdgeRefusedError(report, firstFailure(enforcedFailures(report.checks)) ?? missingCheck());
    return true;
  }

  isIdle(): boolean {
    return [...this.hosts.values(), ...this.leaving].every((route) => route.isIdle());
  }

  close(): void {
    this.closed = true;
    for (const route of [...this.hosts.values(), ...this.leaving]) route.close();
    this.hosts.clear();
    this.leaving.clear();
    this.settings.edgeRoute.close();
  }

  async send(mail: MailMessage): Promise<DirectSentMessageInfo> {
    const redact = this.settings.redact.withMessage(mail.data);
    // Credentials are for one's own relay: an MX host is somebody else's server.
    if (mail.data.auth !== undefined && mail.data.auth !== null) {
      throw Object.assign(
        new InvalidOptionError('auth', "not with direct: true: MX hosts are other people's servers, and would be offered the credentials (set on this message or in the message defaults)"),
        { mail: mail.data },
      );
    }
    const envelope = envelopeOf(mail);
    if (envelope.to.length === 0) throw asSmtpSendError(Object.assign(new Error('No recipients defined'), { code: 'EENVELOPE' }), mail.data, redact);
    let raw: Buffer;
    try {
      raw = await mail.message.build();
    } catch (err) {
      throw asSmtpSendError(err, mail.data, redact);
    }
    const byDomain = new Map<string, string[]>();
    for (const recipient of envelope.to) {
      const domain = recipient.slice(recipient.lastIndexOf('@') + 1).toLowerCase();
      byDomain.set(domain, [...(byDomain.get(domain) ?? []), recipient]);
    }
    const domains = await Promise.all(
      [...byDomain].map(([domain, recipients]) => this.deliverDomain(withEnvelope(mail, { from: envelope.from, to: recipients }, raw), domain, recipients)),
    );
    this.sweep();
    for (const d of domains) for (const error of [d.error, ...d.rejectedErrors]) if (error) error.mail = mail.data;
    const accepted = domains.flatMap((d) => d.accepted);
    if (accepted.length === 0) {
      // Nothing went out: reject as Nodemailer does. A temporary failure is preferred, so that a
      // retry happens; err.domains says which domains failed for good.
      const errors = domains.flatMap((d) => (d.error ? [d.error] : []));
      const chosen = errors.find((e) => !e.permanent) ?? errors[0] ?? asSmtpSendError(new Error('nothing delivered'), mail.data, redact);
      throw Object.assign(chosen, { domains });
    }
    const first = domains.find((d) => d.edge !== null);
    const sum = (key: 'envelopeTime' | 'messageTime' | 'messageSize'): number => domains.reduce((n, d) => n + (d.timing?.[key] ?? 0), 0);
    return {
      envelopeTime: sum('envelopeTime'),
      messageTime: sum('messageTime'),
      messageSize: Math.max(0, ...domains.map((d) => d.timing?.messageSize ?? 0)),
      accepted,
      rejected: domains.flatMap((d) => d.rejected),
      rejectedErrors: domains.flatMap((d) => d.rejectedErrors),
      pending: [],
      envelope: { from: envelope.from, to: envelope.to },
      messageId: mail.message.messageId(),
      response: domains.map((d) => `${d.domain}: ${d.response ?? d.error?.message ?? ''}`).join('; '),
      edge: first?.edge ?? { address: '', name: '', verified: false, stale: false },
      // Message identity (issue 11): the first delivered domain's; each domain's own is in domains[].
      ...(first?.authentication ? { authentication: first.authentication } : {}),
      domains,
    };
  }

  /** The route to one MX host, kept while there is room; past the bound the oldest idle one is closed. */
  private host(exchange: string): Route {
    // A delivery still running when close() was called must not open routes nobody will close.
    if (this.closed) throw Object.assign(new Error('The transport was closed'), { code: 'ECONNECTION' });
    const key = exchange.toLowerCase();
    const known = this.hosts.get(key);
    if (known) {
      this.hosts.delete(key);
      this.hosts.set(key, known);
      return known;
    }
    // The bound holds whatever is in flight: the least recently used route leaves the map now,
    // and is closed now if idle, else as soon as it is (see sweep).
    while (this.hosts.size >= this.settings.maxHosts) {
      const [oldKey, old] = this.hosts.entries().next().value as [string, Route];
      this.hosts.delete(oldKey);
      if (old.isIdle()) old.close();
      else this.leaving.add(old);
    }
    const route = this.settings.hostRoute(exchange);
    this.hosts.set(key, route);
    return route;
  }

  /** Closes the routes that left the map while busy, once they are idle. */
  private sweep(): void {
    for (const route of this.leaving) {
      if (!route.isIdle()) continue;
      route.close();
      this.leaving.delete(route);
    }
  }

  /**
   * Issue 12: one MX host under its TLS attempt. A failed handshake where no
   * policy demands TLS is retried once on a new connection in clear text, as
   * Postfix's opportunistic level does: bouncing or deferring for a broken
   * TLS stack would make opportunistic TLS worse than none.
   */
  private async sendUnderPolicy(exchange: string, mail: MailMessage, attempt: TlsAttempt | undefined): Promise<MailedgeSentMessageInfo> {
    if (!attempt) return this.host(exchange).send(mail);
    try {
      return await this.host(exchange).send(withTlsAttempt(mail, attempt));
    } catch (err) {
      if (!(err instanceof TlsPolicyError && err.code === 'TLS_HANDSHAKE_FAILED' && attempt.requirement.kind === 'opportunistic' && !attempt.cleartext)) throw err;
      attempt.cleartext = true;
      attempt.outcome = undefined;
      return this.host(exchange).send(withTlsAttempt(mail, attempt));
    }
  }

  /** One domain: MX hosts in order until one takes the transaction or ends it. */
  private async deliverDomain(mail: MailMessage, domain: string, recipients: string[]): Promise<DomainDelivery> {
    const result: DomainDelivery = {
      domain,
      recipients,
      status: 'failed',
      mx: null,
      attempts: [],
      accepted: [],
      rejected: recipients,
      response: null,
      edge: null,
      error: null,
      rejectedErrors: [],
      tls: null,
      tlsPolicy: null,
    };
    // A domain that gets nothing: every recipient carries the domain's error.
    const failed = (fields: Partial<DomainDelivery> & { error: DeliveryError }): DomainDelivery => ({ ...result, ...fields, rejectedErrors: recipients.map(() => fields.error) });
    const { resolver, timeout } = this.settings;
    const signal = AbortSignal.timeout(timeout);
    const route = await resolveMx(domain, resolver, signal);
    if (route.kind === 'null-mx') {
      // RFC 7505 section 4.1: no attempt at all, and a permanent failure.
      const check = withSeverity(await checkRecipientNullMx(domain, resolver, signal), 'enforce', domain);
      return failed({ error: new EdgeRefusedError(reportOf(check), check, { recipients, mail: mail.data }) });
    }
    if (route.kind === 'unresolved') {
      const check: CheckResult = {
        id: 'destination',
        status: route.permanent ? 'fail' : 'temperror',
        severity: 'enforce',
        domain,
        expected: `an MX host, or an address record, for ${domain}`,
        actual: route.reason,
        code: route.permanent ? 'DEST_UNRESOLVED' : 'DNS_TEMPFAIL',
        hint: route.permanent ? `Check the recipient addresses at ${domain}.` : 'Retry later; check that the resolvers in edge.dns.servers are reachable.',
        evidence: [digLine(route.lookup)],
      };
      return failed({ error: new EdgeRefusedError(reportOf(check), check, { recipients, mail: mail.data }) });
    }
    // Issue 12: the domain's MTA-STS policy, then per host what TLS it must give (DANE first), see src/tls/policy.ts.
    const tls = this.settings.tls;
    const policy = tls ? await tls.policies.domainPolicy(domain, AbortSignal.timeout(timeout)) : undefined;
    if (policy) {
      result.tlsPolicy = { kind: policy.kind, mode: policy.mode, mx: policy.mx, maxAge: policy.maxAge };
      if (policy.fetchFailed) tls?.warn('MTA_STS_FETCH_FAILED', `mailedge: ${domain} announces MTA-STS but ${policy.notes.join('; ')}; delivering without a policy`);
    }
    for (const host of route.hosts) {
      const unusable = unusableExchange(host.exchange);
      if (unusable !== null) {
        // Passed over like a host without an address: the domain's owner must not choose where on our network mail goes.
        const check: CheckResult = {
          id: 'destination',
          status: 'fail',
          severity: 'enforce',
          domain,
          expected: `an MX host name for ${domain} (RFC 5321 section 5.1)`,
          actual: `MX ${host.preference} ${printable(host.exchange)} ${unusable}`,
          code: 'DEST_UNRESOLVED',
          hint: `The MX record of ${domain} must name a host, not an address or this machine; its owner has to correct it.`,
          evidence: [],
        };
        result.attempts.push({ mx: printable(host.exchange), reason: check.actual });
        result.error = new EdgeRefusedError(reportOf(check), check, { recipients, mail: mail.data });
        continue;
      }
      const plan = tls && policy ? await tls.policies.planHost(domain, host, policy, route.lookup, AbortSignal.timeout(timeout)) : undefined;
      if (tls && policy && plan?.kind === 'skip') {
        // The policy forbids this host: deferred (temporary), the next host is tried.
        tls.policies.record(domain, policy, plan, {});
        result.attempts.push({ mx: host.exchange, reason: plan.error.message });
        result.error = plan.error;
        continue;
      }
      const attempt = plan?.kind === 'use' ? plan.attempt : undefined;
      try {
        const info = await this.sendUnderPolicy(host.exchange, mail, attempt);
        if (tls && policy && plan) {
          tls.policies.record(domain, policy, plan, { ...(attempt ? { attempt } : {}), ...(info.edge ? { sourceAddress: info.edge.address } : {}) });
          const outcome = attempt?.outcome;
          const outside = plan.kind === 'use' ? plan.outsidePolicy : undefined;
          if (policy.kind === 'mta-sts' && policy.mode === 'testing' && (outside || (outcome && (!outcome.authorized || outcome.version === null)))) {
            tls.warn('MTA_STS_TESTING_FAILURE', `mailedge: ${domain}'s MTA-STS policy (testing) would have refused ${host.exchange}: ${outside ?? outcome?.failure ?? 'no STARTTLS'}; delivered anyway`);
          }
        }
        const rejected = (info.rejected ?? []).map(String);
        // Nodemailer's per-recipient errors (a 550 to one RCPT), with permanent set from the reply.
        const rejectedErrors = (info.rejectedErrors ?? []).map((e: unknown) => (e instanceof MailedgeError ? e : asSmtpSendError(e, mail.data, this.settings.redact.withMessage(mail.data))));
        return {
          ...result,
          status: rejected.length === 0 ? 'delivered' : 'partial',
          mx: host.exchange,
          accepted: (info.accepted ?? []).map(String),
          rejected,
          response: info.response,
          edge: info.edge,
          ...(info.authentication ? { authentication: info.authentication } : {}),
          timing: { envelopeTime: Number(info.envelopeTime) || 0, messageTime: Number(info.messageTime) || 0, messageSize: Number(info.messageSize) || 0 },
          error: rejectedErrors[0] ?? null,
          rejectedErrors,
          tls: attempt?.outcome ?? null,
        };
      } catch (err) {
        const error = err instanceof MailedgeError ? err : asSmtpSendError(err, mail.data, this.settings.redact.withMessage(mail.data));
        if (tls && policy && plan) tls.policies.record(domain, policy, plan, { ...(attempt ? { attempt } : {}), error });
        // Issue 12: what TLS the failed session had, when it got that far.
        result.tls = attempt?.outcome ?? (error instanceof TlsPolicyError ? (error.outcome ?? null) : null);
        if (!tryNextMx(error)) return failed({ mx: host.exchange, attempts: result.attempts, error });
        result.attempts.push({ mx: host.exchange, reason: error.message });
        result.error = error;
      }
    }
    return result.error ? failed({ attempts: result.attempts, error: result.error }) : result;
  }
}

/**
 * RFC 5321 section 5.1: a host that cannot be reached, never greets, or
 * greets with 4xx, is passed over for the next. A 5xx greeting or any reply
 * or drop inside the transaction ends the domain: the message may already be
 * queued there (a lost 250 must not become a second delivery). A host this
 * edge cannot use (its address unresolved or only of a family whose edge
 * fails, a DNS hiccup on its address) is passed over too; a refusal about the
 * message itself (its envelope, its signature, the EHLO name) ends the domain.
 */
function tryNextMx(error: DeliveryError): boolean {
  // Issue 12: a host the TLS policy forbids failed before MAIL FROM; the next one may satisfy it.
  if (error instanceof TlsPolicyError) return true;
  if (error instanceof EdgeRefusedError) return CODES[error.code].scope === 'host' && error.code !== 'EHLO_INVALID';
  if (error instanceof MailedgeError) return false;
  return failedBeforeTransaction(error);
}

function reportOf(check: CheckResult): PreflightReport {
  return { ok: false, address: null, name: null, destination: null, checks: [check], ptrNames: [], expiresAt: Date.now(), stale: false };
}
