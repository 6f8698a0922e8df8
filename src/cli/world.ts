/**
 * The fixture world on loopback, for the demo and for `mailedge world`: the
 * DNS server serving fixtures/zones/world.zone and receivers at the addresses
 * that zone gives smtp.relay.test, plain.relay.test and mx.example.test, so
 * every CLI example in the README can be run from a shell against it.
 */
import { startDnsServer, type FixtureDnsServer } from '../testing/dns-server.js';
import { startReceiver, type Receiver, type ReceiverOptions } from '../testing/receiver.js';
import { WORLD_ZONE_FILE } from '../testing/fixtures.js';
import { parseFlags } from './args.js';
import { EXIT, UsageError, type CliIo } from './io.js';

/** Fixed by default so that the README's examples can be pasted as they are. */
export const WORLD_DNS_PORT = 5300;
export const WORLD_SMTP_PORT = 2525;

export const WORLD_USAGE = `Usage: mailedge world [--dns-port P] [--smtp-port P] [--json]

Starts the test world on loopback and keeps it running until Ctrl-C or SIGTERM:
a DNS server serving fixtures/zones/world.zone, and SMTP receivers for the
names in it. Prints the flags that point mailedge check / send at it.

  smtp.relay.test   127.0.0.100  strict, Gmail-like receiver (5.7.25 without FCrDNS)
  plain.relay.test  127.0.0.101  accepts everything
  mx.example.test   127.0.0.201  strict; the MX of example.test (send --direct)

Sending hosts are chosen with --local-address: 127.0.0.2 is confirmed as
mail.good.test, 127.0.0.3's PTR name points elsewhere, 127.0.0.4 has no PTR.

Options:
  --dns-port P     DNS port on 127.0.0.1 (default ${WORLD_DNS_PORT}; 0: any free port)
  --smtp-port P    port of every receiver (default ${WORLD_SMTP_PORT}; 0: any free port)
  --json           print the endpoints and flags as one JSON line instead
  -h, --help       show this help

Exit codes: 0 stopped by Ctrl-C or SIGTERM, 1 a port is taken, 64 usage error.
`;

const WORLD_FLAGS = {
  'dns-port': { type: 'string' },
  'smtp-port': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export interface FixtureWorld {
  dns: FixtureDnsServer;
  /** smtp.relay.test: strict, Gmail-like. */
  relay: Receiver;
  /** plain.relay.test: accepts everything. */
  plain: Receiver;
  /** mx.example.test: strict, the MX of example.test. */
  mx: Receiver;
  close(): Promise<void>;
}

/** A port the world cannot have; the command turns it into exit 1 with the fix. */
export class PortTakenError extends Error {
  override name = 'PortTakenError';
}

export async function startFixtureWorld(ports: { dns: number; smtp: number }): Promise<FixtureWorld> {
  let dns: FixtureDnsServer;
  try {
    dns = await startDnsServer({ zoneFiles: [WORLD_ZONE_FILE], port: ports.dns });
  } catch (err) {
    throw taken(err, `127.0.0.1:${ports.dns}`, '--dns-port') ?? err;
  }
  try {
    const [relay, plain, mx] = await startOnOnePort(
      [
        { host: '127.0.0.100', strict: true, dnsServer: dns.server },
        { host: '127.0.0.101' },
        { host: '127.0.0.201', strict: true, dnsServer: dns.server },
      ],
      ports.smtp,
    );
    if (!relay || !plain || !mx) throw new Error('receivers did not start');
    return {
      dns,
      relay,
      plain,
      mx,
      async close() {
        await Promise.all([relay.close(), plain.close(), mx.close()]);
        await dns.close();
      },
    };
  } catch (err) {
    await dns.close();
    throw taken(err, `port ${ports.smtp} on 127.0.0.100, .101 or .201`, '--smtp-port') ?? err;
  }
}

function taken(err: unknown, where: string, flag: string): PortTakenError | undefined {
  if ((err as NodeJS.ErrnoException | null)?.code !== 'EADDRINUSE') return undefined;
  return new PortTakenError(`${where} is in use (another mailedge world?): stop it, or pass ${flag} 0 for any free port`);
}

/**
 * One port for every receiver, as MX hosts share port 25, so one --port /
 * --mx-port flag reaches any of them. An ephemeral pick on the first address
 * may be held on another by someone else: then the lot is started again.
 */
async function startOnOnePort(list: ReceiverOptions[], port: number): Promise<Receiver[]> {
  for (let attempt = 1; ; attempt++) {
    const started: Receiver[] = [];
    try {
      for (const options of list) started.push(await startReceiver({ ...options, port: started[0]?.port ?? port }));
      return started;
    } catch (err) {
      await Promise.all(started.map((r) => r.close()));
      if (port !== 0 || attempt >= 5 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    }
  }
}

function portFlag(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw new UsageError(`${flag}: expected 0-65535 (0: any free port), got ${JSON.stringify(value)}`);
  return port;
}

/** The flags that point check / send at this world, exactly as they are to be typed. */
export function worldFlags(world: FixtureWorld): { relay: string[]; direct: string[] } {
  return {
    relay: ['--dns', world.dns.server, '--host', 'smtp.relay.test', '--port', String(world.relay.port)],
    direct: ['--dns', world.dns.server, '--mx-port', String(world.mx.port)],
  };
}

export async function worldCommand(args: string[], io: CliIo): Promise<number> {
  const flags = parseFlags(args, WORLD_FLAGS);
  if (flags.help) {
    io.stdout.write(WORLD_USAGE);
    return EXIT.ok;
  }
  const ports = { dns: portFlag('--dns-port', flags['dns-port'], WORLD_DNS_PORT), smtp: portFlag('--smtp-port', flags['smtp-port'], WORLD_SMTP_PORT) };
  if (!io.stopSignal) throw new Error('mailedge world needs a stop signal');
  // Taken before starting, so a signal that arrives while the servers start still stops them.
  const stop = io.stopSignal();
  let world: FixtureWorld;
  try {
    world = await startFixtureWorld(ports);
  } catch (err) {
    if (!(err instanceof PortTakenError)) throw err;
    io.stderr.write(`mailedge world: ${err.message}\n`);
    return EXIT.misconfigured;
  }
  try {
    const { relay, direct } = worldFlags(world);
    if (flags.json) {
      const receivers = [
        { name: 'smtp.relay.test', address: world.relay.host, port: world.relay.port, strict: true },
        { name: 'plain.relay.test', address: world.plain.host, port: world.plain.port, strict: false },
        { name: 'mx.example.test', address: world.mx.host, port: world.mx.port, strict: true },
      ];
      io.stdout.write(`${JSON.stringify({ dns: world.dns.server, zone: WORLD_ZONE_FILE, receivers, flags: { relay, direct } })}\n`);
    } else {
      io.stdout.write(
        [
          `mailedge world: running on loopback until Ctrl-C (zone: ${WORLD_ZONE_FILE})`,
          `  DNS server        ${world.dns.server}`,
          `  smtp.relay.test   ${world.relay.host}:${world.relay.port}  strict, Gmail-like (5.7.25 without FCrDNS)`,
          `  plain.relay.test  ${world.plain.host}:${world.plain.port}  accepts everything`,
          `  mx.example.test   ${world.mx.host}:${world.mx.port}  strict; the MX of example.test`,
          '',
          'Flags for mailedge check / send:',
          `  ${relay.join(' ')}`,
          'Flags for mailedge send --direct:',
          `  ${direct.join(' ')}`,
          '',
          'Sending hosts (--local-address): 127.0.0.2 confirmed as mail.good.test; 127.0.0.3 PTR name points elsewhere; 127.0.0.4 no PTR.',
          `For example: mailedge check ${relay.join(' ')} --local-address 127.0.0.2`,
          '',
        ].join('\n'),
      );
    }
    await stopped(stop);
    io.stderr.write('mailedge world: stopping\n');
    return EXIT.ok;
  } finally {
    await world.close();
  }
}

function stopped(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
