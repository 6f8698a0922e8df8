/**
 * `npm run load`: nothing lost under load, bounded memory (also across
 * 30,000 recipient domains, bench/bulk.ts), no re-verification stampede, no message under a name that was not confirmed at the time, and
 * serve-stale then refusal when DNS goes away. Prints what it measured and
 * exits non-zero when an invariant breaks.
 */
import { cpus } from 'node:os';
import { createTransport, type MailedgeTransporter as MailedgeTransport } from '../src/create-transport.js';
import type { MailedgeOptions } from '../src/options.js';
import { MailedgeError } from '../src/errors.js';
import { flag, runConcurrently, runUntil, startWorldProcess, type WorldProcess } from './harness.js';
import { bulk } from './bulk.js';

const args = process.argv.slice(2);
const MESSAGES = Number(flag(args, 'messages') ?? 20_000);
const CONCURRENCY = Number(flag(args, 'concurrency') ?? 200);
const SOAK_SECONDS = Number(flag(args, 'soak') ?? 30);
const JSON_OUTPUT = args.includes('--json');
const BULK_DOMAINS = Number(flag(args, 'domains') ?? 30_000);
const PHASES = (flag(args, 'phases') ?? 'volume,bulk,soak,outage').split(',');

const zone = (ttl: number, name: string): string => `
$TTL ${ttl}
$ORIGIN test.
@            IN SOA ns.test. hostmaster.test. ( 1 3600 600 86400 ${ttl} )
mail.good    IN A   127.0.0.2
renamed.good IN A   127.0.0.2
$ORIGIN 127.in-addr.arpa.
@            IN SOA ns.test. hostmaster.test. ( 1 3600 600 86400 ${ttl} )
2.0.0        IN PTR ${name}.
`;

const failures: string[] = [];
function expectThat(ok: boolean, what: string): void {
  if (!ok) failures.push(what);
}
const log = (text: string): void => {
  if (!JSON_OUTPUT) process.stdout.write(`${text}\n`);
};

/** The transport every phase drives: pooled, bound to the confirmed 127.0.0.2. */
function pooledTransport(world: WorldProcess, dns: NonNullable<NonNullable<MailedgeOptions['edge']>['dns']> = {}): MailedgeTransport {
  return createTransport({
    host: '127.0.0.1',
    port: world.port,
    localAddress: '127.0.0.2',
    ignoreTLS: true,
    pool: true,
    maxConnections: 5,
    edge: { dns: { servers: [world.dnsServer], ...dns } },
  });
}

async function volume(world: WorldProcess) {
  await world.request('reset');
  const transport = pooledTransport(world);
  let resolved = 0;
  let rejected = 0;
  let lostMessage = 0;
  let completed = 0;
  const quarters: number[][] = [[], [], [], []];
  // Memory is read after a full collection when the script runs with --expose-gc (npm run load
  // does): what is left then is what the transport holds on to, not garbage not yet collected.
  const collect = (globalThis as { gc?: () => void }).gc;
  const heapQuarters: number[][] = [[], [], [], []];
  const sampler = setInterval(() => {
    collect?.();
    const quarter = Math.min(3, Math.floor((completed / MESSAGES) * 4));
    const memory = process.memoryUsage();
    quarters[quarter]?.push(memory.rss);
    heapQuarters[quarter]?.push(memory.heapUsed);
  }, 250);
  const started = Date.now();
  await runConcurrently(MESSAGES, CONCURRENCY, async (index) => {
    const message = { from: 'app@good.test', to: 'sink@example.test', subject: `load-${index}`, text: 'load body\n' };
    try {
      await transport.sendMail(message);
      resolved++;
    } catch (err) {
      rejected++;
      if (!(err instanceof MailedgeError) || err.mail !== message) lostMessage++;
    }
    completed++;
  });
  clearInterval(sampler);
  transport.close();
  const seconds = (Date.now() - started) / 1000;
  const stats = await world.request('stats');
  const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
  const firstRss = mean(quarters[0] ?? []) / 2 ** 20;
  const lastRss = mean(quarters[3] ?? []) / 2 ** 20;
  const firstHeap = mean(heapQuarters[0] ?? []) / 2 ** 20;
  const lastHeap = mean(heapQuarters[3] ?? []) / 2 ** 20;
  const result = {
    messages: MESSAGES,
    concurrency: CONCURRENCY,
    seconds,
    perSecond: MESSAGES / seconds,
    resolved,
    rejected,
    receivedBySink: stats.messages,
    duplicates: stats.duplicates,
    rejectedWithoutMessage: lostMessage,
    rssFirstQuarterMb: firstRss,
    rssLastQuarterMb: lastRss,
    rssGrowth: lastRss / firstRss - 1,
    heapFirstQuarterMb: firstHeap,
    heapLastQuarterMb: lastHeap,
    dnsQueries: stats.queries,
  };
  expectThat(resolved + rejected === MESSAGES, `volume: ${resolved} + ${rejected} calls ended, of ${MESSAGES}`);
  expectThat(stats.messages === resolved, `volume: sink received ${stats.messages}, callers saw ${resolved} accepted`);
  expectThat(stats.duplicates === 0, `volume: ${stats.duplicates} duplicates`);
  expectThat(lostMessage === 0, `volume: ${lostMessage} rejections without the message`);
  expectThat(result.rssGrowth <= 0.2, `volume: RSS grew ${(result.rssGrowth * 100).toFixed(1)}% from first to last quarter`);
  log(`volume: ${MESSAGES} messages at concurrency ${CONCURRENCY}: ${result.perSecond.toFixed(0)} msg/s; accepted ${resolved}, rejected ${rejected}, sink ${stats.messages}, duplicates ${stats.duplicates}; RSS ${firstRss.toFixed(0)} MB → ${lastRss.toFixed(0)} MB (${(result.rssGrowth * 100).toFixed(1)}%), live heap ${firstHeap.toFixed(1)} MB → ${lastHeap.toFixed(1)} MB; DNS queries ${stats.queries}`);
  return result;
}

async function soak(world: WorldProcess) {
  await world.request('zone', { text: zone(1, 'mail.good.test') });
  await world.request('reset');
  const history: Array<{ at: number; name: string }> = [{ at: Date.now(), name: 'mail.good.test' }];
  const transport = pooledTransport(world, { minTtl: 1 });
  const started = Date.now();
  const endAt = started + SOAK_SECONDS * 1000;
  const renameAt = started + (SOAK_SECONDS * 1000) / 3;
  let renamed = false;
  let resolved = 0;
  let rejected = 0;
  let index = 0;
  const refusals = new Set<string>();
  await runUntil(endAt, 20, async () => {
    if (!renamed && Date.now() >= renameAt) {
      renamed = true;
      await world.request('zone', { text: zone(1, 'renamed.good.test') });
      history.push({ at: Date.now(), name: 'renamed.good.test' });
    }
    try {
      await transport.sendMail({ from: 'app@good.test', to: 'sink@example.test', subject: `soak-${index++}`, text: 'soak\n' });
      resolved++;
    } catch (err) {
      rejected++;
      refusals.add(err instanceof MailedgeError ? `${err.code}: ${err.message}` : String(err));
    }
  });
  transport.close();
  const stats = await world.request('stats', { sessions: true });
  // A name is confirmed at time t when the zone named it at some point in the
  // TTL (1 s) before t, plus 0.5 s for the query and the session in flight.
  const window = 1500;
  const nameAt = (t: number): string => [...history].reverse().find((h) => h.at <= t)?.name ?? '';
  const confirmedAround = (name: string, t: number): boolean =>
    nameAt(t) === name || nameAt(t - window) === name || history.some((h) => h.name === name && h.at >= t - window && h.at <= t);
  let unconfirmed = 0;
  for (const session of stats.sessions ?? []) {
    for (const at of session.acceptedAt) if (!confirmedAround(session.ehlo, at)) unconfirmed++;
  }
  const ptrTimes = stats.ptrQueryTimes;
  const gaps = ptrTimes.slice(1).map((t, i) => t - (ptrTimes[i] ?? t));
  const minGap = gaps.length ? Math.min(...gaps) : Infinity;
  const result = {
    seconds: SOAK_SECONDS,
    resolved,
    rejected,
    receivedBySink: stats.messages,
    sessions: stats.sessions?.length ?? 0,
    names: [...new Set((stats.sessions ?? []).map((s) => s.ehlo))],
    ptrQueries: ptrTimes.length,
    minMsBetweenPtrQueries: minGap,
    messagesUnderUnconfirmedName: unconfirmed,
    refusals: [...refusals],
  };
  for (const refusal of refusals) log(`  soak refusal: ${refusal}`);
  expectThat(unconfirmed === 0, `soak: ${unconfirmed} messages under a name not confirmed at the time`);
  expectThat(ptrTimes.length <= SOAK_SECONDS + 2, `soak: ${ptrTimes.length} PTR queries in ${SOAK_SECONDS} s with TTL 1 s`);
  expectThat(ptrTimes.length >= SOAK_SECONDS / 2, `soak: only ${ptrTimes.length} PTR queries: identities were not re-verified as they expired`);
  expectThat(minGap >= 900, `soak: two PTR queries ${minGap} ms apart: more than one re-verification per expiry`);
  expectThat(stats.messages === resolved, `soak: sink received ${stats.messages}, callers saw ${resolved}`);
  expectThat(result.names.includes('renamed.good.test'), 'soak: the new name was never used after the PTR changed');
  log(`soak: ${SOAK_SECONDS} s, TTL 1 s, PTR renamed at ${(renameAt - started) / 1000} s: ${resolved} sent, ${rejected} refused; ${result.sessions} sessions, names ${result.names.join(', ')}; ${ptrTimes.length} PTR queries, at least ${minGap} ms apart; messages under an unconfirmed name: ${unconfirmed}`);
  return result;
}

async function outage(world: WorldProcess) {
  await world.request('zone', { text: zone(1, 'mail.good.test') });
  await world.request('reset');
  const staleFor = 4;
  const transport = pooledTransport(world, { minTtl: 1, staleFor, timeout: 500 });
  const started = Date.now();
  const stopAt = started + 5000;
  const endAt = stopAt + (staleFor + 5) * 1000;
  let stoppedAt = 0;
  let lastAccepted = 0;
  let firstRefused = 0;
  let resolved = 0;
  let staleSends = 0;
  let refusedTemp = 0;
  let refusedOther = 0;
  let refusedWithoutMessage = 0;
  let acceptedAfterRefusal = 0;
  const otherCodes = new Set<string>();
  await runUntil(endAt, 20, async () => {
    const now = Date.now();
    if (!stoppedAt && now >= stopAt) {
      stoppedAt = now;
      await world.request('stopDns');
    }
    const message = { from: 'app@good.test', to: 'sink@example.test', subject: `outage-${now}-${Math.random()}`, text: 'outage\n' };
    try {
      const info = await transport.sendMail(message);
      resolved++;
      if (info.edge.stale) staleSends++;
      lastAccepted = now;
      // Sends admitted before the first refusal may finish after it; a send started after it may not pass.
      if (firstRefused && now > firstRefused) acceptedAfterRefusal++;
    } catch (err) {
      if (!firstRefused) firstRefused = now;
      if (err instanceof MailedgeError && err.code !== 'DNS_TEMPFAIL') otherCodes.add(`${err.code}: ${err.message}`);
      if (err instanceof MailedgeError && err.code === 'DNS_TEMPFAIL' && !err.permanent) refusedTemp++;
      else refusedOther++;
      if (!(err instanceof MailedgeError) || err.mail !== message) refusedWithoutMessage++;
    }
    await new Promise((r) => setTimeout(r, 5));
  });
  transport.close();
  const stats = await world.request('stats');
  const result = {
    staleFor,
    resolved,
    staleSends,
    refusedDnsTempfail: refusedTemp,
    refusedOther,
    refusedWithoutMessage,
    acceptedAfterRefusal,
    lastAcceptedSecondsAfterStop: (lastAccepted - stoppedAt) / 1000,
    firstRefusedSecondsAfterStop: (firstRefused - stoppedAt) / 1000,
    receivedBySink: stats.messages,
    duplicates: stats.duplicates,
    otherRefusals: [...otherCodes],
  };
  expectThat(stats.duplicates === 0, `outage: ${stats.duplicates} duplicates`);
  expectThat(staleSends > 0, 'outage: no send was served stale after DNS stopped');
  expectThat(refusedTemp > 0, 'outage: no send was refused after the stale window');
  expectThat(refusedOther === 0, `outage: ${refusedOther} refusals with a code other than DNS_TEMPFAIL`);
  expectThat(refusedWithoutMessage === 0, `outage: ${refusedWithoutMessage} refusals without the message`);
  expectThat(acceptedAfterRefusal === 0, `outage: ${acceptedAfterRefusal} sends accepted after the first refusal`);
  expectThat(result.lastAcceptedSecondsAfterStop <= staleFor + 1 + 1, `outage: accepted ${result.lastAcceptedSecondsAfterStop} s after DNS stopped (TTL 1 s + staleFor ${staleFor} s)`);
  expectThat(stats.messages === resolved, `outage: sink received ${stats.messages}, callers saw ${resolved}`);
  for (const other of otherCodes) log(`  other refusal: ${other}`);
  log(`outage: DNS stopped at 5 s, staleFor ${staleFor} s: ${resolved} sent (${staleSends} stale), last ${result.lastAcceptedSecondsAfterStop.toFixed(1)} s after the stop; then ${refusedTemp} refused with DNS_TEMPFAIL, each with its message; other refusals ${refusedOther}`);
  return result;
}

async function main(): Promise<void> {
  const world = await startWorldProcess(zone(300, 'mail.good.test'));
  try {
    log(`mailedge load: ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`);
    const results = {
      volume: PHASES.includes('volume') ? await volume(world) : null,
      bulk: PHASES.includes('bulk') ? await bulk(world, { domains: BULK_DOMAINS, concurrency: CONCURRENCY, log, expectThat }) : null,
      soak: PHASES.includes('soak') ? await soak(world) : null,
      outage: PHASES.includes('outage') ? await outage(world) : null,
    };
    if (JSON_OUTPUT) process.stdout.write(`${JSON.stringify({ ...results, failures }, null, 2)}\n`);
    log(failures.length === 0 ? 'load: every invariant held' : `load: ${failures.length} invariant(s) broken:\n  ${failures.join('\n  ')}`);
    process.exitCode = failures.length === 0 ? 0 : 1;
  } finally {
    world.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`load failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
