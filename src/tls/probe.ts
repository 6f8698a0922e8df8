/**
 * `check --direct` (and preflight with direct: true and `to`): per recipient
 * domain, its MX hosts, its TLS policy, and whether this edge can satisfy it
 * now. Each MX host is probed as a send would reach it, up to the point of
 * sending: connect from the checked edge, EHLO with the confirmed name,
 * STARTTLS, the certificate judged as the policy demands, QUIT. Never MAIL
 * or RCPT: no address is verified anywhere.
 */
import type { Resolver } from '../dns/resolver.js';
import { EdgeVerifier } from '../identity.js';
import { decide } from '../decide.js';
import { mxHostOptions, resolveEdgeOptions, type MailedgeOptions, type ResolvedEdgeOptions } from '../options.js';
import { resolveMx, unusableExchange } from '../routes/mx.js';
import { printable } from '../checks/hostname.js';
import { connectChecked } from '../routes/socket.js';
import { negotiateTls } from './starttls.js';
import { policiesFor, type TlsPolicies } from './policy.js';
import type { TlsOutcome } from './outcome.js';

export interface MxProbe {
  host: string;
  preference: number;
  /** The host has DNSSEC-validated, usable TLSA records (edge.dns.dnssec 'trust-ad'). */
  dane: boolean;
  /** The probe met the policy: a send would be carried by this host now. */
  usable: boolean;
  /** Why not, when not usable. */
  reason: string | null;
  /** The code of the refusal, when not usable. */
  code: string | null;
  /** The TLS the probe got, when it got that far. */
  tls: TlsOutcome | null;
}

export interface DomainProbe {
  domain: string;
  policy: { kind: 'dane' | 'mta-sts' | 'none'; mode: 'enforce' | 'testing' | 'none' | null; mx: string[] | null; maxAge: number | null };
  mx: MxProbe[];
  /** Why the domain has no MX host to probe (null MX, NXDOMAIN, DNS failure); null otherwise. */
  reason: string | null;
}

const QUIT_WAIT_MS = 1_000;

export async function probeDomains(options: MailedgeOptions, resolved: ResolvedEdgeOptions, resolver: Resolver, recipients: readonly string[]): Promise<DomainProbe[]> {
  const domains = [...new Set(recipients.map((r) => r.slice(r.lastIndexOf('@') + 1).toLowerCase()).filter(Boolean))];
  const policies = policiesFor(resolved, resolver, options.requireTLS === true);
  return Promise.all(domains.map((domain) => probeDomain(domain, options, resolved, resolver, policies)));
}

async function probeDomain(domain: string, options: MailedgeOptions, resolved: ResolvedEdgeOptions, resolver: Resolver, policies: TlsPolicies): Promise<DomainProbe> {
  const none = { kind: 'none' as const, mode: null, mx: null, maxAge: null };
  const route = await resolveMx(domain, resolver, AbortSignal.timeout(resolved.timeout));
  if (route.kind === 'null-mx') return { domain, policy: none, mx: [], reason: `${domain} publishes a null MX (RFC 7505): it accepts no mail` };
  if (route.kind === 'unresolved') return { domain, policy: none, mx: [], reason: route.reason };
  const policy = await policies.domainPolicy(domain, AbortSignal.timeout(resolved.timeout));
  const mx = await Promise.all(
    route.hosts.map(async (host): Promise<MxProbe> => {
      const base = { host: host.exchange, preference: host.preference };
      // Never probed, as never delivered to: an address literal, localhost or a name that is no host name.
      const unusable = unusableExchange(host.exchange);
      if (unusable !== null) return { ...base, host: printable(host.exchange), dane: false, usable: false, reason: `MX ${unusable}`, code: 'DEST_UNRESOLVED', tls: null };
      const plan = await policies.planHost(domain, host, policy, route.lookup, AbortSignal.timeout(resolved.timeout));
      if (plan.kind === 'skip') return { ...base, dane: plan.dane, usable: false, reason: plan.error.message, code: plan.error.code, tls: null };
      try {
        const tls = await probeHost(host.exchange, options, resolved, resolver, plan.attempt);
        return { ...base, dane: plan.dane, usable: true, reason: null, code: null, tls };
      } catch (err) {
        const error = err as Error & { code?: unknown; outcome?: TlsOutcome };
        return { ...base, dane: plan.dane, usable: false, reason: error.message, code: typeof error.code === 'string' ? error.code : null, tls: plan.attempt.outcome ?? error.outcome ?? null };
      }
    }),
  );
  const dane = mx.some((m) => m.dane);
  return {
    domain,
    policy: dane ? { kind: 'dane', mode: null, mx: null, maxAge: null } : { kind: policy.kind === 'mta-sts' ? 'mta-sts' : 'none', mode: policy.mode, mx: policy.mx, maxAge: policy.maxAge },
    mx,
    reason: null,
  };
}

/** One MX host as a send reaches it (its own identity check, as src/transport.ts makes MX routes), then QUIT. */
async function probeHost(exchange: string, options: MailedgeOptions, resolved: ResolvedEdgeOptions, resolver: Resolver, attempt: Parameters<typeof negotiateTls>[1]['attempt']): Promise<TlsOutcome | null> {
  const hostOptions = mxHostOptions(options, exchange, resolved.mxPort);
  const hostResolved = resolveEdgeOptions(hostOptions);
  const verifier = new EdgeVerifier(hostResolved, resolver);
  try {
    const identity = await verifier.identity();
    const decision = decide(identity, undefined);
    const timeout = Number(options.connectionTimeout) || 30_000;
    const socket = await connectChecked(identity, hostResolved.port, hostResolved.localAddress, timeout);
    const handover = await negotiateTls(socket, { name: decision.name, attempt, timeout: Number(options.greetingTimeout) || 30_000, ignoreTLS: options.ignoreTLS === true });
    // The greeting was put back for Nodemailer; nobody reads it now: say QUIT and go.
    handover.connection.on('error', () => undefined);
    handover.connection.end('QUIT\r\n');
    setTimeout(() => handover.connection.destroy(), QUIT_WAIT_MS).unref();
    return attempt.outcome ?? null;
  } finally {
    verifier.dispose();
  }
}
