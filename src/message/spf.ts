/**
 * SPF (RFC 7208) of the MAIL FROM domain, or for the null sender of the EHLO
 * name (section 2.4), for one edge address and EHLO name: mailauth's SPF
 * through mailedge's resolver, kept per (identity, address, EHLO name) until
 * the first of the answers it read expires, with concurrent messages sharing
 * one evaluation.
 */
import type { Lookup, Resolver } from '../dns/resolver.js';
import { Cache, type Clock } from '../cache.js';
import { digLine } from '../checks/evidence.js';
import { adapter, senderLocal, spfRecordsSeen } from '../checks/spf.js';
import { mailauthSpf, type SpfResultName } from '../checks/mailauth.js';
import { mailDomain } from '../checks/records.js';

export interface SpfOutcome {
  result: SpfResultName;
  /** The domain SPF was evaluated for: the MAIL FROM domain, or the EHLO name for the null sender. */
  domain: string;
  /** 'mailfrom', or 'helo' for the null sender: the RFC 8601 property the header names. */
  identity: 'mailfrom' | 'helo';
  /** mailauth's comment: why it is not a pass. */
  comment: string;
  /** The v=spf1 record(s) read at the domain. */
  records: string[];
  evidence: string[];
}

/** Identities x edges remembered at most: a sender uses a handful of MAIL FROM domains per edge. */
const MAX_SPF = 5_000;

export class SpfEvaluator {
  private readonly kept: Cache<string, SpfOutcome>;

  constructor(
    private readonly resolver: Resolver,
    clock: Clock,
  ) {
    this.kept = new Cache({ name: 'message spf verdicts', max: MAX_SPF, clock });
  }

  /** When an outcome this evaluator gave stops being valid: the first DNS answer behind it expires. */
  expiresAt(outcome: SpfOutcome): number {
    return this.kept.expiryOf(outcome) ?? 0;
  }

  /** `sender` '' or false is the null sender. */
  evaluate(sender: string | false, address: string, ehloName: string, signal: AbortSignal): Promise<SpfOutcome> {
    const nullSender = sender === false || sender.trim() === '' || sender.trim() === '<>';
    const identity = nullSender ? ehloName : (sender as string);
    const parsed = mailDomain(identity);
    const domain = parsed.ok ? parsed.domain : identity.toLowerCase();
    const local = nullSender ? 'postmaster' : senderLocal(sender as string);
    const key = `${nullSender ? 'helo' : 'mailfrom'}|${local}@${domain}|${address}|${ehloName.toLowerCase()}`;
    return this.kept.getOrLoad(key, async () => {
      if (!parsed.ok) {
        // RFC 7208 section 4.3: a domain that is not a valid name is "none"; nothing to look up.
        const outcome: SpfOutcome = { result: 'none', domain, identity: nullSender ? 'helo' : 'mailfrom', comment: `"${identity}" ${parsed.problem}`, records: [], evidence: [] };
        return { value: outcome, expiresAt: Number.POSITIVE_INFINITY };
      }
      const lookups: Lookup[] = [];
      const result = await mailauthSpf()({
        sender: `${local}@${domain}`,
        ip: address,
        helo: ehloName,
        mta: 'mailedge',
        resolver: adapter(this.resolver, signal, lookups),
      });
      const outcome: SpfOutcome = {
        result: result.status.result,
        domain,
        identity: nullSender ? 'helo' : 'mailfrom',
        comment: (result.status.comment ?? '').replace(/^mailedge: /, ''),
        records: spfRecordsSeen(lookups, domain),
        evidence: [...new Set(lookups.map((l) => digLine(l)))],
      };
      const expiresAt = result.status.result === 'temperror' ? 0 : Math.min(Number.POSITIVE_INFINITY, ...lookups.map((l) => this.resolver.expiresAt(l)));
      return { value: outcome, expiresAt };
    });
  }
}

