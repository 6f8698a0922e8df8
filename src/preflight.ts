/**
 * The start-up hook: the same checks a send runs, without sending anything.
 */
import { InvalidOptionError, PreflightFailedError } from './errors.js';
import type { PreflightReport } from './checks/types.js';
import { EdgeVerifier } from './identity.js';
import { addressesOf, EnvelopeChecks, withEnvelopeChecks } from './envelope.js';
import { resolveEdgeOptions, type MailedgeOptions } from './options.js';
import { expandShorthands } from './shorthands.js';
import { memberOptions, poolReport } from './routes/ip-pool.js';
// Message identity (issue 11): the verdict of a sample message, without sending.
import { predictAuthentication, type SampleMessage } from './message/predict.js';
import { probeDomains } from './tls/probe.js';

export interface PreflightCallOptions {
  /** Throw PreflightFailedError (carrying the report) when an enforced check fails. Default false. */
  throwOnFailure?: boolean;
  /** An envelope sender to check as well (spf, sender-mx, dmarc). '' or '<>' is the null sender. */
  from?: string;
  /** Recipients to check as well (recipient-null-mx), one address or several. */
  to?: string | string[];
  /**
   * A sample message whose SPF x DKIM x DMARC verdict to predict (the
   * `authentication` check): its From, MAIL FROM, headers and DKIM keys
   * (default: the transport's `dkim`). The report then carries `authentication`.
   */
  message?: SampleMessage;
}

/**
 * Runs the edge checks for these transport options and returns the report;
 * with `from` and `to`, the sender- and recipient-side checks too, after the
 * edge checks in `report.checks`. DNS outcomes never throw; only invalid
 * options do, or a failure when `throwOnFailure` is set.
 */
export async function preflight(input: MailedgeOptions | string, call: PreflightCallOptions = {}): Promise<PreflightReport> {
  // The same options createTransport takes, connection URL and service included.
  const options = expandShorthands(input);
  const resolved = resolveEdgeOptions(options);
  const { from, to } = envelopeOptions(call);
  if (resolved.pool) {
    // Each member as if it were the only address: SPF and the rest depend on the address too.
    const members = await Promise.all(
      resolved.pool.map(async (member) => ({ member, report: await preflight(memberOptions(options, member), { ...call, throwOnFailure: false }) })),
    );
    const report = poolReport(members);
    if (call.throwOnFailure && !report.ok) throw new PreflightFailedError(report);
    return report;
  }
  const verifier = new EdgeVerifier(resolved);
  let report: PreflightReport;
  try {
    const identity = await verifier.identity();
    report = identity.report;
    if (from !== undefined || to.length > 0) {
      const envelope = new EnvelopeChecks(resolved, verifier.resolver);
      try {
        const checks = await envelope.report(from, to, { address: identity.edge?.address ?? null, ehloName: identity.ehloName });
        report = withEnvelopeChecks(report, checks);
      } finally {
        envelope.dispose();
      }
    }
    // Message identity (issue 11): predicted for the edge the identity check confirmed (or would greet with).
    const edgeAddress = identity.edge?.address;
    if (call.message && edgeAddress !== undefined) {
      const prediction = await predictAuthentication(resolved, verifier.resolver, { address: edgeAddress, name: identity.ehloName ?? report.name ?? '' }, call.message);
      if (prediction) report = { ...withEnvelopeChecks(report, [prediction.check]), authentication: prediction.authentication };
    }
    // Issue 12: with direct: true, each recipient domain's MX hosts under its TLS policy, probed up to the point of sending.
    if (resolved.direct && to.length > 0) report = { ...report, domains: await probeDomains(options, resolved, verifier.resolver, to) };
  } finally {
    verifier.dispose();
  }
  if (call.throwOnFailure && !report.ok) throw new PreflightFailedError(report);
  return report;
}

function envelopeOptions(call: PreflightCallOptions): { from: string | undefined; to: string[] } {
  if (typeof call !== 'object' || call === null) throw new InvalidOptionError('preflight options', 'expected an object such as { from, to, throwOnFailure }');
  const { from, to } = call;
  if (from !== undefined && typeof from !== 'string') throw new InvalidOptionError('from', `expected an address, got ${JSON.stringify(from)}`);
  const list = to === undefined ? [] : typeof to === 'string' ? [to] : to;
  if (!Array.isArray(list) || list.some((entry) => typeof entry !== 'string')) {
    throw new InvalidOptionError('to', `expected an address or an array of addresses, got ${JSON.stringify(to)}`);
  }
  const nullSender = from !== undefined && (from.trim() === '' || from.trim() === '<>');
  // "Name <a@b>" is accepted, as in a message; what is checked is the address.
  const sender = from === undefined || nullSender ? from : (addressesOf(from)[0] ?? from);
  // Text that holds no address is checked as given, so the report says what is wrong with it.
  const recipients = list.flatMap((entry) => {
    const parsed = addressesOf(entry);
    return parsed.length > 0 ? parsed : [entry];
  });
  return { from: sender, to: recipients };
}
