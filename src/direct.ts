/**
 * Direct delivery (direct: true): the application is the outbound MTA. The
 * recipients are grouped by domain and each domain gets one SMTP transaction
 * at its MX hosts, in preference order (src/route/mx.ts). Every MX host is a
 * destination like a relay host: it gets a mailedge transport of its own, so
 * the route, the edge family, the FCrDNS check, the pool and TLS (verified
 * against the MX host name) are exactly those of a relay send.
 */
import { randomUUID } from 'node:crypto';
import type { SendMailOptions } from 'nodemailer';
import type { Resolver } from './dns/resolver.js';
import { digLine } from './checks/evidence.js';
import { checkRecipientNullMx } from './checks/recipient-null-mx.js';
import { withSeverity, type CheckResult, type PreflightReport } from './checks/types.js';
import { EdgeRefusedError, MailedgeError, SendFailedError } from './errors.js';
import { envelopeOf } from './envelope.js';
import { resolveMx } from './route/mx.js';
import type { EdgeInfo, MailedgeSentMessageInfo } from './transport.js';

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
  /** Why the domain, or some of its recipients, did not get the message. */
  error: MailedgeError | null;
  /** One error per rejected recipient, in the order of `rejected`. */
  rejectedErrors: MailedgeError[];
  /** Nodemailer's timings of the transaction, when there was one. */
  timing?: { envelopeTime: number; messageTime: number; messageSize: number };
}

export type DirectSentMessageInfo = MailedgeSentMessageInfo & { domains: DomainDelivery[] };

export interface DirectContext {
  resolver: Resolver;
  /** Milliseconds for one domain's MX lookup. */
  timeout: number;
  defaults: SendMailOptions | undefined;
  /** The transport's secret redaction, for receiver replies wrapped here. */
  redact: (text: string) => string;
  /** The transport for one MX host (cached by the caller). */
  send(exchange: string, mail: SendMailOptions): Promise<MailedgeSentMessageInfo>;
}

export async function deliverDirect(context: DirectContext, mail: SendMailOptions): Promise<DirectSentMessageInfo> {
  const envelope = envelopeOf(mail, context.defaults);
  if (!envelope || envelope.to.length === 0) {
    throw new SendFailedError(Object.assign(new Error('No recipients defined'), { code: 'EENVELOPE' }), mail, (t) => t);
  }
  const from = envelope.from === false ? '' : envelope.from;
  // One message in several transactions must stay one message: the same Message-ID and Date everywhere.
  const fromDomain = from.slice(from.lastIndexOf('@') + 1) || 'mailedge.invalid';
  const shared: SendMailOptions = { ...mail, messageId: mail.messageId ?? `<${randomUUID()}@${fromDomain}>`, date: mail.date ?? new Date() };
  const byDomain = new Map<string, string[]>();
  for (const recipient of envelope.to) {
    const domain = recipient.slice(recipient.lastIndexOf('@') + 1).toLowerCase();
    byDomain.set(domain, [...(byDomain.get(domain) ?? []), recipient]);
  }
  const domains = await Promise.all(
    [...byDomain].map(([domain, recipients]) => deliverDomain(context, { ...shared, envelope: { from, to: recipients } }, domain, recipients)),
  );
  // Every error hands back the message as the caller gave it, not the per-domain copy.
  for (const d of domains) for (const error of [d.error, ...d.rejectedErrors]) if (error) error.mail = mail;
  const accepted = domains.flatMap((d) => d.accepted);
  const rejected = domains.flatMap((d) => d.rejected);
  const rejectedErrors = domains.flatMap((d) => d.rejectedErrors);
  if (accepted.length === 0) {
    // Nothing went out: reject as Nodemailer does. A temporary failure is preferred, so that a
    // retry happens; err.domains says which domains failed for good.
    const errors = domains.flatMap((d) => (d.error ? [d.error] : []));
    const chosen = errors.find((e) => !e.permanent) ?? errors[0] ?? new SendFailedError(new Error('nothing delivered'), mail, (t) => t);
    throw Object.assign(chosen, { domains });
  }
  const first = domains.find((d) => d.edge !== null);
  const sum = (key: 'envelopeTime' | 'messageTime' | 'messageSize'): number => domains.reduce((n, d) => n + (d.timing?.[key] ?? 0), 0);
  return {
    envelopeTime: sum('envelopeTime'),
    messageTime: sum('messageTime'),
    messageSize: Math.max(0, ...domains.map((d) => d.timing?.messageSize ?? 0)),
    accepted,
    rejected,
    rejectedErrors,
    pending: [],
    envelope: { from, to: envelope.to },
    messageId: shared.messageId as string,
    response: domains.map((d) => `${d.domain}: ${d.response ?? d.error?.message ?? ''}`).join('; '),
    edge: first?.edge ?? { address: '', name: '', verified: false, stale: false },
    domains,
  };
}

/** One domain: MX hosts in order until one takes the transaction or ends it. */
async function deliverDomain(context: DirectContext, mail: SendMailOptions, domain: string, recipients: string[]): Promise<DomainDelivery> {
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
  };
  // A domain that gets nothing: every recipient carries the domain's error.
  const failed = (fields: Partial<DomainDelivery> & { error: MailedgeError }): DomainDelivery => ({ ...result, ...fields, rejectedErrors: recipients.map(() => fields.error) });
  const signal = AbortSignal.timeout(context.timeout);
  const route = await resolveMx(domain, context.resolver, signal);
  if (route.kind === 'null-mx') {
    // RFC 7505 section 4.1: no attempt at all, and a permanent failure.
    const check = withSeverity(await checkRecipientNullMx(domain, context.resolver, signal), 'enforce', domain);
    return failed({ error: new EdgeRefusedError(reportOf(check), check, { recipients, mail }) });
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
    return failed({ error: new EdgeRefusedError(reportOf(check), check, { recipients, mail }) });
  }
  for (const host of route.hosts) {
    try {
      const info = await context.send(host.exchange, mail);
      const rejected = (info.rejected ?? []).map(String);
      // Nodemailer's per-recipient errors (a 550 to one RCPT) become mailedge's, with permanent set from the reply.
      const rejectedErrors = (info.rejectedErrors ?? []).map((e: unknown) => (e instanceof MailedgeError ? e : new SendFailedError(e, mail, context.redact)));
      return {
        ...result,
        status: rejected.length === 0 ? 'delivered' : 'partial',
        mx: host.exchange,
        accepted: (info.accepted ?? []).map(String),
        rejected,
        response: info.response,
        edge: info.edge,
        timing: { envelopeTime: info.envelopeTime, messageTime: info.messageTime, messageSize: info.messageSize },
        error: rejectedErrors[0] ?? null,
        rejectedErrors,
      };
    } catch (err) {
      const error = err instanceof MailedgeError ? err : new SendFailedError(err, mail, context.redact);
      if (!tryNextMx(error)) return failed({ mx: host.exchange, attempts: result.attempts, error });
      result.attempts.push({ mx: host.exchange, reason: error.message });
      result.error = error;
    }
  }
  return result.error ? failed({ attempts: result.attempts, error: result.error }) : result;
}

/**
 * RFC 5321 section 5.1: a host that cannot be reached, never greets, or
 * greets with 4xx, is passed over for the next. A 5xx greeting or any reply
 * or drop inside the transaction ends the domain: the message may already be
 * queued there (a lost 250 must not become a second delivery). A host this
 * edge cannot use (its address unresolved or only of a family whose edge
 * fails, a DNS hiccup on its address) is passed over too; a refusal about the
 * message itself (null MX, an enforced sender-side check) ends the domain.
 */
function tryNextMx(error: MailedgeError): boolean {
  if (error instanceof EdgeRefusedError) return !MESSAGE_REFUSALS.has(error.code);
  if (!(error instanceof SendFailedError)) return false;
  if (error.responseCode !== undefined) return error.command === 'CONN' && error.responseCode >= 400 && error.responseCode < 500;
  return error.beforeGreeting;
}

/** Refusals that would be the same at every MX host of the domain: about the message, not the host. */
const MESSAGE_REFUSALS = new Set<string>(['RECIPIENT_NULL_MX', 'SPF_FAIL', 'SPF_PERMERROR', 'SENDER_NULL_MX', 'SENDER_NO_MX', 'DKIM_KEY_MISSING', 'DKIM_KEY_MISMATCH', 'DKIM_KEY_SHORT', 'EHLO_INVALID', 'DOMAIN_INVALID']);

function reportOf(check: CheckResult): PreflightReport {
  return { ok: false, address: null, name: null, destination: null, checks: [check], ptrNames: [], expiresAt: Date.now(), stale: false };
}
