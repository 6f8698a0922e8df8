/**
 * The checks beyond FCrDNS and how seriously each is taken by default. The
 * `edge.checks` option overrides these per id with 'enforce', 'warn' or 'off'.
 * 'enforce': a fail or temperror refuses the send (or fails preflight), as the
 * FCrDNS check does. 'warn': it is reported and emitted as a warning, and the
 * mail goes out.
 */
import type { CheckId, Severity } from './types.js';

export type { Severity } from './types.js';

/** What `edge.checks` may set per id: a severity, or 'off' (not run, not reported). */
export type CheckSetting = Severity | 'off';

export type DeliverabilityCheckId = Extract<
  CheckId,
  'ehlo-syntax' | 'generic-ptr' | 'spf' | 'sender-mx' | 'dmarc' | 'dkim' | 'recipient-null-mx' | 'dnsbl' | 'authentication'
>;

export const DEFAULT_SEVERITY: Readonly<Record<DeliverabilityCheckId, Severity>> = Object.freeze({
  // Receivers reject a malformed EHLO outright (Postfix reject_invalid_helo_hostname): sending is pointless.
  'ehlo-syntax': 'enforce',
  // A judgement from the name's shape, with false positives: never a reason to stop on its own.
  'generic-ptr': 'warn',
  // The sender domain's DNS is often not the sending host's operator's to change; receivers weigh these, rarely reject on them alone.
  spf: 'warn',
  'sender-mx': 'warn',
  dmarc: 'warn',
  // Runs only when the transport signs (Nodemailer's `dkim` option): then a key that does not verify is a broken configuration.
  dkim: 'enforce',
  // A null MX is the recipient's own statement that delivery cannot succeed.
  'recipient-null-mx': 'enforce',
  // Runs only with edge.dnsbl; a listing is worth knowing before receivers say it, but public lists err, so it warns unless enforced.
  dnsbl: 'warn',
  // What the From domain's own policy would reject, or what Gmail answers 5.7.26: sending it only collects bounces.
  authentication: 'enforce',
});

export const DELIVERABILITY_CHECK_IDS = Object.keys(DEFAULT_SEVERITY) as DeliverabilityCheckId[];

export function isDeliverabilityCheckId(id: string): id is DeliverabilityCheckId {
  return Object.prototype.hasOwnProperty.call(DEFAULT_SEVERITY, id);
}

/**
 * The FCrDNS-side checks: the identity itself. edge.mode, not edge.checks,
 * says how seriously they are taken, because without them there is no
 * confirmed name to put in EHLO at all.
 */
export const IDENTITY_CHECK_IDS: ReadonlySet<CheckId> = new Set<CheckId>(['destination', 'edge-address', 'ptr', 'fcrdns', 'ehlo-name']);

/** Checks about the message's envelope: run per sender or recipient domain, not per identity. */
export const SENDER_CHECK_IDS = ['spf', 'sender-mx', 'dmarc'] as const satisfies readonly DeliverabilityCheckId[];
export const RECIPIENT_CHECK_IDS = ['recipient-null-mx'] as const satisfies readonly DeliverabilityCheckId[];

export function severityOf(id: CheckId, mode: 'enforce' | 'warn', settings: Readonly<Record<DeliverabilityCheckId, CheckSetting>>): Severity {
  if (!isDeliverabilityCheckId(id)) return mode;
  const setting = settings[id];
  // An 'off' check is never run, so it never needs a severity; 'warn' is the harmless answer.
  return setting === 'off' ? 'warn' : setting;
}
