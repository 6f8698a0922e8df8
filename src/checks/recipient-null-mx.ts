/**
 * A recipient domain with a null MX (RFC 7505) has declared that it accepts
 * no mail: RFC 7505 section 4.1 says a sender SHOULD NOT try, and bounce at
 * once (556 5.1.10). One MX lookup, nothing more: mailedge never probes a
 * recipient over SMTP, and whether a domain without MX has a working mail
 * host is the delivering server's business.
 */
import type { Resolver } from '../dns/resolver.js';
import { digLine } from './evidence.js';
import { invalidDomain, isNullMx, mailDomain, mxRecords, paste, retryHint } from './records.js';
import type { CheckVerdict } from './types.js';

export async function checkRecipientNullMx(recipientDomain: string, resolver: Resolver, signal: AbortSignal): Promise<CheckVerdict> {
  const expected = (who: string): string => `${who} accepts mail: no null MX (RFC 7505)`;
  const parsed = mailDomain(recipientDomain);
  if (!parsed.ok) return invalidDomain('recipient-null-mx', recipientDomain, parsed.problem, expected('the recipient domain'));
  const domain = parsed.domain;
  const mx = await resolver.lookup(domain, 'MX', signal);
  const base = { id: 'recipient-null-mx' as const, expected: expected(domain), evidence: [digLine(mx)] };
  switch (mx.kind) {
    case 'tempfail':
      return {
        ...base,
        status: 'temperror',
        actual: 'the MX lookup failed temporarily',
        code: 'DNS_TEMPFAIL',
        hint: retryHint(domain),
      };
    case 'nxdomain':
      return {
        ...base,
        status: 'warn',
        actual: `${domain} does not exist (NXDOMAIN)`,
        code: 'RECIPIENT_DOMAIN_MISSING',
        hint: `Check the recipient address: ${domain} does not exist, so the message would bounce.`,
      };
    case 'answer': {
      const records = mxRecords(mx);
      if (isNullMx(records)) {
        return {
          ...base,
          status: 'fail',
          actual: `${domain} publishes a null MX (${records.map((r) => `${r.preference} .`).join(', ')}): it accepts no mail`,
          code: 'RECIPIENT_NULL_MX',
          hint: `Do not send to ${domain}: its owner has declared that it receives no mail (${paste(`${domain}. IN MX 0 .`)}), so the message could only bounce (556 5.1.10). Check the recipient address; only the owner of ${domain} can change this.`,
        };
      }
      return { ...base, status: 'pass', actual: `MX ${records.map((r) => `${r.preference} ${r.exchange === '.' ? '.' : `${r.exchange}.`}`).join(', ')}`, code: null, hint: null };
    }
    case 'nodata':
      return { ...base, status: 'pass', actual: `no MX record (mail goes to ${domain}'s own address, implicit MX)`, code: null, hint: null };
    case 'cname-loop':
    case 'cname-too-long':
      // Not a null MX: whether the domain can receive at all is for the delivering server to find out.
      return { ...base, status: 'pass', actual: `no null MX (the MX lookup ends in a broken CNAME chain: ${mx.kind})`, code: null, hint: null };
  }
}
