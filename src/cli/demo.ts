/**
 * The embedded demo world: a fixture DNS server and a strict receiver on
 * loopback, and three sending hosts played by 127.0.0.x source addresses.
 */
import { createTransport } from '../transport.js';
import { EdgeRefusedError, MailedgeError } from '../errors.js';
import { renderCheck } from '../report/human.js';
import { startDnsServer } from '../testing/dns-server.js';
import { startReceiver } from '../testing/receiver.js';
import { WORLD_ZONE_FILE } from '../testing/fixtures.js';
import { parseFlags } from './args.js';
import { EXIT, useColor, type CliIo } from './io.js';

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

export async function demoCommand(args: string[], io: CliIo): Promise<number> {
  const flags = parseFlags(args, { help: { type: 'boolean', short: 'h' } });
  if (flags.help) {
    io.stdout.write(DEMO_USAGE);
    return EXIT.ok;
  }
  const color = useColor(io);
  const dns = await startDnsServer({ zoneFiles: [WORLD_ZONE_FILE] });
  const receiver = await startReceiver({ host: '127.0.0.100', strict: true, dnsServer: dns.server });
  const out = (line = ''): void => void io.stdout.write(`${line}\n`);
  let failures = 0;
  try {
    out(`DNS server on ${dns.server} (zone: fixtures/zones/world.zone)`);
    out(`strict receiver (Gmail-like 5.7.25) on 127.0.0.100:${receiver.port}; smtp.relay.test → 127.0.0.100`);
    for (const scenario of SCENARIOS) {
      out();
      out(`── host ${scenario.localAddress}: ${scenario.title}`);
      const transport = createTransport({
        host: 'smtp.relay.test',
        port: receiver.port,
        localAddress: scenario.localAddress,
        ignoreTLS: true,
        edge: { dns: { servers: [dns.server], timeout: 2000 } },
      });
      const connectionsBefore = receiver.connections;
      try {
        const report = await transport.preflight();
        for (const check of report.checks) out(renderCheck(check, { color }).join('\n'));
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
        out(`   → refused [${err.code}]${refused ? ' before connecting' : ''}: ${err.message}`);
        out(`   → fix: ${err.hint}`);
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
    await receiver.close();
    await dns.close();
  }
}
