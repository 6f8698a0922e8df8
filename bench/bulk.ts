/**
 * The bulk phase of `npm run load`: a direct-delivery transport mails 30,000
 * distinct recipient domains (one wildcard MX in the fixture zone answers for
 * all of them) and must end with a flat heap. At each quarter of the run it
 * collects garbage and reads the live heap and the entries every cache holds;
 * once the caches have filled to their bounds the heap may not grow further.
 */
import { createTransport } from '../src/create-transport.js';
import { cacheStats } from '../src/cache.js';
import { runConcurrently, type WorldProcess } from './harness.js';

export const BULK_ZONE = `
$TTL 300
$ORIGIN test.
@         IN SOA ns.test. hostmaster.test. ( 1 3600 600 86400 300 )
mail.good IN A   127.0.0.2
*.bulk    IN MX  10 mx.bulk.test.
mx.bulk   IN A   127.0.0.1
$ORIGIN 127.in-addr.arpa.
@         IN SOA ns.test. hostmaster.test. ( 1 3600 600 86400 300 )
2.0.0     IN PTR mail.good.test.
`;

/**
 * Live heap growth allowed from the second quarter to the last. By the second
 * quarter (15,000 domains) every per-domain cache is at its bound (10,000
 * entries at most), so what grows after it is a leak; 8 MB leaves room for
 * what 200 sends in flight hold at a sample and for V8's own bookkeeping,
 * while an unbounded DNS cache alone (1.4 KB per cached MX answer, measured)
 * would add about 20 MB over the last 15,000 domains.
 */
export const HEAP_GROWTH_BOUND_MB = 8;

export interface BulkSample {
  quarter: number;
  sent: number;
  heapMb: number;
  /** Entries held per cache name, summed over live instances, with the bound of the largest. */
  caches: Record<string, { instances: number; entries: number; max: number }>;
}

export interface BulkOptions {
  domains: number;
  concurrency: number;
  log: (text: string) => void;
  expectThat: (ok: boolean, what: string) => void;
}

function sample(quarter: number, sent: number): BulkSample {
  (globalThis as { gc?: () => void }).gc?.();
  const caches: BulkSample['caches'] = {};
  for (const stat of cacheStats()) {
    const row = (caches[stat.name] ??= { instances: 0, entries: 0, max: 0 });
    row.instances++;
    row.entries += stat.size;
    row.max = Math.max(row.max, stat.max);
  }
  return { quarter, sent, heapMb: process.memoryUsage().heapUsed / 2 ** 20, caches };
}

export async function bulk(world: WorldProcess, { domains, concurrency, log, expectThat }: BulkOptions) {
  await world.request('zone', { text: BULK_ZONE });
  await world.request('reset');
  const transport = createTransport({
    direct: true,
    localAddress: '127.0.0.2',
    ignoreTLS: true,
    edge: { mxPort: world.port, dns: { servers: [world.dnsServer] } },
  });
  const samples: BulkSample[] = [sample(0, 0)];
  let overLimit: string[] = [];
  let accepted = 0;
  let failed = 0;
  const failures = new Set<string>();
  let completed = 0;
  const started = Date.now();
  await runConcurrently(domains, concurrency, async (index) => {
    try {
      const info = await transport.sendMail({ from: 'app@good.test', to: `rcpt@d${index}.bulk.test`, subject: `bulk-${index}`, text: 'bulk\n' });
      accepted += info.accepted.length;
    } catch (err) {
      failed++;
      if (failures.size < 5) failures.add(err instanceof Error ? `${(err as { code?: string }).code ?? ''} ${err.message}` : String(err));
    }
    completed++;
    // Sampled as each quarter completes, with the other sends still in flight, as a server would be.
    if (completed >= (samples.length * domains) / 4) {
      const taken = sample(samples.length, completed);
      samples.push(taken);
      for (const [name, row] of Object.entries(taken.caches)) {
        if (row.entries > row.max * row.instances) overLimit.push(`${name}: ${row.entries} entries in ${row.instances} cache(s) of at most ${row.max}`);
      }
    }
  });
  const seconds = (Date.now() - started) / 1000;
  transport.close();
  overLimit = [...new Set(overLimit)];
  const stats = await world.request('stats');
  const heapAt = (quarter: number): number => samples.find((s) => s.quarter === quarter)?.heapMb ?? NaN;
  const growth = heapAt(4) - heapAt(2);
  for (const s of samples) {
    const held = Object.entries(s.caches)
      .map(([name, row]) => `${name} ${row.entries}${row.instances > 1 ? ` in ${row.instances}` : ''}/${row.max}`)
      .join(', ');
    log(`  bulk ${s.quarter === 0 ? 'start' : `Q${s.quarter}`}: ${s.sent} sent, heap after GC ${s.heapMb.toFixed(1)} MB; entries held: ${held || 'none'}`);
  }
  for (const failure of failures) log(`  bulk failure: ${failure}`);
  expectThat(accepted === domains && failed === 0, `bulk: ${accepted} accepted, ${failed} failed, of ${domains} domains`);
  expectThat(stats.messages === accepted, `bulk: sink received ${stats.messages}, callers saw ${accepted}`);
  expectThat(overLimit.length === 0, `bulk: caches over their bound: ${overLimit.join('; ')}`);
  expectThat(growth <= HEAP_GROWTH_BOUND_MB, `bulk: heap grew ${growth.toFixed(1)} MB from Q2 to Q4 (bound ${HEAP_GROWTH_BOUND_MB} MB)`);
  log(
    `bulk: ${domains} distinct recipient domains, direct, concurrency ${concurrency}: ${(domains / seconds).toFixed(0)} msg/s in ${seconds.toFixed(1)} s; ` +
      `accepted ${accepted}, failed ${failed}; heap after GC ${heapAt(1).toFixed(1)} → ${heapAt(2).toFixed(1)} → ${heapAt(3).toFixed(1)} → ${heapAt(4).toFixed(1)} MB ` +
      `(Q2→Q4 ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MB, bound ${HEAP_GROWTH_BOUND_MB} MB); DNS queries ${stats.queries}`,
  );
  return { domains, concurrency, seconds, accepted, failed, samples, heapGrowthQ2toQ4Mb: growth, heapGrowthBoundMb: HEAP_GROWTH_BOUND_MB, overLimit, dnsQueries: stats.queries };
}
