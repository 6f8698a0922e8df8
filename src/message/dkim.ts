/**
 * The DKIM verdict of each signature a message carries (RFC 6376, results
 * named as RFC 8601 section 2.7.1 and as Gmail writes them), from the exact
 * signed bytes, by mailauth's verifier (the one WildDuck and EmailEngine run)
 * through mailedge's resolver.
 *
 * What is verified when: the first message per signature shape (d=, s=, a=,
 * c=, the signed header names h=, the private key's fingerprint) and per key
 * record answer is verified in full: body hash, header hash, RSA/Ed25519
 * verification against the published key. The verdict is then kept for as
 * long as that key record answer lives in the resolver's cache (its TTL).
 * Later messages of the same shape cost a header parse and a cache read of
 * the key record; if the record answer changed (a rotation, a revocation, its
 * TTL ran out) or the signed header set differs, the message is verified in
 * full again. Nodemailer signs every message with the same code and key, so
 * a body that verified once verifies again; what can change is the key
 * record and which headers the signature covers.
 */
import { createHash } from 'node:crypto';
import type { DKIMVerifyOptions, DKIMVerifyResult } from 'mailauth';
import type { Lookup, Resolver } from '../dns/resolver.js';
import { Cache, type Clock } from '../cache.js';
import { digLine } from '../checks/evidence.js';
import { adapter } from '../checks/spf.js';
import { parseTags, txtStrings } from '../checks/records.js';
import type { DkimKeyOptions } from '../checks/dkim.js';
import { signatureTags, type MessageHeaders } from './headers.js';

export type DkimResultName = 'pass' | 'fail' | 'neutral' | 'policy' | 'none' | 'temperror' | 'permerror';

export interface DkimSignatureVerdict {
  result: DkimResultName;
  domain: string;
  selector: string;
  /** Why it is not a plain pass (mailauth's comment), or a note such as t=y. */
  reason?: string;
  /** The key record carries t=y: the signature verifies, but the domain says it is testing DKIM. */
  testing?: boolean;
}

export interface DkimOutcome {
  signatures: DkimSignatureVerdict[];
  /** The key record lookups, dig-style; computed only when a report needs them (formatting a key record costs more than the verdict). */
  evidence: () => string[];
  /** How many signatures were verified in full (0 when every one came from the cache). */
  verifiedInFull: number;
}

const RESULTS: readonly DkimResultName[] = ['pass', 'fail', 'neutral', 'policy', 'none', 'temperror', 'permerror'];

type VerifyFunction = (input: Buffer, options: DKIMVerifyOptions) => Promise<DKIMVerifyResult>;
let verifyFunction: Promise<VerifyFunction> | undefined;

/** Loaded on first use, like mailauth's SPF (src/checks/mailauth.ts): importing mailedge stays cheap. */
function loadVerify(): Promise<VerifyFunction> {
  verifyFunction ??= import('mailauth/lib/dkim/verify.js').then((loaded: { dkimVerify?: unknown; default?: { dkimVerify?: unknown } }) => {
    const verify = loaded.dkimVerify ?? loaded.default?.dkimVerify;
    if (typeof verify !== 'function') throw new Error('mailauth/lib/dkim/verify does not export dkimVerify(): is mailauth ~4.13 installed?');
    return verify as VerifyFunction;
  });
  return verifyFunction;
}

interface Kept {
  /** The key record answer the verdict was made against: the same object while it stays in the resolver's cache. */
  lookup: Lookup;
  verdict: DkimSignatureVerdict;
}

/** Signature shapes remembered at most: a few per signing key in practice. */
const MAX_SHAPES = 1_000;

export class DkimVerifier {
  private readonly kept: Cache<string, Kept>;

  constructor(
    private readonly resolver: Resolver,
    clock: Clock,
  ) {
    this.kept = new Cache({ name: 'dkim verdicts', max: MAX_SHAPES, clock });
  }

  async verify(raw: Buffer, headers: MessageHeaders, keys: readonly DkimKeyOptions[], signal: AbortSignal): Promise<DkimOutcome> {
    const fields = headers.get('dkim-signature');
    if (fields.length === 0) return { signatures: [], evidence: () => [], verifiedInFull: 0 };
    const shapes = fields.map((value) => {
      const tags = signatureTags(value);
      const domain = (tags.get('d') ?? '').toLowerCase();
      const selector = (tags.get('s') ?? '').toLowerCase();
      const key = keys.find((k) => k.domainName.toLowerCase() === domain && k.keySelector.toLowerCase() === selector);
      const shape = [domain, selector, tags.get('a'), tags.get('c'), (tags.get('h') ?? '').toLowerCase(), key ? fingerprint(key.privateKey) : 'foreign'].join('|');
      return { domain, selector, shape, own: key !== undefined };
    });
    // The key records as the resolver has them now: a cache read in the common case.
    const records = await Promise.all(shapes.map((s) => this.resolver.lookup(`${s.selector}._domainkey.${s.domain}`, 'TXT', signal)));
    const evidence = (): string[] => records.map((l) => digLine(l));
    const cached = shapes.map((s, i) => {
      const kept = s.own ? this.kept.get(s.shape) : undefined;
      return kept && kept.lookup === records[i] ? kept.verdict : undefined;
    });
    if (cached.every((v) => v !== undefined)) return { signatures: cached as DkimSignatureVerdict[], evidence, verifiedInFull: 0 };

    const verify = await loadVerify();
    const lookups: Lookup[] = [];
    const result = await verify(raw, { resolver: adapter(this.resolver, signal, lookups) as DKIMVerifyOptions['resolver'] });
    const signatures = shapes.map((s, i): DkimSignatureVerdict => {
      const found = result.results.find((r) => r.signingDomain?.toLowerCase() === s.domain && (r.selector ?? '').toLowerCase() === s.selector);
      const name = RESULTS.find((x) => x === found?.status.result) ?? (found?.status.result === 'temperr' ? 'temperror' : 'permerror');
      const comment = typeof found?.status.comment === 'string' ? found.status.comment : undefined;
      const testing = name === 'pass' && isTesting(records[i]);
      const verdict: DkimSignatureVerdict = {
        result: name,
        domain: s.domain,
        selector: s.selector,
        ...(testing ? { testing, reason: 'the key record carries t=y (testing); receivers such as Gmail still write pass, but RFC 6376 lets them treat the message as unsigned' } : comment ? { reason: comment } : {}),
      };
      const record = records[i];
      // Only our own keys' verdicts are kept, and never a temporary one; kept no longer than the key record's answer.
      if (s.own && record && name !== 'temperror' && record.kind !== 'tempfail') {
        this.kept.set(s.shape, { lookup: record, verdict }, this.resolver.expiresAt(record));
      }
      return verdict;
    });
    return { signatures, evidence, verifiedInFull: signatures.length };
  }
}

/** RFC 6376 section 3.6.1: t=y marks a domain testing DKIM. */
function isTesting(lookup: Lookup | undefined): boolean {
  if (!lookup) return false;
  return txtStrings(lookup).some((text) => (parseTags(text).get('t') ?? '').split(':').some((f) => f.trim().toLowerCase() === 'y'));
}

/** Which private key signed: a key change under the same selector must not reuse a verdict. */
function fingerprint(key: string | Buffer): string {
  return createHash('sha256').update(key).digest('base64').slice(0, 16);
}
