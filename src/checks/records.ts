/**
 * Helpers shared by the sender-side checks: the domain an address or option
 * names, and records written the way an operator pastes them into a zone.
 */
import { domainToASCII } from 'node:url';
import type { Lookup } from '../dns/resolver.js';
import { decodeDnsText } from '../text/dns-bytes.js';
import { hostnameProblem, printable } from './hostname.js';
import type { CheckId, CheckVerdict } from './types.js';

/** The TTL suggested in every record a hint offers: an hour is the usual default and cheap to change. */
export const HINT_TTL = 3600;

/** The fix for a lookup that failed only temporarily: nothing in DNS to change yet. */
export function retryHint(domain: string): string {
  return `Retry later; if it persists, check that the resolvers in edge.dns.servers answer for ${domain}.`;
}

export type DomainParse = { ok: true; domain: string } | { ok: false; problem: string };

/**
 * The domain of a mail address ("app@example.com") or a bare domain, lower
 * case, in punycode, without a root dot. Hostname rules apply (RFC 5321
 * section 4.1.2: a mail domain is letters, digits and hyphens), so an address
 * literal such as user@[192.0.2.1] is reported rather than looked up.
 */
export function mailDomain(input: string): DomainParse {
  const at = input.lastIndexOf('@');
  const raw = (at >= 0 ? input.slice(at + 1) : input).trim().replace(/\.$/, '');
  if (raw.length === 0) return { ok: false, problem: 'has no domain' };
  // domainToASCII answers '' for anything it cannot convert; fall back to the raw text so the problem names it.
  const ascii = /[^\x00-\x7f]/.test(raw) ? domainToASCII(raw) || raw : raw;
  const problem = hostnameProblem(ascii);
  if (problem) return { ok: false, problem };
  return { ok: true, domain: ascii.toLowerCase() };
}

/** The fail result every domain-based check gives for a domain it cannot look up. */
export function invalidDomain(id: CheckId, input: string, problem: string, expected: string): CheckVerdict {
  return {
    id,
    status: 'fail',
    expected,
    actual: `"${printable(input)}" ${problem}`,
    code: 'DOMAIN_INVALID',
    hint: `Correct "${printable(input)}": the domain must be a fully-qualified name such as example.com (punycode for an internationalised name).`,
    evidence: [],
  };
}

/**
 * A record as a hint shows it: between backticks, because TXT data carries its
 * own double quotes, and nothing else inside, so it can be pasted as is.
 */
export function paste(record: string): string {
  return `\`${record}\``;
}

/** A TXT record in zone-file form, split into quoted strings of at most 255 octets (RFC 1035 section 3.3). */
export function txtRecord(owner: string, text: string, ttl = HINT_TTL): string {
  const chunks: string[] = [];
  for (let i = 0; i < text.length; i += 255) chunks.push(text.slice(i, i + 255));
  const quoted = (chunks.length ? chunks : ['']).map((c) => `"${c.replace(/[\\"]/g, (ch) => `\\${ch}`)}"`);
  return `${owner}. ${ttl} IN TXT ${quoted.join(' ')}`;
}

/** Each TXT record of an answer as one string: its character-strings joined without separator (RFC 7208 section 3.3, RFC 6376 section 3.6.2.2). */
export function txtStrings(lookup: Lookup): string[] {
  if (lookup.kind !== 'answer') return [];
  // Joined before decoding: a UTF-8 character may straddle two character-strings.
  return lookup.records.flatMap((r) => (r.type === 'TXT' ? [decodeDnsText(r.strings.join(''))] : []));
}

/** Evidence lines without repeats, in first-seen order: a cached lookup asked twice is still one answer. */
export function unique(lines: readonly string[]): string[] {
  return [...new Set(lines)];
}

/** Who can change a record under `domain`: the sentence every hint ends with, because "where do I fix this" is the usual question. */
export function ownerNote(domain: string): string {
  return `That record belongs in the DNS zone of ${domain}: change it wherever that domain's DNS is hosted (often the registrar, or the mail or web provider managing it).`;
}

export interface MxRecord {
  preference: number;
  /** Lower case, without the root dot; '.' for the root (a null MX). */
  exchange: string;
}

/** The MX records of an answer, by preference. */
export function mxRecords(lookup: Lookup): MxRecord[] {
  if (lookup.kind !== 'answer') return [];
  return lookup.records
    .flatMap((r) => (r.type === 'MX' ? [{ preference: r.preference, exchange: r.exchange === '.' ? '.' : r.exchange.toLowerCase() }] : []))
    .sort((a, b) => a.preference - b.preference);
}

/**
 * RFC 7505: a null MX is a single MX record whose exchange is the root. A
 * root exchange beside real ones breaks the RFC's "MUST NOT advertise any
 * other MX" and is not treated as null here: senders still try the others.
 */
export function isNullMx(records: readonly MxRecord[]): boolean {
  return records.length > 0 && records.every((r) => r.exchange === '.');
}

/** Tag-value pairs (DKIM: RFC 6376 section 3.2, DMARC: RFC 7489 section 6.4); names lower-cased, later duplicates ignored. */
export function parseTags(text: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim().toLowerCase();
    if (!tags.has(name)) tags.set(name, part.slice(eq + 1).trim());
  }
  return tags;
}
