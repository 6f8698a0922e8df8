import type { ErrorCode, WarningCode } from '../codes.js';
import { escapeText } from '../text/escape.js';

/**
 * pass: confirmed. warn: works, but something deserves attention.
 * fail: misconfigured, retrying will not help. temperror: DNS did not answer
 * usefully, retry later. skip: not run because an earlier check failed.
 */
export type CheckStatus = 'pass' | 'warn' | 'fail' | 'temperror' | 'skip';

export type CheckId =
  | 'destination'
  | 'edge-address'
  | 'ptr'
  | 'fcrdns'
  | 'ehlo-name'
  | 'ehlo-syntax'
  | 'generic-ptr'
  | 'spf'
  | 'sender-mx'
  | 'dmarc'
  | 'dkim'
  | 'recipient-null-mx'
  // The edge address on DNS blocklists (edge.dnsbl).
  | 'dnsbl'
  // The message's own SPF x DKIM x DMARC verdict (src/message/).
  | 'authentication';

/**
 * How seriously a check is taken. 'enforce': a fail or temperror holds the
 * send (or fails preflight). 'warn': it is reported and emitted as a warning,
 * and the mail goes out.
 */
export type Severity = 'enforce' | 'warn';

/** What a check module returns: the verdict alone, before the configuration says how much it matters. */
export interface CheckVerdict {
  id: CheckId;
  status: CheckStatus;
  /** What a well-run sender would have, in words or record form. */
  expected: string;
  /** What DNS or the configuration actually gave. */
  actual: string;
  code: ErrorCode | WarningCode | null;
  /** The fix, naming the record; null when nothing is to be done. */
  hint: string | null;
  /** Lines in the spirit of `dig +short`: what each lookup returned. */
  evidence: string[];
}

export interface CheckResult extends CheckVerdict {
  /** Whether a fail or temperror of this check holds the send: set by edge.mode and edge.checks. */
  severity: Severity;
  /** The sender or recipient domain an envelope check is about; absent for the edge identity's checks. */
  domain?: string;
  /**
   * The address family an edge identity check was made for, present only when
   * both families were examined (edge.family 'auto' fell back from IPv4 to
   * IPv6): the same check id then appears once per family.
   */
  family?: 4 | 6;
  /** The pool member (its localAddress) the check was made for; present only in a pool's report (edge.pool). */
  member?: string;
}

/** One name from the PTR answer, and what its forward lookup said. */
export interface PtrNameResult {
  name: string;
  /** Why the name is not usable as a hostname, or null when it is. */
  invalid: string | null;
  /** Addresses the forward lookup returned (after CNAMEs), canonical form. */
  addresses: string[];
  /** CNAME names followed on the way, in order. */
  cnames: string[];
  /** Outcome of the forward lookup: 'answer', 'nxdomain', 'nodata', a tempfail reason, or 'not-queried'. */
  outcome: string;
  confirms: boolean;
}

export interface PreflightReport {
  /** False only when an enforced check is fail or temperror. */
  ok: boolean;
  /** The edge address: what receivers see. */
  address: string | null;
  /** The confirmed name that goes into EHLO, or null. */
  name: string | null;
  /** Where the check assumed the mail goes (route address), when known. */
  destination: string | null;
  checks: CheckResult[];
  /** PTR names and their forward results, for renderers that draw the chain. */
  ptrNames: PtrNameResult[];
  /** When this verdict stops being valid (epoch ms), from the shortest TTL seen. */
  expiresAt: number;
  /** True when served past its TTL because re-verification failed only temporarily. */
  stale: boolean;
  /** When stale: what the failed re-verification said. */
  staleReason?: string;
  /**
   * With edge.pool: every member's own report. The top-level fields then
   * describe the first passing member (the first member when none passes),
   * and `checks` holds every member's checks tagged with `member`.
   */
  members?: PoolMemberReport[];
  /** With preflight's `message`: the predicted SPF x DKIM x DMARC verdict of a sample message (src/message/). */
  authentication?: import('../message/verdict.js').Authentication;
  /** Issue 12: with direct: true and recipients, each recipient domain's MX hosts, TLS policy and probe (src/tls/probe.ts). */
  domains?: import('../tls/probe.js').DomainProbe[];
}

export interface PoolMemberReport extends Omit<PreflightReport, 'members'> {
  localAddress: string;
  publicAddress: string | null;
}


/** The result with its severity, in the key order the JSON report shows. */
export function withSeverity(verdict: CheckVerdict, severity: Severity, domain?: string): CheckResult {
  const { id, status, code } = verdict;
  // Every check result passes here on its way to reports, warnings, errors and logs: the one place
  // where text a DNS server chose (TXT data, names) is made safe to print, whichever check quoted it.
  const expected = escapeText(verdict.expected);
  const actual = escapeText(verdict.actual);
  const hint = verdict.hint === null ? null : escapeText(verdict.hint);
  const evidence = verdict.evidence.map(escapeText);
  return { id, status, severity, ...(domain === undefined ? {} : { domain: escapeText(domain) }), expected, actual, code, hint, evidence };
}

export function isFailing(check: CheckVerdict): boolean {
  return check.status === 'fail' || check.status === 'temperror';
}

/** The enforced checks that fail or are in temperror: what makes a report not ok. */
export function enforcedFailures(checks: readonly CheckResult[]): CheckResult[] {
  return checks.filter((c) => c.severity === 'enforce' && isFailing(c));
}

/**
 * A report's outcome in one word: 'pass'; 'fail' when an enforced check fails
 * for good (fix something); else 'temperror' (only DNS left it open: retry).
 */
export function reportStatus(report: Pick<PreflightReport, 'ok' | 'checks'>): 'pass' | 'fail' | 'temperror' {
  if (report.ok) return 'pass';
  return enforcedFailures(report.checks).some((c) => c.status === 'fail') ? 'fail' : 'temperror';
}

/** A result worth a warning: a warn status, or a failure of a check set to 'warn'. */
export function worthWarning(check: CheckResult): boolean {
  return check.code !== null && (check.status === 'warn' || (check.status === 'fail' && check.severity === 'warn'));
}

export function firstFailure<T extends CheckVerdict>(checks: readonly T[]): T | undefined {
  return (
    checks.find((c) => c.status === 'fail') ?? checks.find((c) => c.status === 'temperror')
  );
}
