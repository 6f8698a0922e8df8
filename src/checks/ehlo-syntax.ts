/**
 * The name that goes into EHLO, judged on its own (RFC 5321 section 4.1.1.1:
 * "a fully-qualified domain name ... or, if the host has no name, an address
 * literal"). Postfix's reject_invalid_helo_hostname and
 * reject_non_fqdn_helo_hostname, and most receivers' scoring, look at exactly
 * this: a single label, localhost, or a bare IP address marks a misconfigured
 * or hijacked host.
 */
import { isIP, isIPv4, isIPv6 } from 'node:net';
import { hostnameProblem, printable } from './hostname.js';
import type { CheckVerdict } from './types.js';

const EXPECTED = 'a fully-qualified hostname, e.g. mail.example.com (RFC 5321 section 4.1.1.1, RFC 1123 section 2.1)';
const FIX =
  'Let mailedge put the confirmed PTR name in EHLO (drop the `name` option), or set `name` to a fully-qualified hostname such as mail.example.com whose A/AAAA record is the edge address and which the PTR of that address names.';

/** `unconfirmed`: the PTR names there are when none is confirmed, so the skip says the true reason. */
export async function checkEhloSyntax(name: string | null, unconfirmed: readonly string[] = []): Promise<CheckVerdict> {
  if (name === null) {
    return {
      id: 'ehlo-syntax',
      status: 'skip',
      expected: EXPECTED,
      actual:
        unconfirmed.length > 0
          ? `not checked: there is no EHLO name yet (the PTR name ${unconfirmed.map((n) => printable(n)).join(', ')} is not confirmed)`
          : 'not checked: there is no EHLO name yet (the edge check did not confirm one)',
      code: null,
      hint: null,
      evidence: [],
    };
  }
  const shown = printable(name);
  const fail = (why: string): CheckVerdict => ({
    id: 'ehlo-syntax',
    status: 'fail',
    expected: EXPECTED,
    actual: `EHLO ${shown}: ${why}`,
    code: 'EHLO_INVALID',
    hint: FIX,
    evidence: [],
  });

  const literal = /^\[(.*)\]$/s.exec(name);
  if (literal) {
    const inner = literal[1] ?? '';
    const v6 = /^ipv6:(.*)$/is.exec(inner);
    // RFC 5321 section 4.1.3: IPv4 bare inside the brackets, IPv6 only behind the "IPv6:" tag.
    const valid = v6 ? isIPv6(v6[1] ?? '') && !(v6[1] ?? '').includes('%') : isIPv4(inner);
    if (!valid) {
      return fail(
        isIPv6(inner)
          ? 'an IPv6 address literal needs the "IPv6:" tag, e.g. [IPv6:2001:db8::1] (RFC 5321 section 4.1.3)'
          : 'is not a valid address literal ([192.0.2.1] or [IPv6:2001:db8::1])',
      );
    }
    return {
      id: 'ehlo-syntax',
      status: 'warn',
      expected: EXPECTED,
      actual: `EHLO ${shown}: an address literal, valid syntax but no hostname`,
      code: 'EHLO_ADDRESS_LITERAL',
      hint: `Receivers reject or score down a sender that gives no hostname. ${FIX}`,
      evidence: [],
    };
  }
  if (isIP(name) !== 0) {
    return fail(`a bare IP address; a host without a name must send the address literal [${isIPv6(name) ? `IPv6:${name}` : name}], and a mail server should have a name`);
  }
  const problem = hostnameProblem(name);
  if (problem) return fail(problem);
  return {
    id: 'ehlo-syntax',
    status: 'pass',
    expected: EXPECTED,
    actual: `EHLO ${shown}`,
    code: null,
    hint: null,
    evidence: [],
  };
}
