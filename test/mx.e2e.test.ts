/**
 * MX resolution for direct delivery (issue 5's first piece): preference order,
 * shuffled ties, implicit MX, null MX, failures, through the fixture server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../src/testing/dns-server.js';
import { Resolver, DEFAULT_TTL_BOUNDS, systemClock } from '../src/dns/resolver.js';
import { parseServer } from '../src/dns/servers.js';
import { resolveMx, shuffleEqualPreferences } from '../src/routes/mx.js';

const ZONE = `
$TTL 300
$ORIGIN test.
@             IN SOA ns.test. hostmaster.test. ( 1 3600 600 86400 60 )
multi         IN MX  20 c.mx.multi.test.
              IN MX  10 b.mx.multi.test.
              IN MX  10 a.mx.multi.test.
implicit      IN A   127.0.0.150
nullmx        IN MX  0 .
mixednull     IN MX  0 .
              IN MX  10 real.mixednull.test.
`;

let dns: FixtureDnsServer;
let resolver: Resolver;
const signal = (): AbortSignal => AbortSignal.timeout(2000);

beforeAll(async () => {
  dns = await startDnsServer({ zone: ZONE });
  const server = parseServer(dns.server);
  if (!server) throw new Error('bad server');
  resolver = new Resolver({ servers: [server], attemptTimeout: 300, clock: systemClock, ...DEFAULT_TTL_BOUNDS });
});
afterAll(async () => {
  await dns.close();
});

describe('resolveMx', () => {
  it('orders by preference and shuffles only within a preference', async () => {
    const first = await resolveMx('multi.test', resolver, signal(), () => 0);
    const last = await resolveMx('multi.test', resolver, signal(), () => 0.999);
    expect(first.kind === 'ok' && first.hosts.map((h) => h.exchange)).toEqual(['a.mx.multi.test', 'b.mx.multi.test', 'c.mx.multi.test']);
    expect(last.kind === 'ok' && last.hosts.map((h) => h.exchange)).toEqual(['b.mx.multi.test', 'a.mx.multi.test', 'c.mx.multi.test']);
  });

  it('falls back to the domain itself when it has no MX (implicit MX)', async () => {
    expect(await resolveMx('implicit.test', resolver, signal())).toMatchObject({ kind: 'ok', hosts: [{ exchange: 'implicit.test', implicit: true }] });
  });

  it('recognises a null MX, and ignores one mixed with real MX records', async () => {
    expect(await resolveMx('nullmx.test', resolver, signal())).toMatchObject({ kind: 'null-mx' });
    expect(await resolveMx('mixednull.test', resolver, signal())).toMatchObject({ kind: 'ok', hosts: [{ exchange: 'real.mixednull.test' }] });
  });

  it('tells a missing domain (permanent) from a DNS failure (temporary)', async () => {
    expect(await resolveMx('missing.test', resolver, signal())).toMatchObject({ kind: 'unresolved', permanent: true });
    dns.setFault('servfail.test', { rcode: 'SERVFAIL' });
    expect(await resolveMx('servfail.test', resolver, signal())).toMatchObject({ kind: 'unresolved', permanent: false });
  });

  it('shuffles ties uniformly enough', () => {
    const records = [1, 2, 3].map((n) => ({ preference: 10, exchange: `mx${n}.test` }));
    const firsts = new Map<string, number>();
    let seed = 1;
    const random = (): number => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    for (let i = 0; i < 3000; i++) {
      const first = shuffleEqualPreferences(records, random)[0]?.exchange ?? '';
      firsts.set(first, (firsts.get(first) ?? 0) + 1);
    }
    for (const count of firsts.values()) expect(count).toBeGreaterThan(800);
  });
});
