/**
 * TLS reporting (RFC 8460): successes and failures to establish
 * policy-compliant TLS, counted per policy domain and handed out in the
 * shape of a report (section 4.4). mailedge does not send it: the
 * application takes it (transport.tlsReport(), which starts a new period)
 * and sends it where the domain's _smtp._tls record asks. Bounded: at most
 * MAX_DOMAINS domains and MAX_DETAILS failure rows per domain per period.
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../cache.js';

export type PolicyType = 'sts' | 'tlsa' | 'no-policy-found';

/** RFC 8460 section 4.3. */
export type ResultType =
  | 'starttls-not-supported'
  | 'certificate-host-mismatch'
  | 'certificate-expired'
  | 'certificate-not-trusted'
  | 'validation-failure'
  | 'tlsa-invalid'
  | 'dnssec-invalid'
  | 'dane-required'
  | 'sts-policy-fetch-error'
  | 'sts-policy-invalid'
  | 'sts-webpki-invalid';

export interface PolicyRef {
  type: PolicyType;
  /** The policy as published: the MTA-STS policy's lines, or the TLSA records. */
  strings: string[];
  /** mx: patterns of an MTA-STS policy, or the MX host of TLSA records. */
  mxHosts: string[];
}

export interface FailureDetail {
  'result-type': ResultType;
  'sending-mta-ip'?: string;
  'receiving-mx-hostname'?: string;
  'receiving-ip'?: string;
  'failed-session-count': number;
  'failure-reason-code'?: string;
}

export interface TlsRptReport {
  'organization-name': string;
  'date-range': { 'start-datetime': string; 'end-datetime': string };
  'contact-info': string;
  'report-id': string;
  policies: Array<{
    policy: { 'policy-type': PolicyType; 'policy-string': string[]; 'policy-domain': string; 'mx-host': string[] };
    summary: { 'total-successful-session-count': number; 'total-failure-session-count': number };
    'failure-details': FailureDetail[];
  }>;
}

export const MAX_DOMAINS = 1_000;
export const MAX_DETAILS = 20;

interface Row {
  domain: string;
  policy: PolicyRef;
  successes: number;
  failures: number;
  details: Map<string, FailureDetail>;
}

export class TlsReporter {
  private rows = new Map<string, Row>();
  private start: number;
  /** Sessions not counted because the bound was reached, this period. */
  dropped = 0;

  constructor(private readonly clock: Clock) {
    this.start = clock.now();
  }

  success(domain: string, policy: PolicyRef): void {
    const row = this.row(domain, policy);
    if (row) row.successes++;
  }

  failure(domain: string, policy: PolicyRef, detail: Omit<FailureDetail, 'failed-session-count'>): void {
    const row = this.row(domain, policy);
    if (!row) return;
    row.failures++;
    const key = JSON.stringify([detail['result-type'], detail['sending-mta-ip'], detail['receiving-mx-hostname'], detail['receiving-ip'], detail['failure-reason-code']]);
    const known = row.details.get(key);
    if (known) known['failed-session-count']++;
    else if (row.details.size < MAX_DETAILS) row.details.set(key, { ...detail, 'failed-session-count': 1 });
  }

  /** The report for the period up to now; a new period starts. */
  take(organization: string, contact: string): TlsRptReport {
    const end = this.clock.now();
    const report: TlsRptReport = {
      'organization-name': organization,
      'date-range': { 'start-datetime': new Date(this.start).toISOString(), 'end-datetime': new Date(end).toISOString() },
      'contact-info': contact,
      'report-id': `${new Date(this.start).toISOString()}_${randomUUID()}`,
      policies: [...this.rows.values()].map((row) => ({
        policy: { 'policy-type': row.policy.type, 'policy-string': row.policy.strings, 'policy-domain': row.domain, 'mx-host': row.policy.mxHosts },
        summary: { 'total-successful-session-count': row.successes, 'total-failure-session-count': row.failures },
        'failure-details': [...row.details.values()],
      })),
    };
    this.rows = new Map();
    this.start = end;
    this.dropped = 0;
    return report;
  }

  private row(domain: string, policy: PolicyRef): Row | undefined {
    const key = `${domain.toLowerCase()}|${policy.type}`;
    const known = this.rows.get(key);
    if (known) return known;
    if (this.rows.size >= MAX_DOMAINS) {
      this.dropped++;
      return undefined;
    }
    const row: Row = { domain: domain.toLowerCase(), policy, successes: 0, failures: 0, details: new Map() };
    this.rows.set(key, row);
    return row;
  }
}
