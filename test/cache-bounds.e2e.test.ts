/**
 * Every cache is bounded, end to end: the DNS answer cache and the envelope
 * checks' caches, fed more distinct domains than their bound through real
 * DNS queries to the fixture server, hold at most the bound, keep the most
 * recently used and ask again for what they let go.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { DEFAULT_TTL_BOUNDS, Resolver } from '../src/dns/resolver.js';
import { EnvelopeChecks } from '../src/envelope.js';
import { resolveEdgeOptions } from '../src/options.js';
import { cacheStats } from '../src/cache.js';
import { parseServer, type DnsServerAddress } from '../src/dns/servers.js';
import type { CheckResult } from '../src/checks/types.js';

// One wildcard per kind of domain: thousands of recipient domains from three records.
const ZONE = `
$TTL 300
$ORIGIN bulk.test.
@          SOA ns.bulk.test. hostmaster.bulk.test. 1 3600 600 86400 60
*          MX  10 mx.bulk.test.
*.null     MX  0 .
mx         A   127.0.0.1
`;

let dns: FixtureDnsServer;
let servers: DnsServerAddress[];
beforeAll(async () => {
  dns = await startDnsServer({ zone: ZONE });
  const server = parseServer(dns.server);
  if (!server) throw new Error(`cannot parse ${dns.server}`);
  servers = [server];
});
afterAll(async () => {
  await dns.close();
});

function clockAt(start: number) {
  const clock = { t: start, now: () => clock.t };
  return clock;
}

const domains = (count: number, suffix = 'bulk.test'): string[] => Array.from({ length: count }, (_, i) => `d${i}.${suffix}`);

describe('the DNS answer cache', () => {
  it('holds at most maxEntries answers, keeps the most recent, and asks again for an evicted one', async () => {
    const resolver = new Resolver({ servers, attemptTimeout: 1000, clock: clockAt(1_000_000), ...DEFAULT_TTL_BOUNDS, maxEntries: 50 });
    const signal = AbortSignal.timeout(10_000);
    dns.resetStats();
    let most = 0;
    for (const batch of [domains(200).slice(0, 100), domains(200).slice(100)]) {
      const lookups = await Promise.all(batch.map((name) => resolver.lookup(name, 'MX', signal)));
      expect(lookups.every((l) => l.kind === 'answer')).toBe(true);
      most = Math.max(most, resolver.cachedAnswers);
    }
    expect(dns.queries).toBe(200);
    expect(most).toBe(50);
    // The fifty most recent are served from the cache...
    await Promise.all(domains(200).slice(150).map((name) => resolver.lookup(name, 'MX', signal)));
    expect(dns.queries).toBe(200);
    // ...the first one was evicted long ago and is asked again.
    await resolver.lookup('d0.bulk.test', 'MX', signal);
    expect(dns.queries).toBe(201);
    expect(resolver.cachedAnswers).toBe(50);
  });

  it('still shares one query among concurrent lookups of a name', async () => {
    const resolver = new Resolver({ servers, attemptTimeout: 1000, clock: clockAt(0), ...DEFAULT_TTL_BOUNDS, maxEntries: 5 });
    dns.resetStats();
    dns.setDefaultFault({ delayMs: 50 });
    try {
      const signal = AbortSignal.timeout(10_000);
      await Promise.all(Array.from({ length: 50 }, () => resolver.lookup('shared.bulk.test', 'MX', signal)));
    } finally {
      dns.clearFaults();
    }
    expect(dns.queries).toBe(1);
  });
});

describe('the envelope checks', () => {
  function envelopeChecks(setting: 'enforce' | 'warn', limits: { verdicts: number; warned: number; plans: number }) {
    const options = resolveEdgeOptions({
      localAddress: '127.0.0.2',
      edge: { dns: { servers: [dns.server], timeout: 2000 }, checks: { spf: 'off', 'sender-mx': 'off', dmarc: 'off', 'recipient-null-mx': setting } },
    });
    const resolver = new Resolver({ servers: options.servers, attemptTimeout: options.attemptTimeout, clock: options.clock, ...DEFAULT_TTL_BOUNDS, maxEntries: 40 });
    return new EnvelopeChecks(options, resolver, limits);
  }
  const edge = { address: '127.0.0.2', ehloName: 'mail.good.test' };
  const held = (name: string, max: number): number[] => cacheStats().filter((s) => s.name === name && s.max === max).map((s) => s.size);

  it('keep at most their bound of verdicts and envelope plans for 300 recipient domains', async () => {
    const checks = envelopeChecks('enforce', { verdicts: 30, warned: 31, plans: 10 });
    let most = { verdicts: 0, plans: 0 };
    for (const domain of domains(300)) {
      const screening = await checks.screen({ from: 'app@good.test', to: [`rcpt@${domain}`] }, edge, { wait: true, warn: () => undefined });
      expect(screening.refused).toEqual([]);
      most = { verdicts: Math.max(most.verdicts, ...held('envelope verdicts', 30)), plans: Math.max(most.plans, ...held('envelope plans', 10)) };
    }
    checks.dispose();
    expect(most).toEqual({ verdicts: 30, plans: 10 });
  });

  it('remember at most their bound of warnings, and still raise each one once per period', async () => {
    const checks = envelopeChecks('warn', { verdicts: 1_000, warned: 20, plans: 10 });
    const warned: CheckResult[] = [];
    const screen = (domain: string) => checks.screen({ from: 'app@good.test', to: [`rcpt@${domain}`] }, edge, { wait: true, warn: (c) => warned.push(c) });
    // Warn-level checks run in the background; each screening is followed by its check's end.
    for (const domain of domains(100, 'null.bulk.test')) {
      await screen(domain);
      await new Promise<void>((resolve) => {
        const poll = (): void => void (warned.some((w) => w.domain === domain) ? resolve() : setTimeout(poll, 1));
        poll();
      });
    }
    expect(warned.map((w) => w.code)).toEqual(Array.from({ length: 100 }, () => 'RECIPIENT_NULL_MX'));
    expect(held('envelope warnings', 20)).toEqual([20]);
    // The most recent one is still remembered: screening it again raises nothing.
    await screen('d99.null.bulk.test');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(warned).toHaveLength(100);
    checks.dispose();
  });
});
