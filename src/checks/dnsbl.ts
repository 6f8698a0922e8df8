/**
 * Is the edge address on a DNS blocklist? Receivers ask the same lists and
 * answer a listed sender with 550, so mailedge asks first and says which
 * list, why, and where to get delisted.
 *
 * The address is queried reversed under the list's zone (IPv4 octets,
 * IPv6 nibbles, RFC 5782 section 2). Answers are read as each list
 * documents them: for Spamhaus (zen, sbl, xbl, pbl, sbl-xbl) the SBL, CSS,
 * DROP and XBL codes are listings, 127.0.0.10/11 is the PBL ("should not
 * deliver directly": a failure where this address talks to the final
 * receiver, a warning through a relay), and 127.255.255.252/254/255 are the
 * list's error answers (typo, public resolver, too many queries), which are
 * never a listing. Any other list: an answer in 127.0.0.0/8 is a listing;
 * an answer outside it means the resolver rewrites NXDOMAIN, and says so.
 */
import { isIPv4 } from 'node:net';
import type { Resolver } from '../dns/resolver.js';
import { reverseName } from '../dns/wire.js';
import { InvalidOptionError } from '../errors.js';
import { digLine } from './evidence.js';
import type { CheckVerdict } from './types.js';

const SPAMHAUS = /(^|\.)(zen|sbl|xbl|pbl|sbl-xbl)\.(spamhaus\.org|dq\.spamhaus\.net)$/i;
const SPAMHAUS_LOOKUP = 'https://check.spamhaus.org/';

const SPAMHAUS_CODES: Record<string, { kind: 'listed' | 'policy' | 'error'; what: string }> = {
  '127.0.0.2': { kind: 'listed', what: 'SBL (a spam source or spam operation)' },
  '127.0.0.3': { kind: 'listed', what: 'SBL CSS (snowshoe spam, or a compromised host sending it)' },
  '127.0.0.4': { kind: 'listed', what: 'XBL (an exploited host: malware, a botnet or an open proxy)' },
  '127.0.0.5': { kind: 'listed', what: 'XBL (an exploited host)' },
  '127.0.0.6': { kind: 'listed', what: 'XBL (an exploited host)' },
  '127.0.0.7': { kind: 'listed', what: 'XBL (an exploited host)' },
  '127.0.0.9': { kind: 'listed', what: 'SBL DROP (a hijacked or spammer-run network)' },
  '127.0.0.10': { kind: 'policy', what: 'PBL, maintained by the address owner (an address not meant to deliver mail directly)' },
  '127.0.0.11': { kind: 'policy', what: 'PBL, maintained by Spamhaus (an address not meant to deliver mail directly)' },
  '127.255.255.252': { kind: 'error', what: 'error answer: typing error in the DNSBL name' },
  '127.255.255.254': { kind: 'error', what: 'error answer: the query came through a public or open resolver, which Spamhaus refuses' },
  '127.255.255.255': { kind: 'error', what: 'error answer: excessive number of queries' },
};

/** Known lists' lookup (and delisting) pages. */
function lookupPage(zone: string): string | null {
  if (SPAMHAUS.test(zone)) return SPAMHAUS_LOOKUP;
  if (/(^|\.)bl\.spamcop\.net$/i.test(zone)) return 'https://www.spamcop.net/bl.shtml';
  if (/(^|\.)b\.barracudacentral\.org$/i.test(zone)) return 'https://www.barracudacentral.org/lookups';
  if (/(^|\.)bl\.mailspike\.net$/i.test(zone)) return 'https://mailspike.io/ip_verify';
  return null;
}

/** The zones of edge.dnsbl, validated as host names. */
export function dnsblZones(value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new InvalidOptionError('edge.dnsbl', 'expected an array of blocklist zones, such as ["zen.spamhaus.org"]');
  return value.map((zone: unknown, index: number) => {
    if (typeof zone !== 'string' || !/^(?=.{1,253}$)([a-z0-9_]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]\.?$/i.test(zone)) {
      throw new InvalidOptionError(`edge.dnsbl[${index}]`, `expected a blocklist zone such as "zen.spamhaus.org", got ${JSON.stringify(zone)}`);
    }
    return zone.replace(/\.$/, '').toLowerCase();
  });
}

/** The name to ask: the reversed address (octets or nibbles) under the zone. */
export function dnsblQueryName(address: string, zone: string): string {
  return `${reverseName(address).replace(/\.(in-addr|ip6)\.arpa$/, '')}.${zone}`;
}

/**
 * One list's verdict for the edge address. `final`: the address talks to
 * the final receiver (direct delivery, edge.receiver 'final'), where a PBL
 * listing is a refusal waiting to happen.
 */
export async function checkDnsbl(address: string, zone: string, final: boolean, resolver: Resolver, signal: AbortSignal): Promise<CheckVerdict> {
  const name = dnsblQueryName(address, zone);
  const lookup = await resolver.lookup(name, 'A', signal);
  const evidence = [digLine(lookup)];
  const page = lookupPage(zone);
  const where = page ? ` See ${page}${page === SPAMHAUS_LOOKUP ? `?ip=${address}` : ''}.` : '';
  const expected = `${address} not listed on ${zone}`;
  const base = { id: 'dnsbl' as const, expected, evidence };
  if (lookup.kind === 'tempfail') {
    return { ...base, status: 'temperror', actual: `${zone} did not answer (${lookup.detail})`, code: 'DNSBL_UNAVAILABLE', hint: 'Retry later; blocklists are best queried through your own recursive resolver.' };
  }
  if (lookup.kind !== 'answer') return { ...base, status: 'pass', actual: `${address} is not listed on ${zone}`, code: null, hint: null };
  const answers = lookup.records.flatMap((r) => (r.type === 'A' ? [r.address] : []));
  const spamhaus = SPAMHAUS.test(zone);
  const readings = answers.map((a) => {
    if (spamhaus) return { answer: a, ...(SPAMHAUS_CODES[a] ?? (a.startsWith('127.') ? { kind: 'listed' as const, what: `listed (return code ${a})` } : { kind: 'error' as const, what: `an answer outside 127.0.0.0/8 (${a}): the resolver rewrites NXDOMAIN` })) };
    if (a.startsWith('127.255.255.')) return { answer: a, kind: 'error' as const, what: `error answer ${a} (the list refuses the query: public resolver, rate limit or a typo)` };
    if (isIPv4(a) && a.startsWith('127.')) return { answer: a, kind: 'listed' as const, what: `listed (return code ${a})` };
    return { answer: a, kind: 'error' as const, what: `an answer outside 127.0.0.0/8 (${a}): the resolver rewrites NXDOMAIN` };
  });
  const listed = readings.filter((r) => r.kind === 'listed');
  const policy = readings.filter((r) => r.kind === 'policy');
  const errors = readings.filter((r) => r.kind === 'error');
  if (listed.length > 0) {
    return {
      ...base,
      status: 'fail',
      actual: `${address} is listed on ${zone}: ${listed.map((r) => r.what).join('; ')}`,
      code: 'DNSBL_LISTED',
      hint: `${zone} lists ${address}; receivers that use it refuse its mail. Find and fix the cause, then request delisting.${where}`,
    };
  }
  if (policy.length > 0) {
    return {
      ...base,
      status: final ? 'fail' : 'warn',
      actual: `${address} is on ${zone}'s policy list: ${policy.map((r) => r.what).join('; ')}${final ? '' : ' (fine through a relay)'}`,
      code: 'DNSBL_POLICY',
      hint: final
        ? `Receivers refuse direct mail from PBL addresses: send through your provider's relay, or have the address removed from the PBL if it is a static mail server.${where}`
        : `Through a relay this is fine; do not deliver directly (direct: true) from this address.${where}`,
    };
  }
  return {
    ...base,
    status: 'temperror',
    actual: `${zone} gave no usable answer for ${address}: ${errors.map((r) => r.what).join('; ')} (not a listing)`,
    code: 'DNSBL_UNAVAILABLE',
    hint: spamhaus
      ? 'Spamhaus refuses queries from public resolvers (8.8.8.8, 1.1.1.1) and above a free volume: query through your own recursive resolver, or use the Data Query Service (<key>.zen.dq.spamhaus.net).'
      : `Check the zone name and that ${zone} accepts queries from your resolver.`,
  };
}
