/**
 * Watches the TCP connections this test process opens to one address, on any
 * port, without listening there. Proving that nothing contacts a host on port
 * 25 used to need a receiver bound to port 25, which only root may do on
 * Linux; the watch sees the attempt whatever the port, and whether or not
 * anything answers.
 *
 * It subscribes to Node's `net.client.socket` diagnostics channel, published
 * by net.connect() for every client socket, and records each connection
 * attempt (`connectionAttempt`, one per address tried). Vitest runs each test
 * file in its own process, so only that file's connections are seen.
 * test/world.test.ts checks that the watch sees mailedge's own connections.
 */
import diagnostics from 'node:diagnostics_channel';
import { isIPv4, type Socket } from 'node:net';

export interface ConnectionAttempt {
  address: string;
  port: number;
}

export interface ConnectionWatch {
  readonly address: string;
  /** Every attempt to connect to the address, in order. */
  readonly attempts: readonly ConnectionAttempt[];
  /** How many attempts were made (answered or not). */
  readonly connections: number;
  /** Forgets the attempts so far. */
  reset(): void;
  /** Stops watching; idempotent. */
  close(): void;
}

const CHANNEL = 'net.client.socket';

function canonical(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  return mapped && isIPv4(mapped) ? mapped : address.toLowerCase();
}

export function watchConnections(address: string): ConnectionWatch {
  const target = canonical(address);
  let attempts: ConnectionAttempt[] = [];
  let open = true;
  const onSocket = (message: unknown): void => {
    const socket = (message as { socket?: Socket }).socket;
    socket?.on('connectionAttempt', (ip: string, port: number) => {
      if (open && canonical(ip) === target) attempts.push({ address: ip, port });
    });
  };
  diagnostics.subscribe(CHANNEL, onSocket);
  return {
    address: target,
    get attempts(): readonly ConnectionAttempt[] {
      return attempts;
    },
    get connections(): number {
      return attempts.length;
    },
    reset(): void {
      attempts = [];
    },
    close(): void {
      if (!open) return;
      open = false;
      diagnostics.unsubscribe(CHANNEL, onSocket);
    },
  };
}
