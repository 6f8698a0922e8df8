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
import { MessageStage } from '../src/message/stage.js';
import type { PreflightReport } from '../src/checks/types.js';
import type { MailMessage } from 'nodemailer/lib/mailer';
import DKIMSigner from 'nodemailer/lib/dkim';

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
  /** CPU time of this (the sending) process per message, µs: what each side costs, less noisy than throughput. */
  cpuMicros: number;
  /** PTR and forward queries of the edge identity. */
  identityQueries: number;
  /** Everything else: the envelope checks' lookups (sender and recipient domains). */
  envelopeQueries: number;
  failures: number;
}

const args = process.argv.slice(2);
const MESSAGES = Number(flag(args, 'messages') ?? 5000);
const ROUNDS = Number(flag(args, 'rounds') ?? 5);
const CONCURRENCY = Number(flag(args, 'concurrency') ?? 50);
const JSON_OUTPUT = args.includes('--json');
/** Messages per side in the uncounted warm-up run of each mode. */
const WARM_UP_MESSAGES = 1000;
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

async function run(kind: Kind, mode: Mode, round: number, world: WorldProcess, messages = MESSAGES): Promise<RunResult> {
  await world.request('reset');
  const { transport, host } = transportFor(kind, mode, world);
  const latencies: number[] = [];
  let failures = 0;
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 20);
  const started = process.hrtime.bigint();
  const cpuBefore = process.cpuUsage();
  await runConcurrently(messages, CONCURRENCY, async (index) => {
    const t0 = process.hrtime.bigint();
    try {
      await transport.sendMail({ from: 'app@good.test', to: 'sink@example.test', subject: `${kind}-${mode}-${round}-${index}`, text: 'benchmark body\n' });
    } catch {
      failures++;
    }
    latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpuBefore);
  clearInterval(sampler);
  transport.close();
  const stats = await world.request('stats');
  latencies.sort((a, b) => a - b);
  return {
    kind,
    mode,
    round,
    messages,
    seconds,
    perSecond: messages / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    peakRssMb: peakRss / 2 ** 20,
    cpuMicros: (cpu.user + cpu.system) / messages,
    identityQueries: identityQueries(stats.byQuestion, host),
    envelopeQueries: stats.queries - identityQueries(stats.byQuestion, host),
    failures: failures + (messages - failures - stats.messages),
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
 * The prediction as the send path runs it (src/message/stage.ts), per
 * message, on messages Nodemailer compiled and signs with the transport's key:
 * - steady state: a message of a shape judged before, within the TTLs behind
 *   it (every message after the first few of a running application): the
 *   header block built (which Nodemailer then does not build again: its cost
 *   is reported apart), the fields read, the shape and the verdict looked up;
 * - new shape: a shape not seen yet with every DNS answer and the DKIM
 *   verdict of the key already cached (the DKIM verdict, DMARC record and SPF
 *   read from cache, the verdict assembled and judged);
 * - cold: the first message (DNS, rendering, a full DKIM verification).
 */
async function predictionCost(world: WorldProcess): Promise<{ coldMs: number; steadyMicros: number; newShapeMicros: number; headerBlockMicros: number; iterations: number }> {
  const options = resolveEdgeOptions({ host: '127.0.0.1', localAddress: '127.0.0.2', dkim: DKIM, edge: { receiver: 'final', dns: { servers: [world.dnsServer] } } } as Parameters<typeof resolveEdgeOptions>[0]);
  const stage = new MessageStage(options, createResolver(options));
  const report = { ok: true, address: '127.0.0.2', name: 'mail.good.test', destination: '127.0.0.1', checks: [], ptrNames: [], expiresAt: Infinity, stale: false } as PreflightReport;
  const decision = { address: '127.0.0.2', name: 'mail.good.test', verified: true, stale: false, failed: null };
  const warn = (): void => undefined;
  // Nodemailer's own Mailer compiles each message and adds its signer, as createTransport does; nothing is sent.
  let captured: MailMessage | undefined;
  const mailer = nodemailer.createTransport({ name: 'capture', version: '1', send: (mail: MailMessage, done: (err: Error | null, info: unknown) => void) => ((captured = mail), done(null, {})) } as never);
  (mailer as unknown as { dkim: unknown }).dkim = new DKIMSigner(DKIM);
  const compile = async (subject: string, from = 'app@good.test'): Promise<MailMessage> => {
    await mailer.sendMail({ from, to: 'sink@example.test', subject, text: 'benchmark body\n' });
    if (!captured) throw new Error('nothing compiled');
    return captured;
  };
  const predict = async (mail: MailMessage): Promise<string> => {
    const preparing = stage.prepare(mail, mail, report);
    const send = preparing instanceof Promise ? await preparing : preparing;
    if (!send) throw new Error('the authentication check is off');
    const judging = stage.judge(send, decision, report, mail.data, warn);
    return (judging instanceof Promise ? await judging : judging).header;
  };
  const t0 = process.hrtime.bigint();
  const header = await predict(await compile('cold'));
  const coldMs = Number(process.hrtime.bigint() - t0) / 1e6;
  if (!header.includes('dmarc=pass')) throw new Error(`the bench world does not authenticate good.test: ${header}`);
  await predict(await compile('shape'));
  const iterations = 5000;
  const timed = async (mails: MailMessage[], run: (mail: MailMessage) => unknown): Promise<number> => {
    const started = process.hrtime.bigint();
    for (const mail of mails) await run(mail);
    return Number(process.hrtime.bigint() - started) / 1e3 / mails.length;
  };
  const batch = async (from?: (i: number) => string): Promise<MailMessage[]> => {
    const mails: MailMessage[] = [];
    for (let i = 0; i < iterations; i++) mails.push(await compile(`m${i}`, from?.(i)));
    return mails;
  };
  const steadyMicros = await timed(await batch(), predict);
  const headerBlockMicros = await timed(await batch(), (mail) => mail.message.buildHeaders());
  // A From display name of its own per message: a new shape each time, with every answer and the DKIM verdict cached.
  const newShapeMicros = await timed(await batch((i) => `"App ${i}" <app@good.test>`), predict);
  return { coldMs, steadyMicros, newShapeMicros, headerBlockMicros, iterations };
}

async function main(): Promise<void> {
  const world = await startWorldProcess(BENCH_ZONE + AUTH_ZONE);
  const results: RunResult[] = [];
  try {
    for (const mode of MODES) {
      // One short run of each side first, not counted: both measured sides then run JIT-compiled code (the first
      // run of a process would otherwise charge V8's warm-up to whichever side happens to go first).
      for (const kind of ['raw', 'mailedge'] as const) await run(kind, mode, -1, world, Math.min(MESSAGES, WARM_UP_MESSAGES));
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
        rawCpuMicros: median(raw.map((r) => r.cpuMicros)),
        mailedgeCpuMicros: median(edge.map((r) => r.cpuMicros)),
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
      process.stdout.write(line(['mode', 'raw msg/s', 'edge msg/s', 'ratio', 'raw p50', 'edge p50', 'raw p99', 'edge p99', 'raw RSS', 'edge RSS', 'raw CPU', 'edge CPU', 'identity q', 'envelope q']));
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
            `${s.rawCpuMicros.toFixed(0)}µs/msg`,
            `${s.mailedgeCpuMicros.toFixed(0)}µs/msg`,
            s.mailedgeIdentityQueriesPerRun.join('/'),
            s.mailedgeEnvelopeQueriesPerRun.join('/'),
          ]),
        );
      }
      for (const s of summary) process.stdout.write(`  ${s.mode} ratio per round: ${s.ratios.map((r) => r.toFixed(2)).join(', ')}\n`);
      process.stdout.write(`\ncold preflight, every DNS answer delayed 20 ms (budget: 2 round trips + 10 ms = 50 ms):\n`);
      for (const c of coldSummary) process.stdout.write(`  ${c.address}: median ${c.medianMs.toFixed(1)} ms (runs: ${c.runs.map((m) => m.toFixed(1)).join(', ')})\n`);
      process.stdout.write(
        `\nauthentication prediction per message, as the send path runs it (${prediction.iterations} messages each, signed with the transport's key):\n` +
          `  steady state (a shape judged before): ${prediction.steadyMicros.toFixed(1)} µs, of which building the header block Nodemailer then does not build again: ${prediction.headerBlockMicros.toFixed(1)} µs\n` +
          `  a new shape, every answer cached: ${prediction.newShapeMicros.toFixed(1)} µs\n` +
          `  first message (DNS, rendering, a full DKIM verification): ${prediction.coldMs.toFixed(1)} ms\n`,
      );
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
