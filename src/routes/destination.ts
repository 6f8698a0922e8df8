/**
 * Which address the transport connects to. mailedge resolves the host itself,
 * through its own resolver, and then connects to exactly that address: the
 * edge check is about the route actually taken, so the route cannot be left
 * to a second resolver that might answer differently.
 */
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import type { Lookup, Resolver } from '../dns/resolver.js';
import { canonicalAddress } from '../dns/wire.js';

export type ResolvedDestination =
  | { kind: 'ok'; host: string; addresses: string[]; family: 4 | 6; lookups: Lookup[] }
  | { kind: 'unresolved'; host: string; permanent: boolean; lookups: Lookup[]; reason: string };

export async function resolveRoute(
  host: string,
  resolver: Resolver,
  signal: AbortSignal,
  preferFamily: 4 | 6 | null,
): Promise<ResolvedDestination> {
  const literal = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const literalFamily = isIP(literal);
  if (literalFamily !== 0) {
    const address = canonicalAddress(literal);
    const family = (isIP(address) as 4 | 6) || (literalFamily as 4 | 6);
    if (preferFamily !== null && family !== preferFamily) {
      return { kind: 'unresolved', host, permanent: true, lookups: [], reason: `${host} is IPv${family} but the edge is IPv${preferFamily}` };
    }
    return { kind: 'ok', host, addresses: [address], family, lookups: [] };
  }
  // RFC 6761: localhost is loopback by definition and never asked of DNS.
  if (host.toLowerCase() === 'localhost') {
    const family = preferFamily ?? 4;
    return { kind: 'ok', host, addresses: [family === 6 ? '::1' : '127.0.0.1'], family, lookups: [] };
  }
  const families: Array<4 | 6> = preferFamily === null ? [4, 6] : [preferFamily];
  // An internationalised host name is asked in its punycode form, as every resolver stores it.
  const asciiHost = /[^\x00-\x7f]/.test(host) ? domainToASCII(host) || host : host;
  // Families in order of preference, one at a time: a resolver that drops AAAA
  // queries must not cost the deadline when the A record already answers.
  const lookups: Lookup[] = [];
  for (const family of families) {
    const lookup = await resolver.lookup(asciiHost, family === 4 ? 'A' : 'AAAA', signal);
    lookups.push(lookup);
    const addresses = lookup.kind === 'answer' ? lookup.records.flatMap((r) => (r.type === 'A' || r.type === 'AAAA' ? [r.address] : [])) : [];
    if (addresses.length > 0) return { kind: 'ok', host, addresses, family, lookups };
  }
  const temporary = lookups.some((l) => l.kind === 'tempfail');
  return {
    kind: 'unresolved',
    host,
    permanent: !temporary,
    lookups,
    reason: temporary ? `resolving ${host} failed temporarily` : `${host} has no ${families.map((f) => (f === 4 ? 'A' : 'AAAA')).join('/')} record`,
  };
}
