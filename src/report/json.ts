/**
 * The report for machines, described by docs/report.schema.json. `schema`
 * changes only when a field changes meaning or goes away; new fields may be
 * added within a schema version.
 */
import type { PreflightReport } from '../checks/types.js';
import { escapeDeep } from '../text/escape.js';

export const REPORT_SCHEMA_VERSION = 1;

export interface JsonReport {
  schema: typeof REPORT_SCHEMA_VERSION;
  ok: boolean;
  address: string | null;
  name: string | null;
  destination: string | null;
  stale: boolean;
  checks: PreflightReport['checks'];
  ptrNames: PreflightReport['ptrNames'];
  /** With a sample message (check --from): the predicted SPF x DKIM x DMARC verdict (README, Message identity). */
  authentication?: PreflightReport['authentication'];
  /** With direct: true and --to: each recipient domain's TLS policy and MX probes (README, TLS in direct delivery). */
  domains?: PreflightReport['domains'];
  /** Only for a pool: each member's report (the top-level fields describe the first passing member). */
  members?: Array<Omit<JsonReport, 'schema' | 'members'> & { localAddress: string; publicAddress: string | null }>;
}

export function toJsonReport(report: PreflightReport): JsonReport {
  // JSON.stringify escapes C0 controls but passes C1, bidi controls and U+2028/9 through raw.
  return escapeDeep({
    schema: REPORT_SCHEMA_VERSION,
    ok: report.ok,
    address: report.address,
    name: report.name,
    destination: report.destination,
    stale: report.stale,
    checks: report.checks,
    ptrNames: report.ptrNames,
    ...(report.authentication ? { authentication: report.authentication } : {}),
    // Issue 12: check --direct --to: per recipient domain, the MX hosts under its TLS policy.
    ...(report.domains ? { domains: report.domains } : {}),
    ...(report.members
      ? {
          members: report.members.map((m) => ({
            localAddress: m.localAddress,
            publicAddress: m.publicAddress,
            ok: m.ok,
            address: m.address,
            name: m.name,
            destination: m.destination,
            stale: m.stale,
            checks: m.checks,
            ptrNames: m.ptrNames,
          })),
        }
      : {}),
  });
}
