/**
 * One error hierarchy for mailedge's own refusals, each with a stable code
 * from the catalogue (src/codes.ts). Failures of the receiver or the
 * connection stay Nodemailer's errors (src/send-error.ts).
 */
import { enforcedFailures, reportStatus, type CheckResult, type PreflightReport } from './checks/types.js';
import { CODES, type Code, type CodeInfo, type ErrorCode, type WarningCode } from './codes.js';

export type { ErrorCode, WarningCode } from './codes.js';

/** The catalogue's error codes, in the shape earlier releases exported. */
export type ErrorCodeInfo = Pick<CodeInfo, 'meaning' | 'fix' | 'permanent'>;

function ofKind<C extends Code>(kind: CodeInfo['kind']): Readonly<Record<C, CodeInfo>> {
  return Object.freeze(Object.fromEntries(Object.entries(CODES).filter(([, info]) => info.kind === kind))) as Readonly<Record<C, CodeInfo>>;
}

export const ERROR_CODES = ofKind<ErrorCode>('error');
export const WARNING_CODES = ofKind<WarningCode>('warning');

export interface MailedgeErrorOptions {
  permanent?: boolean;
  hint?: string;
  evidence?: readonly string[];
  cause?: unknown;
  /** The caller's message, exactly as given, so a refusal loses nothing. */
  mail?: unknown;
}

export class MailedgeError extends Error {
  override name = 'MailedgeError';
  readonly code: ErrorCode;
  readonly permanent: boolean;
  readonly hint: string;
  readonly evidence: readonly string[];
  /** The caller's message, as given; not enumerable, so a logged or serialised error never prints a per-message password. */
  declare mail: unknown;

  constructor(code: ErrorCode, message: string, options: MailedgeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.permanent = options.permanent ?? ERROR_CODES[code].permanent;
    this.hint = options.hint ?? ERROR_CODES[code].fix;
    this.evidence = options.evidence ?? [];
    Object.defineProperty(this, 'mail', { value: options.mail, enumerable: false, writable: true, configurable: true });
  }

  /** A plain object for JSON output: no stack, no message body. */
  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      code: this.code,
      permanent: this.permanent,
      message: this.message,
      hint: this.hint,
      evidence: this.evidence,
    };
  }
}

export class InvalidOptionError extends MailedgeError {
  override name = 'InvalidOptionError';
  constructor(
    readonly option: string,
    problem: string,
  ) {
    super('INVALID_OPTION', `Invalid option ${option}: ${problem}`, {
      hint: `Correct ${option}.`,
    });
  }
}

/**
 * A send refused before any connection: the edge identity could not be
 * confirmed, an enforced check failed, or a recipient's domain accepts no mail
 * (then `recipients` names who was refused).
 */
export class EdgeRefusedError extends MailedgeError {
  override name = 'EdgeRefusedError';
  /** The recipients refused, when the refusal is about recipients (RECIPIENT_NULL_MX); else empty. */
  readonly recipients: readonly string[];
  /** The recipient, when exactly one was refused: the field Nodemailer's per-recipient errors carry. */
  readonly recipient: string | undefined;

  constructor(
    readonly report: PreflightReport,
    readonly failed: CheckResult,
    options: { mail?: unknown; recipients?: readonly string[] } = {},
  ) {
    const code = (failed.code ?? 'DNS_TEMPFAIL') as ErrorCode;
    const recipients = options.recipients ?? [];
    // When both address families, or several pool members, were examined and none passed, the refusal shows each.
    const blocking = failed.family === undefined && failed.member === undefined ? [failed] : groupFailures(report, failed);
    const actual = blocking.map((c) => labelled(c, c.actual)).join('; ');
    super(code, recipients.length > 0 ? `mailedge refused ${recipients.join(', ')}: ${actual}` : `mailedge refused to send: ${actual}`, {
      permanent: blocking.every((c) => c.status !== 'temperror'),
      hint: blocking.map((c) => c.hint && labelled(c, c.hint)).filter(Boolean).join(' ') || ERROR_CODES[code].fix,
      evidence: blocking.flatMap((c) => c.evidence.map((line) => labelled(c, line))),
      mail: options.mail,
    });
    this.recipients = recipients;
    this.recipient = recipients.length === 1 ? recipients[0] : undefined;
  }
}

/** 'IPv6: ', '127.0.0.3: ' or '127.0.0.3 IPv6: ' before a line about one family or pool member. */
function labelled(check: CheckResult, text: string): string {
  const label = [check.member, check.family === undefined ? undefined : `IPv${check.family}`].filter(Boolean).join(' ');
  return label ? `${label}: ${text}` : text;
}

/** The first enforced failure of each family and pool member, in report order. */
function groupFailures(report: PreflightReport, failed: CheckResult): CheckResult[] {
  const firsts = new Map<string, CheckResult>();
  for (const check of enforcedFailures(report.checks)) {
    const key = `${check.member ?? ''}|${check.family ?? ''}`;
    const seen = firsts.get(key);
    // Within a group a hard failure says more than a temperror, as firstFailure has it.
    if (!seen || (seen.status === 'temperror' && check.status === 'fail')) firsts.set(key, check);
  }
  const groups = [...firsts.values()];
  return groups.length > 0 ? groups : [failed];
}

export class PreflightFailedError extends MailedgeError {
  override name = 'PreflightFailedError';
  constructor(readonly report: PreflightReport) {
    // Only enforced checks fail a preflight; warn-level ones are in the report for reading.
    const failed = enforcedFailures(report.checks);
    super('PREFLIGHT_FAILED', `mailedge preflight failed: ${failed.map((c) => `${c.id} (${c.code})`).join(', ')}`, {
      permanent: reportStatus(report) !== 'temperror',
      hint: failed.map((c) => c.hint).filter(Boolean).join(' '),
      evidence: failed.flatMap((c) => c.evidence),
    });
  }
}

export function isMailedgeError(value: unknown): value is MailedgeError {
  return value instanceof MailedgeError;
}
