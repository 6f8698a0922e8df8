/**
 * Does the PTR name look like one an ISP generates for a whole address range
 * rather than one somebody chose for a mail server? Receivers' filters and
 * blocklists such as the Spamhaus PBL treat such hosts as residential or
 * dynamically assigned: FCrDNS may pass (ISPs publish matching A records for
 * their generic names) and the mail still lands in spam or is refused.
 *
 * Pure: no DNS. Two kinds of evidence, either is enough:
 *
 * 1. The name embeds the address. IPv4 a.b.c.d: the four octets in order or
 *    reversed, joined by dots or hyphens, each optionally zero-padded to three
 *    digits (203-0-113-7, 7.113.0.203, 203-000-113-007); the twelve digits of
 *    the zero-padded octets run together (203000113007); the eight hex digits
 *    (cb007107, in order or reversed); the address as one decimal integer
 *    (3405803783). IPv6: the 32 nibbles run together (in order or reversed),
 *    or the eight groups joined by hyphens or dots (zero-padded or not), or the
 *    compressed form with "::" spelled "--". The digits must stand on their own
 *    (no digit, or for hex no hex digit, right before or after).
 *
 * 2. A host label carries one of GENERIC_PTR_TOKENS as a whole word. Only the
 *    labels left of the registrable domain are read: an ISP puts "dsl" or
 *    "pool" in the per-host part under its own domain, while the registrable
 *    domain was chosen by whoever registered it and says nothing about the host.
 *    So mail.pool-party.com is NOT generic (pool-party.com is the registered
 *    domain), but pool-7.isp.example is. A word is a hyphen-separated part of
 *    a label, or a run of letters within one ("dsl12" holds "dsl"); "static-ip"
 *    and "dynamic-ip" match two adjacent words. "ip" and "host" count only as
 *    a label prefix followed by digits (ip-10-1-2-3, ip10, host-42): on their
 *    own they are ordinary names.
 *
 * The allow-list overrides both: an entry is an exact name ("mail.example.com")
 * or, with a leading dot, every name below a domain (".example.com" allows
 * a.example.com, not example.com itself). Case and a trailing dot are ignored.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { canonicalAddress, reverseName } from '../dns/wire.js';
import { printable } from './hostname.js';
import { organisationalDomain } from './mailauth.js';
import { HINT_TTL, paste } from './records.js';
import type { CheckVerdict } from './types.js';

/** Words ISPs use in generic PTR names, matched as whole words in the host labels (see the module comment). */
export const GENERIC_PTR_TOKENS: readonly string[] = [
  'dynamic', 'dyn', 'dynip', 'dynamic-ip', 'dhcp', 'pool',
  'dsl', 'adsl', 'vdsl', 'xdsl', 'sdsl', 'cable', 'cablemodem', 'ftth',
  'ppp', 'pppoe', 'dial', 'dialup', 'dialin',
  'client', 'clients', 'customer', 'cust', 'cpe',
  'broadband', 'res', 'resident', 'residential', 'user', 'users',
  'static-ip', 'staticip', 'unassigned',
];

const TOKENS = new Set(GENERIC_PTR_TOKENS);
const PREFIX_TOKEN = /^(ip|host)-?\d/;

export interface GenericPtrMatch {
  /** The text in the name that matched. */
  text: string;
  /** Why it counts: which form of the address, or which token. */
  reason: string;
}

/** `unconfirmed`: the PTR names there are when none is confirmed, so the skip says the true reason. */
export async function checkGenericPtr(address: string, ptrName: string | null, allow: readonly string[], unconfirmed: readonly string[] = []): Promise<CheckVerdict> {
  const edge = canonicalAddress(address);
  const expected = `a PTR name chosen for a mail server (e.g. mail.example.com), not an ISP's generic name for ${edge}`;
  if (ptrName === null) {
    return {
      id: 'generic-ptr',
      status: 'skip',
      expected,
      actual:
        unconfirmed.length > 0
          ? `not checked: there is a PTR name (${unconfirmed.map((n) => printable(n)).join(', ')}), but it is not confirmed`
          : 'not checked: there is no PTR name',
      code: null,
      hint: null,
      evidence: [],
    };
  }
  const name = ptrName.toLowerCase().replace(/\.$/, '');
  const shown = printable(ptrName);
  const allowedBy = allow.find((entry) => allowListed(name, entry));
  if (allowedBy !== undefined) {
    return {
      id: 'generic-ptr',
      status: 'pass',
      expected,
      actual: `${shown} (allow-listed by "${printable(allowedBy)}")`,
      code: null,
      hint: null,
      evidence: [],
    };
  }
  const matches = genericPtrMatches(edge, name);
  if (matches.length === 0) {
    return { id: 'generic-ptr', status: 'pass', expected, actual: shown, code: null, hint: null, evidence: [] };
  }
  const arpa = reverseName(edge);
  const forward = isIPv6(edge) ? 'AAAA' : 'A';
  return {
    id: 'generic-ptr',
    status: 'warn',
    expected,
    actual: `${shown} looks generic: ${matches.map((m) => m.reason).join('; ')}`,
    code: 'PTR_GENERIC',
    hint:
      `Receivers' filters and blocklists such as the Spamhaus PBL read a PTR name built from the address, or carrying words like "dsl" or "pool", as a residential or dynamically assigned host that should not send mail directly, so mail from it is refused or junked even when FCrDNS passes. ` +
      `Ask the owner of ${edge} (your hosting or IP provider: the PTR lives in their reverse zone, not in your domain's DNS) for a PTR of your own, ${paste(`${arpa}. ${HINT_TTL} IN PTR mail.example.com.`)} with your domain in place of example.com, and publish ${paste(`mail.example.com. ${HINT_TTL} IN ${forward} ${edge}`)} in your domain. ` +
      `If ${shown} is in fact your own static mail host, add it to the generic-PTR allow-list.`,
    evidence: matches.map((m) => `PTR name ${shown}: "${printable(m.text)}" is ${m.reason}`),
  };
}

/** Everything in `name` that marks it generic for `address`; empty when nothing does. Exported for tests. */
export function genericPtrMatches(address: string, name: string): GenericPtrMatch[] {
  const lower = name.toLowerCase().replace(/\.$/, '');
  const matches: GenericPtrMatch[] = [];
  for (const form of addressForms(canonicalAddress(address))) {
    const found = form.pattern.exec(lower);
    if (found) matches.push({ text: found[0], reason: `the address ${form.description}` });
  }
  for (const label of hostLabels(lower)) {
    const words = label.split('-').flatMap((part) => part.match(/[a-z]+/g) ?? []);
    const seen = new Set<string>();
    const note = (token: string): void => {
      if (seen.has(token)) return;
      seen.add(token);
      matches.push({ text: label, reason: `the generic word "${token}"` });
    };
    const prefix = PREFIX_TOKEN.exec(label);
    if (prefix) note(`${prefix[1] ?? ''}-`);
    words.forEach((word, i) => {
      if (TOKENS.has(word)) note(word);
      const pair = `${word}-${words[i + 1] ?? ''}`;
      if (TOKENS.has(pair)) note(pair);
    });
  }
  return matches;
}

interface AddressForm {
  pattern: RegExp;
  description: string;
}

function addressForms(address: string): AddressForm[] {
  if (isIPv4(address)) {
    const octets = address.split('.').map(Number);
    const reversed = [...octets].reverse();
    const spelled = (list: number[]): string =>
      list.map((n) => `(?:${[...new Set([String(n), String(n).padStart(2, '0'), String(n).padStart(3, '0')])].join('|')})`).join('[.-]');
    const padded = (list: number[]): string => list.map((n) => String(n).padStart(3, '0')).join('');
    const hex = (list: number[]): string => list.map((n) => n.toString(16).padStart(2, '0')).join('');
    const integer = String(octets.reduce((sum, n) => sum * 256 + n, 0));
    const digits = (body: string): RegExp => new RegExp(`(?<![0-9])${body}(?![0-9])`);
    const hexDigits = (body: string): RegExp => new RegExp(`(?<![0-9a-f])${body}(?![0-9a-f])`);
    return [
      { pattern: digits(spelled(octets)), description: 'as octets in order' },
      { pattern: digits(spelled(reversed)), description: 'as octets reversed' },
      { pattern: digits(padded(octets)), description: 'as zero-padded octets run together' },
      { pattern: digits(padded(reversed)), description: 'as zero-padded octets reversed and run together' },
      { pattern: hexDigits(hex(octets)), description: 'in hex' },
      { pattern: hexDigits(hex(reversed)), description: 'in hex, reversed' },
      { pattern: digits(integer), description: 'as one decimal integer' },
    ];
  }
  if (!isIPv6(address)) return [];
  const nibbles = reverseName(address).split('.').slice(0, 32).reverse().join('');
  const groups = (nibbles.match(/.{4}/g) ?? []).map((g) => g.replace(/^0+(?=.)/, ''));
  const spelled = groups.map((g) => `0{0,${4 - g.length}}${g}`).join('[.-]');
  const compressed = address.includes('::') ? address.replace(/:/g, '-') : null;
  const hexDigits = (body: string): RegExp => new RegExp(`(?<![0-9a-f])${body}(?![0-9a-f])`);
  return [
    { pattern: hexDigits(nibbles), description: 'as 32 hex digits' },
    { pattern: hexDigits([...nibbles].reverse().join('')), description: 'as 32 hex digits reversed' },
    { pattern: hexDigits(spelled), description: 'as hyphen- or dot-separated groups' },
    ...(compressed ? [{ pattern: hexDigits(compressed), description: 'compressed, with hyphens for colons' }] : []),
  ];
}

/** The labels left of the registrable domain: the part of the name the ISP generated per host. */
function hostLabels(name: string): string[] {
  const labels = name.split('.');
  const registrable = organisationalDomain(name);
  const own = registrable.split('.').length;
  return registrable === name || !name.endsWith(`.${registrable}`) ? [] : labels.slice(0, labels.length - own);
}

function allowListed(name: string, entry: string): boolean {
  const rule = entry.toLowerCase().trim().replace(/\.$/, '');
  if (rule.length === 0) return false;
  return rule.startsWith('.') ? name.endsWith(rule) && name.length > rule.length : name === rule;
}
