/**
 * The report as a person reads it: one line per check with its mark, then the
 * evidence shaped like dig output, then the fix. Knows only results.
 */
import type { CheckResult, CheckStatus, PreflightReport } from '../checks/types.js';
import { printable } from '../checks/hostname.js';

export interface RenderOptions {
  color: boolean;
}

const MARKS: Record<CheckStatus, string> = { pass: '✔', warn: '!', fail: '✘', temperror: '?', skip: '-' };
const COLORS: Record<CheckStatus, string> = { pass: '32', warn: '33', fail: '31', temperror: '35', skip: '90' };

function paint(text: string, status: CheckStatus, options: RenderOptions): string {
  return options.color ? `\u001b[${COLORS[status]}m${text}\u001b[0m` : text;
}

export function verdictLine(report: PreflightReport): string {
  const temporary = !report.ok && report.checks.some((c) => c.status === 'temperror') && !report.checks.some((c) => c.status === 'fail');
  const who = report.address ?? 'edge address unknown';
  if (report.ok) return `${who} is confirmed as ${report.name}${report.stale ? ' (stale: re-verification is failing temporarily)' : ''}: ready to send`;
  return temporary ? `${who}: no verdict yet (temporary DNS failure): retry later` : `${who}: misconfigured: sending would be refused`;
}

export function renderCheck(check: CheckResult, options: RenderOptions): string[] {
  const width = 13;
  const code = check.code ? ` [${check.code}]` : '';
  const lines = [`  ${paint(MARKS[check.status], check.status, options)} ${check.id.padEnd(width)}${printable(check.actual)}${code}`];
  const indent = ' '.repeat(4 + width);
  if (check.status === 'fail' || check.status === 'temperror') lines.push(`${indent}expected: ${printable(check.expected)}`);
  for (const line of check.evidence) lines.push(`${indent}${printable(line)}`);
  if (check.hint) lines.push(`${indent}fix: ${printable(check.hint)}`);
  return lines;
}

export function renderReport(report: PreflightReport, options: RenderOptions): string {
  const status: CheckStatus = report.ok ? 'pass' : report.checks.some((c) => c.status === 'fail') ? 'fail' : 'temperror';
  const lines = [paint(`mailedge: ${verdictLine(report)}`, status, options)];
  for (const check of report.checks) lines.push(...renderCheck(check, options));
  return lines.join('\n') + '\n';
}
