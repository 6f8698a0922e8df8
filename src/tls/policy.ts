/**
 * The TLS policy of one recipient domain, and what it asks of each of its MX
 * hosts: DANE where the host has DNSSEC-validated TLSA records (it takes
 * precedence, RFC 8461 section 2), else the domain's MTA-STS policy in
 * enforce mode, else opportunistic TLS (RFC 7435). Direct delivery
 * (src/routes/direct.ts) asks here before each MX host, and reports here after.
 */
import { isIPv6 } from 'node:net';
import type { Lookup, Resolver } from '../dns/resolver.js';
import type { Clock } from '../cache.js';
import type { MxHost } from '../routes/mx.js';
import { lookupTlsa, tlsaName, tlsaRecords, tlsaText, usable, type TlsaRecord } from './dane.js';
import { discover, fetchPolicy, mxMatches } from './mta-sts.js';
import { isStoredPolicy, type StoredPolicy } from './policy-store.js';
import type { ResolvedTlsOptions } from './options.js';
import type { ResolvedEdgeOptions } from '../options.js';
import { TlsPolicyError, type TlsAttempt, type TlsRequirement } from './outcome.js';
import { TlsReporter, type PolicyRef, type ResultType, type TlsRptReport } from './report.js';

/** A domain's policy as the check report shows it (the `policy` object of `check --direct --json`). */
export interface DomainPolicy {
  kind: 'dane' | 'mta-sts' | 'none';
  mode: 'enforce' | 'testing' | 'none' | null;
  mx: string[] | null;
  maxAge: number | null;
  /** The stored MTA-STS policy in force, when there is one. */
  sts: StoredPolicy | null;
  /** Why no MTA-STS policy applies, or what went wrong fetching it (kept policy in use), for warnings and evidence. */
  notes: string[];
  /** True when the domain announces MTA-STS but no policy could be had: MTA_STS_FETCH_FAILED. */
  fetchFailed: boolean;
  fetchFailure?: ResultType;
}

export type HostPlan =
  /** `outsidePolicy`: an MTA-STS testing policy would not have allowed this host (it is used, and reported). */
  | { kind: 'use'; attempt: TlsAttempt; dane: boolean; tlsa: TlsaRecord[]; outsidePolicy?: string }
  | { kind: 'skip'; error: TlsPolicyError; dane: boolean };

export interface TlsPoliciesSettings {
  resolver: Resolver;
  tls: ResolvedTlsOptions;
  clock: Clock;
  /** The edge's family and bound address, for policy fetches. */
  family: () => 4 | 6;
  localAddress: string | undefined;
  /** Nodemailer's requireTLS: a verified certificate on every MX host. */
  requireTLS: boolean;
}

export class TlsPolicies {
  readonly reporter: TlsReporter;
  /** Domains whose policy is being fetched now: concurrent sends share one fetch. Bounded by the sends in flight. */
  private readonly fetching = new Map<string, Promise<DomainPolicy>>();

  constructor(private readonly settings: TlsPoliciesSettings) {
    this.reporter = new TlsReporter(settings.clock);
  }

  tlsReport(organization = 'mailedge', contact = ''): TlsRptReport {
    return this.reporter.take(organization, contact);
  }

  /** The domain's MTA-STS policy (RFC 8461 section 5.1: TXT id, cache, fetch, keep on failure). */
  domainPolicy(domain: string, signal: AbortSignal): Promise<DomainPolicy> {
    const key = domain.toLowerCase();
    const running = this.fetching.get(key);
    if (running) return running;
    const next = this.loadPolicy(key, signal).finally(() => this.fetching.delete(key));
    this.fetching.set(key, next);
    return next;
  }

  private async loadPolicy(domain: string, signal: AbortSignal): Promise<DomainPolicy> {
    const none = (notes: string[], extra: Partial<DomainPolicy> = {}): DomainPolicy => ({ kind: 'none', mode: null, mx: null, maxAge: null, sts: null, notes, fetchFailed: false, ...extra });
    const sts = this.settings.tls.mtaSts;
    if (!sts) return none(['MTA-STS is off (edge.tls.mtaSts: false)']);
    const now = this.settings.clock.now();
    let storedRaw: StoredPolicy | undefined;
    try {
      storedRaw = await sts.store.get(domain);
    } catch {
      // A failing custom store must not fail the delivery: the policy is then fetched as on first contact.
      storedRaw = undefined;
    }
    // Whatever a store returns (a custom one, a file from another version or edited by hand) is checked
    // as the file store checks its file: an entry that is not a policy is ignored and the policy fetched
    // again, rather than failing later, possibly after the MX host has taken the message.
    const valid = isStoredPolicy(storedRaw) && storedRaw.domain.toLowerCase() === domain ? storedRaw : undefined;
    const stored = valid && valid.expiresAt > now ? valid : undefined;
    const use = (entry: StoredPolicy, notes: string[]): DomainPolicy =>
      entry.policy.mode === 'none'
        ? none([...notes, 'MTA-STS policy mode: none'], { mode: 'none', sts: entry, maxAge: entry.policy.maxAge })
        : { kind: 'mta-sts', mode: entry.policy.mode, mx: entry.policy.mx, maxAge: entry.policy.maxAge, sts: entry, notes, fetchFailed: false };
    const discovery = await discover(domain, this.settings.resolver, signal);
    if (discovery.kind === 'tempfail') return stored ? use(stored, [`${discovery.reason}; the cached policy stays in force`]) : none([discovery.reason]);
    // RFC 8461 section 5.1: a vanished TXT record does not end a cached policy before it expires.
    if (discovery.kind === 'none') return stored ? use(stored, [`${discovery.reason}; the cached policy stays in force until it expires`]) : none([discovery.reason]);
    if (stored && stored.id === discovery.id) return use(stored, []);
    const fetched = await fetchPolicy(domain, {
      resolver: this.settings.resolver,
      signal,
      timeout: sts.timeout,
      ca: this.settings.tls.ca,
      port: sts.port,
      allowInternal: sts.portSet,
      family: this.settings.family(),
      localAddress: this.settings.localAddress,
    });
    if (!fetched.ok) {
      if (stored) return use(stored, [`policy refresh failed (${fetched.reason}); the cached policy (id ${stored.id}) stays in force`]);
      return none([`the policy could not be fetched: ${fetched.reason}`], { fetchFailed: true, fetchFailure: fetched.resultType });
    }
    const fetchedAt = this.settings.clock.now();
    const entry: StoredPolicy = { domain, id: discovery.id, policy: fetched.policy, fetchedAt, expiresAt: fetchedAt + Math.min(fetched.policy.maxAge, sts.maxAge) * 1000 };
    try {
      await sts.store.set(entry);
    } catch (err) {
      // Not kept for next time, but valid for this delivery.
      return use(entry, [`the policy store refused it: ${err instanceof Error ? err.message : String(err)}`]);
    }
    return use(entry, []);
  }

  /** What this MX host must do for the domain, or why it may not be used. */
  async planHost(domain: string, host: MxHost, policy: DomainPolicy, mxLookup: Lookup, signal: AbortSignal): Promise<HostPlan> {
    const exchange = host.exchange.replace(/\.$/, '');
    const ca = this.settings.tls.ca;
    const dane = await this.dane(exchange, mxLookup, signal);
    if (dane.kind === 'tempfail') {
      return { kind: 'skip', dane: true, error: new TlsPolicyError('DANE_TLSA_TEMPFAIL', `the TLSA lookup for ${tlsaName(exchange)} failed (${dane.reason}): ${exchange} is deferred rather than used without DANE`, exchange, { evidence: [`${tlsaName(exchange)} TLSA: ${dane.reason}`] }) };
    }
    // RFC 7672 section 2.2: validated TLSA records, none usable: TLS stays mandatory, without authentication.
    // That is a floor, not a policy: it never replaces a stronger demand (MTA-STS enforce, edge.tls.verify,
    // requireTLS), which no DANE authentication took the place of.
    const unusable = dane.kind === 'unusable';
    const encrypt: HostPlan = { kind: 'use', dane: false, tlsa: [], attempt: { requirement: { kind: 'encrypt', policy: 'dane', host: exchange }, ca } };
    if (dane.kind === 'records') {
      return { kind: 'use', dane: true, tlsa: dane.records, attempt: { requirement: { kind: 'dane', policy: 'dane', host: exchange, tlsa: dane.records }, ca } };
    }
    if (policy.kind === 'mta-sts' && policy.mx && !mxMatches(policy.mx, exchange)) {
      const error = new TlsPolicyError('MTA_STS_MX_MISMATCH', `${exchange} is not among the mx: patterns of ${domain}'s MTA-STS policy (${policy.mx.join(', ')})`, exchange, {
        evidence: [`https://mta-sts.${domain}/.well-known/mta-sts.txt (id ${policy.sts?.id ?? '?'}):`, ...(policy.sts?.policy.text.trim().split(/\r?\n/).map((l) => `  ${l}`) ?? [])],
      });
      if (policy.mode === 'enforce') return { kind: 'skip', dane: false, error };
      if (unusable) return { ...encrypt, outsidePolicy: error.message };
      return { kind: 'use', dane: false, tlsa: [], attempt: { requirement: { kind: 'opportunistic', policy: 'mta-sts', host: exchange }, ca }, outsidePolicy: error.message };
    }
    let requirement: TlsRequirement;
    if (policy.kind === 'mta-sts' && policy.mode === 'enforce') requirement = { kind: 'webpki', policy: 'mta-sts', host: exchange };
    else if (this.settings.tls.verify || this.settings.requireTLS) requirement = { kind: 'webpki', policy: policy.kind === 'mta-sts' ? 'mta-sts' : 'opportunistic', host: exchange };
    else if (unusable) return encrypt;
    else requirement = { kind: 'opportunistic', policy: policy.kind === 'mta-sts' ? 'mta-sts' : 'opportunistic', host: exchange };
    return { kind: 'use', dane: false, tlsa: [], attempt: { requirement, ca } };
  }

  /**
   * Counts the session for TLS reporting (RFC 8460), by the policy it was held
   * to. Never throws: it runs after the MX host may have taken the message,
   * and a report is never worth turning a delivery into a failure (the
   * application would send the message again).
   */
  record(domain: string, policy: DomainPolicy, plan: HostPlan, outcome: { attempt?: TlsAttempt; error?: unknown; sourceAddress?: string }): void {
    try {
      this.count(domain, policy, plan, outcome);
    } catch {
      // Only this session's row is lost.
    }
  }

  private count(domain: string, policy: DomainPolicy, plan: HostPlan, outcome: { attempt?: TlsAttempt; error?: unknown; sourceAddress?: string }): void {
    const ref = this.policyRef(policy, plan.kind === 'use' ? plan.tlsa : []);
    if (ref.type === 'no-policy-found' && !policy.fetchFailed) {
      this.reporter.success(domain, ref);
      return;
    }
    const host = plan.kind === 'skip' ? plan.error.host : plan.attempt.requirement.host;
    const base = { 'receiving-mx-hostname': host, ...(outcome.sourceAddress ? { 'sending-mta-ip': outcome.sourceAddress } : {}) };
    if (policy.fetchFailed && policy.fetchFailure) {
      this.reporter.failure(domain, ref, { ...base, 'result-type': policy.fetchFailure });
      return;
    }
    if (plan.kind === 'use' && plan.outsidePolicy) {
      this.reporter.failure(domain, ref, { ...base, 'result-type': 'validation-failure', 'failure-reason-code': 'mx-not-in-policy' });
      return;
    }
    const error = plan.kind === 'skip' ? plan.error : outcome.error;
    const tls = outcome.attempt?.outcome ?? (error instanceof TlsPolicyError ? error.outcome : undefined);
    if (error instanceof TlsPolicyError) {
      this.reporter.failure(domain, ref, { ...base, 'result-type': resultTypeOf(error.code, tls?.failure) });
      return;
    }
    if (tls && tls.version === null && ref.type !== 'no-policy-found') {
      this.reporter.failure(domain, ref, { ...base, 'result-type': 'starttls-not-supported' });
      return;
    }
    if (tls && !tls.authorized && ref.type === 'sts') {
      this.reporter.failure(domain, ref, { ...base, 'result-type': resultTypeOf('MTA_STS_CERT_INVALID', tls.failure) });
      return;
    }
    if (tls) this.reporter.success(domain, ref);
  }

  private policyRef(policy: DomainPolicy, tlsa: TlsaRecord[]): PolicyRef {
    if (tlsa.length > 0) return { type: 'tlsa', strings: tlsa.map(tlsaText), mxHosts: [] };
    if (policy.kind === 'mta-sts' && policy.sts) return { type: 'sts', strings: policy.sts.policy.text.trim().split(/\r?\n/), mxHosts: policy.mx ?? [] };
    return { type: 'no-policy-found', strings: [], mxHosts: [] };
  }

  /**
   * DANE applies to a host only with edge.dns.dnssec 'trust-ad', when the MX
   * answer and the host's address answer were authenticated (RFC 7672
   * section 2.2), and its TLSA answer is authenticated with usable records.
   */
  private async dane(host: string, mxLookup: Lookup, signal: AbortSignal): Promise<{ kind: 'none' | 'unusable' } | { kind: 'tempfail'; reason: string } | { kind: 'records'; records: TlsaRecord[] }> {
    if (this.settings.tls.dnssec !== 'trust-ad') return { kind: 'none' };
    if (!authenticated(mxLookup)) return { kind: 'none' };
    const family = this.settings.family();
    const addresses = await this.settings.resolver.lookup(host, family === 6 ? 'AAAA' : 'A', signal);
    if (addresses.kind === 'tempfail') return { kind: 'tempfail', reason: `address lookup: ${addresses.detail}` };
    if (addresses.kind !== 'answer' || addresses.authenticated !== true) return { kind: 'none' };
    const lookup = await lookupTlsa(host, this.settings.resolver, signal);
    if (lookup.kind === 'tempfail') return { kind: 'tempfail', reason: lookup.detail };
    if (lookup.kind !== 'answer' || lookup.authenticated !== true) return { kind: 'none' };
    const all = tlsaRecords(lookup);
    const records = all.filter(usable);
    if (records.length > 0) return { kind: 'records', records };
    return all.length > 0 ? { kind: 'unusable' } : { kind: 'none' };
  }
}

/** The resolver set the AD bit on every answer behind this lookup (the MX answer, or the no-data of an implicit MX). */
function authenticated(lookup: Lookup): boolean {
  return (lookup.kind === 'answer' || lookup.kind === 'nodata' || lookup.kind === 'nxdomain') && lookup.authenticated === true;
}

function resultTypeOf(code: string, failure: string | undefined): ResultType {
  if (code === 'MTA_STS_STARTTLS_MISSING' || code === 'DANE_STARTTLS_MISSING') return 'starttls-not-supported';
  if (code === 'DANE_NO_MATCH') return 'tlsa-invalid';
  if (code === 'DANE_TLSA_TEMPFAIL') return 'dnssec-invalid';
  if (code === 'MTA_STS_MX_MISMATCH') return 'validation-failure';
  const text = failure ?? '';
  if (/CERT_HAS_EXPIRED|NOT_YET_VALID/.test(text)) return 'certificate-expired';
  if (/ALTNAME_INVALID|altnames/.test(text)) return 'certificate-host-mismatch';
  if (/SELF_SIGNED|UNABLE_TO_(GET|VERIFY)/.test(text)) return 'certificate-not-trusted';
  return 'validation-failure';
}

export function familyOf(address: string | undefined): 4 | 6 | undefined {
  return address === undefined ? undefined : isIPv6(address) ? 6 : 4;
}

/** The TLS policies of a transport's (or a probe's) direct deliveries. */
export function policiesFor(resolved: ResolvedEdgeOptions, resolver: Resolver, requireTLS: boolean): TlsPolicies {
  return new TlsPolicies({
    resolver,
    tls: resolved.tls,
    clock: resolved.clock,
    // Policy hosts are reached over the edge's family: the bound or public address's, else IPv4 unless edge.family is 6.
    family: () => familyOf(resolved.localAddress ?? resolved.publicAddress) ?? (resolved.family === 6 ? 6 : 4),
    localAddress: resolved.localAddress,
    requireTLS,
  });
}
