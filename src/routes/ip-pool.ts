/**
 * IP pools (edge.pool): several source addresses, each a relay route of its
 * own with its own verified identity, connections and EHLO name. A message
 * goes to a member that passes now (round-robin, or the same member per
 * recipient domain with poolSticky); a member that fails is left out with a
 * warning, and only when none passes is the message refused.
 */
import type { MailMessage } from 'nodemailer/lib/mailer';
import { EdgeRefusedError, MailedgeError } from '../errors.js';
import { enforcedFailures, firstFailure, type CheckResult, type PoolMemberReport, type PreflightReport } from '../checks/types.js';
import type { Identity } from '../identity.js';
import { missingCheck } from '../decide.js';
import type { MailedgeOptions, ResolvedEdgeOptions } from '../options.js';
import { envelopeOf } from './mail-view.js';
import { RelayRoute } from './relay.js';
import type { MailedgeSentMessageInfo, Route } from './route.js';

export interface PoolMember {
  localAddress: string;
  publicAddress: string | undefined;
}

interface PoolState {
  usable: RelayRoute[];
  report: PreflightReport;
}

export class IpPoolRoute implements Route {
  private nextMember = 0;
  private last: { identities: Identity[]; state: PoolState } | undefined;
  /** Member reports already announced as left out, so each failure is warned about once. */
  private readonly leftOutWarned = new WeakSet<PreflightReport>();

  constructor(
    private readonly members: readonly RelayRoute[],
    private readonly options: ResolvedEdgeOptions,
    private readonly warn: (warning: { code: 'POOL_MEMBER_LEFT_OUT'; message: string; check: CheckResult | null; report: PreflightReport }) => void,
  ) {}

  async preflight(): Promise<PreflightReport> {
    return (await this.state(true)).report;
  }

  async send(mail: MailMessage): Promise<MailedgeSentMessageInfo> {
    let state: PoolState;
    try {
      state = await this.state();
    } catch (err) {
      if (err instanceof MailedgeError) err.mail = mail.data;
      throw err;
    }
    const { usable, report } = state;
    if (usable.length === 0) throw new EdgeRefusedError(report, firstFailure(enforcedFailures(report.checks)) ?? missingCheck(), { mail: mail.data });
    let index: number;
    if (this.options.poolSticky) {
      const recipient = envelopeOf(mail).to[0] ?? '';
      index = stickyIndex(recipient.slice(recipient.lastIndexOf('@') + 1).toLowerCase(), usable.length);
    } else {
      index = this.nextMember++ % usable.length;
    }
    return (usable[index] as RelayRoute).send(mail);
  }

  async verify(): Promise<true> {
    const { usable, report } = await this.state();
    if (usable.length === 0) throw new EdgeRefusedError(report, firstFailure(report.checks) ?? missingCheck());
    await Promise.all(usable.map((member) => member.verify()));
    return true;
  }

  isIdle(): boolean {
    return this.members.every((member) => member.isIdle());
  }

  close(): void {
    for (const member of this.members) member.close();
  }

  /** Every member's identity (usually from cache), the members that may send now, and the pool's report. */
  private async state(complete = false): Promise<PoolState> {
    const all = this.members;
    const current = all.map((m) => m.verifier.current());
    // While a member is confirmed, one being (re-)verified does not hold sends: a member whose
    // DNS times out would otherwise add its timeout to every send. It rejoins once it passes.
    const fast = !complete && current.some((identity) => identity?.passed === true);
    if (fast) all.forEach((m, i) => current[i] === undefined && void m.verifier.identity());
    const members = fast ? all.filter((_, i) => current[i] !== undefined) : all;
    const identities = fast
      ? current.filter((identity): identity is Identity => identity !== undefined)
      : await Promise.all(all.map((m, i) => current[i] ?? m.verifier.identity()));
    // Sends between two re-verifications see the same identities: the merged report is made once for them.
    const last = this.last;
    if (last && last.identities.length === identities.length && last.identities.every((identity, i) => identity === identities[i])) return last.state;
    const report = poolReport(members.map((m, i) => ({ member: memberOf(m), report: (identities[i] as Identity).report })));
    const usable = members.filter((_, i) => (identities[i] as Identity).passed);
    members.forEach((member, i) => {
      const identity = identities[i] as Identity;
      if (identity.passed || usable.length === 0 || this.leftOutWarned.has(identity.report)) return;
      this.leftOutWarned.add(identity.report);
      const failed = firstFailure(identity.report.checks) ?? null;
      const check = failed && { ...failed, member: memberOf(member).localAddress };
      this.warn({
        code: 'POOL_MEMBER_LEFT_OUT',
        message: `mailedge: pool member ${memberOf(member).localAddress} left out: ${failed ? `${failed.id} ${failed.code ?? failed.status}: ${failed.actual}` : 'not confirmed'}`,
        check,
        report,
      });
    });
    // Warn mode sends unverified rather than not at all, as a single address would.
    const state = { usable: usable.length === 0 && this.options.mode === 'warn' ? [...members] : usable, report };
    this.last = { identities, state };
    return state;
  }
}

function memberOf(route: RelayRoute): PoolMember {
  return { localAddress: route.options.localAddress ?? '', publicAddress: route.options.publicAddress };
}

/** The transport options for one member: the pool's options, sending from that member's address. */
export function memberOptions(options: MailedgeOptions, member: PoolMember): MailedgeOptions {
  const { pool: _pool, poolSticky: _sticky, ...edge } = options.edge ?? {};
  return {
    ...options,
    localAddress: member.localAddress,
    edge: { ...edge, ...(member.publicAddress ? { publicAddress: member.publicAddress } : {}) },
  };
}

/**
 * The pool's report. A member that fails is left out rather than holding the
 * send, so while another member passes its failed checks are kept at
 * severity 'warn', as a failed address family's are.
 */
export function poolReport(members: ReadonlyArray<{ member: PoolMember; report: PreflightReport }>): PreflightReport {
  const passing = members.filter((m) => m.report.ok);
  const chosen = passing[0] ?? members[0];
  if (!chosen) throw new Error('poolReport: a pool has at least one member');
  const checks: CheckResult[] = members.flatMap(({ member, report }) =>
    report.checks.map((c) => ({ ...c, ...(passing.length > 0 && !report.ok ? { severity: 'warn' as const } : {}), member: member.localAddress })),
  );
  const memberReports: PoolMemberReport[] = members.map(({ member, report }) => {
    const { members: _nested, ...rest } = report;
    return { localAddress: member.localAddress, publicAddress: member.publicAddress ?? null, ...rest };
  });
  return {
    ...chosen.report,
    ok: passing.length > 0,
    checks,
    expiresAt: Math.min(...members.map((m) => m.report.expiresAt)),
    members: memberReports,
  };
}

/** A stable pick for a recipient domain among the members that pass now. */
export function stickyIndex(domain: string, count: number): number {
  let hash = 5381;
  for (let i = 0; i < domain.length; i++) hash = ((hash * 33) ^ domain.charCodeAt(i)) >>> 0;
  return hash % count;
}
