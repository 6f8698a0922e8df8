/**
 * Forward-confirmed reverse DNS of the edge address (RFC 1912 section 2.1,
 * what Gmail's 5.7.25 and Postfix's reject_unknown_client_hostname test):
 * PTR of the address, then A/AAAA of each PTR name, passing when a name maps
 * back to the address.
 */
import { isIPv6 } from 'node:net';
import type { Lookup, Resolver } from '../dns/resolver.js';
import { canonicalAddress, reverseName } from '../dns/wire.js';
import { digLine } from './evidence.js';
import { hostnameProblem, printable } from './hostname.js';
import type { CheckVerdict, PtrNameResult } from './types.js';

export interface FcrdnsOptions {
  /** PTR names examined at most; more than this is itself a failure (receivers pick any). */
  maxPtrNames: number;
}

export interface FcrdnsVerdict {
  checks: [CheckVerdict, CheckVerdict];
  ptrNames: PtrNameResult[];
  /** The confirmed name, lower-cased, or null. */
  name: string | null;
  /** Every lookup made, for the TTL of the verdict. */
  lookups: Lookup[];
}

const PTR_OWNER_NOTE =
  'A PTR lives in the reverse zone of the address owner (your hosting or IP provider), not in your own domain\'s DNS.';

export async function checkFcrdns(
  address: string,
  resolver: Resolver,
  signal: AbortSignal,
  options: FcrdnsOptions,
): Promise<FcrdnsVerdict> {
  const edge = canonicalAddress(address);
  const arpa = reverseName(edge);
  const forwardType = isIPv6(edge) ? 'AAAA' : 'A';
  const ptr = await resolver.ptr(edge, signal);
  const ptrEvidence = digLine(ptr, edge);
  const skipped = (why: string): CheckVerdict => ({
    id: 'fcrdns',
    status: 'skip',
    expected: `a PTR name whose ${forwardType} record is ${edge}`,
    actual: `not checked: ${why}`,
    code: null,
    hint: null,
    evidence: [],
  });
  const examplePtr = `${arpa}. 3600 IN PTR mail.example.com.`;

  if (ptr.kind === 'tempfail') {
    return {
      checks: [
        {
          id: 'ptr',
          status: 'temperror',
          expected: `a PTR record at ${arpa}`,
          actual: `PTR lookup failed temporarily (${ptr.reason})`,
          code: 'DNS_TEMPFAIL',
          hint: 'Retry later; if it persists, check that the resolvers in edge.dns.servers are reachable and answer for the reverse zone.',
          evidence: [ptrEvidence],
        },
        skipped('the PTR lookup did not complete'),
      ],
      ptrNames: [],
      name: null,
      lookups: [ptr],
    };
  }
  if (ptr.kind !== 'answer') {
    const actual =
      ptr.kind === 'nxdomain'
        ? `no PTR: ${arpa} does not exist (NXDOMAIN)`
        : ptr.kind === 'nodata'
          ? `no PTR: ${arpa} exists but has no PTR record`
          : `the PTR lookup ends in a broken CNAME chain (${ptr.kind})`;
    return {
      checks: [
        {
          id: 'ptr',
          status: 'fail',
          expected: `a PTR record at ${arpa} naming your mail host`,
          actual,
          code: 'PTR_MISSING',
          hint: `Publish a PTR for ${edge}: "${examplePtr}" (with your real host name), and give that name an ${forwardType} record of ${edge}. ${PTR_OWNER_NOTE}`,
          evidence: [ptrEvidence],
        },
        skipped('there is no PTR name to confirm'),
      ],
      ptrNames: [],
      name: null,
      lookups: [ptr],
    };
  }

  const allNames = uniqueNames(ptr.records.flatMap((r) => (r.type === 'PTR' ? [r.target] : [])));
  const examined = allNames.slice(0, options.maxPtrNames);
  const capped = allNames.length > examined.length;
  const capNote = capped ? [`examined the first ${examined.length} of ${allNames.length} PTR names`] : [];
  const entries = examined.map((name) => ({ name, invalid: hostnameProblem(name) }));
  const valid = entries.filter((e) => e.invalid === null);
  const invalidEvidence = entries
    .filter((e) => e.invalid !== null)
    .map((e) => `PTR name "${printable(e.name)}" ${e.invalid}`);

  if (valid.length === 0) {
    const first = entries[0];
    return {
      checks: [
        {
          id: 'ptr',
          status: 'fail',
          expected: 'a PTR name that is a fully-qualified hostname (letters, digits, hyphens)',
          actual: first ? `PTR name "${printable(first.name)}" ${first.invalid}` : 'the PTR answer held no names',
          code: 'PTR_INVALID',
          hint: `Replace the PTR at ${arpa} with a hostname, for example "${examplePtr}". ${PTR_OWNER_NOTE}`,
          evidence: [ptrEvidence, ...capNote, ...invalidEvidence],
        },
        skipped('no PTR name is a valid hostname'),
      ],
      ptrNames: entries.map((e) => ({ name: e.name, invalid: e.invalid, addresses: [], cnames: [], outcome: 'not-queried', confirms: false })),
      name: null,
      lookups: [ptr],
    };
  }

  // All forward lookups at once: the check costs two round trips, not one per name.
  const forwards = await Promise.all(valid.map((e) => resolver.lookup(e.name, forwardType, signal)));
  const forwardByName = new Map(valid.map((e, i) => [e.name, forwards[i]] as const));
  const ptrNames: PtrNameResult[] = entries.map((e) => {
    const forward = forwardByName.get(e.name);
    const addresses =
      forward?.kind === 'answer'
        ? forward.records.flatMap((r) => (r.type === 'A' || r.type === 'AAAA' ? [canonicalAddress(r.address)] : []))
        : [];
    return {
      name: e.name,
      invalid: e.invalid,
      addresses,
      cnames: forward && forward.kind !== 'tempfail' ? forward.cnames : [],
      outcome: forward ? (forward.kind === 'tempfail' ? forward.reason : forward.kind) : 'not-queried',
      confirms: addresses.includes(edge),
    };
  });

  const ptrCheck: CheckVerdict = {
    id: 'ptr',
    status: 'pass',
    expected: `a PTR record at ${arpa}`,
    actual: allNames.map((n) => `${printable(n)}.`).join(' '),
    code: null,
    hint: null,
    evidence: [ptrEvidence, ...capNote],
  };
  const evidence = [...forwards.map((f) => digLine(f)), ...invalidEvidence, ...capNote];
  const expected = `every PTR name has an ${forwardType} record of ${edge}`;
  const lookups = [ptr, ...forwards];
  const verdict = (status: CheckVerdict['status'], code: CheckVerdict['code'], actual: string, hint: string | null, name: string | null = null): FcrdnsVerdict => ({
    checks: [ptrCheck, { id: 'fcrdns', status, expected, actual, code, hint, evidence }],
    ptrNames,
    name,
    lookups,
  });
  const describe = (p: PtrNameResult): string =>
    p.invalid ? `"${printable(p.name)}" ${p.invalid}` : `${printable(p.name)} → ${p.addresses.length ? p.addresses.join(', ') : p.outcome}`;
  const confirming = ptrNames.filter((p) => p.confirms);
  const invalidNames = ptrNames.filter((p) => p.invalid !== null);
  const pending = ptrNames.filter((p) => p.invalid === null && forwardByName.get(p.name)?.kind === 'tempfail');
  const refuted = ptrNames.filter((p) => p.invalid === null && !p.confirms && !pending.includes(p));
  const keep = confirming[0]?.name ?? valid[0]?.name ?? '';
  const keepRecord = `"${arpa}. 3600 IN PTR ${printable(keep)}."`;

  // More names than examined: a receiver may pick any of them, so no verdict can vouch for all.
  if (capped) {
    return verdict(
      'fail',
      'PTR_AMBIGUOUS',
      `${allNames.length} PTR names at ${arpa}; examined ${examined.length}: ${ptrNames.map(describe).join('; ')}`,
      `Remove the extra PTR records at ${arpa}, keeping only ${keepRecord} ${PTR_OWNER_NOTE}`,
    );
  }
  // No name maps back: whatever else is wrong, the forward record is the fix.
  if (confirming.length === 0 && refuted.length > 0) {
    const target = refuted[0] as PtrNameResult;
    const now = target.addresses.length ? target.addresses.join(', ') : `no ${forwardType} record`;
    return verdict(
      'fail',
      'FCRDNS_MISMATCH',
      ptrNames.map(describe).join('; '),
      `Point the PTR name back at the edge address: publish "${printable(target.name)}. 3600 IN ${forwardType} ${edge}" (now: ${now}) in the zone of ${printable(target.name)}, or change the PTR at ${arpa} to a name that already resolves to ${edge}.`,
    );
  }
  // Receivers that read only the first PTR answer take any of the names: every one must confirm.
  const stale = [...invalidNames, ...refuted];
  if (stale.length > 0) {
    const them = stale.length > 1 ? 'them' : 'it';
    return verdict(
      'fail',
      'PTR_AMBIGUOUS',
      `${ptrNames.length} PTR names; confirming: ${confirming.map(describe).join('; ') || 'none yet'}; not confirming: ${stale.map(describe).join('; ')}`,
      `Remove the PTR record${stale.length > 1 ? 's' : ''} ${stale.map((p) => `"${printable(p.name)}"`).join(', ')} from ${arpa} (receivers that read only the first PTR answer reject at random), keeping ${keepRecord}${refuted.length > 0 && invalidNames.length === 0 ? `; or give ${them} an ${forwardType} record of ${edge}` : ''}. ${PTR_OWNER_NOTE}`,
    );
  }
  // Only lookups that did not complete stand between us and a verdict.
  if (pending.length > 0) {
    return verdict(
      'temperror',
      'DNS_TEMPFAIL',
      `forward lookup failed temporarily for ${pending.map((p) => printable(p.name)).join(', ')}`,
      "Retry later; if it persists, check that the resolvers answer for the PTR name's zone.",
    );
  }
  const name = keep.toLowerCase();
  if (confirming.length > 1) {
    return verdict(
      'warn',
      'PTR_MULTIPLE',
      `${confirming.length} PTR names, all confirming: ${confirming.map((p) => p.name).join(', ')}`,
      `Works, but keep one PTR name per address: remove all but ${name} from ${arpa}.`,
      name,
    );
  }
  return verdict('pass', null, `${name} → ${edge}`, null, name);
}

function uniqueNames(names: string[]): string[] {
  const seen = new Set<string>();
  return names.filter((n) => {
    const key = n.toLowerCase();
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
