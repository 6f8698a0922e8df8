import { describeTemp, type Lookup } from '../dns/resolver.js';
import { printable } from './hostname.js';
import { decodeDnsText } from '../text/dns-bytes.js';

/**
 * One lookup as a line a postmaster recognises: the dig command that would
 * ask the same question, then what `dig +short` would print.
 */
export function digLine(lookup: Lookup, reverseOf?: string): string {
  const question = reverseOf ? `dig +short -x ${reverseOf}` : `dig +short ${lookup.type} ${printable(lookup.name)}`;
  return `${question} → ${shortAnswer(lookup)}`;
}

function shortAnswer(lookup: Lookup): string {
  const chain = lookup.kind === 'tempfail' ? [] : lookup.cnames.map((c) => `${printable(c)}.`);
  switch (lookup.kind) {
    case 'answer':
      return [...chain, ...lookup.records.map(recordText)].join(' ');
    case 'nxdomain':
      return [...chain, `(nothing: NXDOMAIN${lookup.note ? `; ${lookup.note}` : ''})`].join(' ');
    case 'nodata':
      return [...chain, `(nothing: no ${lookup.type} record${lookup.note ? `; ${lookup.note}` : ''})`].join(' ');
    case 'tempfail':
      return `(no verdict: ${describeTemp(lookup.reason)} — ${lookup.detail})`;
    case 'cname-loop':
      return [...chain, '(CNAME loop)'].join(' ');
    case 'cname-too-long':
      return [...chain, '(CNAME chain too long)'].join(' ');
  }
}

function recordText(record: Extract<Lookup, { kind: 'answer' }>['records'][number]): string {
  switch (record.type) {
    case 'A':
    case 'AAAA':
      return record.address;
    case 'PTR':
    case 'CNAME':
    case 'NS':
      return absolute(record.target);
    case 'MX':
      return `${record.preference} ${absolute(record.exchange)}`;
    case 'TXT':
      return record.strings.map((s) => JSON.stringify(printable(decodeDnsText(s)))).join(' ');
    case 'SOA':
      return `${record.mname}. ${record.rname}. ${record.serial}`;
    case 'OTHER':
      return `\\# ${record.raw.length} ${record.raw.toString('hex')}`;
  }
}

/** A name as dig prints it, with the root dot; the root itself (a null MX's exchange) is just ".". */
function absolute(name: string): string {
  return name === '.' ? '.' : `${printable(name)}.`;
}
