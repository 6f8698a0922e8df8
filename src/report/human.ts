/**
 * The report as a person reads it: grouped (edge identity, sender domain,
 * recipients), one line per check with its mark, then the evidence shaped like
 * dig output, then the fix; and the FCrDNS chain drawn as a tree, because a
 * picture of PTR → name → address is read faster than prose. Knows only results.
 */
import { isIPv6 } from 'node:net';
import { enforcedFailures, isFailing, reportStatus, type CheckResult, type CheckStatus, type PreflightReport, type PtrNameResult } from '../checks/types.js';
import { printable } from '../checks/hostname.js';

export interface RenderOptions {
  color: boolean;
}

const MARKS: Record<CheckStatus, string> = { pass: '✔', warn: '!', fail: '✘', temperror: '?', skip: '-' };
const COLORS: Record<CheckStatus, string> = { pass: '32', warn: '33', fail: '31', temperror: '35', skip: '90' };
/** The longest check id (recipient-null-mx) and a space. */
const ID_WIDTH = 18;
const SENDER_IDS: ReadonlySet<string> = new Set(['spf', 'sender-mx', 'dmarc']);

function paint(text: string, status: CheckStatus, options: RenderOptions): string {
  return options.color ? `\u001b[${COLORS[status]}m${text}\u001b[0m` : text;
}

/** What the check means for sending: a failure of a check that is only warned about reads as a warning. */
function effectiveStatus(check: CheckResult): CheckStatus {
  return check.severity === 'warn' && isFailing(check) ? 'warn' : check.status;
}

export function verdictLine(report: PreflightReport): string {
  const who = report.address ?? 'edge address unknown';
  const warnings = report.checks.filter((c) => effectiveStatus(c) === 'warn').length;
  const noted = warnings > 0 ? ` (${warnings} warning${warnings > 1 ? 's' : ''})` : '';
  if (report.ok) {
    if (report.name === null) return `${who}: not confirmed; edge.mode is warn, so mail would go out unverified${noted}`;
    return `${who} is confirmed as ${report.name}${report.stale ? ' (stale: re-verification is failing temporarily)' : ''}: ready to send${noted}`;
  }
  const failures = enforcedFailures(report.checks);
  const ids = [...new Set(failures.map((c) => c.id))].join(', ');
  // The edge is fine and only recipients are refused: say that, not "misconfigured".
  if (report.name !== null && failures.every((c) => c.id === 'recipient-null-mx' && c.status === 'fail')) {
    return `${who} is confirmed as ${report.name}, but mail to ${failures.map((c) => c.domain ?? '?').join(', ')} would be refused`;
  }
  return reportStatus(report) === 'temperror'
    ? `${who}: no verdict yet (temporary DNS failure: ${ids}): retry later`
    : `${who}: misconfigured: sending would be refused (${ids})`;
}

export function renderCheck(check: CheckResult, options: RenderOptions): string[] {
  const status = effectiveStatus(check);
  const code = check.code ? ` [${check.code}]` : '';
  // A failed family or pool member is left out rather than enforced: say that, not "warn only".
  const leftOut = check.member !== undefined ? 'this pool member is left out' : check.family !== undefined ? `IPv${check.family} is not used` : null;
  const demoted = status !== check.status ? ` (${check.status}, ${leftOut ?? 'warn only: not enforced'})` : '';
  // Recipients share one id: the domain says which line is which, unless the text already starts with it.
  const subject = check.domain !== undefined && check.id === 'recipient-null-mx' && !check.actual.startsWith(check.domain) ? `${printable(check.domain)}: ` : '';
  const label = check.family === undefined ? check.id : `${check.id}/IPv${check.family}`;
  const lines = [`  ${paint(MARKS[status], status, options)} ${label.padEnd(ID_WIDTH)}${subject}${printable(check.actual)}${code}${demoted}`];
  const indent = ' '.repeat(4 + ID_WIDTH);
  if (isFailing(check)) lines.push(`${indent}expected: ${printable(check.expected)}`);
  for (const line of check.evidence) lines.push(`${indent}${printable(line)}`);
  if (check.hint) lines.push(`${indent}fix: ${printable(check.hint)}`);
  return lines;
}

/**
 * The FCrDNS chain: the edge address, its PTR names, each name's addresses
 * (through CNAMEs), the confirming path marked and the EHLO name it yields.
 */
export function renderChain(report: PreflightReport, options: RenderOptions): string[] {
  if (report.address === null) return [];
  const edge = report.address;
  const forward = isIPv6(edge) ? 'AAAA' : 'A';
  const mark = (status: CheckStatus): string => paint(MARKS[status], status, options);
  const lines = [edge];
  if (report.ptrNames.length === 0) {
    const ptr = report.checks.find((c) => c.id === 'ptr');
    lines.push(`└─ PTR ${ptr ? `${mark(ptr.status)} ${printable(ptr.actual)}` : 'not looked up'}`);
    return lines;
  }
  report.ptrNames.forEach((entry, index) => {
    const last = index === report.ptrNames.length - 1;
    lines.push(`${last ? '└─ ' : '├─ '}PTR ${printable(entry.name)} ${mark(nameStatus(entry))}${entry.invalid ? ` not a hostname: ${entry.invalid}` : ''}`);
    let indent = last ? '   ' : '│  ';
    for (const cname of entry.cnames) {
      lines.push(`${indent}└─ CNAME ${printable(cname)}`);
      indent += '   ';
    }
    if (entry.addresses.length === 0) {
      lines.push(`${indent}└─ ${forward} ${describeOutcome(entry.outcome, forward)} ${mark(entry.outcome === 'not-queried' ? 'skip' : nameStatus(entry))}`);
      return;
    }
    entry.addresses.forEach((address, i) => {
      const branch = i === entry.addresses.length - 1 ? '└─ ' : '├─ ';
      const yields = report.name !== null && report.name === entry.name.toLowerCase() ? ` → EHLO ${printable(report.name)}` : '';
      const tail = address === edge ? `${mark('pass')} confirms${yields}` : `${mark('fail')} not ${edge}`;
      lines.push(`${indent}${branch}${forward} ${address} ${tail}`);
    });
  });
  return lines;
}

function nameStatus(entry: PtrNameResult): CheckStatus {
  if (entry.confirms) return 'pass';
  return ['answer', 'nxdomain', 'nodata', 'cname-loop', 'cname-too-long', 'not-queried'].includes(entry.outcome) ? 'fail' : 'temperror';
}

function describeOutcome(outcome: string, forward: string): string {
  switch (outcome) {
    case 'answer':
      return `(no ${forward} record)`;
    case 'nxdomain':
      return '(nothing: NXDOMAIN)';
    case 'nodata':
      return `(nothing: no ${forward} record)`;
    case 'cname-loop':
      return '(CNAME loop)';
    case 'cname-too-long':
      return '(CNAME chain too long)';
    case 'not-queried':
      return '(not looked up)';
    default:
      return `(no verdict: ${printable(outcome)})`;
  }
}

export function renderReport(report: PreflightReport, options: RenderOptions): string {
  if (report.members) return renderPool(report, options);
  const lines = [paint(`mailedge: ${verdictLine(report)}`, reportStatus(report), options)];
  const identity = report.checks.filter((c) => c.domain === undefined);
  const sender = report.checks.filter((c) => c.domain !== undefined && SENDER_IDS.has(c.id));
  const recipients = report.checks.filter((c) => c.domain !== undefined && !SENDER_IDS.has(c.id) && c.id !== 'authentication');
  // Message identity (issue 11): the sample message's predicted verdict, in a group of its own.
  const message = report.checks.filter((c) => c.id === 'authentication');

  lines.push('', 'edge identity');
  for (const check of identity) lines.push(...renderCheck(check, options));
  const chain = renderChain(report, options);
  if (chain.length > 0) lines.push('  FCrDNS chain:', ...chain.map((line) => `    ${line}`));
  if (sender.length > 0) {
    lines.push('', `sender domain ${printable(sender[0]?.domain ?? '')}`);
    for (const check of sender) lines.push(...renderCheck(check, options));
  }
  if (recipients.length > 0) {
    lines.push('', 'recipients');
    for (const check of recipients) lines.push(...renderCheck(check, options));
  }
  if (message.length > 0) {
    lines.push('', `message from ${printable(message[0]?.domain ?? '')}`);
    for (const check of message) lines.push(...renderCheck(check, options));
  }
  return lines.join('\n') + '\n';
}

/** A pool: one block per member, as a single address would print it, then one summary line. */
function renderPool(report: PreflightReport, options: RenderOptions): string {
  const members = report.members ?? [];
  const blocks = members.map((member) => {
    const { localAddress, publicAddress, ...single } = member;
    const title = `── pool member ${localAddress}${publicAddress ? ` (seen as ${publicAddress})` : ''}`;
    return `${title}\n${renderReport(single, options)}`;
  });
  return `${blocks.join('\n')}\n${paint(poolSummary(report), report.ok ? 'pass' : 'fail', options)}\n`;
}

export function poolSummary(report: PreflightReport): string {
  const members = report.members ?? [];
  const passing = members.filter((m) => m.ok);
  const failing = members.filter((m) => !m.ok);
  const sends = passing.map((m) => `${m.localAddress} as ${m.name ?? 'unverified'}`).join(', ');
  const out = failing
    .map((m) => `${m.localAddress} (${[...new Set(enforcedFailures(m.checks).map((c) => c.code ?? c.status))].join(', ')})`)
    .join(', ');
  if (passing.length === 0) return `mailedge pool: 0 of ${members.length} members pass: sending would be refused; failing: ${out}`;
  return `mailedge pool: ${passing.length} of ${members.length} members pass: ${sends}${failing.length > 0 ? `; left out: ${out}` : ''}`;
}
