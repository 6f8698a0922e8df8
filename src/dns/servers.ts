import { getServers } from 'node:dns';
import { isIP } from 'node:net';

export interface DnsServerAddress {
  address: string;
  port: number;
  family: 4 | 6;
}

/**
 * Parses the forms Node's Resolver#setServers accepts: '192.0.2.1',
 * '192.0.2.1:5300', '2001:db8::1', '[2001:db8::1]:5300'. Returns null when the
 * text is none of them, so the caller can name the bad option.
 */
export function parseServer(text: string): DnsServerAddress | null {
  const trimmed = text.trim();
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(trimmed);
  let address: string;
  let portText: string | undefined;
  if (bracketed) {
    address = bracketed[1] ?? '';
    portText = bracketed[2];
  } else if (isIP(trimmed) === 6) {
    address = trimmed;
  } else {
    const [host, port, ...rest] = trimmed.split(':');
    if (rest.length > 0 || host === undefined) return null;
    address = host;
    portText = port;
  }
  const family = isIP(address);
  if (family === 0) return null;
  const port = portText === undefined ? 53 : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return null;
  return { address, port, family: family as 4 | 6 };
}

export function formatServer(server: DnsServerAddress): string {
  return server.family === 6 ? `[${server.address}]:${server.port}` : `${server.address}:${server.port}`;
}

/** The system's resolvers, as Node read them from resolv.conf at start-up. */
export function systemServers(): DnsServerAddress[] {
  return getServers()
    .map(parseServer)
    .filter((s): s is DnsServerAddress => s !== null);
}
