/**
 * Can the envelope sender's domain receive the bounces? Delivery reports go
 * to the MAIL FROM address: without a reachable MX they are lost, and
 * receivers check it too (Postfix's reject_unknown_sender_domain refuses mail
 * from a domain with no MX and no address; RFC 7505 section 4.2 lets them
 * refuse a null-MX sender domain with 550 5.7.27).
 */
import { isTemporary, type Lookup, type Resolver } from '../dns/resolver.js';
import { digLine } from './evidence.js';
import { printable } from './hostname.js';
import { HINT_TTL, invalidDomain, isNullMx, mailDomain, mxRecords, ownerNote, paste, unique, retryHint } from './records.js';
import type { CheckVerdict } from './types.js';

/** MX hosts examined at most; a domain with more still gets its preferred ones checked. */
const MAX_EXCHANGES = 10;

export async function checkSenderMx(senderDomain: string, resolver: Resolver, signal: AbortSignal): Promise<CheckVerdict> {
  const expected = (who: string): string => `${who} can receive bounces: an MX host with an address (RFC 5321 section 5.1), not a null MX (RFC 7505)`;
  const parsed = mailDomain(senderDomain);
  if (!parsed.ok) return invalidDomain('sender-mx', senderDomain, parsed.problem, expected('the sender domain'));
  const domain = parsed.domain;
  const suggestedMx = `${domain}. ${HINT_TTL} IN MX 10 mail.${domain}.`;
  const result = (status: CheckVerdict['status'], code: CheckVerdict['code'], actual: string, hint: string | null, lookups: Lookup[]): CheckVerdict => ({
    id: 'sender-mx',
    status,
    expected: expected(domain),
    actual,
    code,
    hint,
    evidence: unique(lookups.map((l) => digLine(l))),
  });

  const mx = await resolver.lookup(domain, 'MX', signal);
  if (mx.kind === 'tempfail') {
    return result('temperror', 'DNS_TEMPFAIL', 'the MX lookup failed temporarily', retryHint(domain), [mx]);
  }
  if (mx.kind === 'nxdomain') {
    return result(
      'fail',
      'SENDER_NO_MX',
      `${domain} does not exist (NXDOMAIN)`,
      `Use an envelope sender (MAIL FROM) at a domain that exists and receives mail; receivers refuse mail from a domain that does not resolve. If ${domain} is yours, publish it with ${paste(suggestedMx)}. ${ownerNote(domain)}`,
      [mx],
    );
  }
  if (mx.kind === 'cname-loop' || mx.kind === 'cname-too-long') {
    return result('fail', 'SENDER_NO_MX', `the MX lookup ends in a broken CNAME chain (${mx.kind})`, `Fix the CNAME chain at ${domain}, then publish ${paste(suggestedMx)}. ${ownerNote(domain)}`, [mx]);
  }

  if (mx.kind === 'nodata') {
    // RFC 5321 section 5.1: no MX means the domain's own address is the mail host.
    const implicit = await Promise.all([resolver.lookup(domain, 'A', signal), resolver.lookup(domain, 'AAAA', signal)]);
    const lookups = [mx, ...implicit];
    const addresses = addressesOf(implicit);
    if (addresses.length > 0) {
      return result(
        'warn',
        'SENDER_IMPLICIT_MX',
        `no MX record; bounces go to ${domain}'s own address (implicit MX): ${addresses.join(', ')}`,
        `Publish an explicit MX, ${paste(suggestedMx)}, naming a host that accepts mail: ${addresses.join(', ')} is often a web server that does not. ${ownerNote(domain)}`,
        lookups,
      );
    }
    if (implicit.some(isTemporary)) {
      return result('temperror', 'DNS_TEMPFAIL', 'no MX record, and the address lookup for implicit MX failed temporarily', retryHint(domain), lookups);
    }
    return result(
      'fail',
      'SENDER_NO_MX',
      `${domain} has no MX record and no A/AAAA record: nowhere to deliver bounces`,
      `Publish ${paste(suggestedMx)} and give that host an address, ${paste(`mail.${domain}. ${HINT_TTL} IN A <the mail host's address>`)}. ${ownerNote(domain)}`,
      lookups,
    );
  }

  const records = mxRecords(mx);
  const listed = records.map((r) => `${r.preference} ${r.exchange}${r.exchange === '.' ? '' : '.'}`).join(', ');
  if (isNullMx(records)) {
    return result(
      'fail',
      'SENDER_NULL_MX',
      `${domain} publishes a null MX (${listed}): it declares that it receives no mail`,
      `Bounces to a null-MX domain are lost and receivers may refuse its mail (RFC 7505 section 4.2, 550 5.7.27). Replace ${paste(`${domain}. IN MX 0 .`)} with ${paste(suggestedMx)}, naming a host that accepts mail, or use an envelope sender at a domain that receives mail. ${ownerNote(domain)}`,
      [mx],
    );
  }

  const hosts = [...new Set(records.filter((r) => r.exchange !== '.').map((r) => r.exchange))].slice(0, MAX_EXCHANGES);
  const strayRoot = records.some((r) => r.exchange === '.');
  const forward = await Promise.all(
    hosts.map(async (host) => {
      const lookups = await Promise.all([resolver.lookup(host, 'A', signal), resolver.lookup(host, 'AAAA', signal)]);
      return { host, lookups, addresses: addressesOf(lookups), temporary: lookups.some(isTemporary) };
    }),
  );
  const lookups = [mx, ...forward.flatMap((f) => f.lookups)];
  const reachable = forward.filter((f) => f.addresses.length > 0);
  const dead = forward.filter((f) => f.addresses.length === 0 && !f.temporary);
  const unknown = forward.filter((f) => f.addresses.length === 0 && f.temporary);
  const describe = (f: (typeof forward)[number]): string => `${printable(f.host)} → ${f.addresses.length ? f.addresses.join(', ') : 'no address'}`;

  if (reachable.length === 0) {
    if (unknown.length > 0) {
      return result('temperror', 'DNS_TEMPFAIL', `MX ${listed}; the address lookup failed temporarily for ${unknown.map((f) => printable(f.host)).join(', ')}`, `Retry later; if it persists, check that the resolvers in edge.dns.servers answer for the MX hosts.`, lookups);
    }
    const first = dead[0]?.host ?? `mail.${domain}`;
    return result(
      'fail',
      'SENDER_NO_MX',
      `MX ${listed}, but no MX host has an address: ${dead.map(describe).join('; ')}`,
      `Give the MX host an address, ${paste(`${first}. ${HINT_TTL} IN A <the mail host's address>`)}, or point the MX at a host that has one. ${ownerNote(first)}`,
      lookups,
    );
  }
  if (dead.length > 0 || strayRoot) {
    const problems = [...dead.map(describe), ...(strayRoot ? ['a null MX (".") beside real MX records (RFC 7505 forbids mixing them)'] : [])];
    const remove = [...dead.map((f) => f.host), ...(strayRoot ? ['.'] : [])]
      .map((host) => {
        const record = records.find((r) => r.exchange === host);
        return paste(`${domain}. IN MX ${record?.preference ?? 0} ${host === '.' ? '.' : `${host}.`}`);
      })
      .join(', ');
    return result(
      'warn',
      'SENDER_MX_PARTIAL',
      `bounces can reach ${reachable.map(describe).join('; ')}; but ${problems.join('; ')}`,
      `Remove ${remove}${dead.length ? `, or give ${dead.map((f) => printable(f.host)).join(', ')} A/AAAA records` : ''}. ${ownerNote(domain)}`,
      lookups,
    );
  }
  return result('pass', null, `MX ${listed}: ${reachable.map(describe).join('; ')}`, null, lookups);
}

function addressesOf(lookups: readonly Lookup[]): string[] {
  return lookups.flatMap((l) =>
    l.kind === 'answer' ? l.records.flatMap((r) => (r.type === 'A' || r.type === 'AAAA' ? [r.address] : [])) : [],
  );
}
