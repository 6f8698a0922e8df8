/**
 * One error hierarchy with stable codes. Callers branch on `code` and
 * `permanent`, never on message text; the README's table is kept in step with
 * ERROR_CODES by a test.
 */
import { enforcedFailures, reportStatus, type CheckResult, type PreflightReport } from './checks/types.js';

export interface ErrorCodeInfo {
  /** What went wrong, in one sentence. */
  meaning: string;
  /** Which record or setting to fix. */
  fix: string;
  /** Whether retrying later can help without anybody changing anything. */
  permanent: boolean;
}

export const ERROR_CODES = {
  PTR_MISSING: {
    meaning: 'The edge address has no PTR record (NXDOMAIN or no data for its in-addr.arpa / ip6.arpa name).',
    fix: 'Ask the owner of the address (hosting or IP provider) to publish a PTR naming your mail host.',
    permanent: true,
  },
  PTR_INVALID: {
    meaning: 'Every PTR name of the edge address is unusable as a hostname (bad characters, too long, single label, IP literal, localhost).',
    fix: 'Have the PTR changed to a fully-qualified hostname made of letters, digits and hyphens.',
    permanent: true,
  },
  PTR_AMBIGUOUS: {
    meaning: 'The edge address has several PTR names and at least one does not resolve back to it; receivers that read only the first answer reject at random.',
    fix: 'Remove the stale PTR names, or give each one an A/AAAA record pointing at the edge address.',
    permanent: true,
  },
  FCRDNS_MISMATCH: {
    meaning: 'The PTR name exists but none of its A/AAAA records points back at the edge address.',
    fix: 'Add or correct the A (IPv4) or AAAA (IPv6) record of the PTR name so it contains the edge address.',
    permanent: true,
  },
  DNS_TEMPFAIL: {
    meaning: 'A DNS lookup timed out, or the server answered SERVFAIL or REFUSED, or could not be reached.',
    fix: 'Nothing to change in DNS yet: retry later, and check that the configured resolvers are reachable.',
    permanent: false,
  },
  DEST_UNRESOLVED: {
    meaning: 'The destination host has no A/AAAA record usable from the edge address family.',
    fix: 'Check the `host` option, or publish an A/AAAA record for it.',
    permanent: true,
  },
  EDGE_UNKNOWN: {
    meaning: 'The source address for the destination could not be determined (no route).',
    fix: 'Set `localAddress`, or `edge.publicAddress` when the host is behind NAT.',
    permanent: true,
  },
  SEND_FAILED: {
    meaning: 'The identity was confirmed but the receiver or the connection failed; `smtpCode` and `responseCode` say how.',
    fix: 'Read the receiver\'s response; 4xx and connection errors are worth retrying, 5xx are not.',
    permanent: false,
  },
  INVALID_OPTION: {
    meaning: 'An option or CLI flag has a value mailedge cannot use.',
    fix: 'Correct the option named in the message.',
    permanent: true,
  },
  PREFLIGHT_FAILED: {
    meaning: 'preflight() found an enforced check that failed; the error carries the whole report.',
    fix: 'Fix what the failed checks in `report.checks` name.',
    permanent: true,
  },
  EHLO_INVALID: {
    meaning: 'The name that would go into EHLO is not a fully-qualified hostname (RFC 5321 section 4.1.1.1): localhost, a single label, a bare IP address, or characters other than letters, digits and hyphens.',
    fix: 'Drop the `name` option so the confirmed PTR name is used, or set it to a fully-qualified hostname whose A/AAAA record is the edge address.',
    permanent: true,
  },
  DOMAIN_INVALID: {
    meaning: 'A sender or recipient domain, or the DKIM domainName, is not a valid domain name, so nothing can be looked up for it.',
    fix: 'Correct the address or option: a domain is letters, digits and hyphens in dot-separated labels (punycode for IDNs).',
    permanent: true,
  },
  SPF_FAIL: {
    meaning: "The envelope sender domain's SPF record (RFC 7208) says the edge address may not send for it: receivers may reject or junk the mail.",
    fix: "Add the edge address to the sender domain's SPF record (an ip4: or ip6: mechanism before the all), in that domain's DNS.",
    permanent: true,
  },
  SPF_PERMERROR: {
    meaning: "The sender domain's SPF record cannot be evaluated: a syntax error, several v=spf1 records, or more than 10 DNS-querying mechanisms or 2 void lookups (RFC 7208 section 4.6.4).",
    fix: 'Correct the record so that exactly one valid v=spf1 TXT record remains and it needs at most 10 DNS lookups.',
    permanent: true,
  },
  SENDER_NULL_MX: {
    meaning: 'The envelope sender domain publishes a null MX (RFC 7505): it accepts no mail, so bounces are lost, and receivers may reject its mail (550 5.7.27).',
    fix: 'Replace the null MX with an MX record naming a host that accepts mail, or send from a domain that receives mail.',
    permanent: true,
  },
  SENDER_NO_MX: {
    meaning: 'The envelope sender domain cannot receive bounces: it does not exist, or it has no MX host with an address and no A/AAAA record for implicit MX.',
    fix: "Publish an MX record naming a mail host that has an A/AAAA record, in the sender domain's DNS.",
    permanent: true,
  },
  DKIM_KEY_MISSING: {
    meaning: 'There is no DKIM key record (a TXT record with p=) at <selector>._domainkey.<domain>, so every signature fails.',
    fix: "Publish the public key of the configured private key as that TXT record, in the signing domain's DNS.",
    permanent: true,
  },
  DKIM_KEY_MISMATCH: {
    meaning: 'The DKIM key record at the selector does not hold the public key of the configured private key (another key, revoked with an empty p=, or unreadable).',
    fix: 'Replace the TXT record with the public key of the configured private key, or configure the private key that belongs to the published one.',
    permanent: true,
  },
  DKIM_KEY_SHORT: {
    meaning: 'The DKIM key is RSA shorter than 1024 bits; verifiers must not accept such signatures (RFC 8301).',
    fix: 'Generate a 2048-bit RSA key, publish it under a new selector, then switch the dkim option to it.',
    permanent: true,
  },
  RECIPIENT_NULL_MX: {
    meaning: 'The recipient domain publishes a null MX (RFC 7505): it accepts no mail, so delivery would only bounce (556 5.1.10).',
    fix: 'Check the recipient address; nothing on the sending side can change this.',
    permanent: true,
  },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Codes that appear on passing checks as warnings, never as errors. */
export const WARNING_CODES = {
  POOL_MEMBER_LEFT_OUT: {
    meaning: 'A member of edge.pool failed its check (its own code is in the report) and is left out; the other members send.',
    fix: 'Fix what the member\'s failed check names, or remove the member from edge.pool.',
  },
  PTR_MULTIPLE: {
    meaning: 'Several PTR names, all confirming: works, but each must be kept in step forever.',
    fix: 'Keep one PTR name per address.',
  },
  NAME_OVERRIDDEN: {
    meaning: 'The `name` option differed from the confirmed name; mailedge used the confirmed name in EHLO.',
    fix: 'Drop the `name` option, or set it to the confirmed name.',
  },
  IDENTITY_STALE: {
    meaning: 'Re-verification failed only temporarily; the last confirmed identity is used until edge.dns.staleFor runs out.',
    fix: 'Check that the resolvers in edge.dns.servers are reachable; nothing to change in DNS.',
  },
  UNVERIFIED_SEND: {
    meaning: 'edge.mode is "warn" and the check failed; the message was sent with an address-literal EHLO.',
    fix: 'Fix the failed check, then switch back to enforce.',
  },
  EHLO_ADDRESS_LITERAL: {
    meaning: 'EHLO carries an address literal ([192.0.2.1]): valid syntax, but many receivers score or reject a sender without a hostname.',
    fix: 'Get the edge check passing so the confirmed PTR name is used in EHLO.',
  },
  PTR_GENERIC: {
    meaning: "The PTR name looks like an ISP's generic name (it embeds the address, or words such as dsl, dynamic, pool); receivers and blocklists such as the Spamhaus PBL treat such hosts as residential.",
    fix: 'Ask the owner of the address (hosting or IP provider) for a PTR naming your mail host, such as mail.<yourdomain>; or allow-list the name if it is yours.',
  },
  SPF_SOFTFAIL: {
    meaning: "The sender domain's SPF record does not authorise the edge address and ends in ~all: receivers usually accept but score the mail as suspicious.",
    fix: "Add the edge address to the sender domain's SPF record (an ip4: or ip6: mechanism before the all).",
  },
  SPF_NEUTRAL: {
    meaning: "The sender domain's SPF record neither authorises nor forbids the edge address (?all, or no all): SPF gives receivers nothing to trust.",
    fix: "Add the edge address to the sender domain's SPF record (an ip4: or ip6: mechanism before the all).",
  },
  SPF_NONE: {
    meaning: 'The sender domain publishes no SPF record; Gmail and Yahoo require SPF or DKIM from every sender, and both from bulk senders.',
    fix: 'Publish a v=spf1 TXT record at the sender domain that lists the edge address.',
  },
  SENDER_IMPLICIT_MX: {
    meaning: 'The sender domain has no MX record; bounces go to its A/AAAA address (implicit MX, RFC 5321 section 5.1), which is often a web server that accepts no mail.',
    fix: 'Publish an explicit MX record for the sender domain naming a host that accepts mail.',
  },
  SENDER_MX_PARTIAL: {
    meaning: "Some of the sender domain's MX hosts have no address (or a null MX is mixed with real ones): bounces work, but only through the others.",
    fix: 'Remove the MX records whose hosts do not resolve, or give those hosts A/AAAA records.',
  },
  DMARC_MISSING: {
    meaning: 'Neither the sender domain nor its organisational domain publishes a DMARC record; Gmail and Yahoo require one (p=none at least) from bulk senders.',
    fix: 'Publish a TXT record at _dmarc.<organisational domain>, starting with "v=DMARC1; p=none" and a rua= address for reports.',
  },
  DMARC_INVALID: {
    meaning: 'The DMARC record cannot be used as published: several v=DMARC1 records, or no valid p= tag, so receivers apply no policy (RFC 7489 section 6.6.3).',
    fix: 'Keep one TXT record at _dmarc.<domain> starting with "v=DMARC1; p=" and none, quarantine or reject.',
  },
  DKIM_TESTING: {
    meaning: 'The DKIM key record carries t=y (testing): verifiers treat signed mail as if it were unsigned (RFC 6376 section 3.6.1).',
    fix: 'Remove t=y from the DKIM key record once signing works.',
  },
  RECIPIENT_DOMAIN_MISSING: {
    meaning: 'The recipient domain does not exist (NXDOMAIN): the address is probably mistyped, and the message would bounce.',
    fix: 'Check the recipient address.',
  },
} as const;

export type WarningCode = keyof typeof WARNING_CODES;

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
  mail: unknown;

  constructor(code: ErrorCode, message: string, options: MailedgeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.permanent = options.permanent ?? ERROR_CODES[code].permanent;
    this.hint = options.hint ?? ERROR_CODES[code].fix;
    this.evidence = options.evidence ?? [];
    this.mail = options.mail;
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

/** SMTP or connection failure after the identity was confirmed. */
export class SendFailedError extends MailedgeError {
  override name = 'SendFailedError';
  /** Nodemailer's code: EENVELOPE, EPROTOCOL, ECONNECTION, ETIMEDOUT, ... */
  readonly smtpCode: string | undefined;
  readonly responseCode: number | undefined;
  readonly response: string | undefined;
  readonly command: string | undefined;
  /**
   * True when the receiver was never reached or never greeted: nothing of the
   * message can have been accepted, so another host may be tried without
   * risking a duplicate.
   */
  readonly beforeGreeting: boolean;

  constructor(cause: unknown, mail: unknown, redact: (text: string) => string) {
    const source = (typeof cause === 'object' && cause !== null ? cause : {}) as Record<string, unknown>;
    const text = (key: string): string | undefined =>
      typeof source[key] === 'string' ? redact(source[key]) : undefined;
    const responseCode = typeof source.responseCode === 'number' ? source.responseCode : undefined;
    const message = text('message') ?? String(cause);
    const why = sendFailureKind(responseCode, text('code'), message);
    super('SEND_FAILED', redact(`Sending failed: ${message}`), {
      permanent: why !== 'temporary',
      hint: SEND_FAILURE_HINTS[why],
      evidence: [text('response'), text('command') && `after ${text('command')}`].filter(
        (line): line is string => typeof line === 'string' && line.length > 0,
      ),
      // A redacted copy: Nodemailer's error may quote a server line that echoed the AUTH exchange.
      cause: Object.assign(new Error(message), { code: text('code'), responseCode, response: text('response'), command: text('command') }),
      mail,
    });
    this.smtpCode = text('code');
    this.beforeGreeting =
      source.phase === 'connect' || /greeting never received/i.test(message) || (responseCode !== undefined && text('command') === 'CONN');
    this.responseCode = responseCode;
    this.response = text('response');
    this.command = text('command');
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), smtpCode: this.smtpCode, responseCode: this.responseCode, response: this.response };
  }
}

type SendFailureKind = 'rejected' | 'message' | 'certificate' | 'temporary';

const SEND_FAILURE_HINTS: Record<SendFailureKind, string> = {
  rejected: 'The receiver refused permanently (5xx): read its response before retrying.',
  message: 'The message itself cannot be sent (no valid recipients, or it cannot be composed): correct it; retrying will not help.',
  certificate: "The receiver's TLS certificate does not verify for this host name: fix the host name, the certificate or the tls.ca option; retrying will not help.",
  temporary: 'Temporary failure (4xx reply, connection refused, dropped or timed out): retry later.',
};

/** Only what retrying cannot change is permanent: a 5xx, a message that cannot be sent, a certificate that does not verify. */
function sendFailureKind(responseCode: number | undefined, smtpCode: string | undefined, message: string): SendFailureKind {
  if (responseCode !== undefined) return responseCode >= 500 && responseCode < 600 ? 'rejected' : 'temporary';
  if (smtpCode === 'EENVELOPE' || smtpCode === 'EMESSAGE') return 'message';
  if (/certificate|altnames|self[- ]signed|unable to verify/i.test(message)) return 'certificate';
  return 'temporary';
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
