/**
 * The Authentication-Results header text (RFC 8601) of a verdict, in the form
 * receivers write it, so it can be compared with a real receiver's header.
 * A result mailedge cannot predict (SPF through a relay) is left out rather
 * than guessed.
 */
import type { Authentication } from './authentication.js';

export function authenticationResultsHeader(authserv: string, auth: Omit<Authentication, 'header'>, spfIdentity: 'mailfrom' | 'helo'): string {
  const parts: string[] = [authserv];
  if (auth.spf.result !== null) parts.push(`spf=${auth.spf.result} smtp.${spfIdentity}=${auth.spf.domain}`);
  if (auth.dkim.length === 0) parts.push('dkim=none');
  for (const sig of auth.dkim) parts.push(`dkim=${sig.result} header.d=${sig.domain} header.s=${sig.selector}`);
  const { dmarc } = auth;
  if (dmarc.result !== null) {
    const policy = dmarc.policy && dmarc.result !== 'none' ? ` (p=${dmarc.policy})` : '';
    parts.push(`dmarc=${dmarc.result}${policy}${dmarc.domain ? ` header.from=${dmarc.domain}` : ''}`);
  }
  return parts.join('; ');
}
