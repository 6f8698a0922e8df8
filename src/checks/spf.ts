/**
 * SPF (RFC 7208) for the envelope sender and the edge address, evaluated the
 * way a receiver would: by mailauth's SPF implementation (the one used by
 * WildDuck/EmailEngine, kept against the RFC test suite), but with every DNS
 * question going through mailedge's own resolver, so `edge.dns` governs it,
 * answers are cached with the rest, and each lookup shows up as evidence.
 */
import { isIP, isIPv6 } from 'node:net';
import { describeTemp, type Lookup, type LookupType, type Resolver } from '../dns/resolver.js';
import type { TempReason } from '../dns/client.js';
import { canonicalAddress } from '../dns/wire.js';
import { digLine } from './evidence.js';
import { printable } from './hostname.js';
import { decodeDnsText } from '../text/dns-bytes.js';
import { mailauthSpf, type MailauthRecords, type MailauthResolver, type SpfResultName } from './mailauth.js';
import { invalidDomain, mailDomain, ownerNote, paste, txtRecord, txtStrings, unique } from './records.js';
import type { CheckVerdict, CheckStatus } from './types.js';

const STATUS: Record<SpfResultName, CheckStatus> = {
  pass: 'pass',
  none: 'warn',
  neutral: 'warn',
  softfail: 'warn',
  fail: 'fail',
  permerror: 'fail',
  temperror: 'temperror',
};

const CODE = {
  pass: null,
  none: 'SPF_NONE',
  neutral: 'SPF_NEUTRAL',
  softfail: 'SPF_SOFTFAIL',
  fail: 'SPF_FAIL',
  permerror: 'SPF_PERMERROR',
  temperror: 'DNS_TEMPFAIL',
} as const satisfies Record<SpfResultName, CheckVerdict['code']>;

/** Node's c-ares error codes, which mailauth branches on. */
const TEMP_CODES: Record<TempReason, string> = {
  timeout: 'ETIMEOUT',
  servfail: 'ESERVFAIL',
  refused: 'EREFUSED',
  unreachable: 'ECONNREFUSED',
  malformed: 'EBADRESP',
};

// The types mailauth asks for; narrower than LookupType (which also has TLSA), so the switch below stays exhaustive.
const LOOKUP_TYPES = ['A', 'AAAA', 'PTR', 'MX', 'TXT'] as const satisfies readonly LookupType[];

/**
 * @param sender the envelope sender (MAIL FROM) address, or its domain; empty
 *   or "<>" (a bounce) checks the EHLO name instead, as RFC 7208 section 2.4 says.
 * @param address the edge address: what the receiver sees connecting.
 * @param ehloName the EHLO name, for %{h} macros and the null-sender case.
 */
export async function checkSpf(
  sender: string,
  address: string,
  ehloName: string | null,
  resolver: Resolver,
  signal: AbortSignal,
): Promise<CheckVerdict> {
  const edge = canonicalAddress(address);
  const nullSender = sender.trim() === '' || sender.trim() === '<>';
  const identity = nullSender ? (ehloName ?? '') : sender;
  const expectedFor = (domain: string): string => `the SPF record of ${domain} authorises ${edge} (RFC 7208 result "pass")`;
  if (isIP(edge) === 0 || (nullSender && ehloName === null)) {
    return {
      id: 'spf',
      status: 'skip',
      expected: expectedFor(nullSender ? 'the EHLO name' : 'the sender domain'),
      actual: isIP(edge) === 0 ? 'not checked: no edge address' : 'not checked: null sender and no EHLO name',
      code: null,
      hint: null,
      evidence: [],
    };
  }
  const parsed = mailDomain(identity);
  if (!parsed.ok) return invalidDomain('spf', identity, parsed.problem, expectedFor('the sender domain'));
  const domain = parsed.domain;

  const lookups: Lookup[] = [];
  const result = await mailauthSpf()({
    sender: nullSender ? `postmaster@${domain}` : `${senderLocal(sender)}@${domain}`,
    ip: edge,
    ...(ehloName ? { helo: ehloName } : {}),
    mta: 'mailedge',
    resolver: adapter(resolver, signal, lookups),
  });

  const verdict = result.status.result;
  const seen = spfRecordsSeen(lookups, domain);
  // With several v=spf1 records mailauth reports the first; naming only that one would hide the problem.
  const record = seen.length > 1 ? undefined : (result.rr ?? seen[0]);
  const shownRecord = seen.length > 1 ? ` with ${seen.length} v=spf1 records` : record ? ` with "${printable(record)}"` : '';
  const evidence = unique([
    ...lookups.map((l) => digLine(l)),
    `spf=${verdict}${result.status.comment ? ` (${printable(result.status.comment)})` : ''}`,
    ...(result.lookups ? [`SPF DNS lookups: ${result.lookups.count} of ${result.lookups.limit}, void: ${result.lookups.void}`] : []),
  ]);
  const actual = `${verdict}${shownRecord}${verdict === 'pass' ? '' : `: ${printable(reason(result.status.comment ?? '', verdict))}`}`;

  return {
    id: 'spf',
    status: STATUS[verdict],
    expected: expectedFor(domain),
    actual,
    code: CODE[verdict],
    hint: hintFor(verdict, domain, edge, record),
    evidence,
  };
}

function hintFor(verdict: SpfResultName, domain: string, edge: string, record: string | undefined): string | null {
  const mechanism = `${isIPv6(edge) ? 'ip6' : 'ip4'}:${edge}`;
  const fresh = txtRecord(domain, `v=spf1 ${mechanism} ~all`);
  switch (verdict) {
    case 'pass':
      return null;
    case 'none':
      return `Publish an SPF record for ${domain}: ${paste(fresh)}. Add an include: for every other service that sends as ${domain} (your mailbox provider, newsletter tool) before publishing, and tighten ~all to -all once DMARC reports show nothing legitimate failing. ${ownerNote(domain)}`;
    case 'fail':
    case 'softfail':
    case 'neutral':
      return record
        ? `Authorise ${edge} in the SPF record of ${domain}: replace it with ${paste(txtRecord(domain, withMechanism(record, mechanism)))}. ${ownerNote(domain)}`
        : `Authorise ${edge} in the SPF record of ${domain}, e.g. ${paste(fresh)}. ${ownerNote(domain)}`;
    case 'permerror':
      return `Receivers treat a broken SPF record like a failing one. Correct the SPF record of ${domain}${record ? ` (now "${printable(record)}")` : ''}: keep exactly one v=spf1 TXT record, only valid mechanisms, and at most 10 DNS-querying mechanisms (include, a, mx, ptr, exists, redirect; flatten includes if needed). If this host is its only sender: ${paste(fresh)}. ${ownerNote(domain)}`;
    case 'temperror':
      return `Retry later; if it persists, check that the resolvers in edge.dns.servers answer for ${domain} and every domain its SPF record includes.`;
  }
}

/** The record with the edge address's mechanism first, so it matches before any include or all. */
function withMechanism(record: string, mechanism: string): string {
  const terms = record.trim().split(/\s+/);
  return [terms[0] ?? 'v=spf1', mechanism, ...terms.slice(1)].join(' ');
}

/** mailauth's comment starts with the MTA and restates the sender; the part after it is the reason. */
function reason(comment: string, verdict: SpfResultName): string {
  const text = comment.replace(/^mailedge: /, '');
  return text.length > 0 ? text : verdict;
}

/** The v=spf1 records read at `domain` during an evaluation. */
export function spfRecordsSeen(lookups: readonly Lookup[], domain: string): string[] {
  const own = lookups.find((l) => l.type === 'TXT' && l.name.toLowerCase() === domain);
  return own ? txtStrings(own).filter((t) => /^v=spf1(\s|$)/i.test(t)) : [];
}

/** The local part SPF's %{l} macro expands to: postmaster for a bare domain (RFC 7208 section 4.3). */
export function senderLocal(sender: string): string {
  const at = sender.lastIndexOf('@');
  return at > 0 ? sender.slice(0, at) : 'postmaster';
}

type DnsStyleError = Error & { code: string; spfResult?: { error: 'temperror' | 'permerror'; text: string } };

function dnsError(code: string, message: string, spf?: DnsStyleError['spfResult']): DnsStyleError {
  const err = new Error(message) as DnsStyleError;
  err.code = code;
  // mailauth's include: swallows errors without an spfResult; a DNS failure must not vanish that way.
  if (spf) err.spfResult = spf;
  return err;
}

/**
 * mailauth's resolver hook over our Resolver, answering as node:dns's
 * promises API would: A/AAAA/PTR as strings, TXT as arrays of
 * character-strings, MX as { exchange, priority } with '' for the root (a null
 * MX), and errors carrying c-ares codes (ENOTFOUND, ENODATA, ETIMEOUT, ...).
 */
export function adapter(resolver: Resolver, signal: AbortSignal, lookups: Lookup[]): MailauthResolver {
  return async (name: string, rrtype: string): Promise<MailauthRecords> => {
    const type = LOOKUP_TYPES.find((t) => t === rrtype.toUpperCase());
    if (!type) throw dnsError('ENOTIMP', `mailedge does not look up ${rrtype} records`, { error: 'permerror', text: `unsupported lookup ${rrtype}` });
    const lookup = await resolver.lookup(name, type, signal);
    lookups.push(lookup);
    switch (lookup.kind) {
      case 'nxdomain':
        throw dnsError('ENOTFOUND', `${type} ${name}: NXDOMAIN`);
      case 'nodata':
        throw dnsError('ENODATA', `${type} ${name}: no data`);
      case 'tempfail': {
        const text = `${describeTemp(lookup.reason)} looking up ${type} ${name}`;
        throw dnsError(TEMP_CODES[lookup.reason], text, { error: 'temperror', text });
      }
      case 'cname-loop':
      case 'cname-too-long': {
        // Asking again yields the same chain: permanent, unlike the SERVFAIL a recursive resolver would give.
        const text = `${lookup.kind === 'cname-loop' ? 'CNAME loop' : 'CNAME chain too long'} at ${type} ${name}`;
        throw dnsError('ESERVFAIL', text, { error: 'permerror', text });
      }
      case 'answer':
        break;
    }
    const records = lookup.records;
    switch (type) {
      case 'TXT':
        // As text, as the report shows it: mailauth's record and comment then need no decoding of their own.
        return records.flatMap((r) => (r.type === 'TXT' ? [[decodeDnsText(r.strings.join(''))]] : []));
      case 'MX':
        return records.flatMap((r) => (r.type === 'MX' ? [{ exchange: r.exchange === '.' ? '' : r.exchange, priority: r.preference }] : []));
      case 'PTR':
        return records.flatMap((r) => (r.type === 'PTR' ? [r.target] : []));
      case 'A':
      case 'AAAA':
        return records.flatMap((r) => (r.type === 'A' || r.type === 'AAAA' ? [r.address] : []));
    }
  };
}
