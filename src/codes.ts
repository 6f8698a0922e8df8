/**
 * Every code mailedge gives, declared once: whether it is an error (a refusal)
 * or a warning, what it is about (the sending host, the envelope's domains,
 * the message, or the configuration), whether retrying later can help, and
 * how seriously it is taken by default. Callers branch on `code` and
 * `permanent`, never on message text; the README's table is kept in step with
 * this catalogue by a test.
 */

/** What a code is about: the sending host (its identity and route), the envelope's domains, the message itself, or the configuration. */
export type CodeScope = 'host' | 'envelope' | 'message' | 'config';

export interface CodeInfo {
  kind: 'error' | 'warning';
  scope: CodeScope;
  /** Whether retrying later cannot help without somebody changing something. */
  permanent: boolean;
  /** 'enforce': holds the send by default; 'warn': reported, and the mail goes out. edge.checks may change it per check. */
  severity: 'enforce' | 'warn';
  /** What went wrong, in one sentence. */
  meaning: string;
  /** Which record or setting to fix. */
  fix: string;
}

export const CODES = Object.freeze({
  PTR_MISSING: {
    kind: 'error',
    scope: 'host',
    permanent: true,
    severity: 'enforce',
    meaning: "The edge address has no PTR record (NXDOMAIN or no data for its in-addr.arpa / ip6.arpa name).",
    fix: "Ask the owner of the address (hosting or IP provider) to publish a PTR naming your mail host.",
  },
  PTR_INVALID: {
    kind: 'error',
    scope: 'host',
    permanent: true,
    severity: 'enforce',
    meaning: "Every PTR name of the edge address is unusable as a hostname (bad characters, too long, single label, IP literal, localhost).",
    fix: "Have the PTR changed to a fully-qualified hostname made of letters, digits and hyphens.",
  },
  PTR_AMBIGUOUS: {
    kind: 'error',
    scope: 'host',
    permanent: true,
    severity: 'enforce',
    meaning: "The edge address has several PTR names and at least one does not resolve back to it; receivers that read only the first answer reject at random.",
    fix: "Remove the stale PTR names, or give each one an A/AAAA record pointing at the edge address.",
  },
  FCRDNS_MISMATCH: {
    kind: 'error',
    scope: 'host',
    permanent: true,
    severity: 'enforce',
    meaning: "The PTR name exists but none of its A/AAAA records points back at the edge address.",
    fix: "Add or correct the A (IPv4) or AAAA (IPv6) record of the PTR name so it contains the edge address.",
  },
  DNS_TEMPFAIL: {
    kind: 'error',
    scope: 'host',
    permanent: false,
    severity: 'enforce',
    meaning: "A DNS lookup timed out, or the server answered SERVFAIL or REFUSED, or could not be reached.",
    fix: "Nothing to change in DNS yet: retry later, and check that the configured resolvers are reachable.",
  },
  DEST_UNRESOLVED: {
    kind: 'error',
    scope: 'host',
    permanent: true,
    severity: 'enforce',
    meaning: "The destination host has no A/AAAA record usable from the edge address family.",
    fix: "Check the `host` option, or publish an A/AAAA record for it.",
  },
  EDGE_UNKNOWN: {
    kind: 'error',
    scope: 'host',
    permanent: true,
    severity: 'enforce',
    meaning: "The source address for the destination could not be determined (no route).",
    fix: "Set `localAddress`, or `edge.publicAddress` when the host is behind NAT.",
  },
  INVALID_OPTION: {
    kind: 'error',
    scope: 'config',
    permanent: true,
    severity: 'enforce',
    meaning: "An option or CLI flag has a value mailedge cannot use.",
    fix: "Correct the option named in the message.",
  },
  PREFLIGHT_FAILED: {
    kind: 'error',
    scope: 'host',
    permanent: true,
    severity: 'enforce',
    meaning: "preflight() found an enforced check that failed; the error carries the whole report.",
    fix: "Fix what the failed checks in `report.checks` name.",
  },
  EHLO_INVALID: {
    kind: 'error',
    scope: 'host',
    permanent: true,
    severity: 'enforce',
    meaning: "The name that would go into EHLO is not a fully-qualified hostname (RFC 5321 section 4.1.1.1): localhost, a single label, a bare IP address, or characters other than letters, digits and hyphens.",
    fix: "Drop the `name` option so the confirmed PTR name is used, or set it to a fully-qualified hostname whose A/AAAA record is the edge address.",
  },
  DOMAIN_INVALID: {
    kind: 'error',
    scope: 'envelope',
    permanent: true,
    severity: 'enforce',
    meaning: "A sender or recipient domain, or the DKIM domainName, is not a valid domain name, so nothing can be looked up for it.",
    fix: "Correct the address or option: a domain is letters, digits and hyphens in dot-separated labels (punycode for IDNs).",
  },
  SPF_FAIL: {
    kind: 'error',
    scope: 'envelope',
    permanent: true,
    severity: 'warn',
    meaning: "The envelope sender domain's SPF record (RFC 7208) says the edge address may not send for it: receivers may reject or junk the mail.",
    fix: "Add the edge address to the sender domain's SPF record (an ip4: or ip6: mechanism before the all), in that domain's DNS.",
  },
  SPF_PERMERROR: {
    kind: 'error',
    scope: 'envelope',
    permanent: true,
    severity: 'warn',
    meaning: "The sender domain's SPF record cannot be evaluated: a syntax error, several v=spf1 records, or more than 10 DNS-querying mechanisms or 2 void lookups (RFC 7208 section 4.6.4).",
    fix: "Correct the record so that exactly one valid v=spf1 TXT record remains and it needs at most 10 DNS lookups.",
  },
  SENDER_NULL_MX: {
    kind: 'error',
    scope: 'envelope',
    permanent: true,
    severity: 'warn',
    meaning: "The envelope sender domain publishes a null MX (RFC 7505): it accepts no mail, so bounces are lost, and receivers may reject its mail (550 5.7.27).",
    fix: "Replace the null MX with an MX record naming a host that accepts mail, or send from a domain that receives mail.",
  },
  SENDER_NO_MX: {
    kind: 'error',
    scope: 'envelope',
    permanent: true,
    severity: 'warn',
    meaning: "The envelope sender domain cannot receive bounces: it does not exist, or it has no MX host with an address and no A/AAAA record for implicit MX.",
    fix: "Publish an MX record naming a mail host that has an A/AAAA record, in the sender domain's DNS.",
  },
  DKIM_KEY_MISSING: {
    kind: 'error',
    scope: 'message',
    permanent: true,
    severity: 'enforce',
    meaning: "There is no DKIM key record (a TXT record with p=) at <selector>._domainkey.<domain>, so every signature fails.",
    fix: "Publish the public key of the configured private key as that TXT record, in the signing domain's DNS.",
  },
  DKIM_KEY_MISMATCH: {
    kind: 'error',
    scope: 'message',
    permanent: true,
    severity: 'enforce',
    meaning: "The DKIM key record at the selector does not hold the public key of the configured private key (another key, revoked with an empty p=, or unreadable).",
    fix: "Replace the TXT record with the public key of the configured private key, or configure the private key that belongs to the published one.",
  },
  DKIM_KEY_SHORT: {
    kind: 'error',
    scope: 'message',
    permanent: true,
    severity: 'enforce',
    meaning: "The DKIM key is RSA shorter than 1024 bits; verifiers must not accept such signatures (RFC 8301).",
    fix: "Generate a 2048-bit RSA key, publish it under a new selector, then switch the dkim option to it.",
  },
  FROM_INVALID: {
    kind: 'error',
    scope: 'message',
    permanent: true,
    severity: 'enforce',
    meaning: "The message's From header does not hold exactly one address (RFC 5322 section 3.6.2 with DMARC, RFC 7489 section 6.6.1): receivers cannot apply the From domain's policy, and Gmail rejects it (550 5.7.1).",
    fix: "Give the message exactly one From address; put other authors in Reply-To or the body.",
  },
  DMARC_FAIL: {
    kind: 'error',
    scope: 'message',
    permanent: true,
    severity: 'enforce',
    meaning: "The From domain publishes p=reject or p=quarantine (sp= for a subdomain) and this message would fail DMARC: no SPF or DKIM pass aligned with the From domain. Gmail answers 550 5.7.26.",
    fix: "Sign with DKIM d= the From domain (or its organisational domain), or send with a MAIL FROM in the From domain's organisational domain whose SPF authorises the edge address.",
  },
  SENDER_UNAUTHENTICATED: {
    kind: 'error',
    scope: 'message',
    permanent: true,
    severity: 'enforce',
    meaning: "Neither SPF nor any DKIM signature of the message would pass at the receiver: Gmail answers 550 5.7.26 (unauthenticated), and other large receivers junk or reject it.",
    fix: "Sign with DKIM (publish the key record the hint names), or authorise the edge address in the SPF record of the MAIL FROM domain.",
  },
  MESSAGE_TOO_LARGE: {
    kind: 'error',
    scope: 'message',
    permanent: true,
    severity: 'enforce',
    meaning: "The rendered message is larger than mailedge renders for the authentication check (50 MB, above every large receiver's limit).",
    fix: "Send large files as links; or set edge.checks.authentication to 'off' to stream the message unchecked.",
  },
  HEADER_MISSING: {
    kind: 'error',
    scope: 'message',
    permanent: true,
    severity: 'enforce',
    meaning: "The message has no Date or no Message-ID header; Gmail's and Yahoo's sender guidelines require both (RFC 5322 format).",
    fix: "Do not blank Nodemailer's Date and Message-ID headers (headers, date, messageId options): Nodemailer adds both by default.",
  },
  BULK_SPF_REQUIRED: {
    kind: 'error',
    scope: 'message',
    permanent: true,
    severity: 'enforce',
    meaning: "edge.requirements is 'bulk' and SPF does not pass: bulk senders need SPF and DKIM (Gmail answers 550 5.7.27).",
    fix: "Authorise the edge address in the SPF record of the MAIL FROM domain.",
  },
  BULK_DKIM_REQUIRED: {
    kind: 'error',
    scope: 'message',
    permanent: true,
    severity: 'enforce',
    meaning: "edge.requirements is 'bulk' and no DKIM signature passes: bulk senders need SPF and DKIM (Gmail answers 550 5.7.30).",
    fix: "Sign with Nodemailer's dkim option and publish the key record.",
  },
  BULK_DMARC_REQUIRED: {
    kind: 'error',
    scope: 'message',
    permanent: true,
    severity: 'enforce',
    meaning: "edge.requirements is 'bulk' and the From domain has no usable DMARC record (Gmail answers 550 5.7.40).",
    fix: "Publish a TXT record at _dmarc.<organisational domain>: \"v=DMARC1; p=none; rua=mailto:...\" at least.",
  },
  BULK_ALIGNMENT_REQUIRED: {
    kind: 'error',
    scope: 'message',
    permanent: true,
    severity: 'enforce',
    meaning: "edge.requirements is 'bulk' and DMARC does not pass with alignment, even under p=none (Gmail answers 550 5.7.32).",
    fix: "Sign with DKIM d= the From domain, or use a MAIL FROM in the From domain's organisational domain.",
  },
  BULK_UNSUBSCRIBE_REQUIRED: {
    kind: 'error',
    scope: 'message',
    permanent: true,
    severity: 'enforce',
    meaning: "edge.requirements is 'bulk' and the message has no one-click unsubscribe (RFC 8058): a List-Unsubscribe header with an https: URI and List-Unsubscribe-Post: List-Unsubscribe=One-Click, both covered by the DKIM signature.",
    fix: "Set Nodemailer's list: { unsubscribe: { url: 'https://...' } } and the header List-Unsubscribe-Post: List-Unsubscribe=One-Click, and sign with DKIM.",
  },
  RECIPIENT_NULL_MX: {
    kind: 'error',
    scope: 'envelope',
    permanent: true,
    severity: 'enforce',
    meaning: "The recipient domain publishes a null MX (RFC 7505): it accepts no mail, so delivery would only bounce (556 5.1.10).",
    fix: "Check the recipient address; nothing on the sending side can change this.",
  },
  POOL_MEMBER_LEFT_OUT: {
    kind: 'warning',
    scope: 'host',
    permanent: false,
    severity: 'warn',
    meaning: "A member of edge.pool failed its check (its own code is in the report) and is left out; the other members send.",
    fix: "Fix what the member's failed check names, or remove the member from edge.pool.",
  },
  PTR_MULTIPLE: {
    kind: 'warning',
    scope: 'host',
    permanent: false,
    severity: 'warn',
    meaning: "Several PTR names, all confirming: works, but each must be kept in step forever.",
    fix: "Keep one PTR name per address.",
  },
  NAME_OVERRIDDEN: {
    kind: 'warning',
    scope: 'host',
    permanent: false,
    severity: 'warn',
    meaning: "The `name` option differed from the confirmed name; mailedge used the confirmed name in EHLO.",
    fix: "Drop the `name` option, or set it to the confirmed name.",
  },
  IDENTITY_STALE: {
    kind: 'warning',
    scope: 'host',
    permanent: false,
    severity: 'warn',
    meaning: "Re-verification failed only temporarily; the last confirmed identity is used until edge.dns.staleFor runs out.",
    fix: "Check that the resolvers in edge.dns.servers are reachable; nothing to change in DNS.",
  },
  UNVERIFIED_SEND: {
    kind: 'warning',
    scope: 'host',
    permanent: false,
    severity: 'warn',
    meaning: "edge.mode is \"warn\" and the check failed; the message was sent with an address-literal EHLO.",
    fix: "Fix the failed check, then switch back to enforce.",
  },
  EHLO_ADDRESS_LITERAL: {
    kind: 'warning',
    scope: 'host',
    permanent: false,
    severity: 'warn',
    meaning: "EHLO carries an address literal ([192.0.2.1]): valid syntax, but many receivers score or reject a sender without a hostname.",
    fix: "Get the edge check passing so the confirmed PTR name is used in EHLO.",
  },
  PTR_GENERIC: {
    kind: 'warning',
    scope: 'host',
    permanent: false,
    severity: 'warn',
    meaning: "The PTR name looks like an ISP's generic name (it embeds the address, or words such as dsl, dynamic, pool); receivers and blocklists such as the Spamhaus PBL treat such hosts as residential.",
    fix: "Ask the owner of the address (hosting or IP provider) for a PTR naming your mail host, such as mail.<yourdomain>; or allow-list the name if it is yours.",
  },
  SPF_SOFTFAIL: {
    kind: 'warning',
    scope: 'envelope',
    permanent: false,
    severity: 'warn',
    meaning: "The sender domain's SPF record does not authorise the edge address and ends in ~all: receivers usually accept but score the mail as suspicious.",
    fix: "Add the edge address to the sender domain's SPF record (an ip4: or ip6: mechanism before the all).",
  },
  SPF_NEUTRAL: {
    kind: 'warning',
    scope: 'envelope',
    permanent: false,
    severity: 'warn',
    meaning: "The sender domain's SPF record neither authorises nor forbids the edge address (?all, or no all): SPF gives receivers nothing to trust.",
    fix: "Add the edge address to the sender domain's SPF record (an ip4: or ip6: mechanism before the all).",
  },
  SPF_NONE: {
    kind: 'warning',
    scope: 'envelope',
    permanent: false,
    severity: 'warn',
    meaning: "The sender domain publishes no SPF record; Gmail and Yahoo require SPF or DKIM from every sender, and both from bulk senders.",
    fix: "Publish a v=spf1 TXT record at the sender domain that lists the edge address.",
  },
  SENDER_IMPLICIT_MX: {
    kind: 'warning',
    scope: 'envelope',
    permanent: false,
    severity: 'warn',
    meaning: "The sender domain has no MX record; bounces go to its A/AAAA address (implicit MX, RFC 5321 section 5.1), which is often a web server that accepts no mail.",
    fix: "Publish an explicit MX record for the sender domain naming a host that accepts mail.",
  },
  SENDER_MX_PARTIAL: {
    kind: 'warning',
    scope: 'envelope',
    permanent: false,
    severity: 'warn',
    meaning: "Some of the sender domain's MX hosts have no address (or a null MX is mixed with real ones): bounces work, but only through the others.",
    fix: "Remove the MX records whose hosts do not resolve, or give those hosts A/AAAA records.",
  },
  DMARC_MISSING: {
    kind: 'warning',
    scope: 'envelope',
    permanent: false,
    severity: 'warn',
    meaning: "Neither the sender domain nor its organisational domain publishes a DMARC record; Gmail and Yahoo require one (p=none at least) from bulk senders.",
    fix: "Publish a TXT record at _dmarc.<organisational domain>, starting with \"v=DMARC1; p=none\" and a rua= address for reports.",
  },
  DMARC_INVALID: {
    kind: 'warning',
    scope: 'envelope',
    permanent: false,
    severity: 'warn',
    meaning: "The DMARC record cannot be used as published: several v=DMARC1 records, or no valid p= tag, so receivers apply no policy (RFC 7489 section 6.6.3).",
    fix: "Keep one TXT record at _dmarc.<domain> starting with \"v=DMARC1; p=\" and none, quarantine or reject.",
  },
  DKIM_TESTING: {
    kind: 'warning',
    scope: 'message',
    permanent: false,
    severity: 'warn',
    meaning: "The DKIM key record carries t=y (testing): verifiers treat signed mail as if it were unsigned (RFC 6376 section 3.6.1).",
    fix: "Remove t=y from the DKIM key record once signing works.",
  },
  DMARC_FAIL_MONITORED: {
    kind: 'warning',
    scope: 'message',
    permanent: false,
    severity: 'warn',
    meaning: "The message would fail DMARC, but the From domain's policy is p=none: it is delivered, and the failure shows in the domain's DMARC reports.",
    fix: "Sign with DKIM d= the From domain, or use a MAIL FROM in its organisational domain, before the domain moves to p=quarantine or p=reject.",
  },
  AUTH_DOWNSTREAM: {
    kind: 'warning',
    scope: 'message',
    permanent: false,
    severity: 'warn',
    meaning: "Through a relay, SPF is decided downstream (the final receiver sees the relay's address, and the relay may rewrite MAIL FROM) and no aligned DKIM signature passes: the message's DMARC result rests on the relay's SPF.",
    fix: "Sign with DKIM d= the From domain, so the verdict no longer depends on the relay; or declare edge.receiver 'final' when the host is the final receiver.",
  },
  DKIM_SIGNATURE_FAIL: {
    kind: 'warning',
    scope: 'message',
    permanent: false,
    severity: 'warn',
    meaning: "A DKIM signature the message carries would not pass at the receiver (fail, neutral, policy, permerror), while the message is otherwise authenticated.",
    fix: "Publish or correct the key record the evidence names, or stop signing with that key.",
  },
  RECIPIENT_DOMAIN_MISSING: {
    kind: 'warning',
    scope: 'envelope',
    permanent: false,
    severity: 'warn',
    meaning: "The recipient domain does not exist (NXDOMAIN): the address is probably mistyped, and the message would bounce.",
    fix: "Check the recipient address.",
  },
} as const satisfies Record<string, CodeInfo>);

export type Code = keyof typeof CODES;
type CodesOfKind<K extends CodeInfo['kind']> = { [C in Code]: (typeof CODES)[C]['kind'] extends K ? C : never }[Code];
export type ErrorCode = CodesOfKind<'error'>;
export type WarningCode = CodesOfKind<'warning'>;

export function codeInfo(code: Code): CodeInfo {
  return CODES[code];
}

export function isCode(value: unknown): value is Code {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(CODES, value);
}
