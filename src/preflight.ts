/**
 * The start-up hook: the same checks a send runs, without sending anything.
 */
import { PreflightFailedError } from './errors.js';
import type { PreflightReport } from './checks/types.js';
import { EdgeVerifier } from './identity.js';
import { resolveEdgeOptions, type MailedgeOptions } from './options.js';

export interface PreflightCallOptions {
  /** Throw PreflightFailedError (carrying the report) when an enforced check fails. Default false. */
  throwOnFailure?: boolean;
}

/**
 * Runs the edge checks for these transport options and returns the report.
 * DNS outcomes never throw; only invalid options do, or a failure when
 * `throwOnFailure` is set.
 */
export async function preflight(options: MailedgeOptions, call: PreflightCallOptions = {}): Promise<PreflightReport> {
  const verifier = new EdgeVerifier(resolveEdgeOptions(options));
  const { report } = await verifier.identity();
  if (call.throwOnFailure && !report.ok) throw new PreflightFailedError(report);
  return report;
}
