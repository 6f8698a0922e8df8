import { describe, expect, it } from 'vitest';
import { Cache, cacheStats, type CacheOptions, type Loaded } from '../src/cache.js';

function clockAt(start: number) {
  const clock = { t: start, now: () => clock.t };
  return clock;
}

function cache<V extends NonNullable<unknown>>(options: Partial<CacheOptions<V>> & { clock: { now(): number } }): Cache<string, V> {
  return new Cache<string, V>({ name: 'test', max: 100, ...options });
}

/** A loader whose promise the test settles, counting how often it ran. */
function deferredLoader<V>() {
  const calls: Array<{ resolve: (loaded: Loaded<V>) => void; reject: (err: unknown) => void }> = [];
  const loader = (): Promise<Loaded<V>> => new Promise((resolve, reject) => calls.push({ resolve, reject }));
  return { loader, calls };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('TTL from the caller, on an injected clock', () => {
  it('serves a value until its expiry and not at it', () => {
    const clock = clockAt(1_000);
    const c = cache<string>({ clock });
    c.set('a', 'x', 1_500);
    clock.t = 1_499;
    expect(c.get('a')).toBe('x');
    expect(c.expiresAt('a')).toBe(1_500);
    clock.t = 1_500;
    expect(c.get('a')).toBeUndefined();
    expect(c.expiresAt('a')).toBeUndefined();
    // Expired and without a stale window: dropped on that read.
    expect(c.size).toBe(0);
  });

  it('keeps nothing whose expiry is not after now, and that drops the entry it replaces', () => {
    const clock = clockAt(1_000);
    const c = cache<string>({ clock });
    c.set('a', 'x', 2_000);
    c.set('a', 'y', 1_000);
    expect(c.get('a')).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it('keeps a value with an infinite expiry until it is evicted', () => {
    const clock = clockAt(0);
    const c = cache<string>({ clock, max: 2 });
    c.set('a', 'x', Infinity);
    clock.t = Number.MAX_SAFE_INTEGER;
    expect(c.get('a')).toBe('x');
  });

  it('drops expired entries in a sweep every `max` inserts, without being read', () => {
    const clock = clockAt(0);
    const c = cache<number>({ clock, max: 10 });
    for (let i = 0; i < 5; i++) c.set(`old${i}`, i, 100);
    clock.t = 200;
    // Five more inserts make ten since the last sweep: the five expired ones go.
    for (let i = 0; i < 5; i++) c.set(`new${i}`, i, 1_000);
    expect(c.size).toBe(5);
    expect(c.prune()).toBe(0);
  });
});

describe('size bound, least recently used first', () => {
  it('never holds more than max and evicts in recency order', () => {
    const clock = clockAt(0);
    const c = cache<number>({ clock, max: 3 });
    c.set('a', 1, 1_000);
    c.set('b', 2, 1_000);
    c.set('c', 3, 1_000);
    // A read makes 'a' the most recently used: 'b' is now the least.
    expect(c.get('a')).toBe(1);
    c.set('d', 4, 1_000);
    expect(c.size).toBe(3);
    expect(c.get('b')).toBeUndefined();
    c.set('e', 5, 1_000);
    expect(c.get('c')).toBeUndefined();
    expect([c.get('a'), c.get('d'), c.get('e')]).toEqual([1, 4, 5]);
  });

  it('counts a re-set key once and makes it the most recent', () => {
    const clock = clockAt(0);
    const c = cache<number>({ clock, max: 2 });
    c.set('a', 1, 1_000);
    c.set('b', 2, 1_000);
    c.set('a', 10, 1_000);
    c.set('c', 3, 1_000);
    expect(c.size).toBe(2);
    expect(c.get('a')).toBe(10);
    expect(c.get('b')).toBeUndefined();
  });

  it('keeps recency exact when the entry read is the one read last (reads that move nothing)', () => {
    const clock = clockAt(0);
    const c = cache<number>({ clock, max: 3 });
    c.set('a', 1, Infinity);
    c.set('b', 2, Infinity);
    c.set('c', 3, Infinity);
    // c is the newest already; reading it again and again changes nothing.
    expect(c.get('c')).toBe(3);
    expect(c.get('c')).toBe(3);
    expect(c.get('a')).toBe(1); // a is now the most recent: b is the least
    expect(c.get('a')).toBe(1);
    c.delete('a');
    c.set('d', 4, Infinity); // b, c, d
    expect(c.get('c')).toBe(3); // b, d, c
    c.set('e', 5, Infinity); // evicts b
    expect([c.get('b'), c.get('d'), c.get('c'), c.get('e')]).toEqual([undefined, 4, 3, 5]);
    c.clear();
    c.set('e', 6, Infinity);
    expect(c.get('e')).toBe(6);
    expect(c.size).toBe(1);
  });

  it('expiryOf() gives the expiry an object value was kept with, even once evicted; none for one never kept', () => {
    const clock = clockAt(0);
    const c = new Cache<string, { v: number }>({ name: 'test', max: 1, clock });
    const first = { v: 1 };
    const second = { v: 2 };
    c.set('a', first, 500);
    c.set('b', second, 900); // evicts a
    expect(c.get('a')).toBeUndefined();
    expect(c.expiryOf(first)).toBe(500);
    expect(c.expiryOf(second)).toBe(900);
    const never = { v: 3 };
    c.set('c', never, 0); // not after now: not kept
    expect(c.expiryOf(never)).toBeUndefined();
  });

  it('expiresAt() does not touch recency', () => {
    const clock = clockAt(0);
    const c = cache<number>({ clock, max: 2 });
    c.set('a', 1, 1_000);
    c.set('b', 2, 1_000);
    c.expiresAt('a');
    c.set('c', 3, 1_000);
    expect(c.get('a')).toBeUndefined();
  });

  it('refuses a bound that is not a positive integer', () => {
    expect(() => cache({ clock: clockAt(0), max: 0 })).toThrow(RangeError);
    expect(() => cache({ clock: clockAt(0), max: 1.5 })).toThrow(RangeError);
  });

  it('shows up in cacheStats() with its size and bound', () => {
    const c = new Cache<string, number>({ name: 'stats probe', max: 7, clock: clockAt(0) });
    c.set('a', 1, 10);
    expect(cacheStats().filter((s) => s.name === 'stats probe')).toEqual([{ name: 'stats probe', size: 1, max: 7, loading: 0 }]);
  });
});

describe('getOrLoad: single flight', () => {
  it('runs one load for concurrent misses of a key and gives every caller its value', async () => {
    const clock = clockAt(0);
    const c = cache<string>({ clock });
    const { loader, calls } = deferredLoader<string>();
    const waiting = Array.from({ length: 50 }, () => c.getOrLoad('k', loader));
    expect(calls).toHaveLength(1);
    expect(c.loading).toBe(1);
    calls[0]?.resolve({ value: 'v', expiresAt: 100 });
    expect(await Promise.all(waiting)).toEqual(Array.from({ length: 50 }, () => 'v'));
    expect(c.loading).toBe(0);
    // Kept: the next call is a hit.
    expect(await c.getOrLoad('k', loader)).toBe('v');
    expect(calls).toHaveLength(1);
  });

  it('loads different keys separately', () => {
    const c = cache<string>({ clock: clockAt(0) });
    const { loader, calls } = deferredLoader<string>();
    void c.getOrLoad('a', loader);
    void c.getOrLoad('b', loader);
    expect(calls).toHaveLength(2);
  });

  it('hands out a value whose expiry is already past to the waiting callers, and keeps none', async () => {
    const clock = clockAt(0);
    const c = cache<string>({ clock });
    let runs = 0;
    const loader = async (): Promise<Loaded<string>> => ({ value: `run${++runs}`, expiresAt: clock.now() });
    expect(await c.getOrLoad('k', loader)).toBe('run1');
    expect(await c.getOrLoad('k', loader)).toBe('run2');
    expect(c.size).toBe(0);
  });

  it('does not cache a failed load: every waiting caller gets the error, the next call loads again', async () => {
    const c = cache<string>({ clock: clockAt(0) });
    const { loader, calls } = deferredLoader<string>();
    const first = c.getOrLoad('k', loader);
    const second = c.getOrLoad('k', loader);
    calls[0]?.reject(new Error('boom'));
    await expect(first).rejects.toThrow('boom');
    await expect(second).rejects.toThrow('boom');
    const third = c.getOrLoad('k', loader);
    expect(calls).toHaveLength(2);
    calls[1]?.resolve({ value: 'ok', expiresAt: 10 });
    expect(await third).toBe('ok');
  });

  it('turns a loader that throws synchronously into a rejection', async () => {
    const c = cache<string>({ clock: clockAt(0) });
    await expect(
      c.getOrLoad('k', () => {
        throw new Error('sync');
      }),
    ).rejects.toThrow('sync');
    expect(c.loading).toBe(0);
  });

  it('lets a load finished after clear() keep its value', async () => {
    const c = cache<string>({ clock: clockAt(0) });
    const { loader, calls } = deferredLoader<string>();
    const pending = c.getOrLoad('k', loader);
    c.clear();
    calls[0]?.resolve({ value: 'v', expiresAt: 10 });
    await pending;
    expect(c.get('k')).toBe('v');
  });
});

describe('stale on failure, where the caller asks for it', () => {
  type Answer = { ok: boolean; text: string };
  const failed = (a: Answer): boolean => !a.ok;

  it('serves the expired value when a reload fails, within the window, and keeps the failure out', async () => {
    const clock = clockAt(0);
    const c = cache<Answer>({ clock, staleOnFailure: { window: 5_000, failed } });
    c.set('k', { ok: true, text: 'old' }, 1_000);
    clock.t = 3_000;
    expect(c.get('k')).toBeUndefined();
    expect(await c.getOrLoad('k', async () => ({ value: { ok: false, text: 'servfail' }, expiresAt: 3_000 }))).toEqual({ ok: true, text: 'old' });
    expect(await c.getOrLoad('k', async () => Promise.reject(new Error('timeout')))).toEqual({ ok: true, text: 'old' });
    // A success replaces it.
    expect(await c.getOrLoad('k', async () => ({ value: { ok: true, text: 'new' }, expiresAt: 10_000 }))).toEqual({ ok: true, text: 'new' });
    expect(c.get('k')).toEqual({ ok: true, text: 'new' });
  });

  it('gives the failure itself once the window is over, and drops the old entry', async () => {
    const clock = clockAt(0);
    const c = cache<Answer>({ clock, staleOnFailure: { window: 5_000, failed } });
    c.set('k', { ok: true, text: 'old' }, 1_000);
    clock.t = 6_000;
    expect(await c.getOrLoad('k', async () => ({ value: { ok: false, text: 'servfail' }, expiresAt: 6_000 }))).toEqual({ ok: false, text: 'servfail' });
    await expect(c.getOrLoad('k', async () => Promise.reject(new Error('timeout')))).rejects.toThrow('timeout');
    expect(c.size).toBe(0);
  });

  it('with no entry to stand in, a failed value is handed out and not kept', async () => {
    const clock = clockAt(0);
    const c = cache<Answer>({ clock, staleOnFailure: { window: 5_000, failed } });
    expect(await c.getOrLoad('k', async () => ({ value: { ok: false, text: 'servfail' }, expiresAt: 99_000 }))).toEqual({ ok: false, text: 'servfail' });
    expect(c.size).toBe(0);
  });

  it('lets serve() mark the stand-in and keep it until a retry time, never past the original window', async () => {
    const clock = clockAt(0);
    const c = cache<Answer>({
      clock,
      staleOnFailure: {
        window: 5_000,
        failed,
        serve: (stale, failure) => ({
          value: { ok: true, text: `${stale.value.text} (stale: ${'error' in failure ? String(failure.error) : failure.value.text})` },
          expiresAt: clock.now() + 10_000,
        }),
      },
    });
    c.set('k', { ok: true, text: 'old' }, 1_000);
    clock.t = 2_000;
    let loads = 0;
    const failing = async (): Promise<Loaded<Answer>> => {
      loads++;
      return { value: { ok: false, text: 'servfail' }, expiresAt: clock.now() };
    };
    expect((await c.getOrLoad('k', failing)).text).toBe('old (stale: servfail)');
    // Kept as fresh until the window's end (6 s), not the 12 s serve() asked for.
    clock.t = 5_999;
    expect((await c.getOrLoad('k', failing)).text).toBe('old (stale: servfail)');
    expect(loads).toBe(1);
    expect(c.expiresAt('k')).toBe(6_000);
    clock.t = 6_000;
    expect((await c.getOrLoad('k', failing)).text).toBe('servfail');
    expect(loads).toBe(2);
  });

  it('lets failed() see the entry it would replace: a definitive answer ends the old value at once', async () => {
    const clock = clockAt(0);
    type Named = { name: string; temporary: boolean };
    const c = cache<Named>({ clock, staleOnFailure: { window: 5_000, failed: (fresh, stale) => fresh.temporary && stale !== undefined && !stale.temporary } });
    c.set('k', { name: 'mail.old', temporary: false }, 1_000);
    clock.t = 2_000;
    expect((await c.getOrLoad('k', async () => ({ value: { name: '', temporary: true }, expiresAt: 2_000 }))).name).toBe('mail.old');
    // A definitive new answer is no failure: it replaces the old name within the window.
    expect((await c.getOrLoad('k', async () => ({ value: { name: 'mail.new', temporary: false }, expiresAt: 9_000 }))).name).toBe('mail.new');
    expect(c.get('k')?.name).toBe('mail.new');
  });

  it('counts stale entries against the bound', () => {
    const clock = clockAt(0);
    const c = cache<Answer>({ clock, max: 2, staleOnFailure: { window: 5_000, failed } });
    c.set('a', { ok: true, text: 'a' }, 1_000);
    c.set('b', { ok: true, text: 'b' }, 1_000);
    clock.t = 2_000;
    c.set('c', { ok: true, text: 'c' }, 3_000);
    expect(c.size).toBe(2);
  });

  it('without the option, an expired value never stands in', async () => {
    const clock = clockAt(0);
    const c = cache<string>({ clock });
    c.set('k', 'old', 1_000);
    clock.t = 1_001;
    await expect(c.getOrLoad('k', async () => Promise.reject(new Error('down')))).rejects.toThrow('down');
  });
});

describe('a loader that awaits', () => {
  it('shares one load across callers that arrive while it is under way', async () => {
    const c = cache<number>({ clock: clockAt(0) });
    let runs = 0;
    const loader = async (): Promise<Loaded<number>> => {
      runs++;
      await tick();
      return { value: runs, expiresAt: 100 };
    };
    const first = c.getOrLoad('k', loader);
    await Promise.resolve();
    const second = c.getOrLoad('k', loader);
    expect(await Promise.all([first, second])).toEqual([1, 1]);
    expect(runs).toBe(1);
  });
});
