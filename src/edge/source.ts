/**
 * The edge address: the source address receivers will see for a destination.
 */
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';

export type EdgeOrigin = 'publicAddress' | 'localAddress' | 'kernel';

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
