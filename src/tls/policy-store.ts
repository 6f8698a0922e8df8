/**
 * Where MTA-STS policies are kept between fetches (RFC 8461 section 5.1): in
 * memory by default, or in a JSON file so that a restart does not reopen the
 * first-contact window in which an attacker could strip the policy. Both are
 * bounded; the store is pluggable (edge.tls.mtaSts.store).
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { Cache, systemClock, type Clock } from '../cache.js';

export interface MtaStsPolicy {
  version: 'STSv1';
  mode: 'enforce' | 'testing' | 'none';
  /** mx: patterns as published, lower case ('mail.example.com', '*.example.net'). */
  mx: string[];
  /** Seconds, as published. */
  maxAge: number;
  /**
   * The policy as text, for TLS-RPT's policy-string and evidence: rebuilt from
   * the fields above (src/tls/mta-sts.ts parsePolicy), not the body as
   * fetched, so that what is kept per domain is bounded by the fields.
   */
  text: string;
}

export interface StoredPolicy {
  domain: string;
  /** The id of the _mta-sts TXT record the policy was fetched for. */
  id: string;
  policy: MtaStsPolicy;
  fetchedAt: number;
  /** Epoch ms: fetchedAt + max_age (capped). */
  expiresAt: number;
}

export interface PolicyStore {
  get(domain: string): StoredPolicy | undefined | Promise<StoredPolicy | undefined>;
  set(entry: StoredPolicy): void | Promise<void>;
}

/** Policies kept at most by default: one per recipient domain that publishes MTA-STS. */
export const DEFAULT_POLICY_STORE_ENTRIES = 10_000;

export class MemoryPolicyStore implements PolicyStore {
  protected readonly cache: Cache<string, StoredPolicy>;
  constructor(options: { max?: number; clock?: Clock } = {}) {
    this.cache = new Cache({ name: 'mta-sts policies', max: options.max ?? DEFAULT_POLICY_STORE_ENTRIES, clock: options.clock ?? systemClock });
  }
  get(domain: string): StoredPolicy | undefined {
    return this.cache.get(domain.toLowerCase());
  }
  set(entry: StoredPolicy): void {
    this.cache.set(entry.domain.toLowerCase(), entry, entry.expiresAt);
  }
}

/**
 * A memory store backed by one JSON file, read once at construction and
 * rewritten (to a temporary file, then renamed) on every change. Fine for one
 * process; several processes sharing a file each keep their own view.
 */
export class FilePolicyStore extends MemoryPolicyStore {
  /** Domains written so far; pruned to what the cache still holds on every write, so it shares the cache's bound. */
  private readonly domains = new Set<string>();

  constructor(
    private readonly path: string,
    options: { max?: number; clock?: Clock } = {},
  ) {
    super(options);
    let saved: unknown;
    try {
      saved = JSON.parse(readFileSync(path, 'utf8'));
    } catch {
      // A missing or unreadable file starts empty; the next change writes a good one.
      saved = [];
    }
    if (Array.isArray(saved)) {
      for (const entry of saved) {
        if (!isStoredPolicy(entry)) continue;
        super.set(entry);
        this.domains.add(entry.domain.toLowerCase());
      }
    }
  }

  override set(entry: StoredPolicy): void {
    super.set(entry);
    this.domains.add(entry.domain.toLowerCase());
    const entries: StoredPolicy[] = [];
    for (const domain of [...this.domains]) {
      const value = this.cache.get(domain);
      if (value) entries.push(value);
      else this.domains.delete(domain);
    }
    const temporary = `${this.path}.${process.pid}.tmp`;
    writeFileSync(temporary, JSON.stringify(entries));
    renameSync(temporary, this.path);
  }
}

/**
 * Whether a value read back (from the file, or from any store's get()) is a
 * whole StoredPolicy: every field that delivery and TLS reporting read, of its
 * type. An entry from another version, a hand edit or another program's
 * schema is ignored (the policy is fetched again) rather than used and failing
 * later, possibly after the MX host has taken the message.
 */
export function isStoredPolicy(value: unknown): value is StoredPolicy {
  if (typeof value !== 'object' || value === null) return false;
  const entry = value as Record<string, unknown>;
  const policy = entry.policy as Record<string, unknown> | undefined;
  return (
    typeof entry.domain === 'string' &&
    typeof entry.id === 'string' &&
    Number.isFinite(entry.expiresAt) &&
    Number.isFinite(entry.fetchedAt) &&
    typeof policy === 'object' &&
    policy !== null &&
    (policy.mode === 'enforce' || policy.mode === 'testing' || policy.mode === 'none') &&
    Array.isArray(policy.mx) &&
    policy.mx.every((pattern) => typeof pattern === 'string') &&
    Number.isFinite(policy.maxAge) &&
    typeof policy.text === 'string'
  );
}
