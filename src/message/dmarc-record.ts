/**
 * The DMARC record that applies to a From domain (RFC 7489 section 6.6.3):
 * _dmarc.<domain>, and only when it has none, _dmarc.<organisational domain>,
 * whose sp= (when present) then applies instead of p=. Looked up through
 * mailedge's resolver and kept per domain for the shortest TTL of the
 * answers read, so a message costs a cache read.
 */
import type { Lookup, Resolver } from '../dns/resolver.js';
import { digLine } from '../checks/evidence.js';
import { parseTags, txtStrings } from '../checks/records.js';
import { organisationalDomain, type AlignmentMode } from './alignment.js';

export type DmarcPolicy = 'none' | 'quarantine' | 'reject';

export type DmarcRecordOutcome =
  | {
      kind: 'record';
      owner: string;
      text: string;
      policy: DmarcPolicy;
      /** pct=, 0 to 100 (default 100): the share of failing messages the policy is applied to (RFC 7489 section 6.6.4). */
      pct: number;
      adkim: AlignmentMode;
      aspf: AlignmentMode;
      evidence: string[];
    }
  /** No record at the domain nor at its organisational domain: DMARC "none". */
  | { kind: 'none'; evidence: string[] }
  /** Several records, or one without a usable p=: receivers apply none of them (RFC 7489 "permerror"). */
  | { kind: 'permerror'; owner: string; reason: string; evidence: string[]; /** Several records: RFC 7489 section 6.6.3 says DMARC is then not applied at all (result none). */ multiple: boolean }
  | { kind: 'temperror'; reason: string; evidence: string[] };

const POLICIES: readonly DmarcPolicy[] = ['none', 'quarantine', 'reject'];

/** What the search found, before anyone judges it: the lookups made, and where it stopped. */
export interface DmarcSearch {
  lookups: Lookup[];
  /** The domain whose _dmarc name held v=DMARC1 records (the From domain, or its organisational domain). */
  found?: { owner: string; domain: string; records: string[] };
  /** The _dmarc name whose lookup failed temporarily, which ended the search. */
  failedAt?: string;
}

/**
 * RFC 7489 section 6.6.3's search, shared by the `dmarc` envelope check and
 * the message verdict: _dmarc.<domain>, then, only when it holds no v=DMARC1
 * record, _dmarc.<organisational domain>; a temporary failure ends it.
 */
export async function searchDmarc(domain: string, resolver: Resolver, signal: AbortSignal): Promise<DmarcSearch> {
  const org = organisationalDomain(domain);
  const lookups: Lookup[] = [];
  for (const candidate of domain === org ? [domain] : [domain, org]) {
    const owner = `_dmarc.${candidate}`;
    const lookup = await resolver.lookup(owner, 'TXT', signal);
    lookups.push(lookup);
    if (lookup.kind === 'tempfail') return { lookups, failedAt: owner };
    const records = txtStrings(lookup).filter((t) => /^v\s*=\s*DMARC1\s*(;|$)/i.test(t.trim()));
    if (records.length > 0) return { lookups, found: { owner, domain: candidate, records } };
  }
  return { lookups };
}

export async function findDmarcRecord(domain: string, resolver: Resolver, signal: AbortSignal): Promise<{ outcome: DmarcRecordOutcome; expiresAt: number }> {
  const { lookups, found, failedAt } = await searchDmarc(domain, resolver, signal);
  const evidence = lookups.map((l) => digLine(l));
  const done = (outcome: DmarcRecordOutcome): { outcome: DmarcRecordOutcome; expiresAt: number } => ({
    outcome,
    expiresAt: Math.min(...lookups.map((l) => resolver.expiresAt(l))),
  });
  if (failedAt !== undefined) return done({ kind: 'temperror', reason: `the DMARC lookup of ${failedAt} failed temporarily`, evidence });
  if (!found) return done({ kind: 'none', evidence });
  const { owner, records } = found;
  const [text] = records;
  if (records.length > 1 || text === undefined) return done({ kind: 'permerror', owner, reason: `${records.length} DMARC records at ${owner}`, evidence, multiple: true });
  const tags = parseTags(text);
  const p = POLICIES.find((x) => x === tags.get('p')?.toLowerCase());
  const sp = POLICIES.find((x) => x === tags.get('sp')?.toLowerCase());
  if (p === undefined) return done({ kind: 'permerror', owner, reason: `no valid p= in the DMARC record at ${owner}`, evidence, multiple: false });
  // RFC 7489 section 6.3: sp= is for subdomains, read from the organisational domain's record.
  const policy = found.domain !== domain && sp !== undefined ? sp : p;
  const mode = (tag: string): AlignmentMode => (tags.get(tag)?.toLowerCase() === 's' ? 's' : 'r');
  // An unreadable pct= is ignored, as receivers ignore an invalid tag: the policy applies in full.
  const pctText = tags.get('pct');
  const pctValue = pctText !== undefined && /^\d{1,3}$/.test(pctText.trim()) ? Number(pctText.trim()) : 100;
  const pct = pctValue <= 100 ? pctValue : 100;
  return done({ kind: 'record', owner, text, policy, pct, adkim: mode('adkim'), aspf: mode('aspf'), evidence });
}
