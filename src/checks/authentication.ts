/**
 * The `authentication` check: the message's predicted SPF x DKIM x DMARC
 * verdict (src/message/verdict.ts) judged as Gmail and the From domain's own
 * policy would judge it. A refusal is what the receiver would refuse anyway;
 * a warning is what it would accept but score, or what mailedge cannot
 * predict through a relay. With edge.requirements 'bulk', Gmail's and Yahoo's
 * bulk-sender rules are added.
 */
import { ownKey, type DkimKeyOptions } from './dkim.js';
import { organisationalDomain } from './mailauth.js';
import { ownerNote, paste, txtRecord } from './records.js';
import type { CheckVerdict } from './types.js';
import type { Judgement } from '../message/verdict.js';
import { signatureTags } from '../message/headers.js';
import { aligned } from '../message/alignment.js';

export interface AuthenticationCheckOptions {
  requirements: 'all' | 'bulk';
  /** The keys the message was signed with: a hint can then offer the key record to publish. */
  keys: readonly DkimKeyOptions[];
  /** The envelope `dmarc` check already reports this domain's missing or broken record: not warned twice. */
  dmarcReportedElsewhere: boolean;
  /** The identity's `dkim` check already reports the configured keys' records. */
  dkimReportedElsewhere: boolean;
  /** False on the send path: a pass then carries no evidence, which costs more to format than the verdict itself. */
  passEvidence?: boolean;
}

export function checkAuthentication(judgement: Judgement, options: AuthenticationCheckOptions): CheckVerdict {
  const { authentication: auth, prepared, spf, receiver, edge } = judgement;
  const evidence = (): string[] => [
    ...new Set([...(spf?.evidence ?? []), ...prepared.dkim.evidence(), ...(prepared.dmarcRecord?.evidence ?? []), `Authentication-Results: ${auth.header}`]),
  ];
  const expected = 'SPF or DKIM passing, and DMARC passing with an identifier aligned with the From domain';
  const result = (status: CheckVerdict['status'], code: CheckVerdict['code'], actual: string, hint: string | null): CheckVerdict => ({
    id: 'authentication',
    status,
    expected,
    actual,
    code,
    hint,
    evidence: status === 'pass' && options.passEvidence === false ? [] : evidence(),
  });
  const from = prepared.fromDomain;
  if (from === undefined) {
    return result('fail', 'FROM_INVALID', auth.dmarc.reason ?? 'the From header does not hold exactly one address', 'Give the message exactly one From address (RFC 5322 section 3.6.2): Gmail rejects a message with none or several (550 5.7.1), and no DMARC policy can be applied to it.');
  }
  const missing = ['date', 'message-id'].filter((name) => prepared.headers.get(name).length === 0);
  if (missing.length > 0) {
    return result('fail', 'HEADER_MISSING', `the message has no ${missing.map((m) => (m === 'date' ? 'Date' : 'Message-ID')).join(' and no ')} header`, "Leave Nodemailer's Date and Message-ID in place: Gmail's and Yahoo's guidelines require both (RFC 5322 format).");
  }
  const dkimPass = auth.dkim.some((s) => s.result === 'pass');
  const fixes = (): string => fixHint(judgement, options.keys);
  const { dmarc } = auth;

  // As the envelope checks: our resolver failing says nothing of the receiver's, so an open verdict warns and the mail goes.
  if (dmarc.result === 'temperror') return result('warn', 'DNS_TEMPFAIL', `DMARC: ${dmarc.reason ?? 'temporary DNS failure'}`, `Retry later; if it persists, check that the resolvers in edge.dns.servers answer for _dmarc.${from}.`);
  if (spf?.result === 'temperror' && !dkimPass) return result('warn', 'DNS_TEMPFAIL', `SPF of ${spf.domain}: temperror (${spf.comment})`, `Retry later; if it persists, check that the resolvers in edge.dns.servers answer for ${spf.domain}.`);
  // pct= below 100 applies the policy to a sample only (RFC 7489 section 6.6.4): no prediction can say this message is in it.
  const pct = prepared.dmarcRecord?.kind === 'record' ? prepared.dmarcRecord.pct : 100;
  if (dmarc.result === 'fail' && (dmarc.policy === 'reject' || dmarc.policy === 'quarantine') && pct < 100) {
    return result('warn', 'DMARC_FAIL_MONITORED', `dmarc=fail under p=${dmarc.policy}; pct=${pct} for ${from}: the policy applies to ${pct}% of failing messages: ${dmarc.reason ?? ''}`, fixes());
  }
  if (dmarc.result === 'fail' && (dmarc.policy === 'reject' || dmarc.policy === 'quarantine')) {
    return result('fail', 'DMARC_FAIL', `dmarc=fail under p=${dmarc.policy} for ${from}: ${dmarc.reason ?? ''}; the receiver would ${dmarc.policy === 'reject' ? 'reject it (Gmail: 550 5.7.26)' : 'put it in spam'}`, fixes());
  }
  if (receiver === 'final' && !dkimPass && spf?.result !== 'pass') {
    return result('fail', 'SENDER_UNAUTHENTICATED', `neither SPF (${spf?.result ?? 'not evaluated'} for ${spf?.domain ?? auth.spf.domain}) nor any DKIM signature (${auth.dkim.length === 0 ? 'none' : auth.dkim.map((s) => `${s.result} d=${s.domain}`).join(', ')}) passes: Gmail answers 550 5.7.26`, fixes());
  }
  if (options.requirements === 'bulk') {
    const bulk = bulkRequirement(judgement, fixes);
    if (bulk) return result('fail', bulk.code, bulk.actual, bulk.hint);
  }
  // Through a relay, warned only when the policy would act and the MAIL FROM is not aligned: then only the relay
  // rewriting MAIL FROM into the From domain's organisation could rescue it. An aligned MAIL FROM is the usual
  // set-up (the domain's SPF names its relay), and warning about it on every send would be noise.
  if (dmarc.result === null && (dmarc.policy === 'reject' || dmarc.policy === 'quarantine') && !aligned(from, auth.spf.domain, prepared.dmarcRecord?.kind === 'record' ? prepared.dmarcRecord.aspf : 'r')) {
    return result('warn', 'AUTH_DOWNSTREAM', `through the relay ${edge.address === '' ? '' : `(from ${edge.address}) `}no aligned DKIM signature passes, so DMARC (p=${dmarc.policy} for ${from}) rests on the relay's SPF: ${auth.spf.reason ?? ''}`, fixes());
  }
  if (dmarc.result === 'fail') return result('warn', 'DMARC_FAIL_MONITORED', `dmarc=fail under p=none for ${from}: ${dmarc.reason ?? ''}`, fixes());
  if ((dmarc.result === 'none' || dmarc.result === 'permerror') && options.dmarcReportedElsewhere) {
    return result('pass', null, `dmarc=${dmarc.result} for ${from} (the dmarc check reports the record)`, null);
  }
  if (dmarc.result === 'none' && prepared.dmarcRecord?.kind === 'permerror') {
    return result('warn', 'DMARC_INVALID', `the DMARC record cannot be applied: ${dmarc.reason ?? ''}`, `Keep exactly one TXT record starting with "v=DMARC1; p=" at _dmarc.${organisationalDomain(from)}. ${ownerNote(organisationalDomain(from))}`);
  }
  if (dmarc.result === 'none') {
    const org = organisationalDomain(from);
    return result('warn', 'DMARC_MISSING', `no DMARC record at _dmarc.${from}${org === from ? '' : ` or _dmarc.${org}`}`, `Publish ${paste(txtRecord(`_dmarc.${org}`, `v=DMARC1; p=none; rua=mailto:dmarc-reports@${org}`))}. ${ownerNote(org)}`);
  }
  if (dmarc.result === 'permerror') return result('warn', 'DMARC_INVALID', `the DMARC record cannot be applied: ${dmarc.reason ?? ''}`, `Keep exactly one TXT record starting with "v=DMARC1; p=" at _dmarc.${organisationalDomain(from)}. ${ownerNote(organisationalDomain(from))}`);
  const testing = prepared.dkim.signatures.find((s) => s.testing);
  if (testing) return result('warn', 'DKIM_TESTING', `the key record ${testing.selector}._domainkey.${testing.domain} carries t=y: the signature verifies (pass), but receivers may treat the message as unsigned`, `Remove t=y from ${testing.selector}._domainkey.${testing.domain} once signing works. ${ownerNote(testing.domain)}`);
  // A configured key's broken record is the dkim check's to report (DKIM_KEY_MISSING, DKIM_KEY_MISMATCH) while it runs.
  const broken = auth.dkim.find((s) => s.result !== 'pass' && !(options.dkimReportedElsewhere && options.keys.some((k) => k.domainName.toLowerCase() === s.domain && k.keySelector.toLowerCase() === s.selector)));
  if (broken) return result('warn', 'DKIM_SIGNATURE_FAIL', `the DKIM signature d=${broken.domain} s=${broken.selector} would be ${broken.result}${broken.reason ? ` (${broken.reason})` : ''}; the message is authenticated otherwise`, keyHint(broken.domain, broken.selector, options.keys));
  if (dmarc.result === null) {
    return result('pass', null, `SPF and DMARC for ${from} are decided downstream of the relay, on a MAIL FROM (${auth.spf.domain}) aligned with it; ${auth.dkim.length === 0 ? 'the message is not DKIM-signed' : `DKIM: ${auth.dkim.map((s) => `${s.result} d=${s.domain}`).join(', ')}`}`, null);
  }
  return result('pass', null, `dmarc=${dmarc.result}${dmarc.alignedBy ? ` (aligned by ${dmarc.alignedBy})` : ''}${dmarc.policy ? `, p=${dmarc.policy}` : ''} for ${from}`, null);
}

function bulkRequirement(judgement: Judgement, fixes: () => string): { code: CheckVerdict['code']; actual: string; hint: string } | undefined {
  const { authentication: auth, prepared, spf } = judgement;
  // Through a relay SPF is the relay's to pass; the other rules still hold.
  if (spf && spf.result !== 'pass') return { code: 'BULK_SPF_REQUIRED', actual: `bulk senders need SPF to pass; SPF of ${spf.domain} is ${spf.result}`, hint: `Gmail answers 550 5.7.27. ${fixes()}` };
  if (!auth.dkim.some((s) => s.result === 'pass')) return { code: 'BULK_DKIM_REQUIRED', actual: 'bulk senders need a passing DKIM signature; the message has none', hint: `Gmail answers 550 5.7.30. Sign with Nodemailer's dkim option, d= the From domain, and publish its key record.` };
  if (auth.dmarc.result === 'none' || auth.dmarc.result === 'permerror') {
    const org = organisationalDomain(prepared.fromDomain ?? '');
    return { code: 'BULK_DMARC_REQUIRED', actual: `bulk senders need a DMARC record (p=none at least): ${auth.dmarc.reason ?? ''}`, hint: `Gmail answers 550 5.7.40. Publish ${paste(txtRecord(`_dmarc.${org}`, `v=DMARC1; p=none; rua=mailto:dmarc-reports@${org}`))}. ${ownerNote(org)}` };
  }
  if (auth.dmarc.result === 'fail') return { code: 'BULK_ALIGNMENT_REQUIRED', actual: `bulk senders need DMARC to pass with alignment: ${auth.dmarc.reason ?? ''}`, hint: `Gmail answers 550 5.7.32. ${fixes()}` };
  const unsubscribe = oneClickProblem(judgement);
  if (unsubscribe) return { code: 'BULK_UNSUBSCRIBE_REQUIRED', actual: unsubscribe, hint: "Gmail and Yahoo require one-click unsubscribe from bulk senders (RFC 8058). Set Nodemailer's list: { unsubscribe: { url: 'https://example.com/unsubscribe?u=...' } } and headers: { 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' }, and sign with DKIM (Nodemailer's signer covers both headers)." };
  return undefined;
}

/** RFC 8058 section 3.1: an https URI in List-Unsubscribe, List-Unsubscribe-Post: List-Unsubscribe=One-Click, both covered by a passing DKIM signature. */
function oneClickProblem(judgement: Judgement): string | undefined {
  const { headers, dkim } = judgement.prepared;
  const list = headers.get('list-unsubscribe');
  if (list.length === 0) return 'the message has no List-Unsubscribe header';
  if (!list.some((v) => /<https:[^>]+>/i.test(v))) return 'List-Unsubscribe holds no https: URI';
  const post = headers.get('list-unsubscribe-post');
  if (!post.some((v) => v.trim().toLowerCase() === 'list-unsubscribe=one-click')) return 'the message has no List-Unsubscribe-Post: List-Unsubscribe=One-Click header';
  const passing = new Set(dkim.signatures.filter((s) => s.result === 'pass').map((s) => `${s.domain}|${s.selector}`));
  const covered = headers.get('dkim-signature').some((value) => {
    const tags = signatureTags(value);
    if (!passing.has(`${(tags.get('d') ?? '').toLowerCase()}|${(tags.get('s') ?? '').toLowerCase()}`)) return false;
    const signed = (tags.get('h') ?? '').toLowerCase().split(':');
    return signed.includes('list-unsubscribe') && signed.includes('list-unsubscribe-post');
  });
  return covered ? undefined : 'no passing DKIM signature covers both List-Unsubscribe and List-Unsubscribe-Post';
}

/** The fixes that fit this message, most robust first: DKIM aligned with From survives forwarding. */
function fixHint(judgement: Judgement, keys: readonly DkimKeyOptions[]): string {
  const { prepared, edge, receiver, spf } = judgement;
  const from = prepared.fromDomain ?? '';
  const org = organisationalDomain(from);
  const key = keys[0];
  const selector = key?.keySelector ?? 's1';
  const record = key ? publishedKey(key) : undefined;
  const sign = record
    ? `Sign with d=${from} (dkim: { domainName: '${from}', keySelector: '${selector}', privateKey }) and publish ${paste(txtRecord(`${selector}._domainkey.${from}`, record))}.`
    : `Sign with DKIM d=${from} (Nodemailer's dkim option: domainName '${from}', a keySelector, a privateKey) and publish the key's TXT record at <selector>._domainkey.${from}.`;
  const hints = [sign];
  if (receiver === 'final') {
    const mailFromAligned = spf !== undefined && organisationalDomain(spf.domain) === org;
    if (!mailFromAligned) hints.push(`Or send with a MAIL FROM in ${org} (envelope: { from: 'bounces@${org}', to }) whose SPF record authorises ${edge.address}.`);
    else if (spf && spf.result !== 'pass') hints.push(`Or authorise ${edge.address} in the SPF record of ${spf.domain} (an ip4:/ip6: mechanism before the all).`);
  }
  return `${hints.join(' ')} ${ownerNote(from)}`;
}

function keyHint(domain: string, selector: string, keys: readonly DkimKeyOptions[]): string {
  const key = keys.find((k) => k.domainName.toLowerCase() === domain && k.keySelector.toLowerCase() === selector);
  const record = key ? publishedKey(key) : undefined;
  return record
    ? `Publish ${paste(txtRecord(`${selector}._domainkey.${domain}`, record))}, the public key of the configured private key. ${ownerNote(domain)}`
    : `Publish the signing key's public key at ${selector}._domainkey.${domain}. ${ownerNote(domain)}`;
}

/** The key record text for a private key, ready to paste; undefined when it cannot be read. */
function publishedKey(key: DkimKeyOptions): string | undefined {
  const own = ownKey(key.privateKey);
  return typeof own === 'string' ? undefined : `v=DKIM1; k=${own.kind}; p=${own.published}`;
}

/**
 * The sender requirement "TLS to the receiver when it offers STARTTLS"
 * (Gmail's and Yahoo's guidelines for all senders), judged once the message
 * is sent, from the connection that carried it (src/routes/wire-tls.ts).
 * A warning, whatever the check's severity: the bytes have already gone, and
 * no receiver refuses a message for it (Gmail shows it as not encrypted);
 * Nodemailer's `requireTLS: true` is what makes TLS mandatory before sending.
 */
export function checkTransportTls(carried: { tls: unknown; offered: boolean | null }, receiver: string): CheckVerdict {
  const expected = 'TLS to the receiver when it offers STARTTLS';
  if (carried.tls !== null || carried.offered !== true) {
    return { id: 'authentication', status: 'pass', expected, actual: carried.tls !== null ? `sent over TLS to ${receiver}` : `${receiver} does not offer STARTTLS`, code: null, hint: null, evidence: [] };
  }
  return {
    id: 'authentication',
    status: 'warn',
    expected,
    actual: `${receiver} offers STARTTLS, but the message went in clear text (ignoreTLS, or a STARTTLS that failed under opportunisticTLS)`,
    code: 'STARTTLS_NOT_USED',
    hint: "Remove ignoreTLS (Nodemailer then uses STARTTLS when offered), or set requireTLS: true to refuse to send in clear text; if the relay's certificate is not trusted, add its CA with tls: { ca } instead of turning TLS off. Gmail's and Yahoo's sender guidelines ask for TLS; Gmail marks clear-text mail as not encrypted rather than refusing it.",
    evidence: [`${receiver}: 250-STARTTLS offered in the EHLO reply; the message was written on the clear-text connection`],
  };
}
