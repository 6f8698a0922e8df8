/**
 * The report for machines, described by docs/report.schema.json. `schema`
 * changes only when a field changes meaning or goes away; new fields may be
 * added within a schema version.
 */
import type { PreflightReport } from '../checks/types.js';

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
}

export function toJsonReport(report: PreflightReport): JsonReport {
  return {
    schema: REPORT_SCHEMA_VERSION,
    ok: report.ok,
    address: report.address,
    name: report.name,
    destination: report.destination,
    stale: report.stale,
    checks: report.checks,
    ptrNames: report.ptrNames,
  };
}
