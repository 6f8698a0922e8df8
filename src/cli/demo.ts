/**
 * The embedded demo world: a fixture DNS server and a strict receiver on
 * loopback, and three sending hosts played by 127.0.0.x source addresses.
 */
import { createTransport } from '../create-transport.js';
import { EdgeRefusedError, MailedgeError } from '../errors.js';
import { renderCheck } from '../report/human.js';
import type { CheckResult, PreflightReport } from '../checks/types.js';
import { printable } from '../checks/hostname.js';
import { parseFlags } from './args.js';
import { EXIT, useColor, type CliIo } from './io.js';
import { startFixtureWorld } from './world.js';

export const DEMO_USAGE = `Usage: mailedge demo

Starts a DNS server (zone data from fixtures/zones/world.zone) and a strict,
Gmail-like receiver on loopback, then sends from three hosts:
  127.0.0.2  well configured           → sent with EHLO mail.good.test
  127.0.0.3  PTR name's A points away  → refused, FCRDNS_MISMATCH
  127.0.0.4  no PTR at all             → refused, PTR_MISSING
Needs no network and no configuration. Exits 0 when all three behave as shown.
`;

interface Scenario {
  title: string;
  localAddress: string;
  expect: { sent: true; name: string } | { sent: false; code: string };
}

const SCENARIOS: Scenario[] = [
  { title: 'well configured', localAddress: '127.0.0.2', expect: { sent: true, name: 'mail.good.test' } },
  { title: "PTR name's A record points elsewhere", localAddress: '127.0.0.3', expect: { sent: false, code: 'FCRDNS_MISMATCH' } },
  { title: 'no PTR record', localAddress: '127.0.0.4', expect: { sent: false, code: 'PTR_MISSING' } },
];

/**
 * The library words a skipped check by what it was handed (no confirmed name),
 * which for 127.0.0.3 reads as if there were no PTR at all. The demo is there
 * to teach the difference, so its skip lines say which case this is.
 */
function skipReason(report: PreflightReport): string | null {
  if (report.name !== null) return null;
  if (report.ptrNames.length === 0) return 'not checked: there is no PTR record';
  const names = report.ptrNames.map((p) => printable(p.name)).join(', ');
  return `not checked: there is a PTR name (${names}), but it is not confirmed`;
}

function shown(check: CheckResult, report: PreflightReport): CheckResult {
  const reason = check.status === 'skip' && check.id !== 'ptr' ? skipReason(report) : null;
  return reason === null ? check : { ...check, actual: reason };
}

export async function demoCommand(args: string[], io: CliIo): Promise<number> {
  const flags = parseFlags(args, { help: { type: 'boolean', short: 'h' } });
  if (flags.help) {
    io.stdout.write(DEMO_USAGE);
    return EXIT.ok;
  }
  const color = useColor(io);
  const out = (line = ''): void => void io.stdout.write(`${line}\n`);
  // Said before anything starts, so a newcomer knows what the screens below are for.
  out('mailedge demo: three hosts send one message each to a strict, Gmail-like receiver, all on loopback.');
  out('mailedge checks each host\'s PTR and its forward confirmation first: the good host sends, the two misconfigured ones are refused before connecting.');
  out();
  const world = await startFixtureWorld({ dns: 0, smtp: 0 });
  const receiver = world.relay;
  let failures = 0;
  try {
    out(`DNS server on ${world.dns.server} (zone: fixtures/zones/world.zone)`);
    out(`strict receiver (Gmail-like 5.7.25) on 127.0.0.100:${receiver.port}; smtp.relay.test → 127.0.0.100`);
    for (const scenario of SCENARIOS) {
      out();
      out(`── host ${scenario.localAddress}: ${scenario.title}`);
      const transport = createTransport({
        host: 'smtp.relay.test',
        port: receiver.port,
        localAddress: scenario.localAddress,
        ignoreTLS: true,
        edge: { dns: { servers: [world.dns.server], timeout: 2000 } },
      });
      const connectionsBefore = receiver.connections;
      const fixes = new Set<string>();
      try {
        const report = await transport.preflight();
        for (const check of report.checks) {
          out(renderCheck(shown(check, report), { color }).join('\n'));
          if (check.hint) fixes.add(check.hint);
        }
        const info = await transport.sendMail({
          from: 'app@sender.test',
          to: 'someone@example.test',
          subject: `demo from ${scenario.localAddress}`,
          text: 'Hello from the mailedge demo.',
        });
        const session = receiver.sessions.find((s) => s.clientAddress === scenario.localAddress && s.messages.length > 0);
        out(`   → sent: ${info.response}`);
        out(`   → the receiver saw ${session?.clientAddress ?? '?'} say EHLO ${session?.ehlo ?? '?'}`);
        const ok = scenario.expect.sent && session?.ehlo === scenario.expect.name && info.edge.name === scenario.expect.name;
        if (!ok) failures++;
      } catch (err) {
        if (!(err instanceof MailedgeError)) throw err;
        const refused = err instanceof EdgeRefusedError;
        out(`   → refused [${err.code}]${refused ? ' before connecting' : ''}: ${printable(err.message)}`);
        // The check above already printed its fix; a second copy only pushes the outcome off screen.
        if (!fixes.has(err.hint)) out(`   → fix: ${printable(err.hint)}`);
        const untouched = receiver.connections === connectionsBefore;
        out(`   → the receiver saw ${untouched ? 'no connection' : 'a connection (unexpected)'}; the message came back intact: "${String((err.mail as { subject?: string } | undefined)?.subject)}"`);
        const ok = !scenario.expect.sent && err.code === scenario.expect.code && untouched;
        if (!ok) failures++;
      } finally {
        transport.close();
      }
    }
    out();
    out(failures === 0 ? 'demo: all three hosts behaved as expected' : `demo: ${failures} host(s) did not behave as expected`);
    return failures === 0 ? EXIT.ok : EXIT.misconfigured;
  } finally {
    await world.close();
  }
}
