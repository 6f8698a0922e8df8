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
 * record and which headers the signature covers. Only the fields Nodemailer's
 * signer adds (the topmost, one per configured key, in order) are mailedge's
 * own; any other field is verified in full every time. A message whose kept
 * verdicts all stand is not even rendered (fromCache, src/message/compiled.ts).
 */
import { createHash } from 'node:crypto';
import type { DKIMVerifyOptions, DKIMVerifyResult } from 'mailauth';
import type { Lookup, Resolver } from '../dns/resolver.js';
import { Cache, systemClock, type Clock } from '../cache.js';
import { digLine } from '../checks/evidence.js';
import { adapter } from '../checks/spf.js';
import { lazyMailauth } from '../checks/mailauth.js';
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
  /** Set when every verdict came from the cache: when the first key record answer behind them expires. */
  expiresAt?: number;
}

const RESULTS: readonly DkimResultName[] = ['pass', 'fail', 'neutral', 'policy', 'none', 'temperror', 'permerror'];

type VerifyFunction = (input: Buffer, options: DKIMVerifyOptions) => Promise<DKIMVerifyResult>;
/** Loaded on first use, like mailauth's SPF (src/checks/mailauth.ts): importing mailedge stays cheap. */
const loadVerify = lazyMailauth<VerifyFunction>(() => import('mailauth/lib/dkim/verify.js'), 'dkimVerify', 'mailauth/lib/dkim/verify');

interface Kept {
  /** The key record answer the verdict was made against: the same object while it stays in the resolver's cache. */
  lookup: Lookup;
  verdict: DkimSignatureVerdict;
}

/** Signature shapes remembered at most: a few per signing key in practice. */
const MAX_SHAPES = 1_000;

export class DkimVerifier {
  private readonly kept: Cache<string, Kept>;
  private readonly parsed: Cache<string, Map<string, string>>;
  /** Shapes being verified in full now, and the verification their other messages wait for (entries leave when it ends). */
  private readonly verifying = new Map<string, Promise<void>>();
  /** Who claimed which shapes: a message between its cache miss and its verification (weak: a dropped one holds nothing). */
  private readonly claims = new WeakMap<object, { shapes: readonly string[]; running: Promise<void>; finish: () => void }>();

  constructor(
    private readonly resolver: Resolver,
    clock: Clock,
  ) {
    this.kept = new Cache({ name: 'dkim verdicts', max: MAX_SHAPES, clock });
    this.parsed = new Cache({ name: 'dkim signature tags', max: MAX_SHAPES, clock });
  }

  /**
   * The verdicts kept for every signature of a message whose bytes are not
   * rendered (src/message/compiled.ts): undefined unless each signature is one
   * of ours, of a shape verified in full before, against the key record answer
   * the resolver holds now. The caller then renders and calls verify().
   */
  async fromCache(headers: MessageHeaders, keys: readonly DkimKeyOptions[], signal: AbortSignal, claimant?: object): Promise<DkimOutcome | undefined> {
    const fields = headers.get('dkim-signature');
    if (fields.length === 0) return { signatures: [], evidence: () => [], verifiedInFull: 0, expiresAt: Number.POSITIVE_INFINITY };
    const shapes = this.shapesOf(fields, keys, true);
    if (shapes.some((s) => !s.own)) return undefined;
    const missing = shapes.filter((s) => this.kept.get(s.shape) === undefined);
    if (missing.length > 0) {
      const unclaimed = missing.filter((s) => !this.verifying.has(s.shape));
      if (unclaimed.length > 0) {
        // The first message of a shape: it is rendered and verified in full (`claimant`, released by verify() or
        // release()); the messages of the shape that arrive meanwhile wait for its verdict instead of doing the same.
        if (claimant) this.claim(unclaimed.map((s) => s.shape), claimant);
        return undefined;
      }
      await Promise.all(missing.map((s) => this.verifying.get(s.shape)));
      if (missing.some((s) => this.kept.get(s.shape) === undefined)) return undefined;
    }
    const { records, cached, evidence } = await this.cachedFor(shapes, signal);
    if (!cached.every((v) => v !== undefined)) return undefined;
    return { signatures: cached as DkimSignatureVerdict[], evidence, verifiedInFull: 0, expiresAt: Math.min(...records.map((r) => this.resolver.expiresAt(r))) };
  }

  async verify(raw: Buffer, headers: MessageHeaders, keys: readonly DkimKeyOptions[], signal: AbortSignal, claimant?: object): Promise<DkimOutcome> {
    const fields = headers.get('dkim-signature');
    if (fields.length === 0) {
      if (claimant) this.release(claimant);
      return { signatures: [], evidence: () => [], verifiedInFull: 0 };
    }
    const shapes = this.shapesOf(fields, keys);
    // Claimed before the first await (unless fromCache claimed them for this message already): messages of these
    // shapes that reach fromCache from now on wait for this verdict.
    const mine = {};
    this.claim(shapes.filter((s) => s.own && this.kept.get(s.shape) === undefined && !this.verifying.has(s.shape)).map((s) => s.shape), mine);
    try {
      return await this.verifyInFull(raw, shapes, signal);
    } finally {
      // After the verdicts are kept (verifyInFull keeps them before it returns).
      this.release(mine);
      if (claimant) this.release(claimant);
    }
  }

  /** Ends a claim: its shapes are no longer being verified, and the messages waiting for them go on. */
  release(claimant: object): void {
    const claim = this.claims.get(claimant);
    if (!claim) return;
    this.claims.delete(claimant);
    for (const shape of claim.shapes) if (this.verifying.get(shape) === claim.running) this.verifying.delete(shape);
    claim.finish();
  }

  private claim(shapes: readonly string[], claimant: object): void {
    if (shapes.length === 0) return;
    let finish = (): void => undefined;
    const running = new Promise<void>((resolve) => {
      finish = resolve;
    });
    for (const shape of shapes) this.verifying.set(shape, running);
    this.claims.set(claimant, { shapes, running, finish });
  }

  private async verifyInFull(raw: Buffer, shapes: readonly Shape[], signal: AbortSignal): Promise<DkimOutcome> {
    const { records, cached, evidence } = await this.cachedFor(shapes, signal);
    if (cached.every((v) => v !== undefined)) return { signatures: cached as DkimSignatureVerdict[], evidence, verifiedInFull: 0 };

    const verify = await loadVerify();
    const result = await verify(raw, { resolver: adapter(this.resolver, signal, [] as Lookup[]) as DKIMVerifyOptions['resolver'] });
    // mailauth gives one result per DKIM-Signature field, in header order: matched by position (two signatures
    // may share d= and s=, e.g. the old and the new key of a rotation), by d= and s= only if the counts differ.
    const byPosition = result.results.length === shapes.length;
    const signatures = shapes.map((s, i): DkimSignatureVerdict => {
      const at = byPosition ? result.results[i] : undefined;
      const found =
        at && at.signingDomain?.toLowerCase() === s.domain && (at.selector ?? '').toLowerCase() === s.selector
          ? at
          : result.results.find((r) => r.signingDomain?.toLowerCase() === s.domain && (r.selector ?? '').toLowerCase() === s.selector);
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

  private shapesOf(fields: readonly string[], keys: readonly DkimKeyOptions[], remember = false): Shape[] {
    return fields.map((value, i) => {
      const tags = remember ? this.tagsOf(value) : signatureTags(value);
      const domain = (tags.get('d') ?? '').toLowerCase();
      const selector = (tags.get('s') ?? '').toLowerCase();
      // Nodemailer's signer puts its fields on top, one per key in the keys' order: field i is key i's, when its
      // d= and s= are that key's. Any other field (below them: a raw message's signature, a header the caller
      // wrote) is not mailedge's, even under the same d= and s=, and is verified in full every time.
      const candidate = keys[i];
      const key = candidate && candidate.domainName.toLowerCase() === domain && candidate.keySelector.toLowerCase() === selector ? candidate : undefined;
      const shape = [domain, selector, tags.get('a'), tags.get('c'), (tags.get('h') ?? '').toLowerCase(), key ? fingerprint(key.privateKey) : 'foreign'].join('|');
      return { domain, selector, shape, own: key !== undefined };
    });
  }

  /** The tags of a signature computed without rendering (no bh=, no b=): the same text for every message of a shape. */
  private tagsOf(value: string): Map<string, string> {
    let tags = this.parsed.get(value);
    if (!tags) {
      tags = signatureTags(value);
      this.parsed.set(value, tags, Number.POSITIVE_INFINITY);
    }
    return tags;
  }

  /** The key records as the resolver has them now (a cache read in the common case), and the verdicts kept against them. */
  private async cachedFor(shapes: readonly Shape[], signal: AbortSignal): Promise<{ records: Lookup[]; cached: Array<DkimSignatureVerdict | undefined>; evidence: () => string[] }> {
    const records = await Promise.all(shapes.map((s) => this.resolver.lookup(`${s.selector}._domainkey.${s.domain}`, 'TXT', signal)));
    const evidence = (): string[] => records.map((l) => digLine(l));
    const cached = shapes.map((s, i) => {
      const kept = s.own ? this.kept.get(s.shape) : undefined;
      return kept && kept.lookup === records[i] ? kept.verdict : undefined;
    });
    return { records, cached, evidence };
  }
}

interface Shape {
  domain: string;
  selector: string;
  /** d, s, a, c, h and the private key's fingerprint: what a kept verdict is keyed by. */
  shape: string;
  /** Signed by one of the configured keys (mailedge's signer); a foreign signature is always verified in full. */
  own: boolean;
}

/** RFC 6376 section 3.6.1: t=y marks a domain testing DKIM. */
function isTesting(lookup: Lookup | undefined): boolean {
  if (!lookup) return false;
  return txtStrings(lookup).some((text) => (parseTags(text).get('t') ?? '').split(':').some((f) => f.trim().toLowerCase() === 'y'));
}

/** Which private key signed: a key change under the same selector must not reuse a verdict. */
function fingerprint(key: string | Buffer): string {
  if (typeof key !== 'string') return createHash('sha256').update(key).digest('base64').slice(0, 16);
  let known = fingerprints.get(key);
  if (known === undefined) {
    known = createHash('sha256').update(key).digest('base64').slice(0, 16);
    fingerprints.set(key, known, Number.POSITIVE_INFINITY);
  }
  return known;
}

/** PEM text to fingerprint: hashing the key on every message would cost more than reading the kept verdict. */
const fingerprints = new Cache<string, string>({ name: 'dkim key fingerprints', max: MAX_SHAPES, clock: systemClock });
