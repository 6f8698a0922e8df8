/**
 * What every route (relay, IP pool, direct to MX) is: send one message,
 * verify, report, idle, close. The transport holds exactly one route.
 */
import type { SMTPSentMessageInfo } from 'nodemailer/lib/smtp-transport';
import type { MailMessage } from 'nodemailer/lib/mailer';
import type Mail from 'nodemailer/lib/mailer';
import type { CheckResult, PreflightReport } from '../checks/types.js';
import type { ErrorCode, WarningCode } from '../codes.js';
import type { Resolver } from '../dns/resolver.js';
import type { EnvelopeChecks } from '../envelope.js';
import type { Redactor } from '../redact.js';
import type { Authentication } from '../message/verdict.js';
import type { WireTls } from './wire-tls.js';

export interface EdgeInfo {
  /** The edge address receivers saw. */
  address: string;
  /** The name sent in EHLO on the connection that carried the message. */
  name: string;
  /** False only in warn mode, when the check failed and the message went out anyway. */
  verified: boolean;
  /** True when the identity was served stale through a temporary DNS failure (see edge.dns.staleFor). */
  stale: boolean;
}

/** `authentication`: the predicted SPF x DKIM x DMARC verdict (src/message/), absent when edge.checks.authentication is 'off'. */
/** `tls` (relay sends): the TLS session that carried the message, null when it went in clear text (src/routes/wire-tls.ts). */
export type MailedgeSentMessageInfo = SMTPSentMessageInfo & { edge: EdgeInfo; authentication?: Authentication; tls?: WireTls | null };

export interface MailedgeWarning {
  /** A warning code; or the error code of a check set to 'warn' in edge.checks that failed (e.g. SPF_FAIL). */
  code: WarningCode | ErrorCode;
  message: string;
  check: CheckResult | null;
  report: PreflightReport;
}

export interface Route {
  send(mail: MailMessage): Promise<MailedgeSentMessageInfo>;
  /** The edge check, then a connection and EHLO (and AUTH) without sending. */
  verify(): Promise<true>;
  preflight(): Promise<PreflightReport>;
  isIdle(): boolean;
  close(): void;
}

/** What routes share with the transport that holds them. */
export interface RouteContext {
  resolver: Resolver;
  envelopeChecks: EnvelopeChecks;
  /** Removes secrets from text, errors and infos that may quote them (a receiver's reply echoing AUTH). */
  redact: Redactor;
  /** Hands a warning to the transport's listeners and logger; never throws. */
  warn(warning: MailedgeWarning): void;
  /** Re-emits an event of Nodemailer's on the transport ('idle', 'clear'); never throws. */
  emit(event: 'idle' | 'clear'): void;
  /** The Mailer holding the transport: Nodemailer's transports read OAuth2 provisioning from it and emit 'token' on it. */
  mailer(): Mail | undefined;
  /** The logger Nodemailer's transports log through (redacting, never throwing). */
  logger: unknown;
}
