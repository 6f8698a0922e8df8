/**
 * The few header fields the verdict reads, from the rendered bytes (what the
 * receiver parses), not from the message options: plugins, defaults and
 * custom headers have all had their say by then.
 */
import addressparser from 'nodemailer/lib/addressparser';
import { parseTags } from '../checks/records.js';
import { Cache, systemClock } from '../cache.js';

export interface HeaderField {
  /** Lower case. */
  name: string;
  /** Unfolded, trimmed. */
  value: string;
}

export interface MessageHeaders {
  /** Every address in every From field, as the receiver reads them. */
  from: string[];
  /** How many From fields the header carries. */
  fromFields: number;
  /** The unfolded, trimmed values of the fields of a name (lower case), in order. */
  get(name: string): readonly string[];
}

/** The header block of a rendered RFC 5322 message (up to the first empty line). */
export function readHeaders(raw: Buffer): MessageHeaders {
  let end = raw.indexOf('\r\n\r\n');
  if (end < 0) end = raw.indexOf('\n\n');
  return readHeaderBlock(raw.subarray(0, end < 0 ? raw.length : end).toString('binary'));
}

/** A header block given as text (src/message/compiled.ts), with fields the wire will carry on top (the DKIM-Signature fields to come). */
export function readHeaderBlock(block: string, extra: readonly HeaderField[] = []): MessageHeaders {
  // One pass with indexOf straight into an index by name: this runs for every message sent.
  const index = new Map<string, string[]>();
  for (const field of extra) addField(index, field.name, field.value);
  let values: string[] | undefined;
  for (let start = 0, length = block.length; start < length; ) {
    let end = block.indexOf('\n', start);
    if (end < 0) end = length;
    const lineEnd = end > start && block.charCodeAt(end - 1) === 13 ? end - 1 : end;
    const first = block.charCodeAt(start);
    if ((first === 32 || first === 9) && values) {
      // A continuation line belongs to the field read last.
      values[values.length - 1] = `${values[values.length - 1] ?? ''} ${block.slice(start, lineEnd).trim()}`;
    } else {
      const colon = block.indexOf(':', start);
      if (colon > start && colon < lineEnd) values = addField(index, block.slice(start, colon).trim().toLowerCase(), block.slice(colon + 1, lineEnd).trim());
    }
    start = end + 1;
  }
  const get = (name: string): readonly string[] => index.get(name) ?? NONE;
  const fromValues = index.get('from') ?? NONE;
  const from = fromValues.length === 1 ? [...fromAddresses(fromValues[0] as string)] : fromValues.flatMap(fromAddresses);
  return { from, fromFields: fromValues.length, get };
}

/** Adds a field's value under its name; the values of that name, which a continuation line extends. */
function addField(index: Map<string, string[]>, name: string, value: string): string[] {
  const values = index.get(name);
  if (values) {
    values.push(value);
    return values;
  }
  const first = [value];
  index.set(name, first);
  return first;
}

/**
 * The addresses in one From field's value. Most messages of an application
 * carry one of a few From values, so the parse is kept per value (bounded;
 * forgetting one only parses it again).
 */
function fromAddresses(value: string): string[] {
  let addresses = parsedFrom.get(value);
  if (!addresses) {
    addresses = addressparser(value, { flatten: true }).map((a) => a.address).filter((a) => a.length > 0);
    parsedFrom.set(value, addresses, Infinity);
  }
  return addresses;
}

const NONE: readonly string[] = Object.freeze([]);

const parsedFrom = new Cache<string, string[]>({ name: 'from addresses', max: 1000, clock: systemClock });

/** The tags of a DKIM-Signature field (RFC 6376 section 3.5), whitespace removed as the RFC allows. */
export function signatureTags(value: string): Map<string, string> {
  return new Map([...parseTags(value)].map(([name, text]) => [name, text.replace(/\s+/g, '')]));
}

/** The domain of an address, lower case, without a root dot. */
export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase().replace(/\.$/, '');
}
