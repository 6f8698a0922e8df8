/**
 * The loopback addresses the suite binds, found by reading the test sources
 * rather than kept as a list by hand, and a probe of which of them this
 * machine lacks. Linux answers for all of 127.0.0.0/8 on `lo`; macOS has only
 * 127.0.0.1 on lo0 until the others are added as aliases.
 */
import { createSocket } from 'node:dgram';
import { readdirSync, readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Where the addresses that tests and the demo bind are written. */
const SOURCES = ['test', 'src/testing', 'src/cli'];

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/**
 * Every 127.x.y.z written in the test sources and the kit, except network
 * addresses (x.y.z.0, CIDR prefixes) and SPF terms (ip4:...), which are data,
 * never bound. 127.0.0.1 is left out: every system has it.
 */
export function loopbackAddressesInSources(): string[] {
  const found = new Set<string>();
  for (const file of SOURCES.flatMap(sourceFiles)) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    for (const match of text.matchAll(/(ip4:)?\b(127\.\d{1,3}\.\d{1,3}\.\d{1,3})\b(\/)?/g)) {
      const address = match[2] ?? '';
      if (match[1] || match[3] || !isIPv4(address) || address.endsWith('.0') || address === '127.0.0.1') continue;
      found.add(address);
    }
  }
  return [...found].sort(compareAddresses);
}

export function compareAddresses(a: string, b: string): number {
  const key = (ip: string): number => ip.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
  return key(a) - key(b);
}

/** Whether a socket can be bound to `address` here (EADDRNOTAVAIL: no such local address). */
export function canBind(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createSocket(address.includes(':') ? 'udp6' : 'udp4');
    socket.once('error', () => {
      socket.close();
      resolve(false);
    });
    socket.bind(0, address, () => {
      socket.close();
      resolve(true);
    });
  });
}

/** The addresses among `addresses` (and ::1) that cannot be bound on this machine. */
export async function missingLoopbackAddresses(addresses: string[] = loopbackAddressesInSources()): Promise<string[]> {
  const all = [...addresses, '::1'];
  const results = await Promise.all(all.map(canBind));
  return all.filter((_, i) => !results[i]);
}
