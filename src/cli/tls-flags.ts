/**
 * Issue 12's flags, shared by check and send: --dnsbl (repeatable),
 * --ca FILE (repeatable, PEM), --dnssec trust-ad. They map onto edge.dnsbl,
 * edge.tls.ca and edge.dns.dnssec; a bad value is a usage error naming the flag.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { dnsblZones } from '../checks/dnsbl.js';
import { InvalidOptionError } from '../errors.js';
import type { MailedgeOptions } from '../options.js';
import type { DomainProbe } from '../tls/probe.js';
import { printable } from '../checks/hostname.js';
import { UsageError, type CliIo } from './io.js';

export const TLS_FLAGS = {
  dnsbl: { type: 'string', multiple: true },
  ca: { type: 'string', multiple: true },
  dnssec: { type: 'string' },
} as const;

export const TLS_USAGE = `  --dnsbl ZONE            check the edge address on this DNS blocklist (e.g. zen.spamhaus.org); repeatable
  --ca FILE               PEM trust anchors added for MTA-STS policy hosts and MX certificates; repeatable
  --dnssec trust-ad       believe the resolver's AD bit (a validating resolver on this host): enables DANE
`;

export interface TlsFlagValues {
  dnsbl?: string[];
  ca?: string[];
  dnssec?: string;
}

/** The options with the flags' edge settings added. */
export function withTlsFlags(options: MailedgeOptions, flags: TlsFlagValues, io: CliIo): MailedgeOptions {
  const edge = { ...options.edge };
  if (flags.dnsbl && flags.dnsbl.length > 0) {
    try {
      edge.dnsbl = dnsblZones(flags.dnsbl);
    } catch (err) {
      throw new UsageError(`--dnsbl: ${err instanceof InvalidOptionError ? err.message.replace(/^Invalid option edge\.dnsbl\[\d+\]: /, '') : String(err)}`);
    }
  }
  if (flags.dnssec !== undefined) {
    if (flags.dnssec !== 'trust-ad' && flags.dnssec !== 'off') throw new UsageError(`--dnssec: expected trust-ad or off, got ${JSON.stringify(printable(flags.dnssec))}`);
    edge.dns = { ...edge.dns, dnssec: flags.dnssec };
  }
  if (flags.ca && flags.ca.length > 0) {
    const ca = flags.ca.map((file) => {
      let pem: string;
      try {
        pem = readFileSync(resolve(io.cwd, file), 'utf8');
      } catch (err) {
        throw new UsageError(`--ca: cannot read ${printable(file)} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      }
      try {
        new X509Certificate(pem);
      } catch {
        throw new UsageError(`--ca: ${printable(file)} is not a PEM certificate`);
      }
      return pem;
    });
    edge.tls = { ...edge.tls, ca };
  }
  return { ...options, edge };
}

/** check --direct in words: per domain its policy, then each MX host and whether this edge can use it now. */
export function renderDomains(domains: readonly DomainProbe[]): string {
  const lines: string[] = [];
  for (const d of domains) {
    const policy = d.policy.kind === 'mta-sts' ? `MTA-STS ${d.policy.mode} (mx: ${(d.policy.mx ?? []).join(', ')}; max_age ${d.policy.maxAge})` : d.policy.kind === 'dane' ? 'DANE' : d.policy.mode === 'none' ? 'MTA-STS mode none: opportunistic TLS' : 'no policy: opportunistic TLS';
    lines.push(`${d.domain}: ${policy}${d.reason ? `: ${d.reason}` : ''}`);
    for (const m of d.mx) {
      const tls = m.tls ? (m.tls.version ? `${m.tls.version}, ${m.tls.authorized ? 'authorized' : `not authorized${m.tls.failure ? ` (${m.tls.failure})` : ''}`}` : 'no STARTTLS') : '';
      lines.push(`  ${m.usable ? '✔' : '✘'} ${m.preference} ${m.host}${m.dane ? ' [DANE]' : ''}${tls ? `: ${tls}` : ''}${m.usable ? '' : `: ${m.code ?? ''} ${m.reason ?? ''}`}`);
    }
  }
  return lines.map(printable).join('\n') + (lines.length > 0 ? '\n' : '');
}
