/**
 * The one cache behind every cache in mailedge (DNS answers, check verdicts,
 * memos): entries expire at a time the caller gives, at most `max` are held
 * with the least recently used going first, concurrent misses of one key share
 * one load, and, where the caller asks for it, an entry past its expiry stands
 * in for a reload that failed.
 *
 * Expiry is an epoch time read from an injected clock rather than a relative
 * TTL: a DNS answer keeps the expiry it was first given however often it is
 * handed out, and tests move the clock instead of faking timers. No timer is
 * ever set, so a cache never keeps a process alive.
 */

export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** What a loader hands back: the value and the epoch ms at which it stops being fresh. */
export interface Loaded<V> {
  value: V;
  /** At or before now: handed to the callers waiting on this load, but not kept. */
  expiresAt: number;
}

/** How a load failed: the loader rejected, or resolved with a value `failed` calls a failure. */
export type LoadFailure<V> = { value: V } | { error: unknown };

export interface StaleOnFailure<V> {
  /** Milliseconds past its expiry during which an entry may stand in for a failed reload. */
  window: number;
  /**
   * Whether a loaded value is a failure (a rejected loader always is), given
   * the entry it would replace, if any is still within its window: so a
   * definitive answer can end the old value while a temporary one keeps it.
   * A failure is never kept: it would overwrite the answer it failed to renew.
   */
  failed(value: V, stale: V | undefined): boolean;
  /**
   * What is served in place of a failed reload, from the entry it failed to
   * renew. Kept when its expiry is in the future, still within the original
   * entry's window, so a caller can mark the value stale and say when to try
   * again without ever stretching the window. Default: the old value, not kept.
   */
  serve?(stale: Loaded<V>, failure: LoadFailure<V>): Loaded<V>;
}

export interface CacheOptions<V> {
  /** What the cache holds, for cacheStats(). */
  name: string;
  /** Entries held at most. */
  max: number;
  clock: Clock;
  staleOnFailure?: StaleOnFailure<V>;
}

export interface CacheStats {
  name: string;
  /** Entries held, fresh or within their stale window. */
  size: number;
  max: number;
  /** Loads under way. */
  loading: number;
}

interface Entry<V> {
  value: V;
  expiresAt: number;
  /** When the entry goes for good: its expiry, plus the stale window if there is one. */
  dropAt: number;
}

// Every live cache, weakly, so that a load test or a diagnostic can read their sizes
// without reaching into the objects that own them; a collected cache leaves the set.
const live = new Set<WeakRef<Cache<unknown, NonNullable<unknown>>>>();
const finalizer = new FinalizationRegistry<WeakRef<Cache<unknown, NonNullable<unknown>>>>((ref) => live.delete(ref));

/** Entries held by every cache still alive, one row per cache. */
export function cacheStats(): CacheStats[] {
  const rows: CacheStats[] = [];
  for (const ref of live) {
    const cache = ref.deref();
    if (cache) rows.push({ name: cache.name, size: cache.size, max: cache.max, loading: cache.loading });
    else live.delete(ref);
  }
  return rows;
}

export class Cache<K, V extends NonNullable<unknown>> {
  readonly name: string;
  readonly max: number;
  private readonly clock: Clock;
  private readonly stale: StaleOnFailure<V> | undefined;
  /** Map order is recency order: least recently used first. */
  private readonly entries = new Map<K, Entry<V>>();
  private readonly inflight = new Map<K, Promise<V>>();
  private insertsSinceSweep = 0;
  /** The key last moved to the end of `entries`; while it is held, it is the most recently used. */
  private newest: K | undefined;
  /** The expiry each object value was kept with; weak, so it holds nothing the entries or the callers do not. */
  private readonly expiries = new WeakMap<object, number>();

  constructor(options: CacheOptions<V>) {
    if (!Number.isInteger(options.max) || options.max < 1) throw new RangeError(`cache ${options.name}: max must be a positive integer, not ${options.max}`);
    this.name = options.name;
    this.max = options.max;
    this.clock = options.clock;
    this.stale = options.staleOnFailure;
    const ref = new WeakRef<Cache<unknown, NonNullable<unknown>>>(this as Cache<unknown, NonNullable<unknown>>);
    live.add(ref);
    finalizer.register(this, ref);
  }

  /** Entries held, fresh or within their stale window. */
  get size(): number {
    return this.entries.size;
  }

  /** Loads under way. */
  get loading(): number {
    return this.inflight.size;
  }

  /** The fresh value, now the most recently used; undefined when missing or expired. No I/O. */
  get(key: K): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    const now = this.clock.now();
    if (entry.dropAt <= now) {
      this.entries.delete(key);
      return undefined;
    }
    if (entry.expiresAt <= now) return undefined;
    // Most reads on the send path hit the entry read last: moving it to the end again would change nothing.
    if (this.newest !== key) {
      this.entries.delete(key);
      this.entries.set(key, entry);
      this.newest = key;
    }
    return entry.value;
  }

  /** When the fresh value of `key` expires; undefined when there is none. Leaves recency alone. */
  expiresAt(key: K): number | undefined {
    const entry = this.live(key);
    return entry && entry.expiresAt > this.clock.now() ? entry.expiresAt : undefined;
  }

  /**
   * The expiry an object value was last kept with, whether or not it is still
   * held: what a verdict built from it may last. Undefined for a value never
   * kept (a load that expired at once, a temporary failure).
   */
  expiryOf(value: V): number | undefined {
    return typeof value === 'object' ? this.expiries.get(value) : undefined;
  }

  /** Keeps `value` until `expiresAt` (epoch ms, may be Infinity); an expiry not after now only drops the old entry. */
  set(key: K, value: V, expiresAt: number): void {
    this.store(key, value, expiresAt, expiresAt + (this.stale?.window ?? 0));
  }

  delete(key: K): boolean {
    return this.entries.delete(key);
  }

  /** Forgets every entry; loads under way still finish and keep what they load. */
  clear(): void {
    this.entries.clear();
  }

  /** Drops every entry past its expiry and stale window; returns how many went. */
  prune(): number {
    const now = this.clock.now();
    let dropped = 0;
    for (const [key, entry] of this.entries) {
      if (entry.dropAt <= now) {
        this.entries.delete(key);
        dropped++;
      }
    }
    this.insertsSinceSweep = 0;
    return dropped;
  }

  /**
   * The fresh value, or else the one `loader` produces, kept as it says.
   * Concurrent calls for a key share one load (the first caller's loader
   * runs). A rejected load is kept by no one and rejects every caller, unless
   * a stale entry can stand in for it.
   */
  getOrLoad(key: K, loader: () => Promise<Loaded<V>>): Promise<V> {
    const fresh = this.get(key);
    if (fresh !== undefined) return Promise.resolve(fresh);
    const running = this.inflight.get(key);
    if (running) return running;
    let started: Promise<Loaded<V>>;
    try {
      started = loader();
    } catch (err) {
      started = Promise.reject(err);
    }
    const promise = started
      .then(
        (loaded) => this.settle(key, loaded),
        (error: unknown) => this.standIn(key, { error }),
      )
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, promise);
    return promise;
  }

  private settle(key: K, loaded: Loaded<V>): V {
    if (this.stale?.failed(loaded.value, this.live(key)?.value)) return this.standIn(key, { value: loaded.value });
    this.set(key, loaded.value, loaded.expiresAt);
    return loaded.value;
  }

  /** The stale entry's stand-in for a failed load, or the failure itself when there is none. */
  private standIn(key: K, failure: LoadFailure<V>): V {
    const entry = this.stale ? this.live(key) : undefined;
    if (!entry || !this.stale) {
      if ('error' in failure) throw failure.error;
      return failure.value;
    }
    const old: Loaded<V> = { value: entry.value, expiresAt: entry.expiresAt };
    const served = this.stale.serve ? this.stale.serve(old, failure) : old;
    // A stand-in not kept leaves the old entry for the next failure within the window.
    if (served !== old && served.expiresAt > this.clock.now()) this.store(key, served.value, Math.min(served.expiresAt, entry.dropAt), entry.dropAt);
    return served.value;
  }

  private store(key: K, value: V, expiresAt: number, dropAt: number): void {
    this.entries.delete(key);
    if (expiresAt <= this.clock.now()) return;
    // A sweep every `max` inserts keeps expired entries from lingering at O(1) amortised cost.
    if (++this.insertsSinceSweep >= this.max) this.prune();
    while (this.entries.size >= this.max) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.entries.delete(oldest.value);
    }
    this.entries.set(key, { value, expiresAt, dropAt });
    this.newest = key;
    if (typeof value === 'object') this.expiries.set(value, expiresAt);
  }

  /** The entry while it may still be served, fresh or stale; one past its window is dropped here. */
  private live(key: K): Entry<V> | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.dropAt > this.clock.now()) return entry;
    this.entries.delete(key);
    return undefined;
  }
}
