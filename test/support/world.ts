import { afterAll, beforeAll, beforeEach } from 'vitest';
/**
 * The test world every end-to-end test shares: the fixture DNS server serving
 * fixtures/zones/world.zone (plus DELIVERABILITY_ZONE below) and receivers on
 * loopback. Each test file starts its own world and tears it down.
 *
 * Test files run in parallel, each in its own process with its own world: its
 * own DNS server (so its own copy of the records, faults and query log) and
 * its own receivers, every one on an ephemeral port. The zone's addresses
 * (127.0.0.100 for smtp.relay.test, 127.0.0.2 for mail.good.test, ...) are
 * shared by every world, and that is safe: a listener binds its address with
 * a port of its own, and a sending host binds its source address with an
 * ephemeral port, so two worlds never hold the same socket. Nothing binds a
 * fixed port (port 25 needs root): to prove that nothing is sent to an
 * address, watch it with watchConnections() instead of listening there.
 */
import { startDnsServer, type FixtureDnsServer } from '../../src/testing/dns-server.js';
import { startReceiver, type Receiver, type ReceiverOptions } from '../../src/testing/receiver.js';
import { WORLD_ZONE_FILE } from '../../src/testing/fixtures.js';
import { createTransport, type MailedgeTransporter as MailedgeTransport } from '../../src/create-transport.js';
import type { MailedgeOptions } from '../../src/options.js';
import { watchConnections, type ConnectionWatch } from './connections.js';

export interface World {
  dns: FixtureDnsServer;
  /** Strict, Gmail-like receiver on 127.0.0.100 (smtp.relay.test). */
  strict: Receiver;
  /** Accept-everything receiver on 127.0.0.101. */
  plain: Receiver;
  /** Receivers started by tests, closed at teardown. */
  extra: Receiver[];
  transports: MailedgeTransport[];
  transport(options: MailedgeOptions): MailedgeTransport;
  receiver(options: ReceiverOptions): Promise<Receiver>;
  /** Records this process's connection attempts to `address` (any port); reset before each test, stopped at teardown. */
  watchConnections(address: string): ConnectionWatch;
  watches: ConnectionWatch[];
  close(): Promise<void>;
}

/**
 * Sender and recipient domains for the deliverability checks, beside the
 * world zone's sender.test (which passes them all) and nullmx.example.test.
 */
export const DELIVERABILITY_ZONE = `
$TTL 300
; SPF forbids every loopback sender; otherwise a well-run domain (DMARC from sender.test)
fail.sender.test.          TXT "v=spf1 ip4:127.0.9.9 -all"
fail.sender.test.          MX  10 mx.sender.test.
; no SPF, no MX (implicit MX: its A record), no DMARC: three warnings
lax.test.                  A   127.0.0.60
; 127.0.0.13: FCrDNS passes, but the name is an ISP's generic one
13.0.0.127.in-addr.arpa.   PTR 127-0-0-13.dsl.isp.test.
127-0-0-13.dsl.isp.test.   A   127.0.0.13
`;

export async function startWorld(): Promise<World> {
  const dns = await startDnsServer({ zoneFiles: [WORLD_ZONE_FILE], zone: DELIVERABILITY_ZONE });
  const strict = await startReceiver({ host: '127.0.0.100', strict: true, dnsServer: dns.server });
  const plain = await startReceiver({ host: '127.0.0.101' });
  const world: World = {
    dns,
    strict,
    plain,
    extra: [],
    transports: [],
    watches: [],
    transport(options) {
      const transport = createTransport({
        ignoreTLS: true,
        ...options,
        // The world plays the internet on loopback: its relays are not on "this machine".
        edge: { localRelay: false, ...options.edge, dns: { servers: [dns.server], timeout: 2000, ...options.edge?.dns } },
      });
      world.transports.push(transport);
      return transport;
    },
    async receiver(options) {
      const receiver = await startReceiver(options);
      world.extra.push(receiver);
      return receiver;
    },
    watchConnections(address) {
      const watch = watchConnections(address);
      world.watches.push(watch);
      return watch;
    },
    async close() {
      for (const watch of world.watches) watch.close();
      for (const transport of world.transports) transport.close();
      await Promise.all([strict.close(), plain.close(), ...world.extra.map((r) => r.close())]);
      await dns.close();
    },
  };
  return world;
}

export const MESSAGE = {
  from: 'app@sender.test',
  to: 'someone@example.test',
  subject: 'hello',
  text: 'body text',
} as const;

/**
 * Receivers on several loopback addresses sharing one port, as MX hosts (or
 * one host's two families) share port 25. The port comes from the first
 * receiver; should another test's socket already hold it on one of the other
 * addresses, all are closed and the lot is started again on a new port.
 */
export async function startReceiversOnOnePort(list: ReceiverOptions[], attempts = 5): Promise<Receiver[]> {
  for (let attempt = 1; ; attempt++) {
    const started: Receiver[] = [];
    try {
      for (const options of list) {
        started.push(await startReceiver({ ...options, ...(started[0] ? { port: started[0].port } : {}) }));
      }
      return started;
    } catch (err) {
      await Promise.all(started.map((r) => r.close()));
      if (attempt >= attempts || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    }
  }
}

/**
 * One world for the test file that calls this: started before its first test,
 * closed after its last, and reset (receivers, query log, DNS faults) before
 * each test, so no test sees another's traffic or faults.
 */
export function useWorld(): World {
  const handle = {} as World;
  beforeAll(async () => {
    Object.assign(handle, await startWorld());
  });
  afterAll(async () => {
    await handle.close();
  });
  beforeEach(() => {
    handle.strict.reset();
    handle.plain.reset();
    handle.dns.resetStats();
    handle.dns.clearFaults();
    for (const watch of handle.watches) watch.reset();
  });
  return handle;
}
