/**
 * Where direct delivery for a recipient domain goes (RFC 5321 section 5.1):
 * its MX hosts in preference order, equal preferences shuffled to spread load;
 * no MX means the domain itself (implicit MX); a null MX (RFC 7505) means the
 * domain accepts no mail at all. DNS only: nothing is contacted here.
 */
import type { Lookup, Resolver } from '../dns/resolver.js';
import { isIP } from 'node:net';
import { isNullMx, mxRecords, type MxRecord } from '../checks/records.js';
import { hostnameProblem } from '../checks/hostname.js';

export interface MxHost {
  exchange: string;
  preference: number;
  /** True when the domain has no MX and its own address records stand in for one. */
  implicit: boolean;
}

export type MxRoute =
  | { kind: 'ok'; domain: string; hosts: MxHost[]; lookup: Lookup }
  | { kind: 'null-mx'; domain: string; lookup: Lookup }
  | { kind: 'unresolved'; domain: string; permanent: boolean; reason: string; lookup: Lookup };

export async function resolveMx(
  domain: string,
  resolver: Resolver,
  signal: AbortSignal,
  random: () => number = Math.random,
): Promise<MxRoute> {
  const lookup = await resolver.lookup(domain, 'MX', signal);
  switch (lookup.kind) {
    case 'tempfail':
      return { kind: 'unresolved', domain, permanent: false, reason: `the MX lookup for ${domain} failed temporarily`, lookup };
    case 'nxdomain':
      return { kind: 'unresolved', domain, permanent: true, reason: `${domain} does not exist (NXDOMAIN)`, lookup };
    case 'cname-loop':
    case 'cname-too-long':
      return { kind: 'unresolved', domain, permanent: true, reason: `the MX lookup for ${domain} ends in a broken CNAME chain`, lookup };
    case 'nodata':
      return { kind: 'ok', domain, hosts: [{ exchange: domain, preference: 0, implicit: true }], lookup };
    case 'answer': {
      const records = mxRecords(lookup);
      if (isNullMx(records)) return { kind: 'null-mx', domain, lookup };
      const real = records.filter((r) => r.exchange !== '.');
      return { kind: 'ok', domain, hosts: shuffleEqualPreferences(real, random).map((r) => ({ ...r, implicit: false })), lookup };
    }
  }
}

/** Sorted by preference; within one preference, in random order (RFC 5321 section 5.1). */
export function shuffleEqualPreferences(records: readonly MxRecord[], random: () => number): MxRecord[] {
  const byPreference = new Map<number, MxRecord[]>();
  for (const record of records) byPreference.set(record.preference, [...(byPreference.get(record.preference) ?? []), record]);
  return [...byPreference.keys()]
    .sort((a, b) => a - b)
    .flatMap((preference) => {
      const group = [...(byPreference.get(preference) ?? [])];
      for (let i = group.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [group[i], group[j]] = [group[j] as MxRecord, group[i] as MxRecord];
      }
      return group;
    });
}

/**
 * Why an MX exchange is no host to deliver to: an address literal (an MX names
 * a host, RFC 2181 section 10.3) or localhost (RFC 6761: this machine). Postfix
 * and Exim refuse both; so does mailedge.
 */
export function unusableExchange(exchange: string): string | null {
  const name = exchange.toLowerCase().replace(/\.$/, '');
  if (isIP(name.replace(/^\[|\]$/g, '')) !== 0) return 'is an address, not a host name';
  if (name === 'localhost' || name.endsWith('.localhost')) return 'names this machine (localhost)';
  // Control bytes, spaces, a dot inside a label: such a name would reach TLS's server name and the info raw.
  const problem = hostnameProblem(exchange);
  return problem === null ? null : `is not a host name: ${problem}`;
}
