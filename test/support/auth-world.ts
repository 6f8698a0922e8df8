/**
 * The world of the message-identity tests: two fixture DNS servers serving the
 * same records (the receiver's own and mailedge's, so mailedge's query counts
 * are its own and a change can reach one side only) and a receiver that
 * computes Authentication-Results for every message. Records and receiver are
 * put back after each test.
 */
import { afterAll, afterEach, beforeAll } from 'vitest';
import { startDnsServer, type FixtureDnsServer } from '../../src/testing/dns-server.js';
import { startReceiver, type Receiver } from '../../src/testing/receiver.js';
import type { MailedgeTransporter } from '../../src/create-transport.js';
import type { ResourceRecord } from '../../src/dns/wire.js';

export interface AuthWorld {
  /** The records both servers serve between tests. */
  records: ResourceRecord[];
  /** The receiver's DNS server. */
  theirs: FixtureDnsServer;
  /** mailedge's DNS server. */
  ours: FixtureDnsServer;
  receiver: Receiver;
  /** Transports made by a test, closed after it. */
  transporters: MailedgeTransporter[];
}

/** Registers the world's set-up and tear-down with vitest; its fields are set once beforeAll has run. */
export function useAuthWorld(hosts: { ours: string; theirs: string; receiver: string }, records: () => ResourceRecord[]): AuthWorld {
  const world = { transporters: [] } as unknown as AuthWorld;
  beforeAll(async () => {
    world.records = records();
    world.theirs = await startDnsServer({ host: hosts.theirs, records: world.records });
    world.ours = await startDnsServer({ host: hosts.ours, records: world.records });
    world.receiver = await startReceiver({ host: hosts.receiver, dnsServer: world.theirs.server, authentication: 'record' });
  });
  afterEach(() => {
    for (const t of world.transporters.splice(0)) t.close();
    world.ours.setRecords(world.records);
    world.theirs.setRecords(world.records);
    world.ours.resetStats();
    world.receiver.reset();
  });
  afterAll(async () => {
    await world.receiver.close();
    await world.ours.close();
    await world.theirs.close();
  });
  return world;
}
