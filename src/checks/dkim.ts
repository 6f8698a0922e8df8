/**
 * Does the DKIM key published at <selector>._domainkey.<domain> belong to the
 * private key the transport signs with (Nodemailer's `dkim` option)? A
 * mismatch makes every signature fail at every receiver, silently: the mail
 * still goes out, it just loses DKIM and, with it, DMARC alignment.
 *
 * Keys are compared as key material, not as text: the published p= is parsed
 * (SubjectPublicKeyInfo, which opendkim-genkey and every DNS provider emit,
 * or a bare PKCS#1 RSAPublicKey, which some old tools wrote and verifiers
 * accept) and re-exported as SPKI DER beside ours. Ed25519 keys (RFC 8463)
 * publish the raw 32-byte key, compared as such.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import type { Resolver } from '../dns/resolver.js';
import { digLine } from './evidence.js';
import { hostnameProblem, printable } from './hostname.js';
import { HINT_TTL, invalidDomain, mailDomain, ownerNote, parseTags, paste, txtRecord, txtStrings, retryHint } from './records.js';
import type { CheckVerdict } from './types.js';

export interface DkimKeyOptions {
  /** The signing domain (d=). */
  domainName: string;
  /** The selector (s=). */
  keySelector: string;
  /** PEM (PKCS#1 or PKCS#8), as Nodemailer takes it. */
  privateKey: string | Buffer;
}

/** RFC 8301 section 3.2: verifiers MUST NOT accept RSA keys shorter than this. */
const MIN_RSA_BITS = 1024;
/** Ed25519's SubjectPublicKeyInfo is a fixed 12-octet header and the 32-octet key. */
const ED25519_SPKI_HEADER = 12;

export async function checkDkim(options: DkimKeyOptions, resolver: Resolver, signal: AbortSignal): Promise<CheckVerdict> {
  const selector = options.keySelector.trim().toLowerCase().replace(/\.$/, '');
  const expected = (owner: string): string => `a DKIM key record at ${owner} holding the public key of the configured private key`;
  const parsed = mailDomain(options.domainName);
  if (!parsed.ok) return invalidDomain('dkim', options.domainName, parsed.problem, expected('<selector>._domainkey.<domain>'));
  const domain = parsed.domain;
  const owner = `${selector}._domainkey.${domain}`;
  // A selector is one or more labels (RFC 6376 section 3.1); checking it with a domain appended gives the label rules.
  const selectorProblem = selector.length === 0 ? 'is empty' : hostnameProblem(`${selector}.${domain}`);
  const ours = ownKey(options.privateKey);
  if (selectorProblem || typeof ours === 'string') {
    return {
      id: 'dkim',
      status: 'fail',
      expected: expected(owner),
      actual: selectorProblem ? `the selector "${printable(options.keySelector)}" ${selectorProblem}` : `the configured private key cannot be read: ${ours}`,
      code: 'INVALID_OPTION',
      hint: selectorProblem
        ? 'Set dkim.keySelector to the label the key is published under (the part before ._domainkey).'
        : 'Set dkim.privateKey to the PEM private key ("-----BEGIN PRIVATE KEY-----" or "-----BEGIN RSA PRIVATE KEY-----"), e.g. from "openssl genrsa 2048".',
      evidence: [],
    };
  }

  const wanted = txtRecord(owner, `v=DKIM1; k=${ours.kind}; p=${ours.published}`);
  const publish = `Publish ${paste(wanted)}. ${ownerNote(domain)}`;
  const lookup = await resolver.lookup(owner, 'TXT', signal);
  const base = { id: 'dkim' as const, expected: expected(owner), evidence: [digLine(lookup)] };
  if (lookup.kind === 'tempfail') {
    return {
      ...base,
      status: 'temperror',
      actual: 'the key lookup failed temporarily',
      code: 'DNS_TEMPFAIL',
      hint: retryHint(domain),
    };
  }
  // Anything with a p= tag is a key record: v=DKIM1 is only RECOMMENDED (RFC 6376 section 3.6.1).
  const records = txtStrings(lookup)
    .map((text) => ({ text, tags: parseTags(text) }))
    .filter((r) => r.tags.has('p'));
  if (records.length === 0) {
    const what = lookup.kind === 'answer' ? `TXT records at ${owner}, but none with p=` : `no TXT record at ${owner} (${lookup.kind === 'nxdomain' ? 'NXDOMAIN' : lookup.kind === 'nodata' ? 'no data' : lookup.kind})`;
    return { ...base, status: 'fail', actual: what, code: 'DKIM_KEY_MISSING', hint: publish };
  }

  const compared = records.map((r) => ({ ...r, verdict: compare(ours, r.tags.get('p') ?? '') }));
  const match = compared.find((r) => r.verdict === 'match');
  if (!match) {
    const describe = (verdict: string): string =>
      verdict === 'revoked' ? 'revoked (empty p=)' : verdict === 'unreadable' ? 'p= is not a readable public key' : 'p= is a different key';
    return {
      ...base,
      status: 'fail',
      actual: `the key at ${owner} does not match the configured private key: ${compared.map((r) => describe(r.verdict)).join('; ')}`,
      code: 'DKIM_KEY_MISMATCH',
      hint: `Replace the TXT record at ${owner} with the configured key's, or configure the private key that belongs to the published one. ${publish}`,
    };
  }

  if (ours.bits !== undefined && ours.bits < MIN_RSA_BITS) {
    return {
      ...base,
      status: 'fail',
      actual: `the published key matches, but it is RSA ${ours.bits} bits: verifiers ignore signatures with keys under ${MIN_RSA_BITS} bits (RFC 8301)`,
      code: 'DKIM_KEY_SHORT',
      hint: `Generate a 2048-bit key ("openssl genrsa -out dkim.pem 2048"), publish its public key under a new selector (e.g. ${paste(`${nextSelector(selector)}._domainkey.${domain}. ${HINT_TTL} IN TXT "v=DKIM1; k=rsa; p=<the new public key>"`)}), then point dkim.keySelector and dkim.privateKey at it. ${ownerNote(domain)}`,
    };
  }

  const flags = (match.tags.get('t') ?? '').split(':').map((f) => f.trim().toLowerCase());
  const size = ours.bits !== undefined ? `RSA ${ours.bits} bits` : 'Ed25519';
  if (flags.includes('y')) {
    return {
      ...base,
      status: 'warn',
      actual: `the published key matches (${size}), but the record carries t=y: verifiers treat the mail as unsigned`,
      code: 'DKIM_TESTING',
      hint: `Remove t=y once signing works: ${paste(txtRecord(owner, withoutTestFlag(match.text)))}. ${ownerNote(domain)}`,
    };
  }
  return { ...base, status: 'pass', actual: `the published key matches the configured private key (${size})`, code: null, hint: null };
}

export interface OwnKey {
  kind: 'rsa' | 'ed25519';
  /** The p= value to publish. */
  published: string;
  /** The key in the form compare() checks against. */
  key: Buffer;
  bits: number | undefined;
}

/** The public half of a DKIM private key as its key record publishes it (p=), or why it cannot sign DKIM. */
export function ownKey(privateKey: string | Buffer): OwnKey | string {
  let key: KeyObject;
  try {
    key = createPublicKey(createPrivateKey(privateKey));
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  const spki = key.export({ type: 'spki', format: 'der' });
  if (key.asymmetricKeyType === 'rsa') {
    return { kind: 'rsa', published: spki.toString('base64'), key: spki, bits: key.asymmetricKeyDetails?.modulusLength };
  }
  if (key.asymmetricKeyType === 'ed25519') {
    const raw = spki.subarray(ED25519_SPKI_HEADER);
    return { kind: 'ed25519', published: raw.toString('base64'), key: raw, bits: undefined };
  }
  return `a ${key.asymmetricKeyType ?? 'unknown'} key; DKIM signs with RSA or Ed25519 (RFC 6376, RFC 8463)`;
}

function compare(ours: OwnKey, p: string): 'match' | 'different' | 'revoked' | 'unreadable' {
  // FWS may appear anywhere in the base64 value (RFC 6376 section 3.6.1).
  const text = p.replace(/\s+/g, '');
  if (text.length === 0) return 'revoked';
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return 'unreadable';
  const der = Buffer.from(text, 'base64');
  if (ours.kind === 'ed25519') return der.equals(ours.key) ? 'match' : der.length === 32 ? 'different' : 'unreadable';
  for (const type of ['spki', 'pkcs1'] as const) {
    try {
      const theirs = createPublicKey({ key: der, format: 'der', type }).export({ type: 'spki', format: 'der' });
      return theirs.equals(ours.key) ? 'match' : 'different';
    } catch {
      // not this encoding; try the next
    }
  }
  return 'unreadable';
}

/** The record without the y flag; other t= flags (s: no subdomains) keep their meaning. */
function withoutTestFlag(text: string): string {
  return text
    .split(';')
    .map((s) => s.trim())
    .flatMap((s) => {
      if (s.length === 0) return [];
      const eq = s.indexOf('=');
      if (s.slice(0, eq).trim().toLowerCase() !== 't') return [s];
      const kept = s.slice(eq + 1).split(':').map((f) => f.trim()).filter((f) => f.length > 0 && f.toLowerCase() !== 'y');
      return kept.length ? [`t=${kept.join(':')}`] : [];
    })
    .join('; ');
}

/** A selector name for the replacement key that cannot collide with the current one. */
function nextSelector(selector: string): string {
  const numbered = /^(.*?)(\d+)$/.exec(selector);
  return numbered ? `${numbered[1] ?? ''}${Number(numbered[2]) + 1}` : `${selector}2`;
}
