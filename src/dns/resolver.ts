/**
 * mailedge's resolver: every lookup mailedge makes (PTR, A/AAAA, the
 * destination host) goes through here, so one `edge.dns` setting governs them
 * all. Results are cached for their DNS TTL within bounds, negative answers by
 * the SOA rule of RFC 2308, and concurrent identical lookups share one query.
 * The cache is bounded (maxEntries); the least recently used answer goes first.
 */
import { Cache, type Clock } from '../cache.js';
import { DnsClient, type TempReason } from './client.js';
import { labelsToName, nameKey, nameToLabels, RecordType, Rcode, reverseName, WireFormatError, type DnsMessage, type ResourceRecord } from './wire.js';
import type { DnsServerAddress } from './servers.js';

export type LookupType = 'A' | 'AAAA' | 'PTR' | 'MX' | 'TXT' | 'TLSA';

export type Lookup =
  | { kind: 'answer'; name: string; type: LookupType; records: ResourceRecord[]; cnames: string[]; ttl: number; server: string; authenticated?: boolean }
  | { kind: 'nxdomain' | 'nodata'; name: string; type: LookupType; cnames: string[]; ttl: number; server: string; note?: string; authenticated?: boolean }
  | { kind: 'tempfail'; name: string; type: LookupType; reason: TempReason; detail: string }
  | { kind: 'cname-loop' | 'cname-too-long'; name: string; type: LookupType; cnames: string[]; ttl: number };

export function isTemporary(lookup: Lookup): lookup is Extract<Lookup, { kind: 'tempfail' }> {
  return lookup.kind === 'tempfail';
}

export { systemClock, type Clock } from '../cache.js';

export interface TtlBounds {
  /** Seconds. Positive answers are kept at least this long. */
  minTtl: number;
  /** Seconds. Positive answers are kept at most this long. */
  maxTtl: number;
  /** Seconds. Negative answers are kept at most this long (RFC 2308 suggests 1-3 hours). */
  maxNegativeTtl: number;
}

export const DEFAULT_TTL_BOUNDS: TtlBounds = { minTtl: 30, maxTtl: 86_400, maxNegativeTtl: 3_600 };

export interface ResolverOptions extends TtlBounds {
  servers: readonly DnsServerAddress[];
  attemptTimeout: number;
  clock: Clock;
  /** CNAME hops followed before the chain is called too long. */
  maxCnameHops?: number;
  /** Answers cached at most. Default DEFAULT_DNS_CACHE_ENTRIES. */
  maxEntries?: number;
}

/**
 * Answers cached at most by default. A direct send costs about one answer per
 * recipient domain (its MX), so this covers the last ten thousand domains
 * mailed, at about 1.4 KB each (measured for an MX answer: 14 MB at most); a
 * domain older than that is simply asked again. The edge's own PTR and A
 * answers are read only when the identity is verified again, as the first of
 * them expires: one evicted meanwhile costs one more query then.
 */
export const DEFAULT_DNS_CACHE_ENTRIES = 10_000;


const TYPE_CODES: Record<LookupType, number> = {
  A: RecordType.A,
  AAAA: RecordType.AAAA,
  PTR: RecordType.PTR,
  MX: RecordType.MX,
  TXT: RecordType.TXT,
  // TLSA (RFC 6698) is not decoded by the wire module: src/tls/dane.ts reads its raw data.
  TLSA: 52,
};

export class Resolver {
  readonly client: DnsClient;
  private readonly cache: Cache<string, Lookup>;
  /**
   * When each answer handed out stops being valid: a cached answer keeps its
   * first expiry, not a fresh TTL. Weak, so it holds nothing the answers'
   * holders do not: it is bounded by the cache and by the callers.
   */
  private readonly expiry = new WeakMap<Lookup, number>();
  private readonly maxCnameHops: number;

  constructor(private readonly options: ResolverOptions) {
    this.client = new DnsClient({ servers: options.servers, attemptTimeout: options.attemptTimeout });
    this.maxCnameHops = options.maxCnameHops ?? 8;
    this.cache = new Cache({ name: 'dns answers', max: options.maxEntries ?? DEFAULT_DNS_CACHE_ENTRIES, clock: options.clock });
  }

  /** Answers held now (for load figures); at most `maxEntries`. */
  get cachedAnswers(): number {
    return this.cache.size;
  }

  ptr(address: string, signal: AbortSignal): Promise<Lookup> {
    return this.lookup(reverseName(address), 'PTR', signal);
  }

  /** Cached, single-flight lookup that follows CNAMEs. Never rejects. */
  lookup(rawName: string, type: LookupType, signal: AbortSignal): Promise<Lookup> {
    // One spelling per name ('a\\045b' is 'a-b'), so the answer's question matches ours.
    let name: string;
    try {
      name = labelsToName(nameToLabels(rawName));
    } catch (err) {
      if (!(err instanceof WireFormatError)) throw err;
      return Promise.resolve(this.remember({ kind: 'nxdomain', name: rawName, type, cnames: [], ttl: 0, server: 'not asked', note: err.message }));
    }
    // Concurrent lookups of one key share the first caller's query (and its signal).
    return this.cache.getOrLoad(`${type} ${nameKey(name)}`, async () => {
      const lookup = await this.resolveChain(name, type, signal);
      // A temporary failure is not kept: the next lookup asks again.
      return lookup.kind === 'tempfail' ? { value: lookup, expiresAt: 0 } : { value: this.remember(lookup), expiresAt: this.expiresAt(lookup) };
    });
  }

  /** Forget every cached answer (the next lookups go to the wire). */
  clear(): void {
    this.cache.clear();
  }

  /** Epoch ms at which this answer stops being valid; now for a temporary failure. */
  expiresAt(lookup: Lookup): number {
    return this.expiry.get(lookup) ?? this.options.clock.now();
  }

  private remember(lookup: Lookup): Lookup {
    this.expiry.set(lookup, this.options.clock.now() + this.cacheSeconds(lookup) * 1000);
    return lookup;
  }

  /** Seconds a lookup may be reused, after the documented clamps. */
  cacheSeconds(lookup: Lookup): number {
    if (lookup.kind === 'tempfail') return 0;
    const { minTtl, maxTtl, maxNegativeTtl } = this.options;
    const max = lookup.kind === 'answer' ? maxTtl : maxNegativeTtl;
    return Math.min(Math.max(lookup.ttl, minTtl), max);
  }

  private async resolveChain(name: string, type: LookupType, signal: AbortSignal): Promise<Lookup> {
    const cnames: string[] = [];
    const seen = new Set<string>([nameKey(name)]);
    let current = name;
    let ttl = Infinity;
    // The server's AD bit on every answer of the chain (DANE, src/tls/dane.ts, trusts it only with edge.dns.dnssec).
    let authenticated = true;
    for (let hop = 0; hop <= this.maxCnameHops; hop++) {
      const outcome = await this.client.query(current, TYPE_CODES[type], signal);
      if (outcome.kind === 'tempfail') return { kind: 'tempfail', name, type, reason: outcome.reason, detail: outcome.detail };
      authenticated &&= outcome.message.authenticData === true;
      const walked = walkAnswer(outcome.message, current, TYPE_CODES[type]);
      for (const step of walked.cnames) {
        const key = nameKey(step.target);
        cnames.push(step.target);
        ttl = Math.min(ttl, step.ttl);
        if (seen.has(key)) return { kind: 'cname-loop', name, type, cnames, ttl };
        seen.add(key);
        if (cnames.length > this.maxCnameHops) return { kind: 'cname-too-long', name, type, cnames, ttl };
      }
      if (walked.records.length > 0) {
        const recordTtl = Math.min(...walked.records.map((r) => r.ttl));
        return {
          kind: 'answer',
          name,
          type,
          records: walked.records,
          cnames,
          ttl: Math.min(ttl, recordTtl),
          server: outcome.server,
          authenticated,
        };
      }
      const owner = walked.cnames.at(-1)?.target ?? current;
      const soa = outcome.message.authorities.find((r) => r.type === 'SOA');
      // The server stopped at a CNAME whose target it does not serve (no SOA to say the target is empty): ask for the target.
      if (nameKey(owner) !== nameKey(current) && outcome.message.rcode === Rcode.NOERROR && !soa) {
        current = owner;
        continue;
      }
      // RFC 2308 section 5: the negative TTL is the lesser of the SOA's TTL and its MINIMUM field.
      const negativeTtl = soa?.type === 'SOA' ? Math.min(soa.ttl, soa.minimum) : 0;
      const note = walked.ignored.length > 0 ? `ignored ${walked.ignored.join(', ')}` : undefined;
      return {
        kind: outcome.message.rcode === Rcode.NXDOMAIN ? 'nxdomain' : 'nodata',
        name,
        type,
        cnames,
        ttl: Math.min(ttl, negativeTtl),
        server: outcome.server,
        authenticated,
        ...(note ? { note } : {}),
      };
    }
    return { kind: 'cname-too-long', name, type, cnames, ttl: Number.isFinite(ttl) ? ttl : 0 };
  }
}

interface Walked {
  cnames: Array<{ target: string; ttl: number }>;
  records: ResourceRecord[];
  /** Records in the answer that did not belong to the chain, kept for evidence. */
  ignored: string[];
}

/**
 * Follows the CNAME chain inside one answer section, starting at the question
 * name, and keeps only records owned by the chain's end: anything else in the
 * answer is unrequested data and is not believed.
 */
function walkAnswer(message: DnsMessage, start: string, typeCode: number): Walked {
  const result: Walked = { cnames: [], records: [], ignored: [] };
  let owner = nameKey(start);
  const visited = new Set<string>([owner]);
  while (typeCode !== RecordType.CNAME) {
    const cname = message.answers.find((r) => r.type === 'CNAME' && nameKey(r.name) === owner);
    if (cname?.type !== 'CNAME') break;
    result.cnames.push({ target: cname.target, ttl: cname.ttl });
    owner = nameKey(cname.target);
    if (visited.has(owner)) break;
    visited.add(owner);
  }
  for (const record of message.answers) {
    const matchesType = record.type === 'OTHER' ? record.typeCode === typeCode : RecordType[record.type] === typeCode;
    if (matchesType && nameKey(record.name) === owner) result.records.push(record);
    else if (record.type !== 'CNAME') result.ignored.push(`${record.type === 'OTHER' ? `TYPE${record.typeCode}` : record.type} at ${record.name}`);
  }
  return result;
}

export function describeTemp(reason: TempReason): string {
  switch (reason) {
    case 'timeout':
      return 'timed out';
    case 'servfail':
      return 'SERVFAIL';
    case 'refused':
      return 'REFUSED';
    case 'unreachable':
      return 'server unreachable';
    case 'malformed':
      return 'malformed answer';
  }
}
