/**
 * The enforce / warn decision, in one place: from an identity, the EHLO name
 * a message may leave under now, or the refusal to hand back.
 */
import { EdgeRefusedError } from './errors.js';
import { enforcedFailures, firstFailure, type CheckResult } from './checks/types.js';
import type { Identity } from './identity.js';

export interface Decision {
  /** The edge address receivers will see. */
  address: string;
  /** The name EHLO carries. */
  name: string;
  /** False only in warn mode, when the check failed and the message goes out anyway. */
  verified: boolean;
  /** True while the identity is served past its TTL through a temporary DNS failure. */
  stale: boolean;
  /** The check that failed when verified is false; what UNVERIFIED_SEND names. */
  failed: CheckResult | null;
}

/**
 * The name this identity allows now, or throws the refusal (EdgeRefusedError,
 * carrying `mail`). Whatever edge.mode says, an enforced check that fails holds
 * the send; warn mode only lets an unconfirmed FCrDNS side through, under the
 * fallback name.
 */
export function decide(identity: Identity, mail: unknown): Decision {
  const { report } = identity;
  // An ok report has no enforced failure by definition: the common case costs no scan.
  const blocking = report.ok ? undefined : firstFailure(enforcedFailures(report.checks));
  if (blocking) throw new EdgeRefusedError(report, blocking, { mail });
  const address = identity.edge?.address;
  if (report.name && identity.ehloName === report.name && address !== undefined) {
    return { address, name: report.name, verified: true, stale: report.stale, failed: null };
  }
  const failed = firstFailure(report.checks) ?? report.checks[report.checks.length - 1];
  const name = identity.ehloName;
  if (identity.addresses.length === 0 || address === undefined || !failed || name === null) {
    throw new EdgeRefusedError(report, failed ?? missingCheck(), { mail });
  }
  return { address, name, verified: false, stale: report.stale, failed };
}

/** Two decisions that may share connections: the same address, the same name, the same standing. */
export function channelKey(decision: Decision): string {
  return `${decision.address}|${decision.name}|${decision.verified ? 'confirmed' : 'unconfirmed'}`;
}

export function missingCheck(): CheckResult {
  return {
    id: 'edge-address',
    status: 'fail',
    severity: 'enforce',
    expected: 'a confirmed identity',
    actual: 'no check produced a verdict',
    code: 'EDGE_UNKNOWN',
    hint: null,
    evidence: [],
  };
}
