/**
 * The edge address: the source address receivers will see for a destination.
 */
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';

/**
 * Where the edge address came from. 'internet': the relay is on this machine
 * (loopback), so the address checked is the kernel's source toward the
 * internet, which is what receivers beyond the local relay will see.
 */
export type EdgeOrigin = 'publicAddress' | 'localAddress' | 'kernel' | 'internet';

export interface EdgeAddress {
  address: string;
  origin: EdgeOrigin;
}

/**
 * Asks the kernel which source address it would use for `destination`. A
 * connected UDP socket gets a route and a source address without a single
 * datagram being sent, so this contacts nobody.
 */
export function kernelSourceAddress(destination: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(isIPv6(destination) ? 'udp6' : 'udp4');
    const fail = (err: Error): void => {
      socket.close();
      reject(err);
    };
    socket.once('error', fail);
    socket.connect(port, destination, () => {
      try {
        const { address } = socket.address();
        socket.close();
        resolve(address);
      } catch (err) {
        fail(err as Error);
      }
    });
  });
}

export interface EdgeSettings {
  publicAddress?: string | undefined;
  localAddress?: string | undefined;
}

export async function findEdge(settings: EdgeSettings, destination: string, port: number): Promise<EdgeAddress> {
  if (settings.publicAddress) return { address: settings.publicAddress, origin: 'publicAddress' };
  // A bound address wins over the kernel's answer: for 127.0.0.2 the kernel would say 127.0.0.1.
  if (settings.localAddress) return { address: settings.localAddress, origin: 'localAddress' };
  return { address: await kernelSourceAddress(destination, port), origin: 'kernel' };
}

/**
 * Addresses only used to ask the kernel for its route toward the internet (a
 * root name server's, a.root-servers.net): a connected UDP socket sends nothing.
 */
const INTERNET_PROBE = { 4: '198.41.0.4', 6: '2001:503:ba3e::2:30' } as const;

/** The address the outside world sees when mail is handed to a relay on this machine. */
export async function findInternetEdge(settings: EdgeSettings, family: 4 | 6): Promise<EdgeAddress> {
  if (settings.publicAddress) return { address: settings.publicAddress, origin: 'publicAddress' };
  return { address: await kernelSourceAddress(INTERNET_PROBE[family], 25), origin: 'internet' };
}
