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
  // Every message sent within an identity's TTL gets the same decision: worked out once per identity.
  const known = decisions.get(identity);
  if (known) return known;
  const decision = decideAnew(identity, mail);
  decisions.set(identity, decision);
  return decision;
}

/** Decisions are values: frozen, so the one handed to every message of an identity cannot be changed by any. */
const decisions = new WeakMap<Identity, Readonly<Decision>>();

function decideAnew(identity: Identity, mail: unknown): Decision {
  const { report } = identity;
  // An ok report has no enforced failure by definition: the common case costs no scan.
  const blocking = report.ok ? undefined : firstFailure(enforcedFailures(report.checks));
  if (blocking) throw new EdgeRefusedError(report, blocking, { mail });
  const address = identity.edge?.address;
  if (report.name && identity.ehloName === report.name && address !== undefined) {
    return Object.freeze({ address, name: report.name, verified: true, stale: report.stale, failed: null });
  }
  const failed = firstFailure(report.checks) ?? report.checks[report.checks.length - 1];
  const name = identity.ehloName;
  if (identity.addresses.length === 0 || address === undefined || !failed || name === null) {
    throw new EdgeRefusedError(report, failed ?? missingCheck(), { mail });
  }
  return Object.freeze({ address, name, verified: false, stale: report.stale, failed });
}

/** Two decisions that may share connections: the same address, the same name, the same standing. */
export function channelKey(decision: Decision): string {
  return keysOf(decision).channel;
}

/** The edge a decision sends from, as one key: address and EHLO name (what a message's verdict depends on). */
export function edgeKey(decision: Decision): string {
  return keysOf(decision).edge;
}

/** Worked out once per decision: decisions are shared by every message of an identity. */
function keysOf(decision: Decision): { channel: string; edge: string } {
  let keys = decisionKeys.get(decision);
  if (keys === undefined) {
    const edge = `${decision.address}|${decision.name}`;
    keys = { edge, channel: `${edge}|${decision.verified ? 'confirmed' : 'unconfirmed'}` };
    decisionKeys.set(decision, keys);
  }
  return keys;
}

const decisionKeys = new WeakMap<Decision, { channel: string; edge: string }>();

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
