/**
 * IP pools (edge.pool): one verified identity per source address. Each member
 * is a transport of its own, so every member keeps the whole single-address
 * machinery (cache, single-flight, serve-stale, its own Nodemailer pool and
 * EHLO name); this module only builds members' options and merges reports.
 */
import type { MailedgeOptions } from './options.js';
import type { CheckResult, PoolMemberReport, PreflightReport } from './checks/types.js';

export interface PoolMember {
  localAddress: string;
  publicAddress: string | undefined;
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
