/**
 * `npm run bench`: raw Nodemailer against mailedge with identical options, in
 * the same run and in alternating order, through a sink receiver on loopback.
 * Prints ratios, which survive a noisy machine better than absolute numbers.
 */
import { cpus } from 'node:os';
import nodemailer from 'nodemailer';
import type { SMTPSentMessageInfo, Transporter } from 'nodemailer';
import { createTransport } from '../src/create-transport.js';
import { preflight } from '../src/preflight.js';
import { BENCH_HOSTS, BENCH_ZONE, flag, median, percentile, runConcurrently, startWorldProcess, type WorldProcess } from './harness.js';
// Message identity (issue 11): a run with DKIM signing on both sides, and the prediction's own cost per message.
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolveEdgeOptions } from '../src/options.js';
import { createResolver } from '../src/identity.js';
import { MessageAuthenticator } from '../src/message/verdict.js';

/** The test key (fixtures/dkim, public test material) and the records that make good.test pass SPF, DKIM and DMARC. */
const DKIM_KEY = readFileSync(new URL('../../fixtures/dkim/brand-s1.pem', import.meta.url), 'utf8');
const DKIM = { domainName: 'good.test', keySelector: 's1', privateKey: DKIM_KEY };
const DKIM_PUBLIC = createPublicKey(DKIM_KEY).export({ type: 'spki', format: 'der' }).toString('base64');
const AUTH_ZONE = `
$ORIGIN test.
good             IN TXT "v=spf1 ip4:127.0.0.0/24 -all"
_dmarc.good      IN TXT "v=DMARC1; p=reject"
s1._domainkey.good IN TXT ${(`v=DKIM1; k=rsa; p=${DKIM_PUBLIC}`.match(/.{1,250}/g) ?? []).map((s) => `"${s}"`).join(' ')}
`;

type Kind = 'raw' | 'mailedge';
/** pooled-dkim: pooled, both sides signing with the same key; mailedge as to a final receiver, so SPF, DKIM and DMARC are all predicted. */
type Mode = 'pooled' | 'unpooled' | 'pooled-dkim';

interface RunResult {
  kind: Kind;
  mode: Mode;
  round: number;
  messages: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
  peakRssMb: number;
  /** PTR and forward queries of the edge identity. */
  identityQueries: number;
  /** Everything else: the envelope checks' lookups (sender and recipient domains). */
  envelopeQueries: number;
  failures: number;
}

const args = process.argv.slice(2);
const MESSAGES = Number(flag(args, 'messages') ?? 5000);
const ROUNDS = Number(flag(args, 'rounds') ?? 3);
const CONCURRENCY = Number(flag(args, 'concurrency') ?? 50);
const JSON_OUTPUT = args.includes('--json');
/** --modes pooled,pooled-dkim: only those runs (a quicker comparison on a busy machine). */
const MODES = (flag(args, 'modes') ?? 'pooled,unpooled,pooled-dkim').split(',').filter((m): m is Mode => m === 'pooled' || m === 'unpooled' || m === 'pooled-dkim');

let runCount = 0;

function transportFor(kind: Kind, mode: Mode, world: WorldProcess): { transport: Transporter<SMTPSentMessageInfo> | ReturnType<typeof createTransport>; host: { address: string; name: string } } {
  // A fresh source address per run: unpooled runs leave thousands of sockets in
  // TIME_WAIT on their address, which slows every later bind() on that address.
  const host = BENCH_HOSTS[runCount++ % BENCH_HOSTS.length] ?? { address: '127.0.0.2', name: 'mail.good.test' };
  const common = {
    host: '127.0.0.1',
    port: world.port,
    localAddress: host.address,
    ignoreTLS: true,
    ...(mode === 'pooled' || mode === 'pooled-dkim' ? { pool: true, maxConnections: 5 } : {}),
    ...(mode === 'pooled-dkim' ? { dkim: DKIM } : {}),
  };
  if (kind === 'raw') return { transport: nodemailer.createTransport({ ...common, name: host.name }), host };
  const receiver = mode === 'pooled-dkim' ? { receiver: 'final' as const } : {};
  return { transport: createTransport({ ...common, edge: { ...receiver, dns: { servers: [world.dnsServer] } } }), host };
}

async function run(kind: Kind, mode: Mode, round: number, world: WorldProcess): Promise<RunResult> {
  await world.request('reset');
  const { transport, host } = transportFor(kind, mode, world);
  const latencies: number[] = [];
  let failures = 0;
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 20);
  const started = process.hrtime.bigint();
  await runConcurrently(MESSAGES, CONCURRENCY, async (index) => {
    const t0 = process.hrtime.bigint();
    try {
      await transport.sendMail({ from: 'app@good.test', to: 'sink@example.test', subject: `${kind}-${mode}-${round}-${index}`, text: 'benchmark body\n' });
    } catch {
      failures++;
    }
    latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  clearInterval(sampler);
  transport.close();
  const stats = await world.request('stats');
  latencies.sort((a, b) => a - b);
  return {
    kind,
    mode,
    round,
    messages: MESSAGES,
    seconds,
    perSecond: MESSAGES / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    peakRssMb: peakRss / 2 ** 20,
    identityQueries: identityQueries(stats.byQuestion, host),
    envelopeQueries: stats.queries - identityQueries(stats.byQuestion, host),
    failures: failures + (MESSAGES - failures - stats.messages),
  };
}

function identityQueries(byQuestion: Record<string, number>, host: { address: string; name: string }): number {
  const reverse = `${host.address.split('.').reverse().join('.')}.in-addr.arpa`;
  return (byQuestion[`PTR ${reverse}`] ?? 0) + (byQuestion[`A ${host.name}`] ?? 0);
}

async function coldPreflight(world: WorldProcess, delayMs: number): Promise<{ address: string; ms: number[] }[]> {
  await world.request('delay', { ms: delayMs });
  const results: { address: string; ms: number[] }[] = [];
  // 127.0.0.6 has two PTR names: their forward lookups must run side by side.
  for (const localAddress of ['127.0.0.2', '127.0.0.6']) {
    const ms: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = process.hrtime.bigint();
      await preflight({ host: 'relay.test', localAddress, edge: { dns: { servers: [world.dnsServer] } } });
      ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    results.push({ address: localAddress, ms });
  }
  await world.request('delay', { ms: 0 });
  return results;
}

/**
 * The prediction alone, per message, with warm caches (the steady state): one
 * signed message rendered by Nodemailer, then its headers read, its DKIM
 * verdict looked up (key record answer and signature shape unchanged), the
 * DMARC record and SPF verdict read from cache, and the verdict assembled.
 */
async function predictionCost(world: WorldProcess): Promise<{ coldMs: number; warmMicros: number; iterations: number }> {
  const options = resolveEdgeOptions({ host: '127.0.0.1', localAddress: '127.0.0.2', dkim: DKIM, edge: { receiver: 'final', dns: { servers: [world.dnsServer] } } } as Parameters<typeof resolveEdgeOptions>[0]);
  const resolver = createResolver(options);
  const signer = nodemailer.createTransport({ streamTransport: true, buffer: true, dkim: DKIM });
  const { message } = await signer.sendMail({ from: 'app@good.test', to: 'sink@example.test', subject: 'cost', text: 'benchmark body\n' });
  const raw = message as Buffer;
  const authenticator = new MessageAuthenticator(resolver, options.clock, options.dkim);
  const edge = { address: '127.0.0.2', name: 'mail.good.test' };
  const once = async (): Promise<string> => {
    const signal = AbortSignal.timeout(5000);
    const prepared = await authenticator.prepareRaw(raw, 'app@good.test', options.dkim, signal);
    return (await authenticator.judge(prepared, edge, 'final', signal)).authentication.header;
  };
  const t0 = process.hrtime.bigint();
  const header = await once();
  const coldMs = Number(process.hrtime.bigint() - t0) / 1e6;
  if (!header.includes('dmarc=pass')) throw new Error(`the bench world does not authenticate good.test: ${header}`);
  const iterations = 5000;
  const t1 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) await once();
  const warmMicros = Number(process.hrtime.bigint() - t1) / 1e3 / iterations;
  return { coldMs, warmMicros, iterations };
}

async function main(): Promise<void> {
  const world = await startWorldProcess(BENCH_ZONE + AUTH_ZONE);
  const results: RunResult[] = [];
  try {
    for (const mode of MODES) {
      for (let round = 0; round < ROUNDS; round++) {
        const order: Kind[] = round % 2 === 0 ? ['raw', 'mailedge'] : ['mailedge', 'raw'];
        for (const kind of order) {
          const result = await run(kind, mode, round, world);
          results.push(result);
          if (!JSON_OUTPUT) process.stderr.write(`  ${mode} round ${round + 1} ${kind}: ${result.perSecond.toFixed(0)} msg/s\n`);
        }
      }
    }
    const cold = await coldPreflight(world, 20);
    const prediction = await predictionCost(world);
    const summary = MODES.map((mode) => {
      const of = (kind: Kind) => results.filter((r) => r.mode === mode && r.kind === kind);
      const raw = of('raw');
      const edge = of('mailedge');
      const ratios = raw.map((r) => {
        const partner = edge.find((e) => e.round === r.round);
        return partner ? partner.perSecond / r.perSecond : NaN;
      });
      return {
        mode,
        rawPerSecond: median(raw.map((r) => r.perSecond)),
        mailedgePerSecond: median(edge.map((r) => r.perSecond)),
        ratio: median(ratios),
        ratios,
        rawP50: median(raw.map((r) => r.p50)),
        rawP99: median(raw.map((r) => r.p99)),
        mailedgeP50: median(edge.map((r) => r.p50)),
        mailedgeP99: median(edge.map((r) => r.p99)),
        rawPeakRssMb: Math.max(...raw.map((r) => r.peakRssMb)),
        mailedgePeakRssMb: Math.max(...edge.map((r) => r.peakRssMb)),
        mailedgeIdentityQueriesPerRun: edge.map((r) => r.identityQueries),
        mailedgeEnvelopeQueriesPerRun: edge.map((r) => r.envelopeQueries),
        failures: [...raw, ...edge].reduce((n, r) => n + r.failures, 0),
      };
    });
    const coldSummary = cold.map((c) => ({ address: c.address, medianMs: median(c.ms), budgetMs: 2 * 20 + 10, runs: c.ms }));
    const machine = { node: process.version, cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', messages: MESSAGES, rounds: ROUNDS, concurrency: CONCURRENCY };
    if (JSON_OUTPUT) {
      process.stdout.write(`${JSON.stringify({ machine, summary, coldPreflight: coldSummary, prediction, runs: results }, null, 2)}\n`);
    } else {
      const line = (cells: Array<string | number>): string => cells.map((c) => String(c).padStart(12)).join('') + '\n';
      process.stdout.write(`\nmailedge vs raw Nodemailer: ${MESSAGES} messages x ${ROUNDS} rounds, concurrency ${CONCURRENCY}, ${machine.cpus} x ${machine.cpu}, Node ${machine.node}\n\n`);
      process.stdout.write(line(['mode', 'raw msg/s', 'edge msg/s', 'ratio', 'raw p50', 'edge p50', 'raw p99', 'edge p99', 'raw RSS', 'edge RSS', 'identity q', 'envelope q']));
      for (const s of summary) {
        process.stdout.write(
          line([
            s.mode,
            s.rawPerSecond.toFixed(0),
            s.mailedgePerSecond.toFixed(0),
            s.ratio.toFixed(3),
            `${s.rawP50.toFixed(1)}ms`,
            `${s.mailedgeP50.toFixed(1)}ms`,
            `${s.rawP99.toFixed(1)}ms`,
            `${s.mailedgeP99.toFixed(1)}ms`,
            `${s.rawPeakRssMb.toFixed(0)}MB`,
            `${s.mailedgePeakRssMb.toFixed(0)}MB`,
            s.mailedgeIdentityQueriesPerRun.join('/'),
            s.mailedgeEnvelopeQueriesPerRun.join('/'),
          ]),
        );
      }
      process.stdout.write(`\ncold preflight, every DNS answer delayed 20 ms (budget: 2 round trips + 10 ms = 50 ms):\n`);
      for (const c of coldSummary) process.stdout.write(`  ${c.address}: median ${c.medianMs.toFixed(1)} ms (runs: ${c.runs.map((m) => m.toFixed(1)).join(', ')})\n`);
      process.stdout.write(`\nauthentication prediction per message (warm caches, ${prediction.iterations} messages): ${prediction.warmMicros.toFixed(1)} µs; first message (cold: DNS and a full DKIM verification): ${prediction.coldMs.toFixed(1)} ms\n`);
      const failures = summary.reduce((n, s) => n + s.failures, 0);
      process.stdout.write(`\nfailed sends: ${failures}\n`);
    }
  } finally {
    world.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
