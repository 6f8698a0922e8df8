/**
 * The test kit's own helpers: the connection watch that replaces a listener on
 * port 25 must see the connections mailedge really makes (or a test using it
 * would pass without checking anything), and the loopback addresses the suite
 * binds are found and present.
 */
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { useWorld, MESSAGE } from './support/world.js';
import { loopbackAddressesInSources, missingLoopbackAddresses } from './support/loopback.js';

const world = useWorld();

describe('watchConnections', () => {
  it('sees mailedge connect to a relay, with the port, and nothing for other addresses', async () => {
    const relay = world.watchConnections('127.0.0.100');
    const elsewhere = world.watchConnections('127.0.0.200');
    await world.transport({ host: 'smtp.relay.test', port: world.strict.port, localAddress: '127.0.0.2' }).sendMail({ ...MESSAGE });
    expect(world.strict.messages).toBe(1);
    expect(relay.attempts).toEqual([{ address: '127.0.0.100', port: world.strict.port }]);
    expect(elsewhere.connections).toBe(0);
  });

  it('sees an attempt on port 25 that nothing answers, without binding it', async () => {
    const watch = world.watchConnections('127.0.0.200');
    const refused = await new Promise<NodeJS.ErrnoException>((resolve) => {
      connect({ host: '127.0.0.200', port: 25 }).on('error', resolve).on('connect', () => resolve(new Error('connected')));
    });
    expect(refused.code).toBe('ECONNREFUSED');
    expect(watch.attempts).toEqual([{ address: '127.0.0.200', port: 25 }]);
    watch.reset();
    expect(watch.connections).toBe(0);
    watch.close();
    connect({ host: '127.0.0.200', port: 25 }).on('error', () => undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(watch.connections).toBe(0);
  });
});

describe('loopback addresses', () => {
  it('finds the addresses the tests bind, and this machine has them all (macOS: see the README)', async () => {
    const addresses = loopbackAddressesInSources();
    expect(addresses).toEqual(expect.arrayContaining(['127.0.0.2', '127.0.0.100', '127.0.0.101', '127.0.1.1']));
    expect(addresses).not.toContain('127.0.0.1');
    expect(addresses.filter((a) => a.endsWith('.0'))).toEqual([]);
    expect(await missingLoopbackAddresses(addresses)).toEqual([]);
    expect(await missingLoopbackAddresses(['192.0.2.1'])).toEqual(['192.0.2.1']);
  });
});
