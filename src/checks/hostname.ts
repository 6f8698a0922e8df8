import { isIP } from 'node:net';
import { escapeText } from '../text/escape.js';

/**
 * Why `name` cannot go into EHLO or stand as a mail host's PTR name, or null
 * when it can. `name` is in presentation form: DNS bytes outside printable
 * ASCII, and dots inside a label, arrive escaped (\DDD, \.), so any backslash
 * means the label holds something a hostname may not (RFC 1123 section 2.1,
 * RFC 5321 section 4.1.2: letters, digits and hyphens only).
 */
export function hostnameProblem(name: string): string | null {
  if (name.length === 0) return 'is empty';
  if (/[\r\n]/.test(name)) return 'contains CR or LF';
  if (/\\(0[0-2]\d|03[01]|127)/.test(name) || /[\x00-\x1f\x7f]/.test(name)) return 'contains control bytes';
  if (/\\032/.test(name) || / /.test(name)) return 'contains a space';
  if (/\\\./.test(name)) return 'has a dot inside a label';
  if (/\\(12[89]|1[3-9]\d|2[0-5]\d)/.test(name) || /[^\x00-\x7f]/.test(name)) {
    return 'contains raw non-ASCII bytes (an internationalised name must be in punycode, xn--...)';
  }
  if (name.includes('\\')) return 'contains characters other than letters, digits and hyphens';
  if (name.endsWith('.')) return 'ends with a dot (EHLO takes the name without the root dot)';
  if (isIP(name) !== 0) return 'is an IP address, not a name';
  if (name.length > 253) return `is ${name.length} characters long (at most 253)`;
  const labels = name.split('.');
  if (labels.length < 2) return 'is a single label, not a fully-qualified name';
  for (const label of labels) {
    if (label.length === 0) return 'has an empty label';
    if (label.length > 63) return `has a label of ${label.length} characters (at most 63)`;
    if (!/^[A-Za-z0-9-]+$/.test(label)) return `has a label with characters other than letters, digits and hyphens ("${label}")`;
    if (label.startsWith('-') || label.endsWith('-')) return `has a label that starts or ends with a hyphen ("${label}")`;
  }
  const tld = labels[labels.length - 1] ?? '';
  if (/^\d+$/.test(tld)) return 'ends in an all-numeric label, so it reads as an IP address';
  const lower = name.toLowerCase();
  if (lower === 'localhost' || lower.endsWith('.localhost')) return 'is a localhost name';
  return null;
}

export function isValidHostname(name: string): boolean {
  return hostnameProblem(name) === null;
}

/** Text safe to print on a terminal or in a log line (see src/text/escape.ts). */
export function printable(text: string): string {
  return escapeText(text);
}
