/**
 * Does the sender's domain publish a DMARC policy (RFC 7489)? Looked up as a
 * receiver does (section 6.6.3): the TXT at _dmarc.<domain>, and only when
 * there is none, at _dmarc.<organisational domain>; several v=DMARC1 records
 * at one name end the search with no policy.
 *
 * p=none passes. It applies no policy to failing mail, but it is a valid,
 * deliberate record: the step every rollout starts with, and what Gmail's and
 * Yahoo's bulk-sender rules ask for as the minimum. The note in `actual` says
 * it is monitoring only; tightening it is a decision for the domain's owner,
 * not a fault of this sender. Missing or unusable records warn: mail still
 * flows, but is more likely to be junked, and bulk senders are refused.
 */
import type { Resolver } from '../dns/resolver.js';
import { searchDmarc } from '../message/dmarc-record.js';
import { digLine } from './evidence.js';
import { printable } from './hostname.js';
import { organisationalDomain } from './mailauth.js';
import { invalidDomain, mailDomain, ownerNote, parseTags, paste, txtRecord, unique, retryHint } from './records.js';
import type { CheckVerdict } from './types.js';

const POLICIES = new Set(['none', 'quarantine', 'reject']);

export interface DmarcRecord {
  /** Where it was found: _dmarc.<domain> or _dmarc.<organisational domain>. */
  owner: string;
  text: string;
  tags: Map<string, string>;
}

export async function checkDmarc(senderDomain: string, resolver: Resolver, signal: AbortSignal): Promise<CheckVerdict> {
  const expected = (who: string): string => `a DMARC record (TXT "v=DMARC1; p=...") at _dmarc.${who} or at its organisational domain`;
  const parsed = mailDomain(senderDomain);
  if (!parsed.ok) return invalidDomain('dmarc', senderDomain, parsed.problem, expected('<sender domain>'));
  const domain = parsed.domain;
  const org = organisationalDomain(domain);
  const { lookups, found, failedAt } = await searchDmarc(domain, resolver, signal);
  const result = (status: CheckVerdict['status'], code: CheckVerdict['code'], actual: string, hint: string | null): CheckVerdict => ({
    id: 'dmarc',
    status,
    expected: expected(domain),
    actual,
    code,
    hint,
    evidence: unique(lookups.map((l) => digLine(l))),
  });
  if (failedAt !== undefined) return result('temperror', 'DNS_TEMPFAIL', 'the DMARC lookup failed temporarily', retryHint(domain));

  const starter = txtRecord(`_dmarc.${org}`, `v=DMARC1; p=none; rua=mailto:dmarc-reports@${org}`);
  if (!found) {
    return result(
      'warn',
      'DMARC_MISSING',
      `no DMARC record at _dmarc.${domain}${domain === org ? '' : ` or _dmarc.${org}`}`,
      `Publish ${paste(starter)} (the rua mailbox receives daily aggregate reports). p=none only monitors; once the reports show your mail passing SPF or DKIM aligned with ${org}, move to p=quarantine, then p=reject. Published at ${org}, it covers its subdomains too. ${ownerNote(org)}`,
    );
  }

  const [first, ...others] = found.records;
  if (first === undefined || others.length > 0) {
    return result(
      'warn',
      'DMARC_INVALID',
      `${found.records.length} DMARC records at ${found.owner}: receivers apply none of them (RFC 7489 section 6.6.3)`,
      `Delete all but one TXT record starting with "v=DMARC1" at ${found.owner}. ${ownerNote(found.owner.slice('_dmarc.'.length))}`,
    );
  }
  const record: DmarcRecord = { owner: found.owner, text: first, tags: parseTags(first) };
  const covering = record.owner === `_dmarc.${domain}` ? '' : ` (the organisational domain's record, covering ${domain})`;
  const p = record.tags.get('p')?.toLowerCase();
  const sp = record.tags.get('sp')?.toLowerCase();
  const rua = record.tags.get('rua');
  const shown = `p=${p ?? '(missing)'}, sp=${sp ?? '(as p)'}, rua=${rua ?? '(none)'}`;
  const at = `"${printable(record.text)}" at ${record.owner}${covering}`;

  if (p === undefined || !POLICIES.has(p) || (sp !== undefined && !POLICIES.has(sp))) {
    const badSp = sp !== undefined && !POLICIES.has(sp);
    const fixed = fixedRecord(record.text, badSp ? 'sp' : 'p');
    return result(
      'warn',
      'DMARC_INVALID',
      `${at}: ${badSp ? `sp=${sp} is not none, quarantine or reject` : p === undefined ? 'no p= tag' : `p=${p} is not none, quarantine or reject`}, so receivers ${rua ? 'treat it as p=none (it has rua=)' : 'apply no DMARC policy'}; ${shown}`,
      `Give the record a valid policy: ${paste(txtRecord(record.owner, fixed))}. ${ownerNote(record.owner.slice('_dmarc.'.length))}`,
    );
  }

  // A subdomain covered by its organisational domain's record gets sp=, when present (RFC 7489 section 6.3).
  const effective = covering && sp ? sp : p;
  const pct = record.tags.get('pct');
  const notes = [
    ...(effective === 'none' ? ['policy none: monitoring only, receivers take no action on failing mail'] : []),
    ...(pct !== undefined && pct.trim() !== '100' ? [`pct=${pct.trim()}: the policy applies to only part of the failing mail`] : []),
    ...(rua === undefined ? ['no rua=, so nobody receives aggregate reports'] : []),
  ];
  return result('pass', null, `${at}: ${shown}; policy for ${domain}: ${effective}${notes.length ? ` (${notes.join('; ')})` : ''}`, null);
}

/** The record with `tag` set to none (a safe value) right after v=DMARC1, dropping any bad copy of it. */
function fixedRecord(text: string, tag: 'p' | 'sp'): string {
  const parts = text
    .split(';')
    .map((s) => s.trim())
    .filter((s) => s.length > 0 && s.split('=')[0]?.trim().toLowerCase() !== tag);
  const [version, ...rest] = parts;
  const head = tag === 'sp' ? [version ?? 'v=DMARC1', ...rest.filter((s) => s.split('=')[0]?.trim().toLowerCase() === 'p')] : [version ?? 'v=DMARC1'];
  const tail = tag === 'sp' ? rest.filter((s) => s.split('=')[0]?.trim().toLowerCase() !== 'p') : rest;
  return [...head, `${tag}=none`, ...tail].join('; ');
}
