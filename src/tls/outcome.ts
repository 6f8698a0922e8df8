/**
 * What one MX connection's TLS was, and what it had to be. A domain's
 * delivery reports the outcome (info.domains[].tls); the requirement comes
 * from the domain's policy (src/tls/policy.ts) and travels with the message
 * to the connection mailedge opens for it (src/routes/relay.ts openSocket).
 */
import type { MailMessage } from 'nodemailer/lib/mailer';
import { MailedgeError } from '../errors.js';
import type { ErrorCode } from '../codes.js';
import type { TlsaRecord } from './dane.js';

/** The policy a session was held to: RFC 7672 DANE, RFC 8461 MTA-STS, RFC 7435 opportunistic; 'none' when it stayed clear text. */
export type TlsPolicyKind = 'dane' | 'mta-sts' | 'opportunistic' | 'none';

export interface TlsOutcome {
  /** 'TLSv1.3', ...; null when the session stayed clear text. */
  version: string | null;
  cipher: string | null;
  /** Whether the certificate satisfied verification (the policy's, or WebPKI and the MX name when no policy asked). */
  authorized: boolean;
  policy: TlsPolicyKind;
  /** Why the certificate was not authorized (under an MTA-STS testing policy, or opportunistically); absent when it was. */
  failure?: string;
}

export type TlsRequirement =
  /** STARTTLS when offered, any certificate (RFC 7435); `verify` adds a WebPKI check of the MX name that is reported, not enforced (MTA-STS testing). */
  | { kind: 'opportunistic'; policy: 'opportunistic' | 'mta-sts'; host: string }
  /** TLS mandatory, WebPKI chain and the MX host name (MTA-STS enforce, edge.tls.verify). */
  | { kind: 'webpki'; policy: 'mta-sts' | 'opportunistic'; host: string }
  /** TLS mandatory, any certificate: DANE TLSA records exist but none is usable (RFC 7672 section 2.2, Postfix's 'encrypt'). */
  | { kind: 'encrypt'; policy: 'dane'; host: string }
  /** TLS mandatory, a usable TLSA record must match (RFC 7672 section 3). */
  | { kind: 'dane'; policy: 'dane'; host: string; tlsa: TlsaRecord[] };

/** One message's attempt at one MX host: the requirement in, the outcome out. */
export interface TlsAttempt {
  requirement: TlsRequirement;
  /** Trust anchors beyond the system's (edge.tls.ca). */
  ca: ReadonlyArray<string | Buffer>;
  /** Set after a failed opportunistic handshake: the retry on a new connection stays in clear text. */
  cleartext?: boolean;
  outcome?: TlsOutcome;
}

const ATTEMPT = Symbol('mailedge.tlsAttempt');

/**
 * The message, marked with a TLS attempt. A view (Object.create), as
 * src/routes/mail-view.ts makes them, so further views made from it (the
 * envelope screen) inherit the mark.
 */
export function withTlsAttempt(mail: MailMessage, attempt: TlsAttempt): MailMessage {
  const view = Object.create(mail) as MailMessage;
  Object.defineProperty(view, ATTEMPT, { value: attempt, enumerable: false });
  return view;
}

export function tlsAttemptOf(mail: MailMessage): TlsAttempt | undefined {
  const value: unknown = (mail as unknown as Record<symbol, unknown>)[ATTEMPT];
  return value === undefined ? undefined : (value as TlsAttempt);
}

/**
 * An MX host this delivery may not use under the domain's TLS policy, before
 * any MAIL command: temporary (the domain's delivery is deferred, another MX
 * host may be tried), with the evidence.
 */
export class TlsPolicyError extends MailedgeError {
  override name = 'TlsPolicyError';
  constructor(
    code: ErrorCode,
    message: string,
    readonly host: string,
    options: { evidence?: string[]; hint?: string; outcome?: TlsOutcome } = {},
  ) {
    super(code, message, { permanent: false, evidence: options.evidence ?? [], ...(options.hint ? { hint: options.hint } : {}) });
    this.outcome = options.outcome;
  }
  readonly outcome: TlsOutcome | undefined;
}
