/**
 * Failures of the receiver or the connection stay Nodemailer's errors: apps
 * branch on `err.code === 'EAUTH'`, `responseCode` and `command`, so nothing
 * is renamed or wrapped. mailedge only adds `permanent` and `mail`, and
 * removes secrets from the text a receiver may have echoed.
 */

import { isPermanentResponseCode } from 'nodemailer/lib/errors';
import type { Redactor } from './redact.js';

/** A Nodemailer error as mailedge hands it back. */
export interface SmtpSendError extends Error {
  /** Nodemailer's code: EAUTH, ENOAUTH, EENVELOPE, ECONNECTION, ETIMEDOUT, ESOCKET, ETLS, EMESSAGE, ... */
  code?: string;
  responseCode?: number;
  response?: string;
  /** The SMTP command that failed; 'CONN' for the connection and the greeting. */
  command?: string;
  rejected?: string[];
  rejectedErrors?: Error[];
  /** Whether retrying later cannot help: from the reply (5xx) or, without one, the kind of failure. */
  permanent: boolean;
  /** The caller's message, as given. */
  mail: unknown;
}

/** Failures that no retry fixes when the receiver gave no reply code. */
const PERMANENT_WITHOUT_REPLY = new Set([
  'EENVELOPE',
  'EMESSAGE',
  'ECONFIG',
  'EMAXRECIPIENTS',
  'ENOAUTH',
  'EAUTH',
  'ETLS',
  'EREQUIRETLS',
  'EABORT',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
]);

export function isPermanentSmtpFailure(code: string | undefined, responseCode: number | undefined): boolean {
  // Nodemailer's own reading of a reply: 5yz except 503, which only says the session was out of step.
  if (responseCode !== undefined && responseCode >= 400 && responseCode < 600) return isPermanentResponseCode(responseCode);
  return code !== undefined && PERMANENT_WITHOUT_REPLY.has(code);
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
}

/**
 * The error, made into what mailedge hands back: the same object when it is an
 * Error (its identity, class and fields kept), with secrets removed from every
 * text field (in place, by the transport's redactor) and `permanent` and `mail`
 * added.
 */
export function asSmtpSendError(err: unknown, mail: unknown, redact: Pick<Redactor, 'error'>): SmtpSendError {
  const error: Error = redact.error(err instanceof Error ? err : new Error(String(err)));
  const fields = record(error);
  const code = typeof fields.code === 'string' ? fields.code : undefined;
  const responseCode = typeof fields.responseCode === 'number' ? fields.responseCode : undefined;
  // A certificate failure surfaces with Node's code kept beside Nodemailer's (originalCode), or on the cause.
  const nodeCodes = [fields.originalCode, record(fields.cause).code].filter((c): c is string => typeof c === 'string');
  const permanent = isPermanentSmtpFailure(code, responseCode) || nodeCodes.some((c) => isPermanentSmtpFailure(c, undefined));
  Object.defineProperty(error, 'mail', { value: mail, enumerable: false, writable: true, configurable: true });
  return Object.assign(error, { permanent }) as SmtpSendError;
}

/** An error mailedge handed back from Nodemailer: it carries `permanent`, set by asSmtpSendError. */
export function isSmtpSendError(value: unknown): value is SmtpSendError {
  return value instanceof Error && typeof (value as { permanent?: unknown }).permanent === 'boolean';
}

/** Errors of connections mailedge itself could not open: nothing was sent on them. */
const neverConnected = new WeakSet<object>();

export function markNeverConnected<T extends object>(error: T): T {
  neverConnected.add(error);
  return error;
}

/** Nodemailer's timeouts that end a connection before it greets. */
const BEFORE_GREETING_TIMEOUTS = new Set(['CONNECT_TIMEOUT', 'GREETING_TIMEOUT']);

/**
 * Nothing of the message can have reached this host: it was never connected
 * to, never greeted, or answered the greeting with 4xx. Another MX host may be
 * tried without risking a second delivery (RFC 5321 section 5.1); a drop or a
 * reply inside the transaction may follow an accepted message, so it ends the
 * domain instead.
 */
export function failedBeforeTransaction(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  if (neverConnected.has(error)) return true;
  const fields = record(error);
  if (typeof fields.timeoutType === 'string' && BEFORE_GREETING_TIMEOUTS.has(fields.timeoutType)) return true;
  const responseCode = typeof fields.responseCode === 'number' ? fields.responseCode : undefined;
  return fields.command === 'CONN' && responseCode !== undefined && responseCode >= 400 && responseCode < 500;
}
