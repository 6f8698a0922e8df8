/**
 * DMARC identifier alignment (RFC 7489 section 3.1): strict means the same
 * domain; relaxed means the same organisational domain, by the Public Suffix
 * List (tldts, with names under no listed suffix taking the PSL's implicit
 * "*" rule: their last two labels).
 */
import { organisationalDomain } from '../checks/mailauth.js';

export type AlignmentMode = 'r' | 's';

export function aligned(fromDomain: string, authenticated: string, mode: AlignmentMode): boolean {
  const a = fromDomain.toLowerCase();
  const b = authenticated.toLowerCase();
  if (a === b) return true;
  return mode === 'r' && organisationalDomain(a) === organisationalDomain(b);
}

export { organisationalDomain };
