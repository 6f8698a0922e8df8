/**
 * The few header fields the verdict reads, from the rendered bytes (what the
 * receiver parses), not from the message options: plugins, defaults and
 * custom headers have all had their say by then.
 */
import addressparser from 'nodemailer/lib/addressparser';
import { parseTags } from '../checks/records.js';

export interface HeaderField {
  /** Lower case. */
  name: string;
  /** Unfolded, trimmed. */
  value: string;
}

export interface MessageHeaders {
  fields: HeaderField[];
  /** Every address in every From field, as the receiver reads them. */
  from: string[];
  /** How many From fields the header carries. */
  fromFields: number;
  get(name: string): string[];
}

/** The header block of a rendered RFC 5322 message (up to the first empty line). */
export function readHeaders(raw: Buffer): MessageHeaders {
  let end = raw.indexOf('\r\n\r\n');
  if (end < 0) end = raw.indexOf('\n\n');
  return readHeaderBlock(raw.subarray(0, end < 0 ? raw.length : end).toString('binary'));
}

/** A header block given as text (src/message/compiled.ts), with fields the wire will carry on top (the DKIM-Signature fields to come). */
export function readHeaderBlock(block: string, extra: readonly HeaderField[] = []): MessageHeaders {
  const fields: HeaderField[] = [...extra];
  for (const line of block.split(/\r?\n/)) {
    const last = fields[fields.length - 1];
    if (/^[ \t]/.test(line) && last) {
      last.value = `${last.value} ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    fields.push({ name: line.slice(0, colon).trim().toLowerCase(), value: line.slice(colon + 1).trim() });
  }
  const get = (name: string): string[] => fields.filter((f) => f.name === name).map((f) => f.value);
  const fromValues = get('from');
  const from = fromValues.flatMap((value) => addressparser(value, { flatten: true }).map((a) => a.address).filter((a) => a.length > 0));
  return { fields, from, fromFields: fromValues.length, get };
}

/** The tags of a DKIM-Signature field (RFC 6376 section 3.5), whitespace removed as the RFC allows. */
export function signatureTags(value: string): Map<string, string> {
  return new Map([...parseTags(value)].map(([name, text]) => [name, text.replace(/\s+/g, '')]));
}

/** The domain of an address, lower case, without a root dot. */
export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase().replace(/\.$/, '');
}
